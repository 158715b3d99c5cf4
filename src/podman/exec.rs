//! Exec calls: create, start (a hijacked stream of `ExecChunk`s), inspect.

use std::fmt;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::attach::{ExecChunk, Framing};
use super::chunks::{ChunkReader, Fill, Source};
use super::{Dial, PodmanClient, PodmanError, api, encode, error_chain, json_body};

/// How to run a command with `POST /containers/{id}/exec`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ExecConfig {
    /// argv.
    #[serde(rename = "Cmd")]
    pub cmd: Vec<String>,
    /// `K=V` entries added to the container's environment.
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Working directory (the container's when unset).
    #[serde(rename = "WorkingDir", skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// User (the container's when unset).
    #[serde(rename = "User", skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Allocate a terminal: output arrives raw, stderr merged, CRLF endings.
    #[serde(rename = "Tty")]
    pub tty: bool,
    /// Attach stdin. This client never sends stdin, so a command reading it
    /// sees EOF at once; left false.
    #[serde(rename = "AttachStdin")]
    pub attach_stdin: bool,
    /// Attach stdout (true by default via [`ExecConfig::command`]).
    #[serde(rename = "AttachStdout")]
    pub attach_stdout: bool,
    /// Attach stderr (true by default via [`ExecConfig::command`]).
    #[serde(rename = "AttachStderr")]
    pub attach_stderr: bool,
    /// Detach key sequence Podman's stdin copy watches for (`ctrl-p,ctrl-q`
    /// when unset; an empty string is ignored on exec create). A stdin
    /// carrying only printable text plus `\n` never matches `ctrl-^`.
    #[serde(rename = "DetachKeys", skip_serializing_if = "Option::is_none")]
    pub detach_keys: Option<String>,
}

impl ExecConfig {
    /// `argv` with stdout and stderr attached, no tty, no stdin.
    pub fn command<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        ExecConfig {
            cmd: argv.into_iter().map(Into::into).collect(),
            attach_stdout: true,
            attach_stderr: true,
            ..Default::default()
        }
    }
}

/// What `GET /exec/{id}/json` says.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ExecInspect {
    /// Exec id.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Still running?
    #[serde(rename = "Running", default)]
    pub running: bool,
    /// Exit code; final once the stream reached EOF.
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
    /// Host PID of the exec'd process.
    #[serde(rename = "Pid", default)]
    pub pid: i64,
    /// Container the exec belongs to.
    #[serde(rename = "ContainerID", default)]
    pub container_id: String,
}

#[derive(Debug, Deserialize)]
struct IdReply {
    #[serde(rename = "Id")]
    id: String,
}

#[derive(Serialize)]
struct StartBody {
    #[serde(rename = "Detach")]
    detach: bool,
    #[serde(rename = "Tty")]
    tty: bool,
}

/// The output of a started exec, read chunk by chunk until the process (and
/// everything holding its stdout/stderr) is done.
pub struct ExecStream {
    body: Body,
    chunks: ChunkReader,
    conn: JoinHandle<()>,
}

/// The hijacked reply's body as a [`Source`].
struct Body(Incoming);

impl Source for Body {
    async fn fill(&mut self) -> Fill {
        loop {
            match self.0.frame().await {
                Some(Ok(frame)) => {
                    // Trailers carry no output.
                    if let Ok(data) = frame.into_data() {
                        return Fill::Data(data);
                    }
                }
                Some(Err(e)) => {
                    return Fill::Broken(PodmanError::transport("reading exec stream", e));
                }
                None => return Fill::Eof,
            }
        }
    }
}

impl fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecStream")
            .field("pending", &self.chunks.pending())
            .field("done", &self.chunks.is_done())
            .finish_non_exhaustive()
    }
}

impl ExecStream {
    /// The next chunk, `None` at a clean EOF.
    ///
    /// # Errors
    /// A corrupt frame, EOF mid-frame, or a broken connection. After an
    /// error the stream yields `None`.
    pub async fn next_chunk(&mut self) -> Option<Result<ExecChunk, PodmanError>> {
        self.chunks.next(&mut self.body).await
    }
}

impl Drop for ExecStream {
    fn drop(&mut self) {
        // Closing the connection does not stop the process in the container
        // (libpod has no exec kill); it only frees this side.
        self.conn.abort();
    }
}

impl PodmanClient {
    /// `POST /containers/{id}/exec`; returns the exec id.
    ///
    /// # Errors
    /// [`PodmanError::NotFound`] for a missing container,
    /// [`PodmanError::Conflict`] for one that is not running.
    pub async fn create_exec(
        &self,
        container: &str,
        config: &ExecConfig,
    ) -> Result<String, PodmanError> {
        let path = api(&format!("/containers/{}/exec", encode(container)));
        let body = json_body(&path, config)?;
        let reply: IdReply = self.call_json(Method::POST, &path, Some(body)).await?;
        Ok(reply.id)
    }

    /// `GET /exec/{id}/json`.
    ///
    /// # Errors
    /// [`PodmanError::NotFound`] for an unknown exec id.
    pub async fn inspect_exec(&self, exec_id: &str) -> Result<ExecInspect, PodmanError> {
        let path = api(&format!("/exec/{}/json", encode(exec_id)));
        self.call_json(Method::GET, &path, None).await
    }

    /// `POST /exec/{id}/start`, attached. `tty` must match the exec's own Tty
    /// flag: it decides the framing.
    ///
    /// The reply is hijacked (200, no length, raw bytes until EOF), so it
    /// gets a connection of its own. An error before the hijack (e.g. a bad
    /// user: 500) is an ordinary JSON reply and comes back as `Err`.
    ///
    /// # Errors
    /// Unreachable socket, or Podman refusing to start the exec.
    pub async fn start_exec(&self, exec_id: &str, tty: bool) -> Result<ExecStream, PodmanError> {
        let path = api(&format!("/exec/{}/start", encode(exec_id)));
        // 4.3.1 rejects an empty body; `{}` or this works.
        let (ctype, body) = json_body(&path, &StartBody { detach: false, tty })?;
        let req = self.request(Method::POST, &path, Some((ctype, body)), false)?;
        let (resp, conn) = self.send_dedicated(req, &path, StatusCode::OK).await?;
        Ok(ExecStream {
            body: Body(resp.into_body()),
            chunks: ChunkReader::new(if tty {
                Framing::Raw
            } else {
                Framing::Multiplexed
            }),
            conn,
        })
    }

    /// Sends a `POST` that takes its connection over (a hijacked or
    /// upgraded exec start) on a connection of its own, bounded by the call
    /// timeout. A status other than `want` is Podman's JSON error. Returns
    /// the response and the task driving the connection.
    pub(super) async fn send_dedicated(
        &self,
        req: http::Request<super::ReqBody>,
        path: &str,
        want: StatusCode,
    ) -> Result<(http::Response<Incoming>, JoinHandle<()>), PodmanError> {
        let what = format!("POST {path}");
        let (mut sender, conn) = self.dedicated_connection().await?;
        let conn = tokio::spawn(async move {
            // Ends at EOF of the hijacked stream; errors surface in the body.
            let _ = conn.await;
        });
        let resp = match tokio::time::timeout(self.call_timeout, sender.send_request(req)).await {
            Err(_) => {
                conn.abort();
                return Err(PodmanError::Timeout {
                    what,
                    secs: self.call_timeout.as_secs(),
                });
            }
            Ok(Err(e)) => {
                conn.abort();
                return Err(PodmanError::transport(what, e));
            }
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        if status != want {
            let bytes = self.collect(&what, resp.into_body()).await;
            conn.abort();
            return Err(PodmanError::from_reply(
                "POST",
                path,
                status.as_u16(),
                &bytes?,
            ));
        }
        Ok((resp, conn))
    }

    /// Opens a fresh HTTP/1 connection outside the pool (upgradable: a
    /// bidirectional exec turns it into a raw socket).
    pub(super) async fn dedicated_connection(
        &self,
    ) -> Result<
        (
            hyper::client::conn::http1::SendRequest<super::ReqBody>,
            BoxConn,
        ),
        PodmanError,
    > {
        let unreachable = |e: std::io::Error| PodmanError::Unreachable {
            endpoint: self.endpoint.to_string(),
            source: std::io::Error::new(e.kind(), error_chain(&e)),
        };
        let handshake_err = |e: hyper::Error| PodmanError::transport("HTTP handshake", e);
        match &self.dial {
            Dial::Unconnected => Err(self.unconnected()),
            Dial::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(unreachable)?;
                let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(handshake_err)?;
                Ok((s, Box::pin(c.with_upgrades())))
            }
            Dial::Tcp(authority) => {
                let stream = tokio::net::TcpStream::connect(authority.as_str())
                    .await
                    .map_err(unreachable)?;
                let _ = stream.set_nodelay(true);
                let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(handshake_err)?;
                Ok((s, Box::pin(c.with_upgrades())))
            }
        }
    }
}

pub(super) type BoxConn =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), hyper::Error>> + Send>>;
