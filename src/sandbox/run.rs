//! One call in a sandbox: start the tagged exec, read its merged output
//! (bounded) under a deadline, and end it — at EOF, when the foreground
//! process exits (background jobs may hold the pipe open), or by killing
//! every process the call started on timeout or cancellation.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, interval_at, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::output::{OutputBuffer, RenderedOutput};
use super::spec;
use crate::podman::{ExecConfig, PodmanClient, PodmanError};

/// How often a running call checks whether its foreground process exited.
/// Calls that finish sooner reach EOF first and never poll.
const FOREGROUND_POLL: Duration = Duration::from_millis(200);
/// How often progress is reported (when the client asked for it).
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// After the foreground exits, output still in the pipe is read until this
/// much quiet, at most `DRAIN_MAX`.
const DRAIN_QUIET: Duration = Duration::from_millis(50);
const DRAIN_MAX: Duration = Duration::from_millis(300);
/// Limit for the kill exec itself (its own SIGTERM grace is 1 s).
const KILL_LIMIT: Duration = Duration::from_secs(5);

/// Exit code reported when a call was stopped with SIGTERM (as `timeout`).
pub const RETVAL_TERM: i64 = 124;
/// Exit code reported when SIGKILL was needed.
pub const RETVAL_KILL: i64 = 137;

/// How a call may be limited and observed.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Deadline, from the start of the call.
    pub timeout: Duration,
    /// Cancelled by the client: stop at once, like a timeout.
    pub cancel: CancellationToken,
    /// Where progress goes, when the client asked for it.
    pub progress: Option<mpsc::Sender<Progress>>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            timeout: Duration::from_secs(300),
            cancel: CancellationToken::new(),
            progress: None,
        }
    }
}

/// A progress report of a running call.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Time since the call started.
    pub elapsed: Duration,
    /// Output bytes so far.
    pub bytes: u64,
    /// The latest output line (truncated).
    pub last_line: String,
}

/// A finished (or stopped) command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Merged stdout+stderr, bounded.
    pub output: RenderedOutput,
    /// Exit code (124/137 when stopped).
    pub retval: i64,
    /// Stopped at its deadline.
    pub timed_out: bool,
    /// Stopped because the client cancelled.
    pub cancelled: bool,
    /// Tag of the sandbox it ran in (set by the manager).
    pub sandbox: String,
}

enum End {
    Eof,
    ForegroundDone(i64),
    Deadline,
    Cancelled,
}

/// A call that failed in Podman.
#[derive(Debug)]
pub struct CallFailed {
    /// What failed.
    pub error: PodmanError,
    /// The call's process tag when what it started may still run: the
    /// kill after the failure could not reach Podman either.
    pub unkilled: Option<String>,
}

/// Runs `command` in container `id`.
///
/// # Errors
/// Podman failures. Once the exec may have started, a failure kills the
/// call's processes before it returns (a caller who retries must not run
/// the command twice); [`CallFailed::unkilled`] says when that failed.
pub async fn run_call(
    podman: &PodmanClient,
    id: &str,
    command: &str,
    max_output: usize,
    opts: ExecOptions,
) -> Result<ExecOutcome, CallFailed> {
    let token = crate::random_hex(16);
    let exec_id = podman
        .create_exec(id, &spec::shell_exec(command, &token))
        .await
        .map_err(|error| CallFailed {
            error,
            unkilled: None,
        })?;
    match follow(podman, id, &exec_id, &token, max_output, opts).await {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            let unkilled = kill(podman, id, &token).await.err().map(|_| token);
            Err(CallFailed { error, unkilled })
        }
    }
}

/// Starts exec `exec_id` (tagged `token`) and follows it to its end.
async fn follow(
    podman: &PodmanClient,
    id: &str,
    exec_id: &str,
    token: &str,
    max_output: usize,
    opts: ExecOptions,
) -> Result<ExecOutcome, PodmanError> {
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let mut stream = podman.start_exec(exec_id, false).await?;
    let mut out = OutputBuffer::new(max_output);
    let mut poll = interval_at(started + FOREGROUND_POLL, FOREGROUND_POLL);
    let mut tick = interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);

    let end = loop {
        // Unbiased: a stream that is always ready (`yes`) must not starve
        // the deadline.
        tokio::select! {
            chunk = stream.next_chunk() => match chunk {
                Some(Ok(c)) => out.push(&c.data),
                Some(Err(e)) => return Err(e),
                None => break End::Eof,
            },
            _ = sleep_until(deadline) => break End::Deadline,
            _ = opts.cancel.cancelled() => break End::Cancelled,
            _ = poll.tick() => {
                let info = podman.inspect_exec(exec_id).await?;
                if !info.running {
                    break End::ForegroundDone(info.exit_code);
                }
            }
            _ = tick.tick(), if opts.progress.is_some() => {
                if let Some(tx) = &opts.progress {
                    // A slow client misses a report rather than slowing the call.
                    let _ = tx.try_send(Progress {
                        elapsed: started.elapsed(),
                        bytes: out.total(),
                        last_line: out.last_line(200),
                    });
                }
            }
        }
    };

    let (retval, timed_out, cancelled) = match end {
        // After EOF the exit code is final (libpod records it first).
        End::Eof => (podman.inspect_exec(exec_id).await?.exit_code, false, false),
        End::ForegroundDone(code) => {
            // Background jobs still hold the pipe: take what is buffered,
            // then let them run on without us (like a terminal would).
            drain(&mut stream, &mut out).await;
            (code, false, false)
        }
        End::Deadline | End::Cancelled => {
            let how = kill(podman, id, token).await;
            drain(&mut stream, &mut out).await;
            let retval = match how.as_deref() {
                Ok("none" | "term") => RETVAL_TERM,
                _ => RETVAL_KILL,
            };
            if let Err(e) = &how {
                warn!("could not kill a stopped call's processes: {e}");
            }
            (
                retval,
                matches!(end, End::Deadline),
                matches!(end, End::Cancelled),
            )
        }
    };
    Ok(ExecOutcome {
        output: out.render(),
        retval,
        timed_out,
        cancelled,
        sandbox: String::new(),
    })
}

/// Reads what is left until EOF, a pause, or `DRAIN_MAX`.
async fn drain(stream: &mut crate::podman::ExecStream, out: &mut OutputBuffer) {
    let until = Instant::now() + DRAIN_MAX;
    while Instant::now() < until {
        match timeout(DRAIN_QUIET, stream.next_chunk()).await {
            Ok(Some(Ok(c))) => out.push(&c.data),
            _ => return,
        }
    }
}

/// Kills every process tagged with `token` in container `id`; returns what
/// the kill script reported ("none", "term", "kill", "survivors").
/// Kills every process tagged `token` in container `id` with a separate
/// exec; says "none", "term", "kill" or "survivors".
///
/// # Errors
/// Podman failed or the kill took longer than its limit.
pub async fn kill(podman: &PodmanClient, id: &str, token: &str) -> Result<String, PodmanError> {
    let cfg = spec::killer(token);
    match timeout(KILL_LIMIT, collect(podman, id, &cfg)).await {
        Ok(r) => r.map(|s| s.trim().to_owned()),
        Err(_) => Err(PodmanError::Timeout {
            what: "killing a call's processes".into(),
            secs: KILL_LIMIT.as_secs(),
        }),
    }
}

/// Runs a small exec to completion and returns its output.
async fn collect(podman: &PodmanClient, id: &str, cfg: &ExecConfig) -> Result<String, PodmanError> {
    let exec_id = podman.create_exec(id, cfg).await?;
    let mut stream = podman.start_exec(&exec_id, cfg.tty).await?;
    let mut out = OutputBuffer::new(4096);
    while let Some(chunk) = stream.next_chunk().await {
        out.push(&chunk?.data);
    }
    Ok(out.render().text)
}
