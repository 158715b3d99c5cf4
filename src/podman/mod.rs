//! `PodmanClient`: a typed client for the libpod REST API over a Unix socket
//! or plain TCP, and the request plumbing every call shares.
//!
//! Ordinary calls go through a pooled hyper client (connections are reused);
//! an exec start, whose reply is hijacked into a raw stream, gets a
//! connection of its own (see `exec.rs`).

pub mod attach;
mod chunks;
mod containers;
mod duplex;
mod endpoint;
pub mod error;
mod exec;
mod images;
pub mod ssh;
mod volumes;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use serde::{Deserialize, de::DeserializeOwned};

pub use attach::{ExecChunk, FrameDecoder, FrameError, Framing, StreamKind};
pub use containers::{
    AutoUserNsOpts, ContainerInspect, ContainerSpec, ContainerState, ContainerSummary, CpuLimit,
    IdMap, IdMappings, MemoryLimit, Mount, NamedVolume, Namespace, PidsLimit, RemoveReport,
    ResourceLimits, Rlimit,
};
pub use duplex::{DuplexReader, DuplexWriter};
pub use endpoint::{Endpoint, EndpointError};
pub use error::{ApiError, PodmanError};
pub use exec::{ExecConfig, ExecInspect, ExecStream};
pub use images::{BuildOptions, BuildReport};
pub use volumes::PathStat;

/// Path prefix of every libpod route. Podman does not range-check it; 4.0.0
/// is the oldest API whose routes this client uses.
pub const API_PREFIX: &str = "/v4.0.0/libpod";

/// Largest non-streamed reply body accepted (inspect, list, errors).
const MAX_BODY: usize = 32 << 20;

/// Default limit for one ordinary (non-streamed) call.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);

type ReqBody = Full<Bytes>;

/// What a client actually dials: for `ssh://`, the forward's local socket.
#[derive(Clone, Debug)]
enum Dial {
    Unix(std::path::PathBuf),
    Tcp(String),
    /// An `ssh://` endpoint given to [`PodmanClient::new`], not through its
    /// forward: every call fails with a clear error.
    Unconnected,
}

#[derive(Clone, Debug)]
enum Http {
    Unix(Client<UnixConnector, ReqBody>),
    Tcp(Client<HttpConnector, ReqBody>),
}

/// A libpod API client. Cheap to clone: clones share the connection pool.
#[derive(Clone, Debug)]
pub struct PodmanClient {
    endpoint: Endpoint,
    dial: Dial,
    http: Http,
    call_timeout: Duration,
}

/// What `GET /_ping` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingInfo {
    /// The `Libpod-Api-Version` header, e.g. "4.3.1".
    pub libpod_api_version: Option<String>,
}

/// The parts of `GET /libpod/version` this server reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Podman's version, e.g. "4.3.1".
    pub version: String,
    /// The libpod API version (the "Podman Engine" component's
    /// `APIVersion`; the top-level `ApiVersion` is the Docker-compatible one).
    pub api_version: String,
    /// The host's kernel.
    pub kernel_version: String,
}

#[derive(Deserialize)]
struct VersionReply {
    #[serde(rename = "Version")]
    version: String,
    #[serde(rename = "KernelVersion", default)]
    kernel_version: String,
    #[serde(rename = "Components", default)]
    components: Vec<VersionComponent>,
}

/// The parts of `GET /libpod/info` this server reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// `host.security.rootless`: Podman runs as an unprivileged user, so
    /// its containers are user-namespaced already.
    pub rootless: bool,
    /// `host.ociRuntime.name`, e.g. "runc".
    pub oci_runtime: String,
    /// `host.cgroupVersion`: "v1" or "v2". Rootless Podman on v1 cannot set
    /// memory, pids or CPU limits and drops them without an error.
    pub cgroup_version: String,
    /// `host.cgroupManager`: "cgroupfs" or "systemd" (which parent cgroup
    /// paths it takes).
    pub cgroup_manager: String,
}

#[derive(Deserialize)]
struct InfoReply {
    #[serde(default)]
    host: InfoHost,
}

#[derive(Deserialize, Default)]
struct InfoHost {
    #[serde(default)]
    security: InfoSecurity,
    #[serde(rename = "ociRuntime", default)]
    oci_runtime: InfoRuntime,
    #[serde(rename = "cgroupVersion", default)]
    cgroup_version: String,
    #[serde(rename = "cgroupManager", default)]
    cgroup_manager: String,
}

#[derive(Deserialize, Default)]
struct InfoSecurity {
    #[serde(default)]
    rootless: bool,
}

#[derive(Deserialize, Default)]
struct InfoRuntime {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct VersionComponent {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Details", default)]
    details: serde_json::Value,
}

impl PodmanClient {
    /// A client for `endpoint`. Connects lazily: nothing is dialled here.
    /// An `ssh://` endpoint needs its forward: use [`ssh::connect`] (a
    /// client made here for one fails every call, saying so).
    pub fn new(endpoint: Endpoint) -> Self {
        let dial = match &endpoint {
            Endpoint::Unix(p) => Dial::Unix(p.clone()),
            Endpoint::Tcp { authority } => Dial::Tcp(authority.clone()),
            Endpoint::Ssh(_) => Dial::Unconnected,
        };
        Self::dialling(endpoint, dial)
    }

    /// A client for `forward`'s remote Podman, dialling its local socket;
    /// errors name the `ssh://` endpoint.
    pub fn through(forward: &ssh::SshForward) -> Self {
        Self::dialling(
            Endpoint::Ssh(forward.target().clone()),
            Dial::Unix(forward.local_socket().to_owned()),
        )
    }

    fn dialling(endpoint: Endpoint, dial: Dial) -> Self {
        let http = match &dial {
            Dial::Unix(_) | Dial::Unconnected => Http::Unix(
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(UnixConnector),
            ),
            Dial::Tcp(_) => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                Http::Tcp(
                    Client::builder(TokioExecutor::new())
                        .pool_idle_timeout(Duration::from_secs(30))
                        .build(connector),
                )
            }
        };
        PodmanClient {
            endpoint,
            dial,
            http,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// A client for CONTAINER_HOST, or the default local socket.
    ///
    /// # Errors
    /// CONTAINER_HOST is set to a form this client cannot use.
    pub fn from_env() -> Result<Self, EndpointError> {
        Ok(Self::new(Endpoint::from_env()?))
    }

    /// Sets the limit for each ordinary call (not exec streams or builds).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `GET /_ping`: is a Podman API answering?
    ///
    /// # Errors
    /// Unreachable socket, or an answer that is not libpod's "OK".
    pub async fn ping(&self) -> Result<PingInfo, PodmanError> {
        let resp = self.send(Method::GET, "/_ping", None).await?;
        let version = resp
            .headers()
            .get("libpod-api-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = resp.status();
        let body = self.collect("GET /_ping", resp.into_body()).await?;
        if status != StatusCode::OK {
            return Err(PodmanError::from_reply(
                "GET",
                "/_ping",
                status.as_u16(),
                &body,
            ));
        }
        if version.is_none() {
            return Err(PodmanError::malformed(
                "GET /_ping",
                "no Libpod-Api-Version header: this is not a Podman API (a Docker socket?)",
            ));
        }
        Ok(PingInfo {
            libpod_api_version: version,
        })
    }

    /// `GET /libpod/version`.
    ///
    /// # Errors
    /// Unreachable socket or an unexpected reply.
    pub async fn version(&self) -> Result<VersionInfo, PodmanError> {
        let reply: VersionReply = self.call_json(Method::GET, &api("/version"), None).await?;
        let api_version = reply
            .components
            .iter()
            .find(|c| c.name == "Podman Engine")
            .and_then(|c| c.details.get("APIVersion"))
            .and_then(|v| v.as_str())
            .unwrap_or(&reply.version)
            .to_owned();
        Ok(VersionInfo {
            version: reply.version,
            api_version,
            kernel_version: reply.kernel_version,
        })
    }

    /// `GET /libpod/info`: how this Podman runs.
    ///
    /// # Errors
    /// Unreachable socket or an unexpected reply.
    pub async fn info(&self) -> Result<HostInfo, PodmanError> {
        let reply: InfoReply = self.call_json(Method::GET, &api("/info"), None).await?;
        Ok(HostInfo {
            rootless: reply.host.security.rootless,
            oci_runtime: reply.host.oci_runtime.name,
            cgroup_version: reply.host.cgroup_version,
            cgroup_manager: reply.host.cgroup_manager,
        })
    }

    // ---- request plumbing ----------------------------------------------------

    fn uri(&self, path_and_query: &str) -> Result<http::Uri, PodmanError> {
        match &self.dial {
            Dial::Unix(path) => Ok(hyperlocal::Uri::new(path, path_and_query).into()),
            // `authority` was validated as host:port when parsed, and every
            // path here is built from encoded parts; still, no panic.
            Dial::Tcp(authority) => format!("http://{authority}{path_and_query}")
                .parse()
                .map_err(|e| PodmanError::transport(format!("building URI {path_and_query}"), e)),
            Dial::Unconnected => Err(self.unconnected()),
        }
    }

    fn unconnected(&self) -> PodmanError {
        PodmanError::Unreachable {
            endpoint: self.endpoint.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "an ssh:// endpoint needs its forward (podman::ssh::connect)",
            ),
        }
    }

    /// Builds a request. `pooled` picks the URI form: the pooled client
    /// wants an absolute URI (it names the socket); a dedicated connection
    /// sends the origin form.
    fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
        pooled: bool,
    ) -> Result<Request<ReqBody>, PodmanError> {
        let uri = if pooled {
            self.uri(path_and_query)?
        } else {
            path_and_query.parse().map_err(|e| {
                PodmanError::transport(format!("building request {path_and_query}"), e)
            })?
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "d");
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        builder
            .body(body)
            .map_err(|e| PodmanError::transport(format!("building request {path_and_query}"), e))
    }

    /// Sends a request and returns the reply head with its body unread.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Response<Incoming>, PodmanError> {
        let what = format!("{method} {path_and_query}");
        let req = self.request(method, path_and_query, body, true)?;
        let fut = async {
            match &self.http {
                Http::Unix(c) => c.request(req).await,
                Http::Tcp(c) => c.request(req).await,
            }
        };
        match tokio::time::timeout(self.call_timeout, fut).await {
            Err(_) => Err(PodmanError::Timeout {
                what,
                secs: self.call_timeout.as_secs(),
            }),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => Err(PodmanError::Unreachable {
                endpoint: self.endpoint.to_string(),
                source: std::io::Error::other(error_chain(&e)),
            }),
            Ok(Err(e)) => Err(PodmanError::transport(what, e)),
        }
    }

    /// Reads a whole (bounded) reply body.
    async fn collect(&self, what: &str, body: Incoming) -> Result<Bytes, PodmanError> {
        let limited = Limited::new(body, MAX_BODY);
        match tokio::time::timeout(self.call_timeout, limited.collect()).await {
            Err(_) => Err(PodmanError::Timeout {
                what: what.to_owned(),
                secs: self.call_timeout.as_secs(),
            }),
            Ok(Ok(c)) => Ok(c.to_bytes()),
            Ok(Err(e)) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    Err(PodmanError::malformed(
                        what,
                        format!("reply body larger than {MAX_BODY} bytes"),
                    ))
                } else {
                    Err(PodmanError::transport(what.to_owned(), e))
                }
            }
        }
    }

    /// One ordinary call: sends, reads the bounded body, and turns an error
    /// status into a [`PodmanError`]. 304 ("already started/stopped") is a
    /// success.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<(StatusCode, Bytes), PodmanError> {
        let m = method.to_string();
        let resp = self.send(method, path_and_query, body).await?;
        let status = resp.status();
        let what = format!("{m} {path_and_query}");
        let bytes = self.collect(&what, resp.into_body()).await?;
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            Ok((status, bytes))
        } else {
            Err(PodmanError::from_reply(
                &m,
                path_and_query,
                status.as_u16(),
                &bytes,
            ))
        }
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<T, PodmanError> {
        let what = format!("{method} {path_and_query}");
        let (_, bytes) = self.call(method, path_and_query, body).await?;
        parse_json(&what, &bytes)
    }
}

/// `API_PREFIX` + path.
fn api(path: &str) -> String {
    format!("{API_PREFIX}{path}")
}

fn json_body<T: serde::Serialize>(what: &str, v: &T) -> Result<(&'static str, Bytes), PodmanError> {
    serde_json::to_vec(v)
        .map(|b| ("application/json", Bytes::from(b)))
        .map_err(|e| PodmanError::malformed(what, format!("cannot encode request: {e}")))
}

fn parse_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, PodmanError> {
    serde_json::from_slice(bytes)
        .map_err(|e| PodmanError::malformed(what, format!("{e}; body: {}", error::snippet(bytes))))
}

/// Percent-encodes one URL path segment or query value: everything but
/// RFC 3986 unreserved characters.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error with its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_unreserved_only() {
        assert_eq!(encode("abc-1.2_~"), "abc-1.2_~");
        assert_eq!(
            encode(r#"{"label":["a=b"]}"#),
            "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"
        );
        assert_eq!(encode("localhost/x:1"), "localhost%2Fx%3A1");
    }
}
