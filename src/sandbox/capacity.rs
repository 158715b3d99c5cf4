//! Capacity: a new sandbox takes a free place under POD_EXEC_MAX_SESSIONS,
//! or else the place of the least recently used sandbox that has no call in
//! flight and has been idle for POD_EXEC_EVICT_AFTER; only when none
//! qualifies is it refused. So a client that opens a session per call (and
//! never ends one) cannot exhaust the server.

use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::{SandboxError, SandboxKey, SandboxManager, Slot, SlotState};

impl SandboxManager {
    /// Counts one more live sandbox for `me`, evicting another if needed.
    ///
    /// # Errors
    /// [`SandboxError::Capacity`] when the limit is reached and no sandbox
    /// may be evicted.
    pub(super) async fn reserve_or_evict(&self, me: &Slot) -> Result<(), SandboxError> {
        if self.try_reserve_live() || self.evict_lru(me).await {
            return Ok(());
        }
        let max = self.inner.max_sandboxes;
        warn!(
            limit = max,
            evict_after_s = self.inner.evict_after.as_secs(),
            "sandbox refused: POD_EXEC_MAX_SESSIONS reached and none idle long enough to evict"
        );
        Err(SandboxError::Capacity(max))
    }

    /// Removes the least recently used evictable sandbox and hands its
    /// place to the caller (the live count is not released in between, so
    /// no other new sandbox can take it, and the old container is gone
    /// before the new one is made); false when none qualifies.
    async fn evict_lru(&self, me: &Slot) -> bool {
        let max_calls = self.inner.max_calls;
        let min_idle = self.inner.evict_after;
        let mut candidates: Vec<(SandboxKey, Arc<Slot>, Instant)> = self
            .slots()
            .map
            .iter()
            .filter(|(_, s)| !std::ptr::eq(s.as_ref(), me) && s.kind != "oneshot")
            .map(|(k, s)| (k.clone(), s.clone(), s.last_used()))
            .filter(|(_, s, last)| s.unused(max_calls) && last.elapsed() >= min_idle)
            .collect();
        candidates.sort_by_key(|(_, _, last)| *last);
        for (key, slot, last) in candidates {
            // A slot busy being created or removed is not a candidate.
            let Ok(mut state) = slot.state.try_lock() else {
                continue;
            };
            // Checked again under the lock: a call may have arrived.
            if !slot.unused(max_calls) {
                continue;
            }
            let SlotState::Ready(c) = &*state else {
                continue;
            };
            let c = c.clone();
            *state = if slot.handle.is_some() {
                SlotState::Closed
            } else {
                SlotState::Evicted
            };
            drop(state);
            if slot.handle.is_some() {
                let mut slots = self.slots();
                if slots.map.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                    slots.map.remove(&key);
                }
            }
            let removed = self.remove_retrying(&c.id).await;
            info!(
                sandbox = %slot.tag, kind = slot.kind, container = %c.name,
                idle_s = last.elapsed().as_secs(), removed = removed.is_ok(),
                "evicted the least recently used sandbox to make room (POD_EXEC_MAX_SESSIONS)"
            );
            return true;
        }
        false
    }
}
