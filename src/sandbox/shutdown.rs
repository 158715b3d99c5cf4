//! The end of an instance: stop taking work, remove every session and
//! one-shot container in parallel (and the warm pool's), keep handle
//! sandboxes for the next server with their last use written down.

use std::sync::Arc;

use tracing::warn;

use super::owner::labels;
use super::{SandboxManager, Slot};

impl SandboxManager {
    /// Stops accepting work and removes every container of this instance,
    /// in parallel. Also sweeps by the instance label, so a container whose
    /// creation was in flight is not missed.
    pub async fn shutdown(&self) {
        let survive = self.inner.handles_survive;
        let (slots, kept): (Vec<Arc<Slot>>, Vec<Arc<Slot>>) = {
            let mut s = self.slots();
            s.shutting_down = true;
            s.map
                .drain()
                .map(|(_, v)| v)
                .partition(|v| !(survive && v.handle.is_some()))
        };
        let pool = self.pool().take();
        let drain_pool = async {
            if let Some(pool) = pool {
                pool.stop.cancel();
                // It finishes the create in flight (if any) and removes it.
                let _ = pool.filler.await;
                let mut rx = pool.ready.lock().await;
                rx.close();
                let mut waiting = Vec::new();
                while let Some(c) = rx.recv().await {
                    waiting.push(c);
                }
                let removes = waiting
                    .iter()
                    .map(|c| self.inner.podman.remove_container(&c.id, true));
                futures::future::join_all(removes).await;
            }
        };
        let closes = slots.iter().map(|s| self.close_slot(s, "server shutdown"));
        // Handle sandboxes stay for the next server: their last use is
        // written down, their executor connection just dropped.
        let keeps = kept.iter().map(|s| self.persist_slot(s, true));
        tokio::join!(
            drain_pool,
            futures::future::join_all(closes),
            futures::future::join_all(keeps)
        );
        let instance = format!("{}={}", labels::INSTANCE, self.inner.me.instance);
        let managed = format!("{}=true", labels::MANAGED);
        match self
            .inner
            .podman
            .list_containers(&[managed.as_str(), instance.as_str()])
            .await
        {
            Ok(list) => {
                let removes = list
                    .iter()
                    .filter(|c| {
                        !(survive
                            && c.labels.get(labels::KIND).map(String::as_str) == Some("handle"))
                    })
                    .map(|c| self.remove_retrying(&c.id));
                futures::future::join_all(removes).await;
            }
            Err(e) => warn!("shutdown sweep: cannot list containers: {e}"),
        }
    }
}
