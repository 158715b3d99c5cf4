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

use super::attach::{ExecChunk, Framing};
use super::chunks::{ChunkReader, Fill, Source};
use super::{PodmanClient, PodmanError, api, encode, json_body};

type Io = TokioIo<Upgraded>;

/// How much one read of the output takes at most.
const READ_CHUNK: usize = 64 * 1024;

/// The output side of a duplex exec.
pub struct DuplexReader {
    src: Socket,
    chunks: ChunkReader,
    conn: JoinHandle<()>,
}

/// The upgraded socket's read half as a [`Source`].
struct Socket {
    io: ReadHalf<Io>,
    buf: Vec<u8>,
}

impl Source for Socket {
    async fn fill(&mut self) -> Fill {
        self.buf.resize(READ_CHUNK, 0);
        match self.io.read(&mut self.buf).await {
            Ok(0) => Fill::Eof,
            Ok(n) => Fill::Data(Bytes::copy_from_slice(&self.buf[..n])),
            Err(e) => Fill::Broken(PodmanError::transport("reading duplex exec", e)),
        }
    }
}

/// The stdin side of a duplex exec.
pub struct DuplexWriter {
    io: WriteHalf<Io>,
}

impl fmt::Debug for DuplexReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DuplexReader")
            .field("pending", &self.chunks.pending())
            .field("done", &self.chunks.is_done())
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
        self.chunks.next(&mut self.src).await
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
                src: Socket {
                    io: r,
                    buf: Vec::new(),
                },
                chunks: ChunkReader::new(Framing::Multiplexed),
                conn,
            },
            DuplexWriter { io: w },
        ))
    }
}
