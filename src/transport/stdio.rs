//! stdio: one client on stdin/stdout, as desktop clients (Claude Desktop's
//! local configuration) launch servers. One process, one session, one
//! sandbox (plus any handles it makes); stdout carries only the protocol
//! (logs go to stderr); the sandboxes go when stdin closes or a signal
//! arrives. rmcp answers `server/discover` and serves either protocol
//! generation (a handshake, or 2026-07-28 requests without one).

use std::sync::Arc;

use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::mcp::{PodExecServer, Shared};
use crate::sandbox::{SandboxKey, SandboxManager};

/// Serves one client on this process's stdin/stdout until stdin closes or
/// `shutdown` is cancelled, then releases the session's sandbox.
pub async fn serve(shared: Arc<Shared>, sandboxes: SandboxManager, shutdown: CancellationToken) {
    // Not a secret here (nothing else can reach this process's stdin), but
    // random like every session key.
    let session = format!("stdio-{}", crate::random_hex(16));
    let key = SandboxKey::Session(session.clone());
    let tag = sandboxes.open(&key);
    info!(session = %tag, "serving MCP on stdio");
    let handler = PodExecServer::for_session(shared, &session);
    let ct = shutdown.child_token();
    let why = tokio::select! {
        served = handler.serve_with_ct(rmcp::transport::stdio(), ct.clone()) => match served {
            Ok(running) => {
                match running.waiting().await {
                    Ok(reason) => format!("{reason:?}"),
                    Err(e) => format!("service task failed: {e}"),
                }
            }
            // E.g. stdin closed before any request.
            Err(e) => {
                warn!("stdio: the client did not start a session: {e}");
                "no session".to_owned()
            }
        },
        _ = shutdown.cancelled() => "signal".to_owned(),
    };
    ct.cancel();
    // A signal also ends the service (its token is a child of shutdown).
    let (why, release) = if shutdown.is_cancelled() {
        ("signal".to_owned(), "signal")
    } else {
        (why, "stdio closed")
    };
    info!(session = %tag, why, "stdio client gone");
    sandboxes.release(&key, release).await;
}
