//! Start-up (fail-fast checks), the HTTP listener serving MCP at `/mcp`, and
//! the one shutdown path: a signal cancels the root token, in-flight work
//! ends, every container of this instance is removed, the process exits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::mcp::PodExecServer;
use crate::mcp::session::{Sessions, SharedSessions};
use crate::podman::{Endpoint, EndpointError, PodmanClient, PodmanError};
use crate::sandbox::owner::Identity;
use crate::sandbox::spec::SandboxTemplate;
use crate::sandbox::{Limits, SandboxManager};

/// How long start-up checks may wait for Podman: start-up must fail within
/// 2 s when Podman is not there.
const STARTUP_CHECK_TIMEOUT: Duration = Duration::from_millis(1500);
/// Budget for removing containers and closing connections on shutdown.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(4);
/// The MCP endpoint path.
pub const MCP_PATH: &str = "/mcp";

/// Why the server could not start; each is one line a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// CONTAINER_HOST is malformed.
    #[error("{0}")]
    Endpoint(#[from] EndpointError),
    /// No Podman API answers.
    #[error(
        "cannot reach the Podman API at {endpoint} ({detail}); start it with \
         `podman system service --time=0 {endpoint} &` (rootless: `systemctl --user enable --now podman.socket`), \
         or set CONTAINER_HOST to a running one"
    )]
    PodmanUnreachable {
        /// Where we looked.
        endpoint: Endpoint,
        /// What failed.
        detail: String,
    },
    /// The session image is not in that Podman.
    #[error(
        "image {image} is not present in the Podman at {endpoint}; build it with \
         `podman build -t {image} images/` (from this repository) or set POD_EXEC_IMAGE"
    )]
    ImageMissing {
        /// The image.
        image: String,
        /// The Podman.
        endpoint: Endpoint,
    },
    /// The listen address cannot be bound.
    #[error(
        "cannot listen on {addr}: {source}; choose another with MCP_PORT / --port or MCP_HOST / --host"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
}

/// A started server: bound, checked, serving until `shutdown` is cancelled.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    sandboxes: SandboxManager,
    sessions: Arc<Sessions>,
    config: Config,
}

impl Server {
    /// Binds and checks everything the server needs; fails fast with one
    /// clear line per problem.
    ///
    /// # Errors
    /// See [`StartupError`].
    pub async fn start(config: Config) -> Result<Self, StartupError> {
        let endpoint = config.endpoint()?;
        let addr = config.listen_addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;

        let podman = PodmanClient::new(endpoint.clone());
        let quick = podman.clone().with_call_timeout(STARTUP_CHECK_TIMEOUT);
        let version = match quick.version().await {
            Ok(v) => v,
            Err(e) => {
                return Err(StartupError::PodmanUnreachable {
                    detail: unreachable_detail(&e),
                    endpoint,
                });
            }
        };
        match quick.image_exists(&config.image).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(StartupError::ImageMissing {
                    image: config.image.clone(),
                    endpoint,
                });
            }
            Err(e) => {
                return Err(StartupError::PodmanUnreachable {
                    detail: unreachable_detail(&e),
                    endpoint,
                });
            }
        }
        let host = match quick.info().await {
            Ok(h) => h,
            Err(e) => {
                return Err(StartupError::PodmanUnreachable {
                    detail: unreachable_detail(&e),
                    endpoint,
                });
            }
        };
        let me = Identity::current();
        info!(
            podman = %version.version, api = %version.api_version, %endpoint,
            image = %config.image, instance = %me.instance, rootless = host.rootless,
            "connected to Podman"
        );
        let mut template = SandboxTemplate::from_config(&config);
        template.adapt_to(&quick, &host, &me).await;
        info!(
            userns = ?template.hardening().userns(),
            "sandbox confinement"
        );
        let limits = Limits {
            max_output: usize::try_from(config.max_output).unwrap_or(usize::MAX),
            max_calls_per_sandbox: usize::try_from(config.max_concurrent_per_session)
                .unwrap_or(usize::MAX),
        };
        let sandboxes = SandboxManager::new(podman, template, me, limits);
        let sessions = Arc::new(Sessions::new(sandboxes.clone(), config.idle()));
        Ok(Server {
            listener,
            sandboxes,
            sessions,
            config,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then removes every container
    /// of this instance and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let Server {
            listener,
            sandboxes,
            sessions,
            config,
        } = self;

        // What a crashed predecessor left behind goes, without delaying
        // start-up.
        let reaper = sandboxes.clone();
        tokio::spawn(async move {
            if let Err(e) = reaper.reap_stale().await {
                warn!("could not look for stale containers: {e}");
            }
        });
        tokio::spawn(sessions.clone().reap_idle(shutdown.child_token()));
        sandboxes.start_pool(usize::try_from(config.warm_pool).unwrap_or(0));

        let shared = PodExecServer::shared(sandboxes.clone(), config.clone());
        let mut http_config =
            StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
        http_config = match config.host_allowlist() {
            Some(hosts) => http_config.with_allowed_hosts(hosts),
            None => http_config.disable_allowed_hosts(),
        };
        let service = StreamableHttpService::new(
            move || Ok(PodExecServer::new(shared.clone())),
            Arc::new(SharedSessions(sessions.clone())),
            http_config,
        );

        if let Ok(addr) = listener.local_addr() {
            info!("serving MCP at http://{addr}{MCP_PATH}");
        }
        let graceful = GracefulShutdown::new();
        let builder = ConnBuilder::new(TokioExecutor::new());
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
            let service = service.clone();
            let handler = hyper::service::service_fn(move |req: Request<Incoming>| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(route(&service, req).await) }
            });
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), handler)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        drop(listener);

        info!(
            sessions = sessions.len(),
            "shutting down: removing containers"
        );
        let t = Instant::now();
        let cleanup = async {
            sandboxes.shutdown().await;
            // Open SSE streams and in-flight requests: give them what is
            // left of the budget, then stop waiting.
            let _ = tokio::time::timeout(Duration::from_millis(500), graceful.shutdown()).await;
        };
        if tokio::time::timeout(SHUTDOWN_BUDGET, cleanup)
            .await
            .is_err()
        {
            warn!("shutdown did not finish within {SHUTDOWN_BUDGET:?}");
        }
        info!(ms = t.elapsed().as_millis() as u64, "stopped");
    }
}

type RespBody = BoxBody<Bytes, Infallible>;

async fn route(
    service: &StreamableHttpService<PodExecServer, SharedSessions>,
    req: Request<Incoming>,
) -> Response<RespBody> {
    if req.uri().path() == MCP_PATH {
        let is_delete = req.method() == http::Method::DELETE;
        let mut resp = service.handle(req).await;
        // rmcp ends a session with 202; the Python SDKs accept only 200 or
        // 204 and report anything else as a failed termination.
        if is_delete && resp.status() == StatusCode::ACCEPTED {
            *resp.status_mut() = StatusCode::OK;
        }
        return resp;
    }
    let mut resp = Response::new(
        Full::new(Bytes::from_static(b"not found; the MCP endpoint is /mcp\n")).boxed(),
    );
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}

fn unreachable_detail(e: &PodmanError) -> String {
    match e {
        PodmanError::Unreachable { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
