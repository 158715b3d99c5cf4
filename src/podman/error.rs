//! `PodmanError`: every way a libpod call can fail, keeping Podman's own words.

use std::fmt;

use serde::Deserialize;

use super::attach::FrameError;

/// The JSON error body libpod sends: `{"cause", "message", "response"}`.
///
/// All three are kept: `message` is the sentence a user can act on, `cause`
/// is the stable short reason ("no such container"), `response` echoes the
/// HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct ApiError {
    /// HTTP status of the reply (from the status line, not the body).
    #[serde(skip)]
    pub status: u16,
    /// Podman's short reason, e.g. "no such container".
    #[serde(default)]
    pub cause: String,
    /// Podman's full message.
    #[serde(default)]
    pub message: String,
    /// The status code Podman wrote into the body.
    #[serde(default)]
    pub response: Option<i64>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Podman's message usually already ends with the cause; don't repeat it.
        if self.message.is_empty() {
            write!(f, "{} (HTTP {})", self.cause, self.status)
        } else {
            write!(f, "{} (HTTP {})", self.message, self.status)
        }
    }
}

/// Everything that can go wrong talking to libpod.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PodmanError {
    /// The socket or TCP address could not be connected to at all.
    #[error("the Podman API is unreachable at {endpoint}: {source}")]
    Unreachable {
        /// The CONTAINER_HOST form of the endpoint.
        endpoint: String,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// A plain-text 404: the route does not exist (too old a Podman, or not
    /// a Podman API at all).
    #[error(
        "the Podman API has no route {method} {path} (HTTP 404 {body:?}); is this Podman 4.0 or newer?"
    )]
    RouteMissing {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// The first bytes of the plain-text body.
        body: String,
    },
    /// The container, image or exec session does not exist.
    #[error("not found: {0}")]
    NotFound(ApiError),
    /// The object is in a state that does not allow the call (409, or
    /// "container state improper").
    #[error("conflict: {0}")]
    Conflict(ApiError),
    /// Any other error reply from Podman.
    #[error("Podman error: {0}")]
    Api(ApiError),
    /// The connection broke or HTTP itself failed mid-call.
    #[error("HTTP transport error talking to Podman ({context}): {source}")]
    Transport {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The call did not finish in time.
    #[error("the Podman API did not answer {what} within {secs} s")]
    Timeout {
        /// The call.
        what: String,
        /// The limit.
        secs: u64,
    },
    /// A reply Podman sent could not be understood (bad JSON, too large, ...).
    #[error("unexpected reply from Podman to {what}: {detail}")]
    Malformed {
        /// The call.
        what: String,
        /// What was wrong, with a snippet of the body.
        detail: String,
    },
    /// The multiplexed exec stream was corrupt.
    #[error("corrupt exec stream: {0}")]
    Stream(#[from] FrameError),
    /// An image build ran and failed (libpod still answers 200).
    #[error("image build failed: {message}")]
    BuildFailed {
        /// The build's own error line.
        message: String,
        /// The last lines of build output before the error.
        log_tail: String,
    },
}

impl PodmanError {
    /// Classifies an error reply. `body` is the raw body; libpod's JSON shape
    /// is tried first, anything else is kept verbatim (truncated).
    pub(crate) fn from_reply(method: &str, path: &str, status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<ApiError>(body) {
            Ok(mut api) if !(api.cause.is_empty() && api.message.is_empty()) => {
                api.status = status;
                let cause = api.cause.to_ascii_lowercase();
                // Status codes drift between Podman versions (a missing image
                // on create is 500 "image not known" on 4.3, 404 later), so
                // the cause counts too.
                if status == 404 || cause.starts_with("no such") || cause.ends_with("not known") {
                    PodmanError::NotFound(api)
                } else if status == 409 || cause.contains("state improper") {
                    PodmanError::Conflict(api)
                } else {
                    PodmanError::Api(api)
                }
            }
            _ if status == 404 => PodmanError::RouteMissing {
                method: method.to_owned(),
                path: path.to_owned(),
                body: snippet(body),
            },
            _ => PodmanError::Api(ApiError {
                status,
                cause: String::new(),
                message: snippet(body),
                response: None,
            }),
        }
    }

    /// Podman's own error, when the reply carried one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            PodmanError::NotFound(a) | PodmanError::Conflict(a) | PodmanError::Api(a) => Some(a),
            _ => None,
        }
    }

    /// True when the object the call named does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, PodmanError::NotFound(_))
    }

    pub(crate) fn transport(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        PodmanError::Transport {
            context: context.into(),
            source: source.into(),
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, detail: impl Into<String>) -> Self {
        PodmanError::Malformed {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// The first bytes of a body as lossy text, for messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    const MAX: usize = 512;
    let cut = &body[..body.len().min(MAX)];
    let mut s = String::from_utf8_lossy(cut).trim().to_owned();
    if body.len() > MAX {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_404_is_not_found_and_keeps_words() {
        let body = br#"{"cause":"no such container","message":"no container with name or ID \"x\" found: no such container","response":404}"#;
        let e = PodmanError::from_reply("GET", "/v4.0.0/libpod/containers/x/json", 404, body);
        let api = e.api().expect("api error");
        assert!(e.is_not_found());
        assert_eq!(api.cause, "no such container");
        assert_eq!(api.response, Some(404));
        assert!(e.to_string().contains("no container with name or ID"));
    }

    #[test]
    fn plain_text_404_is_route_missing() {
        let e = PodmanError::from_reply("GET", "/libpod/_nope", 404, b"Not Found\n");
        assert!(matches!(e, PodmanError::RouteMissing { ref body, .. } if body == "Not Found"));
    }

    #[test]
    fn missing_image_500_is_not_found_by_cause() {
        // Recorded from podman 4.3.1 (POST /containers/create).
        let body = br#"{"cause":"image not known","message":"localhost/x:latest: image not known","response":500}"#;
        assert!(PodmanError::from_reply("POST", "/c", 500, body).is_not_found());
    }

    #[test]
    fn state_improper_is_conflict() {
        let body = br#"{"cause":"container state improper","message":"can only create exec sessions on running containers: container state improper","response":500}"#;
        assert!(matches!(
            PodmanError::from_reply("POST", "/e", 500, body),
            PodmanError::Conflict(_)
        ));
    }

    #[test]
    fn garbage_body_is_kept_truncated() {
        let body = vec![b'x'; 10_000];
        let e = PodmanError::from_reply("GET", "/p", 500, &body);
        let api = e.api().expect("api");
        assert!(api.message.len() < 600);
        assert_eq!(api.status, 500);
    }
}
