//! The server's side of the executor protocol: one connection per sandbox
//! (attached to the agent, which runs as the container's main process),
//! calls multiplexed by id. Everything the
//! agent sends is untrusted — the sandboxed command is root in its
//! container and can kill or replace the agent — so every frame is bounded,
//! every call's channel is bounded, and deadlines are the caller's.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::protocol::{self, Frame, FrameDecoder, Request};
use crate::podman::{DuplexReader, DuplexWriter, PodmanClient, PodmanError, StreamKind};

/// How long the agent may take to answer its first ping.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames a call may have queued (progress is dropped, never queued, when
/// the call's reader is behind).
const CALL_QUEUE: usize = 16;
/// What the agent may print on stderr that is kept for an error message.
const STDERR_KEEP: usize = 2048;
/// Detach keys for the attach: the agent's stdin carries printable ASCII
/// and `\n` only, which never contain ctrl-^.
const DETACH_KEYS: &str = "ctrl-^";

/// Why the executor could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// Podman failed attaching to the agent.
    #[error("starting the executor: {0}")]
    Podman(#[from] PodmanError),
    /// The agent did not answer in time or spoke another protocol.
    #[error("the executor did not answer: {0}")]
    NoHello(String),
    /// The connection is gone (the agent exited or was killed).
    #[error("the executor in the sandbox stopped")]
    Closed,
}

/// What the agent reports about one call.
#[derive(Debug)]
pub enum CallEvent {
    /// Output so far.
    Progress {
        /// Bytes printed so far.
        total_bytes: u64,
        /// The latest line (lossy).
        last_line: String,
    },
    /// The call ended.
    Done(Done),
    /// The call could not start.
    Error(String),
}

/// A finished call as the agent reports it (already checked against the
/// call's output limit).
#[derive(Debug)]
pub struct Done {
    /// Exit code.
    pub retval: i32,
    /// Stopped at the agent's deadline.
    pub timed_out: bool,
    /// Stopped by a cancel.
    pub cancelled: bool,
    /// Output bytes in all.
    pub total_bytes: u64,
    /// First kept bytes.
    pub head: Vec<u8>,
    /// Last kept bytes.
    pub tail: Vec<u8>,
}

/// A call to run.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    /// The command line.
    pub command: &'a str,
    /// The agent's deadline.
    pub timeout: Duration,
    /// Output bytes kept.
    pub max_output: usize,
    /// Progress frames wanted.
    pub progress: bool,
    /// The call's process tag (POD_EXEC_CALL).
    pub token: &'a str,
}

/// One agent connection. Cheap to share (`Arc`).
pub struct ExecutorConn {
    writer: AsyncMutex<DuplexWriter>,
    calls: Mutex<HashMap<u32, mpsc::Sender<CallEvent>>>,
    next_id: AtomicU32,
    closed: CancellationToken,
    reader: Mutex<Option<JoinHandle<()>>>,
    max_output: usize,
}

impl fmt::Debug for ExecutorConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorConn")
            .field("closed", &self.closed.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// A call in flight: its events, and its id for a cancel. Dropping it
/// forgets the call on this side.
#[derive(Debug)]
pub struct CallHandle {
    /// The call's id on the connection.
    pub id: u32,
    /// Events, ending with `Done` or `Error`; closed when the connection
    /// dies.
    pub events: mpsc::Receiver<CallEvent>,
    conn: Arc<ExecutorConn>,
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        self.conn.forget(self.id);
    }
}

impl ExecutorConn {
    /// Connects to the agent running as container `container`'s main
    /// process (its stdin kept open): attaches to it and waits until it
    /// answers a ping. Works on a fresh container and on one whose agent
    /// already runs (a connection that was lost), since the HELLO it sent
    /// at start may have gone to the container's log. Calls may keep at
    /// most `max_output` bytes of output.
    ///
    /// # Errors
    /// See [`ExecutorError`].
    pub async fn attach(
        podman: &PodmanClient,
        container: &str,
        max_output: usize,
    ) -> Result<Arc<Self>, ExecutorError> {
        let (mut reader, mut writer) = podman.attach_duplex(container, DETACH_KEYS).await?;
        // Head, tail and the fixed fields, plus slack.
        let max_payload = u32::try_from(max_output.saturating_add(4096)).unwrap_or(u32::MAX);
        let mut decoder = FrameDecoder::with_max_payload(max_payload);
        // Take the agent over first: calls of an earlier connection (lost
        // with Podman, or a server that died) are killed and fall silent,
        // so their processes do not outlive the error their callers got
        // and their frames cannot be taken for this connection's calls,
        // whose ids start again at 1. What they sent before the reset
        // arrives before the PONG, which is waited for below.
        let mut hello = protocol::encode_request(&Request::Reset);
        hello.extend(protocol::encode_request(&Request::Ping { id: 0 }));
        writer.write_all(&hello).await?;
        let mut stderr = Vec::new();
        let ready = tokio::time::timeout(HELLO_TIMEOUT, async {
            loop {
                match reader.next_chunk().await {
                    Some(Ok(c)) if c.stream == StreamKind::Stdout => {
                        decoder.push(&c.data);
                        loop {
                            match decoder.next_frame() {
                                Ok(Some(Frame::Pong { id: 0 })) => return Ok(()),
                                Ok(Some(Frame::Hello { version, .. }))
                                    if version != protocol::VERSION =>
                                {
                                    return Err(format!("protocol version {version}"));
                                }
                                Ok(Some(_)) => {}
                                Ok(None) => break,
                                Err(e) => return Err(e.to_string()),
                            }
                        }
                    }
                    Some(Ok(c)) => keep(&mut stderr, &c.data),
                    Some(Err(e)) => return Err(e.to_string()),
                    None => {
                        let said = String::from_utf8_lossy(&stderr).trim().to_owned();
                        return Err(if said.is_empty() {
                            "it exited at once".to_owned()
                        } else {
                            said
                        });
                    }
                }
            }
        })
        .await;
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ExecutorError::NoHello(e)),
            Err(_) => return Err(ExecutorError::NoHello("no answer within 5 s".into())),
        }
        let conn = Arc::new(ExecutorConn {
            writer: AsyncMutex::new(writer),
            calls: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            closed: CancellationToken::new(),
            reader: Mutex::new(None),
            max_output,
        });
        let task = tokio::spawn(conn.clone().read_loop(reader, decoder));
        *conn.reader_slot() = Some(task);
        Ok(conn)
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<u32, mpsc::Sender<CallEvent>>> {
        // Every critical section is one map operation.
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reader_slot(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True once the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Sends a call.
    ///
    /// # Errors
    /// [`ExecutorError::Closed`] when the connection is gone.
    pub async fn run(self: &Arc<Self>, req: RunRequest<'_>) -> Result<CallHandle, ExecutorError> {
        if self.is_closed() {
            return Err(ExecutorError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(CALL_QUEUE);
        self.calls().insert(id, tx);
        let handle = CallHandle {
            id,
            events: rx,
            conn: self.clone(),
        };
        let line = protocol::encode_request(&Request::Run {
            id,
            timeout_ms: u64::try_from(req.timeout.as_millis()).unwrap_or(u64::MAX),
            max_output: req.max_output as u64,
            progress: req.progress,
            token: req.token.to_owned(),
            command: req.command.as_bytes().to_vec(),
        });
        self.send(&line).await?;
        Ok(handle)
    }

    /// Asks the agent to kill call `id` (it then ends `cancelled`).
    ///
    /// # Errors
    /// [`ExecutorError::Closed`] when the connection is gone.
    pub async fn kill(&self, id: u32) -> Result<(), ExecutorError> {
        self.send(&protocol::encode_request(&Request::Kill { id }))
            .await
    }

    async fn send(&self, line: &[u8]) -> Result<(), ExecutorError> {
        let mut w = self.writer.lock().await;
        if w.write_all(line).await.is_err() {
            self.closed.cancel();
            return Err(ExecutorError::Closed);
        }
        Ok(())
    }

    /// Ends the connection: the agent sees EOF on stdin, kills the calls
    /// still in flight and exits.
    pub async fn close(&self) {
        let mut w = self.writer.lock().await;
        let _ = w.shutdown().await;
        drop(w);
        self.closed.cancel();
        if let Some(task) = self.reader_slot().take() {
            task.abort();
        }
        self.calls().clear();
    }

    fn forget(&self, id: u32) {
        self.calls().remove(&id);
    }

    async fn read_loop(self: Arc<Self>, mut reader: DuplexReader, mut decoder: FrameDecoder) {
        let why = loop {
            // Frames already buffered (the HELLO chunk may carry more).
            loop {
                match decoder.next_frame() {
                    Ok(Some(f)) => self.dispatch(f).await,
                    Ok(None) => break,
                    Err(e) => {
                        self.closed.cancel();
                        debug!("executor sent a malformed frame: {e}");
                        self.calls().clear();
                        return;
                    }
                }
            }
            tokio::select! {
                _ = self.closed.cancelled() => break "closed",
                chunk = reader.next_chunk() => match chunk {
                    Some(Ok(c)) if c.stream == StreamKind::Stdout => decoder.push(&c.data),
                    // The agent's stderr says nothing the server needs.
                    Some(Ok(_)) => {}
                    Some(Err(_)) => break "connection error",
                    None => break "EOF",
                },
            }
        };
        debug!(why, "executor connection ended");
        self.closed.cancel();
        // Dropping the senders tells every waiting call.
        self.calls().clear();
    }

    async fn dispatch(&self, frame: Frame) {
        let (id, event, last) = match frame {
            Frame::Progress {
                id,
                total_bytes,
                last_line,
            } => (
                id,
                CallEvent::Progress {
                    total_bytes,
                    last_line: String::from_utf8_lossy(&last_line).into_owned(),
                },
                false,
            ),
            Frame::Done {
                id,
                retval,
                timed_out,
                cancelled,
                total_bytes,
                mut head,
                mut tail,
                ..
            } => {
                // Never more than the call's limit, whatever the agent says.
                let half = self.max_output / 2;
                head.truncate(half);
                if tail.len() > self.max_output - head.len() {
                    tail.drain(..tail.len() - (self.max_output - head.len()));
                }
                let kept = (head.len() + tail.len()) as u64;
                (
                    id,
                    CallEvent::Done(Done {
                        retval,
                        timed_out,
                        cancelled,
                        total_bytes: total_bytes.max(kept),
                        head,
                        tail,
                    }),
                    true,
                )
            }
            Frame::Error { id, message } => {
                let message: String = message.chars().take(500).collect();
                if id == 0 {
                    debug!("executor protocol error: {message}");
                    return;
                }
                (id, CallEvent::Error(message), true)
            }
            Frame::Hello { .. } | Frame::Started { .. } | Frame::Pong { .. } => return,
        };
        let tx = if last {
            self.calls().remove(&id)
        } else {
            self.calls().get(&id).cloned()
        };
        let Some(tx) = tx else { return };
        if last {
            // The queue holds at most CALL_QUEUE progress events; the call
            // is reading them, so this wait is short.
            let _ = tx.send(event).await;
        } else {
            let _ = tx.try_send(event);
        }
    }
}

fn keep(buf: &mut Vec<u8>, data: &[u8]) {
    let room = STDERR_KEEP.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..room.min(data.len())]);
}
