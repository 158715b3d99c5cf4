//! A sandbox's container from creation to removal: created and started
//! on first use (once per key, within the live-sandbox limit), checked,
//! forgotten when it vanished, removed when its key is released.

use std::sync::Arc;

use tracing::{info, warn};

use super::*;

impl SandboxManager {
    /// The slot's container, created and started on first use. Concurrent
    /// first calls of one key create exactly one container: they queue on
    /// the slot's lock.
    pub(super) async fn ensure(&self, slot: &Slot) -> Result<Arc<Container>, SandboxError> {
        let mut state = slot.state.lock().await;
        match &*state {
            SlotState::Ready(c) => return Ok(c.clone()),
            SlotState::Evicted => {
                // Said once; the call after this one starts afresh.
                *state = SlotState::Empty;
                return Err(SandboxError::Evicted);
            }
            SlotState::Closed if slot.handle.is_some() => return Err(SandboxError::Expired),
            SlotState::Closed => {
                return Err(if self.slots().shutting_down {
                    SandboxError::ShuttingDown
                } else {
                    SandboxError::Closed
                });
            }
            SlotState::Empty => {}
        }
        self.reserve_or_evict(slot).await?;
        // Pooled containers' labels say "pool"; a handle's must name it.
        let pooled = match slot.handle {
            None => self.claim_pooled().await,
            Some(_) => None,
        };
        let container = match pooled {
            Some(c) => {
                info!(sandbox = %slot.tag, container = %c.name, "pooled container assigned");
                c
            }
            None => match self.create(&slot.tag, slot.kind, slot.extra_labels()).await {
                Ok(c) => c,
                Err(e) => {
                    self.unreserve_live();
                    return Err(e);
                }
            },
        };
        let container = Arc::new(container);
        *state = SlotState::Ready(container.clone());
        Ok(container)
    }

    /// Counts one more live sandbox, unless the limit is reached.
    pub(super) fn try_reserve_live(&self) -> bool {
        let max = self.inner.max_sandboxes;
        self.inner
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub(super) fn unreserve_live(&self) {
        let _ = self
            .inner
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub(super) async fn create(
        &self,
        tag: &str,
        kind: &str,
        extra: Vec<(&'static str, String)>,
    ) -> Result<Container, SandboxError> {
        if self.inner.executor_on.load(Ordering::Relaxed) {
            match self.create_one(tag, kind, &extra, true).await {
                Ok(c) => return Ok(c),
                // The agent cannot run here (another architecture, a
                // noexec mount...): one exec per call from now on, unless
                // some sandbox has run it before (then this one is odd).
                Err(CreateError::Agent(e))
                    if !self.inner.executor_proven.load(Ordering::Relaxed) =>
                {
                    if self.inner.executor_on.swap(false, Ordering::Relaxed) {
                        warn!(
                            "the executor cannot run in sandboxes ({e}); falling back to one exec per call"
                        );
                    }
                }
                Err(CreateError::Agent(e)) => return Err(SandboxError::Refused(e.to_string())),
                Err(CreateError::Podman(e)) => return Err(SandboxError::Create(e)),
            }
        }
        self.create_one(tag, kind, &extra, false)
            .await
            .map_err(|e| match e {
                CreateError::Podman(e) => SandboxError::Create(e),
                CreateError::Agent(e) => SandboxError::Refused(e.to_string()),
            })
    }

    /// Creates and starts one container, with the agent as its main
    /// process and connected when `agent`; a failed one is removed.
    pub(super) async fn create_one(
        &self,
        tag: &str,
        kind: &str,
        extra: &[(&'static str, String)],
        agent: bool,
    ) -> Result<Container, CreateError> {
        let podman = &self.inner.podman;
        let name = format!("pod-exec-{}", crate::random_hex(8));
        let mut spec = self.inner.template.spec(&name, tag, kind, &self.inner.me);
        for (k, v) in extra {
            spec.labels.insert((*k).to_owned(), v.clone());
        }
        if kind == "handle" {
            // No process owns a handle sandbox (it outlives its creator and
            // expires by its TTL): without an owner label, no server's
            // dead-owner reaping (older ones' included) can take it.
            spec.labels.remove(owner::labels::OWNER);
        }
        if agent {
            spec = self.inner.template.with_agent(spec);
        }
        let t = Instant::now();
        let id = podman
            .create_container(&spec)
            .await
            .map_err(CreateError::Podman)?;
        let container = Container::new(id, name);
        let ready = async {
            podman
                .start_container(&container.id)
                .await
                .map_err(CreateError::Podman)?;
            if agent {
                let conn = ExecutorConn::attach(podman, &container.id, self.inner.max_output)
                    .await
                    .map_err(CreateError::Agent)?;
                self.inner.executor_proven.store(true, Ordering::Relaxed);
                *container.executor.lock().await = Some(conn);
            }
            Ok::<(), CreateError>(())
        };
        if let Err(e) = ready.await {
            // Don't leave a created-but-dead container behind.
            let _ = podman.remove_container(&container.id, true).await;
            return Err(e);
        }
        info!(sandbox = tag, container = %container.name, ms = t.elapsed().as_millis() as u64, agent, "container created");
        Ok(container)
    }

    /// Whether the container still exists and runs (an error in between,
    /// e.g. a stream cut by a removal, is judged by this).
    pub(super) async fn running(&self, c: &Container) -> bool {
        match self.inner.podman.inspect_container(&c.id).await {
            Ok(info) => info.state.running,
            Err(e) => !gone(&e),
        }
    }

    /// Empties `key`'s slot if it still holds `c`, removing what is left of
    /// the container.
    pub(super) async fn forget(&self, key: &SandboxKey, c: &Container) {
        let slot = self.slots().map.get(key).cloned();
        let mut removed_by_us = true;
        if let Some(slot) = slot {
            let mut state = slot.state.lock().await;
            match &*state {
                SlotState::Ready(cur) if cur.id == c.id => {
                    // A handle's sandbox is its container: gone means the
                    // handle expired, never a silent fresh one.
                    *state = if slot.handle.is_some() {
                        SlotState::Closed
                    } else {
                        SlotState::Empty
                    };
                    self.unreserve_live();
                    removed_by_us = false;
                }
                _ => {}
            }
            drop(state);
            if slot.handle.is_some() {
                self.slots().map.remove(key);
            }
        }
        let _ = self.inner.podman.remove_container(&c.id, true).await;
        if removed_by_us {
            // The slot no longer held it: this server removed it itself
            // (the session ended or was replaced) while the call ran.
            info!(container = %c.name, "a call ended with its sandbox, which this server removed");
        } else {
            warn!(container = %c.name, "container vanished from outside; the next call creates a new one");
        }
    }

    /// Ends `key`'s sandbox: removes its container (if one was created).
    /// Idempotent; a call waiting on the slot gets [`SandboxError::Closed`].
    pub async fn release(&self, key: &SandboxKey, why: &str) {
        let slot = self.slots().map.remove(key);
        if let Some(slot) = slot {
            self.close_slot(&slot, why).await;
        }
    }

    pub(super) async fn close_slot(&self, slot: &Slot, why: &str) {
        let mut state = slot.state.lock().await;
        let prev = std::mem::replace(&mut *state, SlotState::Closed);
        drop(state);
        if let SlotState::Ready(c) = prev {
            self.unreserve_live();
            let t = Instant::now();
            match self.remove_retrying(&c.id).await {
                Ok(_) => info!(
                    sandbox = %slot.tag, container = %c.name, why,
                    ms = t.elapsed().as_millis() as u64,
                    lived_s = slot.opened.elapsed().as_secs(),
                    "container removed"
                ),
                Err(e) => {
                    warn!(sandbox = %slot.tag, container = %c.name, "could not remove container: {e}")
                }
            }
        }
    }

    /// Force-removes a container, retrying a failed removal twice: under
    /// load Podman 4.3 can fail one with "device or resource busy" while
    /// the container's mounts are still being torn down.
    pub(super) async fn remove_retrying(&self, id: &str) -> Result<(), PodmanError> {
        let mut attempt = 0;
        loop {
            match self.inner.podman.remove_container(id, true).await {
                Ok(_) => return Ok(()),
                Err(e) if attempt >= 2 || gone(&e) => return Err(e),
                Err(e) => {
                    warn!(container = %id, "container removal failed, retrying: {e}");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(300 * attempt)).await;
                }
            }
        }
    }
}
