//! `Sessions`: rmcp's in-memory session manager, wrapped so that the end of
//! an MCP session — client DELETE, idle expiry, server shutdown — releases
//! its sandbox, and so that idleness is judged by real activity.
//!
//! rmcp's own keep-alive is switched off: it counts only messages, so a
//! long-running tool call with no traffic would be cut off as "idle". Here a
//! session is idle when no request is in flight and none arrived for
//! `idle` (POD_EXEC_IDLE_TIMEOUT).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, RequestId, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    ServerSseMessage, SessionId, SessionManager,
};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::sandbox::{SandboxKey, SandboxManager};

#[derive(Debug)]
struct Activity {
    /// Random; logs use it instead of the session id (a bearer secret).
    tag: String,
    opened: Instant,
    last: Instant,
    in_flight: usize,
    /// Ids of the requests in flight (a duplicate gets an error).
    ids: HashSet<RequestId>,
}

/// The session manager handed to rmcp's `StreamableHttpService`.
#[derive(Debug)]
pub struct Sessions {
    inner: LocalSessionManager,
    sandboxes: SandboxManager,
    activity: Mutex<HashMap<SessionId, Activity>>,
    idle: Duration,
    /// One sender per response stream in flight: at shutdown each gets
    /// its error reply before rmcp closes the streams.
    stoppers: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<()>>>,
    next_stopper: std::sync::atomic::AtomicU64,
}

impl Sessions {
    /// Sessions whose sandboxes live in `sandboxes` and expire after `idle`.
    pub fn new(sandboxes: SandboxManager, idle: Duration) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = None;
        Sessions {
            inner,
            sandboxes,
            activity: Mutex::new(HashMap::new()),
            idle,
            stoppers: Mutex::new(HashMap::new()),
            next_stopper: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn activity(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Activity>> {
        // Each critical section is one map operation: a poisoned lock still
        // holds a consistent map.
        self.activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn touch(&self, id: &SessionId, in_flight_delta: isize) {
        if let Some(a) = self.activity().get_mut(id) {
            a.last = Instant::now();
            a.in_flight = a.in_flight.saturating_add_signed(in_flight_delta);
        }
    }

    fn stoppers(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, tokio::sync::oneshot::Sender<()>>> {
        // One map operation per critical section.
        self.stoppers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ends every request in flight with a JSON-RPC error reply ("the
    /// server stopped"); for shutdown, before rmcp closes the streams.
    pub fn answer_in_flight(&self) -> usize {
        let all: Vec<_> = self.stoppers().drain().collect();
        let n = all.len();
        for (_, tx) in all {
            let _ = tx.send(());
        }
        n
    }

    /// Whether `id` is an open session.
    pub fn is_open(&self, id: &str) -> bool {
        self.activity().contains_key(id)
    }

    /// Registers request `rid` in flight in session `id`; false when one
    /// with that id already is.
    fn claim_id(&self, id: &SessionId, rid: &RequestId) -> bool {
        match self.activity().get_mut(id) {
            Some(a) => a.ids.insert(rid.clone()),
            None => true,
        }
    }

    fn release_id(&self, id: &SessionId, rid: &RequestId) {
        if let Some(a) = self.activity().get_mut(id) {
            a.ids.remove(rid);
        }
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.activity().len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes sessions idle for longer than the limit, until `stop`.
    pub async fn reap_idle(self: Arc<Self>, stop: CancellationToken) {
        // Check often enough that a session outlives its limit by at most a
        // quarter of it (and by at most 30 s).
        let period = (self.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let expired: Vec<SessionId> = self
                .activity()
                .iter()
                .filter(|(_, a)| a.in_flight == 0 && a.last.elapsed() >= self.idle)
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                let _ = self.end(&id, "idle").await;
            }
        }
    }

    /// Ends a session: rmcp's side, then its sandbox. Idempotent.
    async fn end(&self, id: &SessionId, why: &str) -> Result<(), LocalSessionManagerError> {
        let result = self.inner.close_session(id).await;
        let removed = self.activity().remove(id);
        if let Some(a) = removed {
            info!(
                session = %a.tag, why,
                lived_s = a.opened.elapsed().as_secs(),
                "session ended"
            );
            self.sandboxes
                .release(&SandboxKey::Session(id.to_string()), why)
                .await;
        }
        result
    }
}

/// Decrements a session's in-flight count when a response stream is done
/// (delivered, or dropped by a client that went away).
struct InFlight {
    sessions: Arc<Sessions>,
    id: SessionId,
    /// The request's id, registered in the session while it runs.
    request: Option<RequestId>,
    /// Its entry in `stoppers`.
    stopper: Option<u64>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.sessions.touch(&self.id, -1);
        if let Some(rid) = &self.request {
            self.sessions.release_id(&self.id, rid);
        }
        if let Some(k) = self.stopper {
            self.sessions.stoppers().remove(&k);
        }
    }
}

/// rmcp calls the manager through an `Arc`; implementing the trait for
/// `Arc<Sessions>` lets a response stream hold the manager alive.
#[derive(Debug, Clone)]
pub struct SharedSessions(pub Arc<Sessions>);

impl SessionManager for SharedSessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.0.inner.create_session().await?;
        // The sandbox's tag, so logs and container labels name it alike.
        let tag = self.0.sandboxes.open(&SandboxKey::Session(id.to_string()));
        info!(session = %tag, "session opened");
        let now = Instant::now();
        self.0.activity().insert(
            id.clone(),
            Activity {
                tag,
                opened: now,
                last: now,
                in_flight: 0,
                ids: HashSet::new(),
            },
        );
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.0.touch(id, 0);
        self.0.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.0.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.0.end(id, "closed").await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let request = match &message {
            ClientJsonRpcMessage::Request(r) => Some(r.id.clone()),
            _ => None,
        };
        if let Some(rid) = &request
            && !self.0.claim_id(id, rid)
        {
            let reply = super::replies::event(super::replies::duplicate_id(rid.clone()));
            return Ok(futures::future::Either::Right(futures::stream::iter([
                reply,
            ])));
        }
        self.0.touch(id, 1);
        let stop = request.as_ref().map(|_| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let k = self
                .0
                .next_stopper
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.stoppers().insert(k, tx);
            (k, rx)
        });
        let (stopper, stop_rx) = match stop {
            Some((k, rx)) => (Some(k), Some(rx)),
            None => (None, None),
        };
        let guard = InFlight {
            sessions: self.0.clone(),
            id: id.clone(),
            request: request.clone(),
            stopper,
        };
        // On error the guard drops here and undoes the count.
        let stream = self.0.inner.create_stream(id, message).await?;
        let stream = stream.map(move |m| {
            let _keep = &guard;
            m
        });
        Ok(futures::future::Either::Left(match (request, stop_rx) {
            (Some(rid), Some(rx)) => {
                futures::future::Either::Left(super::replies::Answered::new(stream, rid, rx))
            }
            _ => futures::future::Either::Right(stream),
        }))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.0.touch(id, 0);
        self.0.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        // Opening the GET stream counts as activity; keeping it open does not.
        self.0.touch(id, 0);
        self.0.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.0.touch(id, 0);
        self.0.inner.resume(id, last_event_id).await
    }
}
