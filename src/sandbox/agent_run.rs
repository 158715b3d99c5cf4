//! Calls through the sandbox's resident executor: keeping its connection
//! (reattached, or the container restarted, when it is gone), and one call
//! — send it, forward progress, pass a cancel on, and enforce the deadline
//! on this side too: the agent is inside the sandbox and may have been
//! killed or replaced by the command it runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use tracing::{info, warn};

use super::output;
use super::run::{self, ExecOptions, ExecOutcome, Progress};
use super::{Container, SandboxError, SandboxKey, SandboxManager, SlotState, gone};
use crate::executor::client::{CallEvent, ExecutorConn, ExecutorError, RunRequest};

impl SandboxManager {
    /// The container's executor, reconnected when the connection is gone:
    /// a command may have killed the agent, or stopped the whole container
    /// (`kill -9 -1`; the agent is its main process, so its death stops the
    /// container too), which is then started again with its files.
    pub(super) async fn executor_for(
        &self,
        c: &Container,
    ) -> Result<Arc<ExecutorConn>, ExecutorError> {
        let mut slot = c.executor.lock().await;
        if let Some(conn) = &*slot
            && !conn.is_closed()
        {
            return Ok(conn.clone());
        }
        let podman = &self.inner.podman;
        let info = podman.inspect_container(&c.id).await?;
        if !info.state.running {
            info!(container = %c.name, "restarting the stopped sandbox container");
            podman.start_container(&c.id).await?;
        }
        let conn = match ExecutorConn::attach(podman, &c.id, self.inner.max_output).await {
            Err(ExecutorError::NoHello(e)) if info.state.running => {
                // The container runs but its agent does not answer (hung,
                // or replaced by the command): restart the container.
                warn!(container = %c.name, "the sandbox's executor does not answer ({e}); restarting the container");
                let _ = podman.kill_container(&c.id, "KILL").await;
                for _ in 0..100 {
                    if !podman.inspect_container(&c.id).await?.state.running {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                podman.start_container(&c.id).await?;
                ExecutorConn::attach(podman, &c.id, self.inner.max_output).await?
            }
            other => other?,
        };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    pub(super) async fn exec_via_agent(
        &self,
        key: &SandboxKey,
        c: &Container,
        conn: &Arc<ExecutorConn>,
        command: &str,
        opts: ExecOptions,
    ) -> Result<ExecOutcome, SandboxError> {
        let podman = &self.inner.podman;
        match run_call(conn, command, self.inner.max_output, opts).await {
            Ok(outcome) => Ok(outcome),
            Err(AgentFailure::Refused(m)) => Err(SandboxError::Refused(m)),
            Err(AgentFailure::Died { token }) => match podman.inspect_container(&c.id).await {
                Err(e) if gone(&e) => {
                    self.forget(key, c).await;
                    Err(SandboxError::Gone)
                }
                // The agent is the container's main process: the command
                // ended it (`kill -9 -1`, `pkill`), and the container with it.
                Ok(info) if !info.state.running => Err(SandboxError::ExecutorDied),
                Ok(_) => {
                    // The container runs, so its agent does: the connection
                    // through Podman was lost (its service restarted, say).
                    // Connecting again resets the agent, which kills the call.
                    let stopped = match self.executor_for(c).await {
                        Ok(_) => true,
                        Err(_) => run::kill(podman, &c.id, &token).await.is_ok(),
                    };
                    if !stopped {
                        self.reset_when_back(key, c);
                    }
                    Err(SandboxError::Lost {
                        cause: "the connection to the sandbox's executor through Podman dropped"
                            .into(),
                        stopped,
                    })
                }
                Err(e) => {
                    // Podman does not answer: the call's processes are
                    // stopped by the reset of the next connection, which a
                    // task makes as soon as Podman is back.
                    self.reset_when_back(key, c);
                    Err(SandboxError::Lost {
                        cause: format!("Podman stopped answering ({e})"),
                        stopped: false,
                    })
                }
            },
            Err(AgentFailure::Unresponsive { token, cancelled }) => {
                // The agent missed the deadline by a wide margin: it is
                // not trusted with later calls.
                warn!(container = %c.name, "the executor did not answer by the deadline; restarting it");
                conn.close().await;
                let how = run::kill(podman, &c.id, &token).await;
                Ok(ExecOutcome {
                    output: output::render_parts(&[], &[], 0),
                    retval: match how.as_deref() {
                        Ok("none" | "term") => run::RETVAL_TERM,
                        _ => run::RETVAL_KILL,
                    },
                    timed_out: !cancelled,
                    cancelled,
                    sandbox: String::new(),
                })
            }
        }
    }
}

/// How often, and for how long at most, a lost executor connection is
/// tried again in the background (see `reset_when_back`).
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
const RECONNECT_FOR: Duration = Duration::from_secs(600);

impl SandboxManager {
    /// Connects to `c`'s executor again as soon as Podman answers, so the
    /// reset that comes with a new connection stops what the lost calls
    /// started even if no other call comes: a caller told "cut off" may
    /// run the command again, and it must not then run twice. Gives up
    /// when the sandbox is gone or after `RECONNECT_FOR`.
    pub(super) fn reset_when_back(&self, key: &SandboxKey, c: &Container) {
        let (me, key, id) = (self.clone(), key.clone(), c.id.clone());
        tokio::spawn(async move {
            let until = Instant::now() + RECONNECT_FOR;
            while Instant::now() < until {
                tokio::time::sleep(RECONNECT_EVERY).await;
                // The sandbox still has this container, or it is over.
                let Some(c) = me.container_of(&key, &id).await else {
                    return;
                };
                match me.executor_for(&c).await {
                    Ok(_) => {
                        info!(container = %c.name, "reconnected to the executor: the cut-off calls are stopped");
                        return;
                    }
                    Err(ExecutorError::Podman(e)) if gone(&e) => return,
                    Err(_) => {}
                }
            }
            warn!(container = %id, "Podman did not answer again within 10 minutes: calls cut off in this sandbox may still run");
        });
    }

    /// Kills the processes of fallback call `token` in `c` as soon as
    /// Podman answers again (the kill right after the failure could not
    /// reach it). Gives up when the sandbox is gone or after
    /// `RECONNECT_FOR`.
    pub(super) fn kill_when_back(&self, key: &SandboxKey, c: &Container, token: String) {
        let (me, key, id) = (self.clone(), key.clone(), c.id.clone());
        tokio::spawn(async move {
            let until = Instant::now() + RECONNECT_FOR;
            while Instant::now() < until {
                tokio::time::sleep(RECONNECT_EVERY).await;
                if me.container_of(&key, &id).await.is_none() {
                    return;
                }
                match run::kill(&me.inner.podman, &id, &token).await {
                    Ok(how) => {
                        info!(container = %id, how, "stopped a cut-off call's processes");
                        return;
                    }
                    Err(e) if gone(&e) => return,
                    Err(_) => {}
                }
            }
            warn!(container = %id, "Podman did not answer again within 10 minutes: a cut-off call may still run");
        });
    }

    /// The container `key`'s sandbox holds, if it is still `id`.
    async fn container_of(&self, key: &SandboxKey, id: &str) -> Option<Arc<Container>> {
        let slot = self.slots().map.get(key).cloned()?;
        let state = slot.state.lock().await;
        match &*state {
            SlotState::Ready(c) if c.id == id => Some(c.clone()),
            _ => None,
        }
    }
}

/// How long past its deadline (or a cancel) the server waits for the
/// agent's answer: the agent's own kill takes a second of SIGTERM grace
/// and a moment of SIGKILL rounds.
const SERVER_GRACE: Duration = Duration::from_secs(5);

/// Why a call through the agent did not give a result.
#[derive(Debug)]
pub enum AgentFailure {
    /// The connection died with the call in flight (the agent was killed,
    /// the container stopped or vanished, Podman went away). The call's
    /// processes may still run: kill them by `token`.
    Died {
        /// The call's process tag.
        token: String,
    },
    /// The agent did not answer by the deadline plus grace.
    Unresponsive {
        /// The call's process tag.
        token: String,
        /// Whether a cancel (rather than the deadline) ended the wait.
        cancelled: bool,
    },
    /// The agent could not start the call (e.g. fork failed: the pids
    /// limit is full).
    Refused(String),
}

/// Runs `command` through `conn`.
///
/// # Errors
/// See [`AgentFailure`].
pub async fn run_call(
    conn: &Arc<ExecutorConn>,
    command: &str,
    max_output: usize,
    opts: ExecOptions,
) -> Result<ExecOutcome, AgentFailure> {
    let token = crate::random_hex(16);
    let started = Instant::now();
    let request = RunRequest {
        command,
        timeout: opts.timeout,
        max_output,
        progress: opts.progress.is_some(),
        token: &token,
    };
    let mut call = match conn.run(request).await {
        Ok(c) => c,
        Err(_) => return Err(AgentFailure::Died { token }),
    };
    let mut deadline = started + opts.timeout + SERVER_GRACE;
    let mut cancel_sent = false;
    loop {
        tokio::select! {
            event = call.events.recv() => match event {
                Some(CallEvent::Progress { total_bytes, last_line }) => {
                    if let Some(tx) = &opts.progress {
                        // A slow client misses a report rather than slowing the call.
                        let _ = tx.try_send(Progress {
                            elapsed: started.elapsed(),
                            bytes: total_bytes,
                            last_line: last_line.chars().take(200).collect(),
                        });
                    }
                }
                Some(CallEvent::Done(d)) => {
                    let rendered = output::render_parts(&d.head, &d.tail, d.total_bytes);
                    return Ok(ExecOutcome {
                        output: rendered,
                        retval: i64::from(d.retval),
                        timed_out: d.timed_out,
                        cancelled: d.cancelled,
                        sandbox: String::new(),
                    });
                }
                Some(CallEvent::Error(m)) => return Err(AgentFailure::Refused(m)),
                None => return Err(AgentFailure::Died { token }),
            },
            _ = opts.cancel.cancelled(), if !cancel_sent => {
                cancel_sent = true;
                if conn.kill(call.id).await.is_err() {
                    return Err(AgentFailure::Died { token });
                }
                deadline = deadline.min(Instant::now() + SERVER_GRACE);
            }
            _ = sleep_until(deadline) => {
                return Err(AgentFailure::Unresponsive { token, cancelled: cancel_sent });
            }
        }
    }
}
