//! The warm pool (POD_EXEC_WARM_POOL): started containers, each with its
//! executor connected, kept ready so a new session's first call skips
//! container create and start.

use std::sync::Arc;

use tokio::sync::{Mutex as AsyncMutex, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Container, Pool, SandboxManager};

impl SandboxManager {
    /// Keeps `size` started containers ready so a new session's first call
    /// skips create+start. Pooled containers carry `kind=pool` and their
    /// own tag; the log line "pooled container assigned" names the session
    /// that took one. Call once, at start-up.
    pub fn start_pool(&self, size: usize) {
        if size == 0 {
            return;
        }
        let (tx, rx) = mpsc::channel(size);
        let stop = CancellationToken::new();
        let this = self.clone();
        let token = stop.clone();
        let filler = tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    _ = token.cancelled() => return,
                    p = tx.reserve() => match p { Ok(p) => p, Err(_) => return },
                };
                // Not raced against `token`: a create dropped mid-request
                // could still complete in Podman after the shutdown sweep.
                match this.create(&crate::random_hex(6), "pool", Vec::new()).await {
                    Ok(c) if token.is_cancelled() => {
                        let _ = this.inner.podman.remove_container(&c.id, true).await;
                        return;
                    }
                    Ok(c) => {
                        // Started, with its executor connected (create
                        // does both): a session's first call costs one
                        // round trip.
                        info!(container = %c.name, "warm pool: container ready");
                        permit.send(c)
                    }
                    Err(e) => {
                        drop(permit);
                        warn!("warm pool: {e}; retrying in 1 s");
                        tokio::select! {
                            _ = token.cancelled() => return,
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        });
        *self.pool() = Some(Pool {
            ready: Arc::new(AsyncMutex::new(rx)),
            stop,
            filler,
        });
    }

    /// A ready pooled container, if one is waiting (never waits for one).
    pub(super) async fn claim_pooled(&self) -> Option<Container> {
        let ready = self.pool().as_ref().map(|p| p.ready.clone())?;
        let mut rx = ready.lock().await;
        rx.try_recv().ok()
    }
}
