//! A bidirectional exec: `POST /exec/{id}/start` upgraded to a raw socket
//! (`Connection: Upgrade`, `Upgrade: tcp` → 101). Bytes written go to the
//! process's stdin as they arrive; its output comes back in the multiplexed
//! frames. Half-closing the write side is the process's EOF on stdin.

use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

use super::attach::{ExecChunk, FrameDecoder, Framing};
use super::{PodmanClient, PodmanError, api, encode, json_body};

type Io = TokioIo<Upgraded>;

/// How much one read of the output takes at most.
const READ_CHUNK: usize = 64 * 1024;

/// The output side of a duplex exec.
pub struct DuplexReader {
    io: ReadHalf<Io>,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    pending: Bytes,
    done: bool,
    conn: JoinHandle<()>,
}

/// The stdin side of a duplex exec.
pub struct DuplexWriter {
    io: WriteHalf<Io>,
}

impl fmt::Debug for DuplexReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DuplexReader")
            .field("pending", &self.pending.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for DuplexWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DuplexWriter").finish_non_exhaustive()
    }
}

impl DuplexReader {
    /// The next output chunk, `None` at a clean EOF.
    ///
    /// # Errors
    /// A corrupt frame, EOF mid-frame, or a broken connection; afterwards
    /// the reader yields `None`.
    pub async fn next_chunk(&mut self) -> Option<Result<ExecChunk, PodmanError>> {
        loop {
            if self.done {
                return None;
            }
            match self.decoder.decode(&mut self.pending) {
                Ok(Some(chunk)) => return Some(Ok(chunk)),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
            self.buf.resize(READ_CHUNK, 0);
            match self.io.read(&mut self.buf).await {
                Ok(0) => {
                    self.done = true;
                    return self.decoder.finish().err().map(|e| Err(e.into()));
                }
                Ok(n) => self.pending = Bytes::copy_from_slice(&self.buf[..n]),
                Err(e) => {
                    self.done = true;
                    return Some(Err(PodmanError::transport("reading duplex exec", e)));
                }
            }
        }
    }
}

impl Drop for DuplexReader {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl DuplexWriter {
    /// Writes all of `data` to the process's stdin.
    ///
    /// # Errors
    /// The connection is gone.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), PodmanError> {
        self.io
            .write_all(data)
            .await
            .map_err(|e| PodmanError::transport("writing duplex exec", e))?;
        self.io
            .flush()
            .await
            .map_err(|e| PodmanError::transport("writing duplex exec", e))
    }

    /// Half-closes the socket: the process reads EOF on stdin.
    ///
    /// # Errors
    /// The connection is gone.
    pub async fn shutdown(&mut self) -> Result<(), PodmanError> {
        self.io
            .shutdown()
            .await
            .map_err(|e| PodmanError::transport("closing duplex exec", e))
    }
}

impl PodmanClient {
    /// Starts exec `exec_id` (created with `AttachStdin` and `Tty: false`)
    /// on a connection of its own, upgraded to a raw duplex socket.
    ///
    /// # Errors
    /// Unreachable socket, Podman refusing to start the exec (its JSON
    /// error), or a reply that is not the 101 upgrade.
    pub async fn start_exec_duplex(
        &self,
        exec_id: &str,
    ) -> Result<(DuplexReader, DuplexWriter), PodmanError> {
        let path = api(&format!("/exec/{}/start", encode(exec_id)));
        let (ctype, body) = json_body(&path, &serde_json::json!({"Detach": false, "Tty": false}))?;
        self.upgrade(&path, Some((ctype, body))).await
    }

    /// `POST /containers/{id}/attach` with stdin, stdout and stderr, upgraded
    /// to a raw duplex socket, with the detach keys moved to `detach_keys`.
    /// Works on a created container before its start (nothing it prints is
    /// missed then); the container needs `stdin: true` for its stdin to be
    /// open.
    ///
    /// # Errors
    /// As [`PodmanClient::start_exec_duplex`].
    pub async fn attach_duplex(
        &self,
        id: &str,
        detach_keys: &str,
    ) -> Result<(DuplexReader, DuplexWriter), PodmanError> {
        let path = api(&format!(
            "/containers/{}/attach?stream=true&stdin=true&stdout=true&stderr=true&detachKeys={}",
            encode(id),
            encode(detach_keys)
        ));
        self.upgrade(&path, None).await
    }

    /// A `POST` whose 101 reply turns the connection into a duplex stream.
    async fn upgrade(
        &self,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<(DuplexReader, DuplexWriter), PodmanError> {
        let what = format!("POST {path}");
        let mut req = self.request(Method::POST, path, body, false)?;
        req.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        req.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        let (resp, conn) = self
            .send_dedicated(req, path, StatusCode::SWITCHING_PROTOCOLS)
            .await?;
        let upgraded = match tokio::time::timeout(self.call_timeout, hyper::upgrade::on(resp)).await
        {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => {
                conn.abort();
                return Err(PodmanError::transport(what, e));
            }
            Err(_) => {
                conn.abort();
                return Err(PodmanError::Timeout {
                    what,
                    secs: self.call_timeout.as_secs(),
                });
            }
        };
        let (r, w) = tokio::io::split(TokioIo::new(upgraded));
        Ok((
            DuplexReader {
                io: r,
                decoder: FrameDecoder::new(Framing::Multiplexed),
                buf: Vec::new(),
                pending: Bytes::new(),
                done: false,
                conn,
            },
            DuplexWriter { io: w },
        ))
    }
}
