//! The legacy HTTP+SSE transport (protocol 2024-11-05), off unless `--sse`:
//! `GET /sse` opens an event stream whose first event (`endpoint`) names
//! `/messages?sessionId=<id>`; requests arrive by POST there and their
//! responses go out on the stream. The stream is the session: its sandbox
//! lives as long as the stream. Deprecated by the protocol and gone from
//! rmcp (0.11); kept small, on rmcp's sink/stream transport, behind the same
//! authentication gate as /mcp (http.rs) and with the same Host/Origin
//! rules, and, as /mcp, an error for a request whose id is still in flight.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming};
use rmcp::ServiceExt;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, GetExtensions, RequestId, ServerJsonRpcMessage,
};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info};

use super::http::{RespBody, plain};
use crate::auth::Caller;
use crate::mcp::{PodExecServer, Shared};
use crate::sandbox::{SandboxKey, SandboxManager};

/// The event stream's path.
pub const SSE_PATH: &str = "/sse";
/// Where requests are posted.
pub const MESSAGES_PATH: &str = "/messages";
/// Largest request body (as /mcp).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most requests one stream may have unanswered (far above what the
/// sandbox's call queue admits).
const MAX_IN_FLIGHT: usize = 1024;

/// One open stream: where its requests go, whose it is, and the ids of its
/// requests not answered yet (as over /mcp, a second request with one of
/// them gets an error rather than a reply that would answer both).
struct Stream {
    to_server: futures::channel::mpsc::Sender<ClientJsonRpcMessage>,
    caller: Caller,
    in_flight: InFlight,
    /// Errors the hub itself answers with, onto the stream.
    refusals: mpsc::Sender<ServerJsonRpcMessage>,
}

type InFlight = Arc<Mutex<HashSet<RequestId>>>;

fn ids(set: &InFlight) -> std::sync::MutexGuard<'_, HashSet<RequestId>> {
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The request a server message answers, if it is an answer.
fn answers(m: &ServerJsonRpcMessage) -> Option<&RequestId> {
    match m {
        ServerJsonRpcMessage::Response(r) => Some(&r.id),
        ServerJsonRpcMessage::Error(e) => e.id.as_ref(),
        _ => None,
    }
}

/// The open SSE sessions.
pub struct SseHub {
    shared: Arc<Shared>,
    sandboxes: SandboxManager,
    streams: Arc<Mutex<HashMap<String, Stream>>>,
    shutdown: CancellationToken,
    hosts: Option<Vec<String>>,
    origins: Option<Vec<String>>,
}

impl std::fmt::Debug for SseHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseHub").finish_non_exhaustive()
    }
}

impl SseHub {
    /// A hub serving `shared`'s tools; streams end at `shutdown`. `hosts`
    /// and `origins` are the accepted Host and Origin values (`None`: any).
    pub fn new(
        shared: Arc<Shared>,
        sandboxes: SandboxManager,
        shutdown: CancellationToken,
        hosts: Option<Vec<String>>,
        origins: Option<Vec<String>>,
    ) -> Self {
        SseHub {
            shared,
            sandboxes,
            streams: Arc::new(Mutex::new(HashMap::new())),
            shutdown,
            hosts,
            origins,
        }
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stream>> {
        // One map operation per critical section: a poisoned map is whole.
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Answers a request for /sse or /messages (already authenticated).
    pub async fn route(&self, req: Request<Incoming>, caller: Caller) -> Response<RespBody> {
        if let Err(why) = self.check_host_origin(&req) {
            return plain(StatusCode::FORBIDDEN, why);
        }
        match (req.method().as_str(), req.uri().path()) {
            ("GET", SSE_PATH) => self.open(caller),
            ("POST", MESSAGES_PATH) => self.post(req, caller).await,
            (_, SSE_PATH) => with_allow(plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"), "GET"),
            _ => with_allow(plain(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"), "POST"),
        }
    }

    /// GET /sse: a new session, its handler, its stream.
    fn open(&self, caller: Caller) -> Response<RespBody> {
        let id = crate::random_hex(16);
        let key = SandboxKey::Session(format!("sse-{id}"));
        let tag = self.sandboxes.open(&key);
        let (to_server, from_client) = futures::channel::mpsc::channel::<ClientJsonRpcMessage>(16);
        let (to_client, mut from_server) =
            futures::channel::mpsc::channel::<ServerJsonRpcMessage>(16);
        let (refusals, mut refused) = mpsc::channel::<ServerJsonRpcMessage>(16);
        let in_flight = InFlight::default();
        self.streams().insert(
            id.clone(),
            Stream {
                to_server,
                caller,
                in_flight: in_flight.clone(),
                refusals,
            },
        );
        let ct = self.shutdown.child_token();
        let handler = PodExecServer::for_session(
            self.shared.clone(),
            match &key {
                SandboxKey::Session(s) => s,
                _ => "",
            },
        );
        // The session: until the stream is dropped (client gone) or the
        // server stops; then its sandbox goes.
        let sandboxes = self.sandboxes.clone();
        let streams = self.streams.clone();
        let session_ct = ct.clone();
        let session_id = id.clone();
        info!(session = %tag, "SSE session opened");
        tokio::spawn(async move {
            let sink = to_client.sink_map_err(|e| std::io::Error::other(e.to_string()));
            if let Ok(running) = handler
                .serve_with_ct((sink, from_client), session_ct.clone())
                .await
            {
                let _ = running.waiting().await;
            }
            session_ct.cancel();
            streams
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&session_id);
            info!(session = %tag, "SSE session ended");
            sandboxes.release(&key, "stream closed").await;
        });
        // The body: the endpoint event, then each message, with keep-alives.
        let (body_tx, body_rx) = mpsc::channel::<Bytes>(16);
        let writer_ct = ct.clone();
        let endpoint = format!("event: endpoint\ndata: {MESSAGES_PATH}?sessionId={id}\n\n");
        tokio::spawn(async move {
            if body_tx.send(Bytes::from(endpoint)).await.is_err() {
                writer_ct.cancel();
                return;
            }
            let mut tick = tokio::time::interval(KEEP_ALIVE);
            tick.tick().await;
            loop {
                let event = tokio::select! {
                    _ = writer_ct.cancelled() => break,
                    _ = tick.tick() => Bytes::from_static(b": keep-alive\n\n"),
                    m = refused.recv() => match m.as_ref().map(event) {
                        Some(Some(e)) => e,
                        Some(None) => continue,
                        None => break,
                    },
                    m = from_server.next() => match m {
                        Some(m) => {
                            // Answered: the id is free again.
                            if let Some(rid) = answers(&m) {
                                ids(&in_flight).remove(rid);
                            }
                            match event(&m) {
                                Some(e) => e,
                                None => continue,
                            }
                        }
                        None => break,
                    },
                };
                if body_tx.send(event).await.is_err() {
                    break;
                }
            }
            writer_ct.cancel();
        });
        let body = SseBody {
            rx: body_rx,
            _guard: ct.drop_guard(),
        };
        let mut resp = Response::new(body.boxed());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    }

    /// POST /messages?sessionId=: one JSON-RPC message for that stream.
    async fn post(&self, req: Request<Incoming>, caller: Caller) -> Response<RespBody> {
        let Some(id) = session_param(req.uri().query().unwrap_or("")) else {
            return plain(StatusCode::BAD_REQUEST, "sessionId is missing\n");
        };
        let stream = {
            let streams = self.streams();
            match streams.get(&id) {
                // Another caller's stream is as unknown as a closed one.
                Some(s) if s.caller == caller => {
                    Some((s.to_server.clone(), s.in_flight.clone(), s.refusals.clone()))
                }
                _ => None,
            }
        };
        let Some((mut sender, in_flight, refusals)) = stream else {
            return plain(StatusCode::NOT_FOUND, "unknown or closed session\n");
        };
        let (mut parts, body) = req.into_parts();
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
        };
        let mut message: ClientJsonRpcMessage = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                debug!("SSE: malformed message: {e}");
                return plain(StatusCode::BAD_REQUEST, "not a JSON-RPC message\n");
            }
        };
        // A cancelled request gets no answer (rmcp drops it): its id is free.
        if let ClientJsonRpcMessage::Notification(n) = &message
            && let ClientNotification::CancelledNotification(c) = &n.notification
            && let Some(rid) = &c.params.request_id
        {
            ids(&in_flight).remove(rid);
        }
        if let ClientJsonRpcMessage::Request(r) = &message {
            let refusal = {
                let mut set = ids(&in_flight);
                if set.contains(&r.id) {
                    Some(crate::mcp::replies::duplicate_id(r.id.clone()))
                } else if set.len() >= MAX_IN_FLIGHT {
                    Some(crate::mcp::replies::too_many_in_flight(r.id.clone()))
                } else {
                    set.insert(r.id.clone());
                    None
                }
            };
            if let Some(refusal) = refusal {
                return match refusals.send(refusal).await {
                    Ok(()) => plain(StatusCode::ACCEPTED, "accepted\n"),
                    Err(_) => plain(StatusCode::NOT_FOUND, "unknown or closed session\n"),
                };
            }
        }
        // The tools read the caller from the request's Parts, as over /mcp.
        parts.extensions.insert(caller);
        match &mut message {
            ClientJsonRpcMessage::Request(r) => {
                r.request.extensions_mut().insert(parts);
            }
            ClientJsonRpcMessage::Notification(n) => {
                n.notification.extensions_mut().insert(parts);
            }
            _ => {}
        }
        match sender.send(message).await {
            Ok(()) => plain(StatusCode::ACCEPTED, "accepted\n"),
            Err(_) => plain(StatusCode::NOT_FOUND, "unknown or closed session\n"),
        }
    }

    fn check_host_origin(&self, req: &Request<Incoming>) -> Result<(), &'static str> {
        if let Some(hosts) = &self.hosts {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(host_only)
                .unwrap_or_default();
            if !hosts.iter().any(|h| host_only(h) == host) {
                return Err("Host not allowed\n");
            }
        }
        if let (Some(origins), Some(origin)) = (&self.origins, req.headers().get(header::ORIGIN)) {
            let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
            if !origins
                .iter()
                .any(|o| origin_matches(&o.to_ascii_lowercase(), &origin))
            {
                return Err("Origin not allowed\n");
            }
        }
        Ok(())
    }
}

/// One `message` event; `None` (logged) for what cannot be encoded.
fn event(m: &ServerJsonRpcMessage) -> Option<Bytes> {
    match serde_json::to_string(m) {
        Ok(json) => Some(Bytes::from(format!("event: message\ndata: {json}\n\n"))),
        Err(e) => {
            debug!("SSE: cannot encode a message: {e}");
            None
        }
    }
}

/// The body of an SSE response: events from the writer task; dropping it
/// (the client went away) cancels the session.
struct SseBody {
    rx: mpsc::Receiver<Bytes>,
    _guard: DropGuard,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// `sessionId` from a query string.
fn session_param(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "sessionId")
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// "Host:port" / "[::1]:port" / "host" -> the lowercase host.
fn host_only(h: &str) -> String {
    let h = h.trim().to_ascii_lowercase();
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_owned();
    }
    if h.matches(':').count() > 1 {
        // A bare IPv6 address.
        return h;
    }
    h.split(':').next().unwrap_or("").to_owned()
}

/// An allowed origin `scheme://host[:port|:*]` against a request's Origin.
fn origin_matches(allowed: &str, origin: &str) -> bool {
    if allowed == origin {
        return true;
    }
    match allowed.strip_suffix(":*") {
        Some(prefix) => {
            origin == prefix
                || origin.strip_prefix(prefix).is_some_and(|rest| {
                    rest.strip_prefix(':')
                        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                })
        }
        None => false,
    }
}

fn with_allow(mut resp: Response<RespBody>, allow: &'static str) -> Response<RespBody> {
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_host_parsing() {
        assert_eq!(session_param("sessionId=ab12").as_deref(), Some("ab12"));
        assert_eq!(session_param("x=1&sessionId=ab12").as_deref(), Some("ab12"));
        assert_eq!(session_param("sessionId="), None);
        assert_eq!(session_param("sessionId=../x"), None);
        assert_eq!(host_only("LocalHost:8000"), "localhost");
        assert_eq!(host_only("[::1]:80"), "::1");
        assert_eq!(host_only("::1"), "::1");
        assert!(origin_matches(
            "http://localhost:*",
            "http://localhost:3000"
        ));
        assert!(origin_matches("http://localhost:*", "http://localhost"));
        assert!(!origin_matches(
            "http://localhost:*",
            "http://localhost.evil.com"
        ));
        assert!(!origin_matches(
            "http://localhost:*",
            "http://localhost:80x"
        ));
        assert!(origin_matches(
            "https://app.example.com:443",
            "https://app.example.com:443"
        ));
    }
}
