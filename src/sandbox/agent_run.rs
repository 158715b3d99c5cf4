//! One call through the sandbox's resident executor: send it, forward
//! progress, pass a cancel on, and enforce the deadline on this side too —
//! the agent is inside the sandbox and may have been killed or replaced by
//! the command it runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::output;
use super::run::{ExecOptions, ExecOutcome, Progress};
use crate::executor::client::{CallEvent, ExecutorConn, RunRequest};

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
