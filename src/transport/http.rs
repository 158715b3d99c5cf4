//! Streamable HTTP: the accept loop and the layer in front of rmcp's
//! service — OAuth discovery answered 404, bearer-token authentication on
//! every other path and method, 405 for a session-less GET, and the caller's
//! identity handed to the tools; the legacy SSE paths go to `sse.rs` behind
//! the same gate. rmcp itself checks `Host` (DNS rebinding), `Origin`,
//! Accept and Content-Type on /mcp.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use rmcp::transport::streamable_http_server::StreamableHttpService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::auth::Authenticator;
use crate::mcp::PodExecServer;
use crate::mcp::session::{Sessions, SharedSessions};
use crate::transport::sse::{MESSAGES_PATH, SSE_PATH, SseHub};

/// The MCP endpoint path.
pub const MCP_PATH: &str = "/mcp";

/// rmcp's service with our session manager.
pub type McpService = StreamableHttpService<PodExecServer, SharedSessions>;

pub(super) type RespBody = BoxBody<Bytes, Infallible>;

/// Accepts connections until `shutdown` is cancelled; returns the watcher of
/// the connections still open, for the caller to drain.
pub async fn serve(
    listener: TcpListener,
    service: McpService,
    auth: Authenticator,
    sessions: Arc<Sessions>,
    sse: Option<SseHub>,
    shutdown: CancellationToken,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let builder = ConnBuilder::new(TokioExecutor::new());
    let gate = Arc::new(Gate {
        service,
        auth,
        sessions,
        sse,
    });
    loop {
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let gate = gate.clone();
        let handler = hyper::service::service_fn(move |req: Request<Incoming>| {
            let gate = gate.clone();
            async move { Ok::<_, Infallible>(gate.route(req).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), handler)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    graceful
}

struct Gate {
    service: McpService,
    auth: Authenticator,
    sessions: Arc<Sessions>,
    /// The legacy SSE transport, when `--sse` is on.
    sse: Option<SseHub>,
}

impl Gate {
    async fn route(&self, mut req: Request<Incoming>) -> Response<RespBody> {
        let path = req.uri().path();
        // Before authentication: clients (Claude Code, Cursor) probe these
        // without the configured header, and anything but a plain 404 makes
        // them drop the header and start an OAuth flow this server does not
        // offer.
        if is_oauth_discovery(path) {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        }
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        let Some(caller) = self.auth.check(authorization) else {
            debug!(path, "request without a valid bearer token refused");
            let mut resp = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        };
        if let Some(sse) = &self.sse
            && (path == SSE_PATH || path == MESSAGES_PATH)
        {
            return sse.route(req, caller).await;
        }
        if path != MCP_PATH {
            return plain(
                StatusCode::NOT_FOUND,
                "not found; the MCP endpoint is /mcp\n",
            );
        }
        // No standalone SSE stream without a session. rmcp answers 400,
        // which Claude clients treat as fatal; the protocol says 405.
        if req.method() == Method::GET && !req.headers().contains_key("mcp-session-id") {
            let mut resp = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "GET needs an Mcp-Session-Id; send requests with POST\n",
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
            return resp;
        }
        let is_delete = req.method() == Method::DELETE;
        if is_delete {
            // rmcp answers 202 for any id; the protocol says 404 for one
            // that is not (or no longer) a session.
            let id = req
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok());
            if !id.is_some_and(|id| self.sessions.is_open(id)) {
                return plain(StatusCode::NOT_FOUND, "no such session\n");
            }
        }
        // rmcp hands the request's Parts (extensions included) to the tool.
        req.extensions_mut().insert(caller);
        let req = match check_json(req).await {
            Ok(req) => req,
            Err(resp) => return *resp,
        };
        let mut resp = self.service.handle(req).await;
        // rmcp ends a session with 202; the Python SDKs accept only 200 or
        // 204 and report anything else as a failed termination.
        if is_delete && resp.status() == StatusCode::ACCEPTED {
            *resp.status_mut() = StatusCode::OK;
        }
        resp
    }
}

/// rmcp's own body limit.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A JSON POST whose body does not parse gets a JSON-RPC parse error (400,
/// -32700) here; rmcp would answer 415 as for a wrong content type. The
/// body is read (bounded, as rmcp does) and handed on.
async fn check_json(
    req: Request<Incoming>,
) -> Result<Request<BoxBody<Bytes, hyper::Error>>, Box<Response<RespBody>>> {
    let json = req.method() == Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return Ok(req.map(BodyExt::boxed));
    }
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(Box::new(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large\n",
            )));
        }
    };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32700, "message": format!("Parse error: {e}")},
        })
        .to_string();
        let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Err(Box::new(resp));
    }
    let body = Full::new(bytes).map_err(|never| match never {}).boxed();
    Ok(Request::from_parts(parts, body))
}

/// RFC 8414 / RFC 9728 / OpenID discovery paths, with or without a
/// resource suffix (`/.well-known/oauth-protected-resource/mcp`).
fn is_oauth_discovery(path: &str) -> bool {
    path.strip_prefix("/.well-known/")
        .is_some_and(|rest| rest.starts_with("oauth-") || rest.starts_with("openid-configuration"))
        || path.ends_with("/.well-known/openid-configuration")
}

/// A plain-text reply (errors of the gate and of the SSE endpoints).
pub(super) fn plain(status: StatusCode, body: &'static str) -> Response<RespBody> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_paths() {
        for p in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/openid-configuration",
            "/mcp/.well-known/openid-configuration",
        ] {
            assert!(is_oauth_discovery(p), "{p}");
        }
        for p in ["/mcp", "/", "/.well-known/security.txt", "/oauth-x"] {
            assert!(!is_oauth_discovery(p), "{p}");
        }
    }
}
