//! Start-up (fail-fast checks), the HTTP listener serving MCP at `/mcp`, and
//! the one shutdown path: a signal cancels the root token, in-flight work
//! ends, every container of this instance is removed, the process exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::audit::AuditLog;
use crate::auth::{AuthConfigError, Authenticator};
use crate::config::Config;
use crate::mcp::PodExecServer;
use crate::mcp::session::{Sessions, SharedSessions};
use crate::podman::{Endpoint, EndpointError, PodmanClient, PodmanError};
use crate::policy::{Mode, Policy, RuleFile};
use crate::sandbox::owner::Identity;
use crate::sandbox::spec::SandboxTemplate;
use crate::sandbox::{Limits, SandboxManager};
use crate::transport::http::{self as http_transport, MCP_PATH};
use crate::transport::sse::{MESSAGES_PATH, SSE_PATH, SseHub};

/// How long start-up checks may wait for Podman: start-up must fail within
/// 2 s when Podman is not there.
const STARTUP_CHECK_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long each start-up call may take once Podman answered a ping.
const STARTUP_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Budget for removing containers and closing connections on shutdown.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(4);

/// Why the server could not start; each is one line a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// CONTAINER_HOST is malformed.
    #[error("{0}")]
    Endpoint(#[from] EndpointError),
    /// The ssh:// forward could not be set up.
    #[error("{0}")]
    Ssh(#[from] Box<crate::podman::ssh::SshError>),
    /// The token configuration is unusable.
    #[error("{0}")]
    Auth(#[from] AuthConfigError),
    /// A non-loopback address without a token.
    #[error(
        "refusing to serve {addr} without authentication: anyone who reaches it could run \
         commands on this Podman. Set POD_EXEC_AUTH_TOKEN (or --auth-token-file / \
         --auth-tokens-file), listen on 127.0.0.1, or pass --insecure-no-auth"
    )]
    NoAuth {
        /// The listen address.
        addr: SocketAddr,
    },
    /// A CLI profile is unusable.
    #[error("{0}")]
    Profiles(#[from] crate::profiles::ProfileError),
    /// The command policy's rule file is unusable.
    #[error("{0}")]
    Policy(#[from] crate::policy::PolicyError),
    /// The audit log cannot be opened.
    #[error("cannot open the audit log {}: {source}", path.display())]
    Audit {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// POD_EXEC_CGROUP_PARENT does not suit this Podman.
    #[error("{0}")]
    CgroupParent(String),
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
    /// None over stdio.
    listener: Option<TcpListener>,
    sandboxes: SandboxManager,
    sessions: Arc<Sessions>,
    auth: Authenticator,
    policy: Policy,
    audit: Option<AuditLog>,
    config: Config,
    profiles: crate::profiles::Profiles,
    /// The ssh:// forward the Podman client dials, kept until shutdown.
    forward: Option<crate::podman::ssh::SshForward>,
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
        let stdio = config.transport == "stdio";
        let auth = Authenticator::from_config(&config)?;
        // Over stdio nothing listens: only the launching process talks to it.
        if auth.is_open() && !config.listens_on_loopback() && !stdio {
            if !config.insecure_no_auth {
                return Err(StartupError::NoAuth { addr });
            }
            warn!(
                %addr,
                "--insecure-no-auth: serving WITHOUT authentication on a non-loopback address; \
                 anyone who reaches it can run commands on this Podman"
            );
        }
        let profiles = crate::profiles::Profiles::from_config(&config)?;
        let policy = profiles.policy(policy_from(&config)?);
        let audit = match &config.audit_log {
            Some(path) => {
                Some(
                    AuditLog::open(path)
                        .await
                        .map_err(|source| StartupError::Audit {
                            path: path.clone(),
                            source,
                        })?,
                )
            }
            None => None,
        };
        let listener = if stdio {
            None
        } else {
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::Bind { addr, source })?,
            )
        };

        let (podman, forward) =
            crate::podman::ssh::connect(endpoint.clone(), &config.ssh.options())
                .await
                .map_err(Box::new)?;
        let quick = podman.clone().with_call_timeout(STARTUP_CHECK_TIMEOUT);
        // Reachability within the short budget; once Podman answers, the
        // checks below get the normal one: version and info run conmon and
        // the runtime (and ask the package manager) on each call, which
        // took 4 s under six concurrent starts here, rootless or not.
        if let Err(e) = quick.ping().await {
            return Err(StartupError::PodmanUnreachable {
                detail: unreachable_detail(&e),
                endpoint,
            });
        }
        let quick = podman.clone().with_call_timeout(STARTUP_CALL_TIMEOUT);
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
        let mut template =
            SandboxTemplate::from_config(&config).with_kubeconfig(profiles.kube_mount().cloned());
        template
            .adapt_to(&quick, &host, &me)
            .await
            .map_err(StartupError::CgroupParent)?;
        let volume = executor_volume(&podman, &config, &template, &me).await;
        let template = template.with_executor_volume(volume);
        info!(
            userns = ?template.hardening().userns(),
            cgroup_parent = template.cgroup_parent().unwrap_or("(Podman's default)"),
            "sandbox confinement"
        );
        let limits = Limits {
            max_output: usize::try_from(config.max_output).unwrap_or(usize::MAX),
            max_calls_per_sandbox: usize::try_from(config.max_concurrent_per_session)
                .unwrap_or(usize::MAX),
            max_sandboxes: usize::try_from(config.max_sessions).unwrap_or(usize::MAX),
            max_queued_per_sandbox: usize::try_from(config.max_queued_per_session)
                .unwrap_or(usize::MAX),
            sandbox_ttl: config.sandbox_ttl(),
            evict_after: config.evict_after(),
            // A stdio server is one client's: its handles go with it.
            handles_survive: !stdio,
        };
        info!(
            mode = %policy.mode(),
            rules_file = config.security_config.as_deref().map(|p| p.display().to_string()),
            read_only = config.read_only,
            "command policy"
        );
        if auth.is_open() {
            info!("authentication: none (loopback only)");
        } else {
            info!(
                identities = auth.identities(),
                "authentication: bearer token"
            );
        }
        let sandboxes = SandboxManager::new(podman, template, me, limits);
        let sessions = Arc::new(Sessions::new(sandboxes.clone(), config.idle()));
        Ok(Server {
            listener,
            sandboxes,
            sessions,
            auth,
            policy,
            audit,
            config,
            profiles,
            forward,
        })
    }

    /// The bound address (useful with port 0); an error over stdio.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.listener {
            Some(l) => l.local_addr(),
            None => Err(std::io::Error::other("serving stdio: no listener")),
        }
    }

    /// Serves until `shutdown` is cancelled, then removes every container
    /// of this instance and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let Server {
            listener,
            sandboxes,
            sessions,
            auth,
            policy,
            audit,
            config,
            profiles,
            forward,
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
        tokio::spawn(sandboxes.clone().sweep_every(
            Duration::from_secs(config.sweep_interval),
            shutdown.child_token(),
        ));
        tokio::spawn(
            sandboxes
                .clone()
                .expire_handles_every(shutdown.child_token()),
        );
        sandboxes.start_pool(usize::try_from(config.warm_pool).unwrap_or(0));

        let shared =
            PodExecServer::shared(sandboxes.clone(), config.clone(), policy, audit, profiles);
        let Some(listener) = listener else {
            crate::transport::stdio::serve(shared, sandboxes.clone(), shutdown.clone()).await;
            info!("shutting down: removing containers");
            if tokio::time::timeout(SHUTDOWN_BUDGET, sandboxes.shutdown())
                .await
                .is_err()
            {
                warn!("shutdown did not finish within {SHUTDOWN_BUDGET:?}");
            }
            return;
        };
        let sse = config.sse.then(|| {
            SseHub::new(
                shared.clone(),
                sandboxes.clone(),
                shutdown.child_token(),
                config.host_allowlist(),
                config.origin_allowlist(),
            )
        });
        // rmcp's own stop comes after in-flight requests got their error
        // reply (it closes their streams).
        let rmcp_stop = CancellationToken::new();
        let mut http_config =
            StreamableHttpServerConfig::default().with_cancellation_token(rmcp_stop.clone());
        http_config = match config.host_allowlist() {
            Some(hosts) => http_config.with_allowed_hosts(hosts),
            None => http_config.disable_allowed_hosts(),
        };
        http_config = match config.origin_allowlist() {
            Some(origins) => http_config
                .with_allowed_origins(origins)
                .enforce_origin_validation(),
            None => http_config.disable_allowed_origins(),
        };
        let service = StreamableHttpService::new(
            move || Ok(PodExecServer::new(shared.clone())),
            Arc::new(SharedSessions(sessions.clone())),
            http_config,
        );

        if let Ok(addr) = listener.local_addr() {
            info!("serving MCP at http://{addr}{MCP_PATH}");
            if sse.is_some() {
                info!("serving legacy SSE at http://{addr}{SSE_PATH} (POST {MESSAGES_PATH})");
            }
        }
        let graceful =
            http_transport::serve(listener, service, auth, sessions.clone(), sse, shutdown).await;

        info!(
            sessions = sessions.len(),
            "shutting down: removing containers"
        );
        let t = Instant::now();
        let answered = sessions.answer_in_flight();
        if answered > 0 {
            info!(answered, "requests in flight answered with an error");
            // Let those replies reach the sockets before the streams close.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rmcp_stop.cancel();
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
        if let Some(forward) = forward {
            forward.close().await;
        }
        info!(ms = t.elapsed().as_millis() as u64, "stopped");
    }
}

/// The executor's volume in this Podman (filled on first use), or `None`
/// for one exec per call: when configured off, when this build has no
/// agent, or when the volume cannot be provided (said once, here).
async fn executor_volume(
    podman: &PodmanClient,
    config: &Config,
    template: &SandboxTemplate,
    me: &Identity,
) -> Option<String> {
    if config.executor != "on" {
        info!("executor off (POD_EXEC_EXECUTOR=off): one exec per call");
        return None;
    }
    if !crate::executor::AGENT_AVAILABLE {
        warn!("this build has no executor agent: one exec per call");
        return None;
    }
    let name = format!("pod-exec-fill-{}", crate::random_hex(8));
    let helper = template.spec(&name, "executor-fill", "helper", me);
    let volume = config
        .executor_volume
        .clone()
        .unwrap_or_else(|| crate::executor::image::volume_name(crate::executor::AGENT_SHA256_HEX));
    match crate::executor::image::ensure_volume(podman, crate::executor::AGENT, &volume, helper)
        .await
    {
        Ok(volume) => {
            info!(%volume, "executor on");
            Some(volume)
        }
        Err(e) => {
            warn!("cannot provide the executor volume ({e}): one exec per call");
            None
        }
    }
}

/// The command policy the configuration asks for; the rule file is read
/// and checked now, so a bad one stops start-up with its line.
fn policy_from(config: &Config) -> Result<Policy, StartupError> {
    // clap admits only "strict" and "permissive".
    let mode = config.security_mode.parse().unwrap_or(Mode::Strict);
    let rules = config
        .security_config
        .as_deref()
        .map(RuleFile::load)
        .transpose()?;
    Ok(Policy::new(mode, rules, config.read_only))
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
