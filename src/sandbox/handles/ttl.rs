//! A handle sandbox's idle clock: its last use written into the sandbox
//! (the modification time of `/tmp/.pod-exec-mcp-last-use`, through the
//! archive endpoint) and read back by any server, and the periodic expiry
//! of handle sandboxes unused for POD_EXEC_SANDBOX_TTL, held here or not.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::super::owner::labels as owner_labels;
use super::super::{SandboxKey, SandboxManager, Slot, SlotState};
use super::{LAST_USE_DIR, LAST_USE_FILE, labels};
use crate::podman::PodmanError;

/// How often a used handle sandbox's last use is written down: often enough
/// that a restart or another replica never misjudges it by more than a
/// quarter of the TTL (and at most 30 s).
pub fn persist_period(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_millis(200), Duration::from_secs(30))
}

impl SandboxManager {
    /// Writes down handle sandboxes' last use and removes those unused for
    /// the TTL — held here or not (made before a restart, or by another
    /// replica, or whose server is gone) — every [`persist_period`] until
    /// `stop`.
    pub async fn expire_handles_every(self, stop: CancellationToken) {
        let period = persist_period(self.inner.sandbox_ttl);
        // Unheld containers: when to look at each again (its last use plus
        // the TTL), so each costs one HEAD per TTL rather than per tick.
        let mut next_look: HashMap<String, SystemTime> = HashMap::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            self.expire_handles(&mut next_look).await;
        }
    }

    async fn expire_handles(&self, next_look: &mut HashMap<String, SystemTime>) {
        let ttl = self.inner.sandbox_ttl;
        let held: Vec<(SandboxKey, Arc<Slot>)> = self
            .slots()
            .map
            .iter()
            .filter(|(_, s)| s.handle.is_some())
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        let mut held_digests = HashSet::new();
        for (key, slot) in held {
            if let Some(h) = &slot.handle {
                held_digests.insert(h.digest.clone());
            }
            if slot.unused(self.inner.max_calls) && slot.last_used().elapsed() >= ttl {
                info!(sandbox = %slot.tag, ttl_s = ttl.as_secs(), "handle sandbox expired");
                self.release(&key, "expired").await;
            } else {
                self.persist_slot(&slot, false).await;
            }
        }
        let managed = format!("{}=true", owner_labels::MANAGED);
        let kind = format!("{}=handle", owner_labels::KIND);
        let Ok(list) = self
            .inner
            .podman
            .list_containers(&[managed.as_str(), kind.as_str()])
            .await
        else {
            return;
        };
        let now = SystemTime::now();
        let ids: HashSet<&str> = list.iter().map(|c| c.id.as_str()).collect();
        next_look.retain(|id, _| ids.contains(id.as_str()));
        for c in &list {
            let digest = c.labels.get(labels::HANDLE).map(String::as_str);
            if digest.is_some_and(|d| held_digests.contains(d)) {
                next_look.remove(&c.id);
                continue;
            }
            if next_look.get(&c.id).is_some_and(|t| *t > now) {
                continue;
            }
            let idle = match self.read_last_use(&c.id).await {
                Ok(Some(t)) => now.duration_since(t).unwrap_or_default(),
                // No record (removed by a command, or a create in flight
                // elsewhere): counts as used now, so it gets a full TTL.
                Ok(None) => {
                    let _ = self.write_last_use(&c.id, now).await;
                    Duration::ZERO
                }
                Err(_) => continue,
            };
            if idle >= ttl {
                match self.remove_retrying(&c.id).await {
                    Ok(()) => {
                        info!(container = %c.id, idle_s = idle.as_secs(), "handle sandbox expired (not held by this server)")
                    }
                    Err(e) => {
                        warn!(container = %c.id, "could not remove an expired handle sandbox: {e}")
                    }
                }
                next_look.remove(&c.id);
            } else {
                next_look.insert(c.id.clone(), now + (ttl - idle));
            }
        }
    }

    /// Writes a handle slot's last use into its sandbox when it changed
    /// since the last write (or always, with `force`); a call in flight
    /// counts as a use now.
    pub(in crate::sandbox) async fn persist_slot(&self, slot: &Slot, force: bool) {
        let Some(h) = &slot.handle else { return };
        let busy = !slot.unused(self.inner.max_calls);
        let last = slot.last_used();
        let persisted = *h
            .persisted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !force && !busy && persisted == Some(last) {
            return;
        }
        let id = match slot.state.try_lock() {
            Ok(state) => match &*state {
                SlotState::Ready(c) => c.id.clone(),
                _ => return,
            },
            // Being created or removed right now.
            Err(_) => return,
        };
        let at = if busy {
            SystemTime::now()
        } else {
            SystemTime::now()
                .checked_sub(last.elapsed())
                .unwrap_or(UNIX_EPOCH)
        };
        match self.write_last_use(&id, at).await {
            Ok(()) => {
                *h.persisted
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(last);
            }
            Err(e) => warn!(sandbox = %slot.tag, "could not record the sandbox's last use: {e}"),
        }
    }

    /// How long the sandbox `id` has been unused by its own record; a
    /// missing or unreadable record counts as "just used" (a restart must
    /// never cost a client its files early).
    pub(in crate::sandbox) async fn idle_in_sandbox(&self, id: &str) -> Duration {
        match self.read_last_use(id).await {
            Ok(Some(t)) => SystemTime::now().duration_since(t).unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }

    pub(in crate::sandbox) async fn read_last_use(
        &self,
        id: &str,
    ) -> Result<Option<SystemTime>, PodmanError> {
        let path = format!("{LAST_USE_DIR}/{LAST_USE_FILE}");
        let Some(stat) = self.inner.podman.stat_path(id, &path).await? else {
            return Ok(None);
        };
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(&stat.mtime) else {
            return Ok(None);
        };
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        // A time in the future (set by a command) counts as now.
        Ok(Some(
            (UNIX_EPOCH + Duration::from_secs(secs)).min(SystemTime::now()),
        ))
    }

    pub(in crate::sandbox) async fn write_last_use(
        &self,
        id: &str,
        at: SystemTime,
    ) -> Result<(), PodmanError> {
        let secs = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let body = format!("{secs}\n");
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(secs);
        header.set_entry_type(tar::EntryType::Regular);
        let mut builder = tar::Builder::new(Vec::new());
        // Building into memory cannot fail but for a bad path, and this
        // one is a constant.
        builder
            .append_data(&mut header, LAST_USE_FILE, body.as_bytes())
            .map_err(|e| PodmanError::malformed(LAST_USE_FILE, e.to_string()))?;
        let tar = builder
            .into_inner()
            .map_err(|e| PodmanError::malformed(LAST_USE_FILE, e.to_string()))?;
        self.inner
            .podman
            .put_archive(id, LAST_USE_DIR, bytes::Bytes::from(tar))
            .await
    }
}
