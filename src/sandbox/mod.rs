//! `SandboxManager`: the sole owner of sandbox container lifetimes —
//! create (lazily, once per key), look up, run commands in, remove, reap.
//!
//! A sandbox belongs to a [`SandboxKey`]: an MCP session, an explicit handle
//! (`handles.rs`), or one call. Nothing else creates or removes a managed
//! container.

mod agent_run;
mod capacity;
pub mod cgroup;
pub mod handles;
pub mod hardening;
mod lifecycle;
pub mod output;
pub mod owner;
mod pool;
mod reaping;
pub mod run;
mod shutdown;
pub mod spec;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Mutex as AsyncMutex, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::executor::client::{ExecutorConn, ExecutorError};
use crate::podman::{PodmanClient, PodmanError};
pub use run::{ExecOptions, ExecOutcome, Progress};

use owner::Identity;
use spec::SandboxTemplate;

/// Whose sandbox it is. The strings are bearer secrets: `Debug` hides them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum SandboxKey {
    /// An MCP session (protocol up to 2025-11-25), by its session id.
    Session(String),
    /// One call with nothing to key on; removed when the call ends.
    OneShot(String),
    /// A handle from `sandbox_create`, by its digest (the handle itself is
    /// never kept).
    Handle(String),
}

impl SandboxKey {
    fn kind(&self) -> &'static str {
        match self {
            SandboxKey::Session(_) => "session",
            SandboxKey::OneShot(_) => "oneshot",
            SandboxKey::Handle(_) => "handle",
        }
    }
}

impl fmt::Debug for SandboxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SandboxKey::{}(..)", self.kind())
    }
}

/// Why creating a container failed.
#[derive(Debug)]
enum CreateError {
    Podman(PodmanError),
    Agent(ExecutorError),
}

/// Why a sandbox call failed, in words a model can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The container could not be created or started.
    #[error("could not start the sandbox container: {0}")]
    Create(#[source] PodmanError),
    /// The container disappeared (removed or stopped from outside).
    #[error(
        "the sandbox container is gone (it was removed or stopped outside this server); \
         the next call starts a fresh sandbox with a clean filesystem"
    )]
    Gone,
    /// Podman failed while running the command.
    #[error("running the command failed: {0}")]
    Exec(#[source] PodmanError),
    /// The session ended while the call waited.
    #[error("this session has ended; start a new session")]
    Closed,
    /// The server is stopping.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Too many calls of one session at once, and the queue is full.
    #[error(
        "this session already runs {0} calls at once and has {1} waiting, the limits \
         (POD_EXEC_MAX_CONCURRENT_PER_SESSION, POD_EXEC_MAX_QUEUED_PER_SESSION); wait for \
         one to finish and call again"
    )]
    Busy(usize, usize),
    /// The executor died with the call in flight (the command killed it,
    /// e.g. `kill -9 -1`, or stopped the container).
    #[error(
        "the command stopped the sandbox's executor (e.g. `kill -9 -1` or `pkill`); what it \
         started was killed. The sandbox and its files remain: the next call starts a fresh \
         executor"
    )]
    ExecutorDied,
    /// The call was cut off: the connection to Podman (or through it to
    /// the sandbox's executor) was lost with the call in flight, as when
    /// Podman's service restarts.
    #[error(
        "the call was cut off: {cause}. What it started {}; the sandbox and its files \
         remain, so run the command again{}",
        if *.stopped { "was stopped" } else { "is stopped as soon as Podman answers again" },
        if *.stopped { "" } else { " once Podman answers" }
    )]
    Lost {
        /// What was lost, in words.
        cause: String,
        /// Whether the call's processes are known to be stopped already.
        stopped: bool,
    },
    /// The executor could not start the command.
    #[error("the sandbox could not start the command: {0}")]
    Refused(String),
    /// The server runs as many sandboxes as it may.
    #[error(
        "the server already runs {0} sandboxes, its limit (POD_EXEC_MAX_SESSIONS); end an \
         unused session or try again later"
    )]
    Capacity(usize),
    /// The handle is unknown, expired, destroyed or another caller's: one
    /// error for all, so a handle's existence cannot be probed.
    #[error(
        "this sandbox handle is expired or unknown (sandboxes unused for POD_EXEC_SANDBOX_TTL \
         seconds, destroyed ones, and the least recently used one when the server is full are \
         removed); create a new sandbox with sandbox_create and pass its handle"
    )]
    Expired,
    /// The session's sandbox was removed to make room for another.
    #[error(
        "this session's sandbox was removed while idle to make room for another (the server was \
         at POD_EXEC_MAX_SESSIONS); its files are gone. The next call starts a fresh sandbox"
    )]
    Evicted,
}

#[derive(Debug)]
struct Container {
    id: String,
    name: String,
    /// The resident executor's connection, started on first use and
    /// restarted when it died.
    executor: AsyncMutex<Option<Arc<ExecutorConn>>>,
}

impl Container {
    fn new(id: String, name: String) -> Self {
        Container {
            id,
            name,
            executor: AsyncMutex::new(None),
        }
    }
}

#[derive(Debug)]
enum SlotState {
    Empty,
    Ready(Arc<Container>),
    /// A session's container was evicted; its next call is told so once.
    Evicted,
    Closed,
}

#[derive(Debug)]
struct Slot {
    /// Random; in labels and logs instead of the key.
    tag: String,
    /// Label value: "session" or "oneshot".
    kind: &'static str,
    opened: Instant,
    state: AsyncMutex<SlotState>,
    /// Calls running now; bounded per session.
    calls: Arc<Semaphore>,
    /// Calls waiting for a place in `calls`; bounded too.
    queued: AtomicUsize,
    /// When a call last started or ended here (LRU eviction, handle TTL).
    last_used: Mutex<Instant>,
    /// What a handle sandbox is (None for other kinds).
    handle: Option<handles::HandleMeta>,
}

impl Slot {
    fn new(kind: &'static str, max_calls: usize, handle: Option<handles::HandleMeta>) -> Self {
        let now = Instant::now();
        Slot {
            tag: crate::random_hex(6),
            kind,
            opened: now,
            state: AsyncMutex::new(SlotState::Empty),
            calls: Arc::new(Semaphore::new(max_calls)),
            queued: AtomicUsize::new(0),
            last_used: Mutex::new(now),
            handle,
        }
    }

    fn touch(&self) {
        *self
            .last_used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    fn last_used(&self) -> Instant {
        *self
            .last_used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// No call runs or waits here.
    fn unused(&self, max_calls: usize) -> bool {
        self.calls.available_permits() == max_calls && self.queued.load(Ordering::Acquire) == 0
    }
}

/// Per-call and per-sandbox bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Output bytes kept per call.
    pub max_output: usize,
    /// Calls one sandbox runs at once.
    pub max_calls_per_sandbox: usize,
    /// Sandboxes with a container at once (POD_EXEC_MAX_SESSIONS).
    pub max_sandboxes: usize,
    /// Calls of one sandbox that may wait for a free place.
    pub max_queued_per_sandbox: usize,
    /// Idleness after which a handle sandbox is removed.
    pub sandbox_ttl: std::time::Duration,
    /// Least idleness before a sandbox may be evicted for capacity.
    pub evict_after: std::time::Duration,
    /// Handle sandboxes outlive this process (HTTP); `false` removes them
    /// at shutdown too (stdio: one client, gone when its process ends).
    pub handles_survive: bool,
}

/// Owns every sandbox container of this server instance. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SandboxManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    podman: PodmanClient,
    template: SandboxTemplate,
    me: Identity,
    max_output: usize,
    max_calls: usize,
    max_sandboxes: usize,
    max_queued: usize,
    sandbox_ttl: std::time::Duration,
    evict_after: std::time::Duration,
    handles_survive: bool,
    /// The executor is used (it exists in the template and has not been
    /// found unable to run here).
    executor_on: AtomicBool,
    /// Some sandbox's agent has answered: a later failure is that
    /// sandbox's, not the platform's.
    executor_proven: AtomicBool,
    /// Slots holding a container, or creating one: bounded by
    /// `max_sandboxes`.
    live: AtomicUsize,
    slots: Mutex<Slots>,
    pool: Mutex<Option<Pool>>,
}

/// Started containers waiting for a session (POD_EXEC_WARM_POOL).
#[derive(Debug)]
struct Pool {
    ready: Arc<AsyncMutex<mpsc::Receiver<Container>>>,
    stop: CancellationToken,
    filler: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Slots {
    map: HashMap<SandboxKey, Arc<Slot>>,
    shutting_down: bool,
}

impl SandboxManager {
    /// A manager creating containers from `template` through `podman`.
    pub fn new(
        podman: PodmanClient,
        template: SandboxTemplate,
        me: Identity,
        limits: Limits,
    ) -> Self {
        let executor_on = template.has_executor();
        SandboxManager {
            inner: Arc::new(Inner {
                podman,
                template,
                me,
                max_output: limits.max_output,
                max_calls: limits.max_calls_per_sandbox.max(1),
                max_sandboxes: limits.max_sandboxes.max(1),
                max_queued: limits.max_queued_per_sandbox,
                sandbox_ttl: limits.sandbox_ttl,
                evict_after: limits.evict_after,
                handles_survive: limits.handles_survive,
                executor_on: AtomicBool::new(executor_on),
                executor_proven: AtomicBool::new(false),
                live: AtomicUsize::new(0),
                slots: Mutex::new(Slots::default()),
                pool: Mutex::new(None),
            }),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panic while holding this lock cannot leave the map half-updated
        // (every critical section is a single map operation), so a poisoned
        // lock is still usable.
        self.inner
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Option<Pool>> {
        // Only set once and taken once: a poisoned lock still holds a
        // consistent value.
        self.inner
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `/bin/sh -lc command` in `key`'s sandbox, creating it first if
    /// needed. A non-zero exit is an `Ok` outcome.
    ///
    /// # Errors
    /// See [`SandboxError`]. When the container turns out to be gone, the
    /// slot is emptied so the next call creates a fresh one.
    pub async fn exec(
        &self,
        key: &SandboxKey,
        command: &str,
        opts: ExecOptions,
    ) -> Result<ExecOutcome, SandboxError> {
        let slot = self.lookup(key)?;
        let _permit = self.place(&slot, &opts).await?;
        slot.touch();
        // Also when the call ends, however it ends: idleness counts from
        // the last call's end.
        let _touch = TouchOnDrop(&slot);
        let container = self.ensure(&slot).await?;
        if self.inner.executor_on.load(Ordering::Relaxed) {
            match self.executor_for(&container).await {
                Ok(conn) => {
                    let result = self
                        .exec_via_agent(key, &container, &conn, command, opts)
                        .await;
                    return result.map(|outcome| ExecOutcome {
                        sandbox: slot.tag.clone(),
                        ..outcome
                    });
                }
                Err(ExecutorError::Podman(e)) if gone(&e) => {
                    self.forget(key, &container).await;
                    return Err(SandboxError::Gone);
                }
                Err(ExecutorError::Podman(e)) => return Err(SandboxError::Exec(e)),
                Err(e) => {
                    // This sandbox's agent does not answer (replaced by the
                    // command?): this call runs as an exec of its own.
                    warn!(container = %container.name, "the sandbox's executor does not answer ({e}); running this call as an exec");
                }
            }
        }
        let result = run::run_call(
            &self.inner.podman,
            &container.id,
            command,
            self.inner.max_output,
            opts,
        )
        .await;
        match result {
            Ok(outcome) => Ok(ExecOutcome {
                sandbox: slot.tag.clone(),
                ..outcome
            }),
            Err(f) if gone(&f.error) || !self.running(&container).await => {
                self.forget(key, &container).await;
                Err(SandboxError::Gone)
            }
            Err(f) => {
                let stopped = f.unkilled.is_none();
                if let Some(token) = f.unkilled {
                    self.kill_when_back(key, &container, token);
                }
                Err(match f.error {
                    e @ (PodmanError::Unreachable { .. } | PodmanError::Transport { .. }) => {
                        SandboxError::Lost {
                            cause: format!("Podman stopped answering ({e})"),
                            stopped,
                        }
                    }
                    e => SandboxError::Exec(e),
                })
            }
        }
    }

    /// A place among the sandbox's running calls: at once if one is free,
    /// else after the calls ahead of it (first come, first served), unless
    /// the queue is full or the call is cancelled while it waits.
    async fn place(
        &self,
        slot: &Slot,
        opts: &ExecOptions,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, SandboxError> {
        if let Ok(p) = slot.calls.clone().try_acquire_owned() {
            return Ok(p);
        }
        let max = self.inner.max_queued;
        if slot
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(SandboxError::Busy(self.inner.max_calls, max));
        }
        let waited = tokio::select! {
            p = slot.calls.clone().acquire_owned() => p.map_err(|_| SandboxError::Closed),
            _ = opts.cancel.cancelled() => Err(SandboxError::Closed),
        };
        slot.queued.fetch_sub(1, Ordering::AcqRel);
        waited
    }

    /// Runs one command in a sandbox made for it alone and removed after.
    ///
    /// # Errors
    /// As [`SandboxManager::exec`].
    pub async fn exec_oneshot(
        &self,
        command: &str,
        opts: ExecOptions,
    ) -> Result<ExecOutcome, SandboxError> {
        let key = SandboxKey::OneShot(crate::random_hex(16));
        let result = self.exec(&key, command, opts).await;
        self.release(&key, "one-shot call done").await;
        result
    }

    /// Registers `key` (no container yet) and returns its tag, the random
    /// name logs and labels use for it. Idempotent.
    pub fn open(&self, key: &SandboxKey) -> String {
        self.slot(key).map(|s| s.tag.clone()).unwrap_or_default()
    }

    /// The slot a call runs in. A session's slot exists from `open` until
    /// `release`; a call that finds none belongs to a session that already
    /// ended and must not create a container nobody would release. One-shot
    /// slots are made here.
    fn lookup(&self, key: &SandboxKey) -> Result<Arc<Slot>, SandboxError> {
        match key {
            SandboxKey::OneShot(_) => self.slot(key).ok_or(SandboxError::ShuttingDown),
            // Made by `create_handle` or `resolve_handle`; gone = expired.
            SandboxKey::Handle(_) => {
                let slots = self.slots();
                if slots.shutting_down {
                    return Err(SandboxError::ShuttingDown);
                }
                slots.map.get(key).cloned().ok_or(SandboxError::Expired)
            }
            SandboxKey::Session(_) => {
                let slots = self.slots();
                if slots.shutting_down {
                    return Err(SandboxError::ShuttingDown);
                }
                slots.map.get(key).cloned().ok_or(SandboxError::Closed)
            }
        }
    }

    fn slot(&self, key: &SandboxKey) -> Option<Arc<Slot>> {
        let mut slots = self.slots();
        if slots.shutting_down {
            return None;
        }
        Some(
            slots
                .map
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Slot::new(key.kind(), self.inner.max_calls, None)))
                .clone(),
        )
    }

    /// Number of live sandboxes (for logs and tests).
    pub fn len(&self) -> usize {
        self.slots().map.len()
    }

    /// True when no sandbox is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Marks a slot used again when the call holding it ends.
struct TouchOnDrop<'a>(&'a Slot);

impl Drop for TouchOnDrop<'_> {
    fn drop(&mut self) {
        self.0.touch();
    }
}

/// The container is missing or no longer running.
fn gone(e: &PodmanError) -> bool {
    matches!(e, PodmanError::NotFound(_) | PodmanError::Conflict(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use clap::Parser;

    /// A manager whose Podman does not exist: these tests must fail before
    /// any call reaches it.
    fn manager() -> SandboxManager {
        let config = Config::try_parse_from(["x"]).expect("defaults");
        SandboxManager::new(
            PodmanClient::new(crate::podman::Endpoint::Unix(
                "/nonexistent/podman.sock".into(),
            )),
            SandboxTemplate::from_config(&config),
            Identity::current(),
            Limits {
                max_output: 1000,
                max_calls_per_sandbox: 2,
                max_sandboxes: 1,
                max_queued_per_sandbox: 0,
                sandbox_ttl: std::time::Duration::from_secs(60),
                evict_after: std::time::Duration::from_secs(60),
                handles_survive: true,
            },
        )
    }

    #[tokio::test]
    async fn a_call_for_an_ended_session_creates_nothing() {
        let m = manager();
        let key = SandboxKey::Session("s1".into());
        // Never opened (or already released): refused, no container.
        let e = m.exec(&key, "true", ExecOptions::default()).await;
        assert!(matches!(e, Err(SandboxError::Closed)), "{e:?}");
        let tag = m.open(&key);
        assert_eq!(tag.len(), 12);
        assert_eq!(m.open(&key), tag, "open is idempotent");
        m.release(&key, "test").await;
        let e = m.exec(&key, "true", ExecOptions::default()).await;
        assert!(matches!(e, Err(SandboxError::Closed)), "{e:?}");
        assert!(m.is_empty());
    }

    #[tokio::test]
    async fn nothing_starts_after_shutdown() {
        let m = manager();
        let key = SandboxKey::Session("s1".into());
        m.open(&key);
        m.shutdown().await;
        let e = m.exec(&key, "true", ExecOptions::default()).await;
        assert!(matches!(e, Err(SandboxError::ShuttingDown)), "{e:?}");
        let e = m.exec_oneshot("true", ExecOptions::default()).await;
        assert!(matches!(e, Err(SandboxError::ShuttingDown)), "{e:?}");
        assert_eq!(m.open(&key), "");
    }

    #[test]
    fn keys_do_not_show_their_secret() {
        let k = SandboxKey::Session("very-secret-session-id".into());
        assert!(!format!("{k:?}").contains("secret"));
    }
}
