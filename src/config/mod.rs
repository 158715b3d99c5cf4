//! `Config`: the only reader of command-line flags and environment; validated once.
//! The value types and their parsers are in `values.rs`; the ssh options and
//! the build-image subcommand's arguments in `subcommands.rs`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::podman::{Endpoint, EndpointError};
pub use crate::sandbox::cgroup::CgroupParent;

mod subcommands;
mod values;

pub use subcommands::{BuildImageArgs, SshArgs};
pub use values::{BindMount, DEFAULT_USERNS, Secret, UsernsMode};
use values::{endpoint_of, parse_cap, parse_cpus, parse_secret, parse_size, volume_name};

/// pod_exec_mcp: an MCP server that gives each client session its own
/// Podman container and a `shell_exec` tool to run commands in it.
#[derive(Debug, Clone, Parser)]
#[command(name = "pod_exec_mcp", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "MCP_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one; the chosen address is logged).
    #[arg(long, env = "MCP_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Podman API address: unix:///path/podman.sock, tcp://host:port or
    /// ssh://user@host[:port]/path/podman.sock. Default:
    /// $XDG_RUNTIME_DIR/podman/podman.sock if it exists, else
    /// /run/podman/podman.sock.
    #[arg(long, env = "CONTAINER_HOST")]
    pub container_host: Option<String>,

    /// How ssh:// endpoints are reached.
    #[command(flatten)]
    pub ssh: SshArgs,

    /// Image each session's container runs.
    #[arg(
        long,
        env = "POD_EXEC_IMAGE",
        default_value = "localhost/pod_exec_mcp_base:latest"
    )]
    pub image: String,

    /// Seconds a session may stay idle before it and its container are
    /// removed.
    #[arg(long, env = "POD_EXEC_IDLE_TIMEOUT", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,

    /// Network of session containers: "default" (Podman's default network,
    /// outbound access) or "none" (loopback only).
    #[arg(long, env = "POD_EXEC_NETWORK", default_value = "default", value_parser = ["default", "none"])]
    pub network: String,

    /// Memory limit of each session container in bytes, with an optional
    /// k/m/g suffix; 0 for none.
    #[arg(long, env = "POD_EXEC_MEMORY", default_value = "2g", value_parser = parse_size)]
    pub memory: u64,

    /// Maximum number of processes in each session container; 0 for none.
    #[arg(long, env = "POD_EXEC_PIDS_LIMIT", default_value_t = 1024)]
    pub pids_limit: u32,

    /// Default time limit of a call in seconds; at the deadline every
    /// process the call started is killed.
    #[arg(long, env = "POD_EXEC_TIMEOUT", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    /// Largest `timeout` a call may ask for, in seconds.
    #[arg(long, env = "POD_EXEC_MAX_TIMEOUT", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_timeout: u64,

    /// Calls one session may run at the same time; more are refused.
    #[arg(long, env = "POD_EXEC_MAX_CONCURRENT_PER_SESSION", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_concurrent_per_session: u64,

    /// Calls of one session that may wait (first come, first served) when
    /// POD_EXEC_MAX_CONCURRENT_PER_SESSION already run; more are refused.
    #[arg(long, env = "POD_EXEC_MAX_QUEUED_PER_SESSION", default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=4096))]
    pub max_queued_per_session: u64,

    /// The resident executor: "on" runs calls through one long-lived agent
    /// per sandbox (about a millisecond a call); "off" runs one libpod exec
    /// per call (about 85 ms). With "on", a Podman or image where the agent
    /// cannot run falls back to "off", said once in the log.
    #[arg(long, env = "POD_EXEC_EXECUTOR", default_value = "on", value_parser = ["on", "off"])]
    pub executor: String,

    /// The named volume that carries the executor into sandboxes (mounted
    /// read-only). Default `pod-exec-mcp-executor-<agent hash>`, created
    /// and filled on first use; name one to use a volume provisioned
    /// beforehand (it is filled when it lacks the agent).
    #[arg(long, env = "POD_EXEC_EXECUTOR_VOLUME", value_parser = volume_name)]
    pub executor_volume: Option<String>,

    /// Seconds between reconciliations of this instance's containers with
    /// its sandboxes: a container no sandbox holds (a removal that failed)
    /// is removed at the second sweep that finds it.
    #[arg(long, env = "POD_EXEC_SWEEP_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub sweep_interval: u64,

    /// Output kept per call, in characters: longer output keeps its head and
    /// its tail with a marker between them.
    #[arg(long, env = "POD_EXEC_MAX_OUTPUT", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(200..=100_000_000))]
    pub max_output: u64,

    /// Started containers kept ready for new sessions (0: none). A session's
    /// first call then skips container create+start; pooled containers are
    /// labelled kind=pool rather than with their session.
    #[arg(long, env = "POD_EXEC_WARM_POOL", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=64))]
    pub warm_pool: u64,

    /// CPUs each session container may use (fractional, e.g. 0.5); 0 for
    /// no limit. A CFS quota: a busy sandbox (a fork bomb, a build) cannot
    /// starve the other sandboxes or the server.
    #[arg(long, env = "POD_EXEC_CPUS", default_value_t = 1.0, value_parser = parse_cpus)]
    pub cpus: f64,

    /// Where each session container's cgroup goes, which decides the share
    /// of a busy host's CPU sandboxes compete for: "auto" (on a rootful
    /// cgroupfs Podman, each sandbox at the top of the hierarchy, weighing
    /// like one host process instead of all sandboxes together weighing as
    /// one; Podman's default elsewhere), "podman" (Podman's default), an
    /// absolute cgroupfs path, or a systemd slice.
    #[arg(long, env = "POD_EXEC_CGROUP_PARENT", default_value = "auto", value_parser = CgroupParent::parse)]
    pub cgroup_parent: CgroupParent,

    /// Open-file limit (RLIMIT_NOFILE, soft and hard) of each session
    /// container; 0 leaves Podman's default. Must not exceed the hard limit
    /// Podman itself runs with.
    #[arg(long, env = "POD_EXEC_NOFILE", default_value_t = 4096)]
    pub nofile: u64,

    /// Capabilities added back on top of the minimal set every sandbox gets
    /// (comma-separated, with or without the CAP_ prefix, e.g. NET_RAW).
    #[arg(long, env = "POD_EXEC_CAP_ADD", value_delimiter = ',', value_parser = parse_cap)]
    pub cap_add: Vec<String>,

    /// User namespace of session containers under a rootful Podman:
    /// "map:HOST_START:SIZE" (container uid/gid 0.. run as host
    /// HOST_START..), "auto" (Podman picks a distinct range per container;
    /// needs /etc/subuid and /etc/subgid entries for user `containers`;
    /// falls back to the default map with a warning), or "host" (no user
    /// namespace: sandbox root is host root). Ignored under rootless
    /// Podman, which is user-namespaced already.
    #[arg(long, env = "POD_EXEC_USERNS", default_value = DEFAULT_USERNS, value_parser = UsernsMode::parse)]
    pub userns: UsernsMode,

    /// Mount each session container's root filesystem read-only; /tmp and
    /// /work become writable tmpfs.
    #[arg(long, env = "POD_EXEC_READ_ONLY_ROOT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub read_only_root: bool,

    /// Host directories bind-mounted into every session container, as
    /// SRC:DST (read-only) or SRC:DST:rw; repeatable, or comma-separated in
    /// the environment. Both paths absolute, no "..".
    #[arg(long = "mount", env = "POD_EXEC_MOUNTS", value_delimiter = ',', value_parser = BindMount::parse)]
    pub mounts: Vec<BindMount>,

    /// User commands run as in session containers ("1000:1000" or a name
    /// the image knows); default the image's user (root). /work is then a
    /// tmpfs every user can write.
    #[arg(long, env = "POD_EXEC_USER")]
    pub user: Option<String>,

    /// Extra Host header values accepted (comma-separated) besides
    /// localhost, 127.0.0.1, ::1 and the listen address; "*" accepts any
    /// (only behind a proxy that checks Host itself).
    #[arg(long, env = "POD_EXEC_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Extra browser origins accepted (comma-separated, e.g.
    /// https://app.example.com:443 or http://tool.local:*) besides loopback
    /// pages (http://localhost:*, http://127.0.0.1:*, http://[::1]:*). A request
    /// with any other `Origin` gets 403; "*" accepts any. Requests without an
    /// `Origin` (non-browser clients) are not affected.
    #[arg(long, env = "POD_EXEC_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// The bearer token clients must send (`Authorization: Bearer <token>`).
    /// Prefer the environment variable or --auth-token-file: a flag's value
    /// is visible to other local users in the process list.
    #[arg(long, env = "POD_EXEC_AUTH_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub auth_token: Option<Secret>,

    /// File holding the one bearer token (surrounding whitespace ignored).
    #[arg(long, env = "POD_EXEC_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// File of named tokens, one `NAME:TOKEN` a line (`#` comments). The
    /// name is the caller's identity in logs and the audit log.
    #[arg(long, env = "POD_EXEC_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,

    /// Serve without authentication on a non-loopback address. Anyone who
    /// reaches the port can then run commands on this Podman.
    #[arg(long, env = "POD_EXEC_INSECURE_NO_AUTH", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_no_auth: bool,

    /// Live sandboxes (containers) at most; one more is refused with a tool
    /// error naming this limit.
    #[arg(long, env = "POD_EXEC_MAX_SESSIONS", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_sessions: u64,

    /// Command policy: "strict" (built-in and configured rules refuse
    /// dangerous commands) or "permissive" (no checks). A guardrail, not the
    /// boundary: the container is.
    #[arg(long, env = "POD_EXEC_SECURITY_MODE", default_value = "strict", value_parser = ["strict", "permissive"])]
    pub security_mode: String,

    /// YAML rules file in k8s-mcp-server's format (dangerous_commands,
    /// safe_patterns, regex_rules; keyed by tool, `shell` for shell_exec).
    #[arg(long, env = "POD_EXEC_SECURITY_CONFIG")]
    pub security_config: Option<PathBuf>,

    /// Non-destructive mode: tools that change state outside the sandbox are
    /// not offered, the destructive rules apply in every mode, and sandboxes
    /// get a read-only root and mounts with tmpfs scratch only.
    #[arg(long, env = "POD_EXEC_READ_ONLY", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub read_only: bool,

    /// Append one JSON line per tool call (time, caller, sandbox, tool,
    /// command, retval, duration, refusing rule) to this file. Command text
    /// goes only there, never to the ordinary log.
    #[arg(long, env = "POD_EXEC_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,

    /// CLI profiles to enable (comma-separated in the variable): `k8s`
    /// (kubectl, helm, istioctl, argocd) or a profile of
    /// POD_EXEC_PROFILES_FILE. Each CLI gets execute_<tool> and
    /// describe_<tool> tools.
    #[arg(long = "profile", env = "POD_EXEC_PROFILES", value_delimiter = ',')]
    pub profiles: Vec<String>,

    /// YAML file declaring further CLI profiles (`profiles: NAME: tools:
    /// TOOL: {description, image, help_flag}`).
    #[arg(long, env = "POD_EXEC_PROFILES_FILE")]
    pub profiles_file: Option<PathBuf>,

    /// Kubeconfig file or directory mounted read-only into every sandbox
    /// when the k8s profile is on (default ~/.kube).
    #[arg(long, env = "POD_EXEC_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubernetes context added as --context to kubectl and istioctl
    /// commands that give none (default: the kubeconfig's current context).
    #[arg(long, env = "K8S_CONTEXT")]
    pub k8s_context: Option<String>,

    /// Namespace added as --namespace to kubectl and istioctl commands on
    /// namespaced resources that give none and no -A (empty: none).
    #[arg(long, env = "K8S_NAMESPACE", default_value = "default")]
    pub k8s_namespace: String,

    /// Seconds a sandbox made by `sandbox_create` may stay unused before it
    /// is removed (its handle then gets the "expired" error). Counted across
    /// server restarts.
    #[arg(long, env = "POD_EXEC_SANDBOX_TTL", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub sandbox_ttl: u64,

    /// When POD_EXEC_MAX_SESSIONS sandboxes live, the least recently used
    /// one with no call in flight and idle at least this many seconds is
    /// removed to make room; only when none qualifies is a new one refused.
    #[arg(long, env = "POD_EXEC_EVICT_AFTER", default_value_t = 60)]
    pub evict_after: u64,

    /// How clients reach the server: "http" (streamable HTTP at /mcp) or
    /// "stdio" (one client on stdin/stdout, logs on stderr; its sandbox is
    /// removed when stdin closes).
    #[arg(long, env = "POD_EXEC_TRANSPORT", default_value = "http", value_parser = ["http", "stdio"])]
    pub transport: String,

    /// Also serve the deprecated HTTP+SSE transport (GET /sse, POST
    /// /messages?sessionId=...) for clients that speak only it.
    #[arg(long, env = "POD_EXEC_SSE", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub sse: bool,
}

impl Config {
    /// The Podman endpoint: CONTAINER_HOST or the default local socket.
    ///
    /// # Errors
    /// CONTAINER_HOST names a form the client cannot use.
    pub fn endpoint(&self) -> Result<Endpoint, EndpointError> {
        endpoint_of(self.container_host.as_deref())
    }

    /// The listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// Idle lifetime of a handle sandbox.
    pub fn sandbox_ttl(&self) -> Duration {
        Duration::from_secs(self.sandbox_ttl)
    }

    /// Least idleness before a sandbox may be evicted for capacity.
    pub fn evict_after(&self) -> Duration {
        Duration::from_secs(self.evict_after)
    }

    /// Idle expiry of a session.
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_timeout)
    }

    /// The time limit for a call that asked for `requested` seconds: the
    /// default when absent, never above the maximum.
    pub fn call_timeout(&self, requested: Option<f64>) -> Duration {
        let max = self.max_timeout as f64;
        let secs = requested.unwrap_or(self.timeout as f64).min(max);
        Duration::from_secs_f64(secs.max(0.001))
    }

    /// Host header values to accept, or `None` for any.
    pub fn host_allowlist(&self) -> Option<Vec<String>> {
        if self.allowed_hosts.iter().any(|h| h.trim() == "*") {
            return None;
        }
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        if !self.host.is_unspecified() {
            hosts.push(self.host.to_string());
        }
        hosts.extend(
            self.allowed_hosts
                .iter()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty()),
        );
        Some(hosts)
    }
}

impl Config {
    /// Browser origins to accept, or `None` for any. Loopback pages are
    /// always accepted: a page served from this machine is local code.
    pub fn origin_allowlist(&self) -> Option<Vec<String>> {
        if self.allowed_origins.iter().any(|o| o.trim() == "*") {
            return None;
        }
        let mut origins: Vec<String> = [
            "http://localhost:*",
            "https://localhost:*",
            "http://127.0.0.1:*",
            "https://127.0.0.1:*",
            "http://[::1]:*",
            "https://[::1]:*",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        origins.extend(
            self.allowed_origins
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty()),
        );
        Some(origins)
    }

    /// Whether the listen address is reachable from this machine only.
    pub fn listens_on_loopback(&self) -> bool {
        self.host.is_loopback()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("64kb"), Ok(64 << 10));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999g").is_err());
    }

    #[test]
    fn defaults_and_env_names_in_help() {
        let help = {
            use clap::CommandFactory;
            Config::command().render_long_help().to_string()
        };
        for name in [
            "MCP_HOST",
            "MCP_PORT",
            "CONTAINER_HOST",
            "POD_EXEC_IMAGE",
            "POD_EXEC_IDLE_TIMEOUT",
            "POD_EXEC_NETWORK",
            "POD_EXEC_MEMORY",
            "POD_EXEC_PIDS_LIMIT",
            "POD_EXEC_MAX_OUTPUT",
            "POD_EXEC_ALLOWED_HOSTS",
            "POD_EXEC_WARM_POOL",
            "POD_EXEC_TIMEOUT",
            "POD_EXEC_MAX_TIMEOUT",
            "POD_EXEC_MAX_CONCURRENT_PER_SESSION",
            "POD_EXEC_MAX_QUEUED_PER_SESSION",
            "POD_EXEC_EXECUTOR",
            "POD_EXEC_SWEEP_INTERVAL",
            "POD_EXEC_CPUS",
            "POD_EXEC_CGROUP_PARENT",
            "POD_EXEC_NOFILE",
            "POD_EXEC_CAP_ADD",
            "POD_EXEC_USERNS",
            "POD_EXEC_READ_ONLY_ROOT",
            "POD_EXEC_MOUNTS",
            "POD_EXEC_USER",
        ] {
            assert!(
                help.contains(&format!("[env: {name}")),
                "{name} missing:\n{help}"
            );
        }
        let c = Config::try_parse_from(["pod_exec_mcp"]).unwrap();
        assert_eq!(c.listen_addr().to_string(), "127.0.0.1:8000");
        assert_eq!(c.idle(), Duration::from_secs(1800));
    }

    #[test]
    fn call_timeout_defaults_and_caps() {
        let c = Config::try_parse_from(["x", "--timeout", "10", "--max-timeout", "60"]).unwrap();
        assert_eq!(c.call_timeout(None), Duration::from_secs(10));
        assert_eq!(c.call_timeout(Some(2.5)), Duration::from_millis(2500));
        assert_eq!(c.call_timeout(Some(1e9)), Duration::from_secs(60));
    }

    #[test]
    fn host_allowlist() {
        let c =
            Config::try_parse_from(["x", "--host", "0.0.0.0", "--allowed-hosts", "srv,srv:8000"])
                .unwrap();
        assert_eq!(
            c.host_allowlist().unwrap(),
            vec!["localhost", "127.0.0.1", "::1", "srv", "srv:8000"]
        );
        let c = Config::try_parse_from(["x", "--allowed-hosts", "*"]).unwrap();
        assert!(c.host_allowlist().is_none());
    }

    #[test]
    fn hardening_defaults() {
        let c = Config::try_parse_from(["x"]).unwrap();
        assert_eq!(c.cpus, 1.0);
        assert_eq!(c.cgroup_parent, CgroupParent::Auto);
        let c = Config::try_parse_from(["x", "--cgroup-parent", "/pod_exec_mcp"]).unwrap();
        assert_eq!(c.cgroup_parent, CgroupParent::Path("/pod_exec_mcp".into()));
        assert!(Config::try_parse_from(["x", "--cgroup-parent", "relative"]).is_err());
        let c = Config::try_parse_from(["x"]).unwrap();
        assert_eq!(c.nofile, 4096);
        assert!(c.cap_add.is_empty());
        assert_eq!(
            c.userns,
            UsernsMode::Map {
                host_start: 1_000_000_000,
                size: 65536
            }
        );
        assert_eq!(c.userns, UsernsMode::default_map());
        assert!(!c.read_only_root);
        assert!(c.mounts.is_empty());
        assert_eq!(c.user, None);
    }

    #[test]
    fn hardening_flags() {
        let c = Config::try_parse_from([
            "x",
            "--cpus",
            "0.5",
            "--nofile",
            "1024",
            "--cap-add",
            "net_raw,CAP_SYS_PTRACE",
            "--userns",
            "auto",
            "--read-only-root",
            "--mount",
            "/srv/data:/data",
            "--mount",
            "/srv/out:/out:rw",
            "--user",
            "1000:1000",
        ])
        .unwrap();
        assert_eq!(c.cpus, 0.5);
        assert_eq!(c.nofile, 1024);
        assert_eq!(c.cap_add, ["NET_RAW", "SYS_PTRACE"]);
        assert_eq!(c.userns, UsernsMode::Auto);
        assert!(c.read_only_root);
        assert_eq!(
            c.mounts,
            [
                BindMount {
                    source: "/srv/data".into(),
                    destination: "/data".into(),
                    writable: false
                },
                BindMount {
                    source: "/srv/out".into(),
                    destination: "/out".into(),
                    writable: true
                }
            ]
        );
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        let c = Config::try_parse_from(["x", "--read-only-root", "false", "--cpus", "0"]).unwrap();
        assert!(!c.read_only_root);
        assert_eq!(c.cpus, 0.0);
    }

    #[test]
    fn userns_modes() {
        assert_eq!(UsernsMode::parse("host"), Ok(UsernsMode::Host));
        assert_eq!(UsernsMode::parse(" AUTO "), Ok(UsernsMode::Auto));
        assert_eq!(
            UsernsMode::parse("map:100000:65536"),
            Ok(UsernsMode::Map {
                host_start: 100_000,
                size: 65536
            })
        );
        for bad in [
            "",
            "private",
            "map:",
            "map:100000",
            "map:x:65536",
            "map:0:65536",
            "map:100000:1000",
            "map:4294967000:65536",
        ] {
            assert!(UsernsMode::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bind_mounts_are_validated() {
        assert_eq!(
            BindMount::parse("/a:/b:ro"),
            Ok(BindMount {
                source: "/a".into(),
                destination: "/b".into(),
                writable: false
            })
        );
        for bad in [
            "/a",
            "a:/b",
            "/a:b",
            "/a/../etc:/b",
            "/a:/b/..",
            "/a:/",
            "/a:/b:rx",
            "/a:/b:rw:x",
        ] {
            let e = BindMount::parse(bad);
            assert!(e.is_err(), "{bad:?} accepted: {e:?}");
        }
        let e = Config::try_parse_from(["x", "--mount", "rel:/b"]).unwrap_err();
        assert!(e.to_string().contains("not an absolute path"), "{e}");
        // From the environment, comma-separated.
        let e = Config::try_parse_from(["x", "--mount", "/a:/b,/c/../d:/e"]).unwrap_err();
        assert!(e.to_string().contains(".."), "{e}");
    }

    #[test]
    fn cpus_and_caps_are_validated() {
        for bad in ["-1", "NaN", "inf", "two", "5000"] {
            assert!(parse_cpus(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "ALL", "cap_all", "NET RAW", "net-raw"] {
            assert!(parse_cap(bad).is_err(), "{bad:?}");
        }
    }
}
