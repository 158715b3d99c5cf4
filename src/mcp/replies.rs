//! Replies the protocol owes a client that rmcp's session mode would not
//! send: an error for a request whose stream ends without its response (the
//! server stopping mid-call), and an error for a second request with the
//! id of one still in flight in the same session (rmcp would leave one of
//! them unanswered, its stream open forever).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use rmcp::ErrorData;
use rmcp::model::{ErrorCode, RequestId, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::ServerSseMessage;

/// One event carrying `message`.
pub fn event(message: ServerJsonRpcMessage) -> ServerSseMessage {
    let mut m = ServerSseMessage::default();
    m.message = Some(Arc::new(message));
    m
}

/// The error for a duplicate request id.
pub fn duplicate_id(id: RequestId) -> ServerJsonRpcMessage {
    ServerJsonRpcMessage::error(
        ErrorData::invalid_request(
            "a request with this id is already in flight in this session; use a new id",
            None,
        ),
        Some(id),
    )
}

/// The error for a request beyond what one stream may have unanswered.
pub fn too_many_in_flight(id: RequestId) -> ServerJsonRpcMessage {
    ServerJsonRpcMessage::error(
        ErrorData::invalid_request(
            "too many requests in flight in this session; wait for answers",
            None,
        ),
        Some(id),
    )
}

/// A response stream that ends with an error for `id` when it ends
/// without the response, or when the server stops (`stop` fires) before
/// the response came: the client gets an answer instead of a stream cut
/// short (which it would wait to resume).
pub struct Answered<S> {
    inner: Pin<Box<S>>,
    id: RequestId,
    stop: tokio::sync::oneshot::Receiver<()>,
    answered: bool,
    done: bool,
}

impl<S> Answered<S> {
    /// Wraps the response stream of request `id`.
    pub fn new(inner: S, id: RequestId, stop: tokio::sync::oneshot::Receiver<()>) -> Self {
        Answered {
            inner: Box::pin(inner),
            id,
            stop,
            answered: false,
            done: false,
        }
    }

    fn stopped(&mut self) -> ServerSseMessage {
        self.done = true;
        let error = ErrorData::new(
            ErrorCode::INTERNAL_ERROR,
            "the server stopped before this request was answered; retry against a running \
             server",
            None,
        );
        event(ServerJsonRpcMessage::error(error, Some(self.id.clone())))
    }
}

impl<S: Stream<Item = ServerSseMessage>> Stream for Answered<S> {
    type Item = ServerSseMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(m)) => {
                let ours = match m.message.as_deref() {
                    Some(ServerJsonRpcMessage::Response(r)) => r.id == self.id,
                    Some(ServerJsonRpcMessage::Error(e)) => e.id.as_ref() == Some(&self.id),
                    _ => false,
                };
                if ours {
                    self.answered = true;
                }
                Poll::Ready(Some(m))
            }
            Poll::Ready(None) => {
                if self.answered {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(self.stopped()))
            }
            Poll::Pending => {
                // Only a send means "stop"; a dropped sender does not.
                if !self.answered
                    && matches!(Pin::new(&mut self.stop).poll(cx), Poll::Ready(Ok(())))
                {
                    return Poll::Ready(Some(self.stopped()));
                }
                Poll::Pending
            }
        }
    }
}

impl<S> std::fmt::Debug for Answered<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answered")
            .field("answered", &self.answered)
            .finish_non_exhaustive()
    }
}
