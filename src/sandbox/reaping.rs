//! Cleaning up what no sandbox holds: session containers left by a server
//! that is gone (at start-up), and, periodically, this instance's own
//! containers that no sandbox holds any more (a removal that failed).
//! Handle containers are never taken here: they outlive their creator and
//! expire by their TTL (handles.rs).

use std::collections::HashSet;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::owner::{self, Liveness, labels};
use super::{SandboxManager, Slot, SlotState};
use crate::podman::PodmanError;

impl SandboxManager {
    /// Reconciles this instance's containers with the sandboxes it knows,
    /// every `every` until `stop`: a container no sandbox holds (its
    /// removal failed, e.g. Podman was down when the session ended) is
    /// removed when it is still unknown at the next sweep — two strikes, so
    /// a container whose creation is just finishing is never taken.
    pub async fn sweep_every(self, every: std::time::Duration, stop: CancellationToken) {
        let mut suspects = HashSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            suspects = self.sweep(&suspects).await;
        }
    }

    /// One sweep; returns the containers unknown this time.
    async fn sweep(&self, suspects: &HashSet<String>) -> HashSet<String> {
        let instance = format!("{}={}", labels::INSTANCE, self.inner.me.instance);
        let managed = format!("{}=true", labels::MANAGED);
        let Ok(list) = self
            .inner
            .podman
            .list_containers(&[managed.as_str(), instance.as_str()])
            .await
        else {
            // Podman is away: try again next time, with the same suspects.
            return suspects.clone();
        };
        let slots: Vec<Arc<Slot>> = self.slots().map.values().cloned().collect();
        let mut known = HashSet::new();
        for slot in slots {
            // A slot busy creating its container is not read; its
            // container survives one strike.
            if let Ok(state) = slot.state.try_lock()
                && let SlotState::Ready(c) = &*state
            {
                known.insert(c.id.clone());
            }
        }
        let mut unknown = HashSet::new();
        for c in list {
            // Pooled containers belong to the pool until a session takes
            // one; handle containers to their handle's TTL (handles.rs).
            let kind = c.labels.get(labels::KIND).map(String::as_str);
            if known.contains(&c.id) || kind == Some("pool") || kind == Some("handle") {
                continue;
            }
            if suspects.contains(&c.id) {
                match self.remove_retrying(&c.id).await {
                    Ok(()) => info!(container = %c.id, "removed a container no sandbox holds"),
                    Err(e) => {
                        warn!(container = %c.id, "could not remove a container no sandbox holds: {e}");
                        unknown.insert(c.id);
                    }
                }
            } else {
                unknown.insert(c.id);
            }
        }
        unknown
    }

    /// Removes managed containers whose owning server process is gone (a
    /// crashed or killed predecessor on this machine). Only containers
    /// carrying the managed label are looked at. Returns how many were
    /// removed.
    ///
    /// # Errors
    /// Listing failed.
    pub async fn reap_stale(&self) -> Result<usize, PodmanError> {
        let managed = format!("{}=true", labels::MANAGED);
        let list = self
            .inner
            .podman
            .list_containers(&[managed.as_str()])
            .await?;
        let me = self.inner.me.owner.clone();
        let stale: Vec<_> = list
            .into_iter()
            .filter(|c| c.labels.get(labels::INSTANCE) != Some(&self.inner.me.instance))
            // A handle sandbox outlives its creator; its TTL removes it.
            .filter(|c| c.labels.get(labels::KIND).map(String::as_str) != Some("handle"))
            .filter(|c| {
                c.labels
                    .get(labels::OWNER)
                    .is_some_and(|o| owner::liveness(o, me.as_deref()) == Liveness::Dead)
            })
            .collect();
        // Retried like every removal: under load Podman 4.3 can fail one
        // with "device or resource busy" (the container's shm mount).
        let removes = stale.iter().map(|c| async {
            let r = self.remove_retrying(&c.id).await;
            if let Err(e) = &r {
                warn!(container = %c.id, "could not remove stale container: {e}");
            }
            r.is_ok()
        });
        let removed = futures::future::join_all(removes)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
        if removed > 0 {
            info!(
                removed,
                "removed containers left by server instances that are gone"
            );
        }
        Ok(removed)
    }
}
