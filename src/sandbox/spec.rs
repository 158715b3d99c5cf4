//! Turns the server's configuration into a session container's spec and a
//! command into an exec.

use tracing::warn;

use crate::config::{CgroupParent, Config, DEFAULT_USERNS, UsernsMode};
use crate::podman::{
    ContainerSpec, ExecConfig, HostInfo, MemoryLimit, Namespace, PidsLimit, PodmanClient,
    ResourceLimits,
};

use super::hardening::Hardening;
use super::owner::{Identity, labels};

/// What every sandbox container gets, decided once at start-up.
#[derive(Debug, Clone)]
pub struct SandboxTemplate {
    image: String,
    network_none: bool,
    memory: u64,
    pids: u32,
    hardening: Hardening,
    /// The executor's volume, mounted into every sandbox when set.
    executor_volume: Option<String>,
    /// The kubeconfig (k8s profile), mounted read-only when set.
    kube: Option<crate::profiles::KubeMount>,
    /// As configured; [`SandboxTemplate::adapt_to`] resolves it.
    cgroup_choice: CgroupParent,
    /// The parent cgroup in each spec (`None`: Podman's default).
    cgroup_parent: Option<String>,
}

impl SandboxTemplate {
    /// From the validated configuration.
    pub fn from_config(c: &Config) -> Self {
        SandboxTemplate {
            image: c.image.clone(),
            network_none: c.network == "none",
            memory: c.memory,
            pids: c.pids_limit,
            hardening: Hardening::from_config(c),
            executor_volume: None,
            kube: None,
            cgroup_choice: c.cgroup_parent.clone(),
            cgroup_parent: None,
        }
        .with_read_only_mode(c.read_only)
    }

    /// Read-only mode: a read-only root, every bind mount read-only, and
    /// only tmpfs scratch (/tmp, /work), whatever the configuration says.
    pub fn with_read_only_mode(mut self, on: bool) -> Self {
        self.hardening.set_read_only_mode(on);
        self
    }

    /// Mounts the executor's volume (read-only) into every sandbox.
    pub fn with_executor_volume(mut self, volume: Option<String>) -> Self {
        self.executor_volume = volume;
        self
    }

    /// Mounts a kubeconfig read-only into every sandbox, with
    /// `KUBECONFIG` pointing at it (the k8s profile).
    pub fn with_kubeconfig(mut self, kube: Option<crate::profiles::KubeMount>) -> Self {
        self.kube = kube;
        self
    }

    /// Whether sandboxes get the executor.
    pub fn has_executor(&self) -> bool {
        self.executor_volume.is_some()
    }

    /// `spec` with the executor as the container's main process (under the
    /// init, stdin kept open for the server to attach to): starting the
    /// container starts the agent, with no exec of its own. Unchanged when
    /// there is no executor.
    pub fn with_agent(&self, mut spec: ContainerSpec) -> ContainerSpec {
        if let Some(volume) = &self.executor_volume {
            spec.volumes.push(crate::executor::image::volume(volume));
            spec.command = vec![crate::executor::image::AGENT_PATH.into()];
            spec.stdin = Some(true);
        }
        spec
    }

    /// The confinement settings.
    pub fn hardening(&self) -> &Hardening {
        &self.hardening
    }

    /// Adapts to the Podman found at start-up: no uid mapping under
    /// rootless Podman; and when `auto` was asked for, a probe create (the
    /// container is removed at once, never started) checks that Podman has
    /// subordinate ids for it. Without them, sandboxes fall back to the
    /// default fixed mapping, with a warning: still not host root. The
    /// cgroup parent is resolved for this Podman's cgroup manager.
    ///
    /// # Errors
    /// A configured cgroup parent this Podman's cgroup manager does not take.
    pub async fn adapt_to(
        &mut self,
        podman: &PodmanClient,
        host: &HostInfo,
        me: &Identity,
    ) -> Result<(), String> {
        self.cgroup_parent = self.cgroup_choice.resolve(host)?;
        self.hardening.adapt_to(host);
        if self.hardening.userns() != Some(UsernsMode::Auto) {
            return Ok(());
        }
        let name = format!("pod-exec-probe-{}", crate::random_hex(6));
        let spec = self.spec(&name, &crate::random_hex(6), "probe", me);
        match podman.create_container(&spec).await {
            Ok(id) => {
                let _ = podman.remove_container(&id, true).await;
            }
            Err(e) => {
                warn!(
                    "POD_EXEC_USERNS=auto is not available on this Podman ({e}); \
                     it needs /etc/subuid and /etc/subgid entries for user `containers`. \
                     Falling back to {DEFAULT_USERNS}"
                );
                self.hardening.set_userns(Some(UsernsMode::default_map()));
            }
        }
        Ok(())
    }

    /// The parent cgroup each sandbox gets (`None`: Podman's default).
    pub fn cgroup_parent(&self) -> Option<&str> {
        self.cgroup_parent.as_deref()
    }

    /// The image sandboxes run.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// A spec for one sandbox: the image's shell kept alive by `sleep` under
    /// an init (which reaps orphans a command leaves behind), the
    /// confinement of [`Hardening`], limits, and the ownership labels.
    pub fn spec(&self, name: &str, tag: &str, kind: &str, me: &Identity) -> ContainerSpec {
        let mut spec = ContainerSpec {
            name: Some(name.to_owned()),
            image: self.image.clone(),
            command: vec!["sleep".into(), "infinity".into()],
            init: Some(true),
            no_new_privileges: Some(true),
            ..Default::default()
        };
        spec.labels.insert(labels::MANAGED.into(), "true".into());
        spec.labels
            .insert(labels::INSTANCE.into(), me.instance.clone());
        if let Some(owner) = &me.owner {
            spec.labels.insert(labels::OWNER.into(), owner.clone());
        }
        spec.labels.insert(labels::SANDBOX.into(), tag.to_owned());
        spec.labels.insert(labels::KIND.into(), kind.to_owned());
        if self.network_none {
            spec.netns = Some(Namespace {
                nsmode: "none".into(),
            });
        }
        let memory = (self.memory > 0).then(|| MemoryLimit {
            limit: i64::try_from(self.memory).unwrap_or(i64::MAX),
        });
        let pids = (self.pids > 0).then(|| PidsLimit {
            limit: i64::from(self.pids),
        });
        if memory.is_some() || pids.is_some() {
            spec.resource_limits = Some(ResourceLimits {
                memory,
                pids,
                cpu: None,
            });
        }
        self.hardening.apply(&mut spec);
        spec.cgroup_parent = self.cgroup_parent.clone();
        if let Some(k) = &self.kube {
            spec.mounts.push(crate::podman::Mount::bind(
                &k.source.to_string_lossy(),
                &k.destination,
                false,
            ));
            spec.env.extend(k.env().map(|(key, v)| (key.to_owned(), v)));
        }
        spec
    }
}

/// Environment variable that tags every process a call starts (inherited
/// by children, grandchildren, background jobs and setsid'd daemons alike),
/// so the call's processes can be found and killed: libpod 4.x has no exec
/// kill, and killing the exec's PID leaves its children running.
pub const CALL_ENV: &str = "POD_EXEC_CALL";

/// Longest command accepted, in bytes. Linux limits one argv string to
/// 128 KiB and argv + environment to about 2 MiB, so the command travels in
/// chunks that the shell joins again.
pub const MAX_COMMAND_BYTES: usize = 1536 * 1024;
const CHUNK_BYTES: usize = 96 * 1024;

/// Joins the chunks, forgets them, and runs the command in this login
/// shell with stderr on the stdout pipe. One pipe for both: conmon reads two
/// pipes separately and does not keep their relative order, so merging
/// after the fact would reorder output.
const WRAPPER: &str = r#"exec 2>&1; c=; for a do c=$c$a; done; set --; eval "$c""#;

/// The exec for `command`, tagged with `token`.
pub fn shell_exec(command: &str, token: &str) -> ExecConfig {
    let mut argv: Vec<String> = vec![
        "/bin/sh".into(),
        "-lc".into(),
        WRAPPER.into(),
        "pod-exec".into(),
    ];
    let mut rest = command;
    while !rest.is_empty() {
        let mut end = rest.len().min(CHUNK_BYTES);
        // Chunks must stay valid UTF-8 (JSON strings): cut on a boundary.
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        argv.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    let mut cfg = ExecConfig::command(argv);
    cfg.env = vec![format!("{CALL_ENV}={token}")];
    cfg
}

/// Kills every process tagged with the token in `$1`: SIGTERM, re-sent to
/// late forks for up to a second, then SIGKILL. Prints what it took:
/// "none", "term" or "kill". Zombies have an empty environ and do not match.
const KILLER: &str = r#"t="POD_EXEC_CALL=$1"
pids() { grep -lzxF "$t" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3; }
p=$(pids); [ -n "$p" ] || { echo none; exit 0; }
kill -TERM $p 2>/dev/null
n=0
while [ $n -lt 10 ]; do
  sleep 0.1; p=$(pids); [ -n "$p" ] || { echo term; exit 0; }
  kill -TERM $p 2>/dev/null; n=$((n+1))
done
n=0
while [ $n -lt 50 ]; do
  p=$(pids); [ -n "$p" ] || { echo kill; exit 0; }
  kill -KILL $p 2>/dev/null; sleep 0.02; n=$((n+1))
done
echo survivors"#;

/// The exec that kills a call's processes (untagged), as the sandbox's
/// user, the one the call ran as: root (uid 0) unless POD_EXEC_USER says
/// otherwise. Not as root then: with capabilities trimmed, root cannot read
/// another user's /proc/N/environ (that takes CAP_SYS_PTRACE), so it would
/// find none of the call's processes.
pub fn killer(token: &str) -> ExecConfig {
    ExecConfig::command(["/bin/sh", "-c", KILLER, "pod-exec-kill", token])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn spec_has_labels_limits_and_init() {
        let c = Config::try_parse_from(["x", "--network", "none", "--memory", "1g"]).unwrap();
        let me = Identity {
            instance: "i1".into(),
            owner: Some("b/n/1/2".into()),
        };
        let s = SandboxTemplate::from_config(&c).spec("pod-exec-abc", "t1", "session", &me);
        assert_eq!(s.labels[labels::MANAGED], "true");
        assert_eq!(s.labels[labels::INSTANCE], "i1");
        assert_eq!(s.labels[labels::OWNER], "b/n/1/2");
        assert_eq!(s.labels[labels::SANDBOX], "t1");
        assert_eq!(s.init, Some(true));
        assert_eq!(s.netns.unwrap().nsmode, "none");
        let rl = s.resource_limits.unwrap();
        assert_eq!(rl.memory.unwrap().limit, 1 << 30);
        assert_eq!(rl.pids.unwrap().limit, 1024);
    }

    #[test]
    fn kubeconfig_is_mounted_read_only_with_kubeconfig_set() {
        let me = Identity {
            instance: "i1".into(),
            owner: None,
        };
        for args in [vec!["x"], vec!["x", "--read-only"]] {
            let c = Config::try_parse_from(args).unwrap();
            let kube = crate::profiles::KubeMount::at(std::path::Path::new("/etc/hostname"));
            let s = SandboxTemplate::from_config(&c)
                .with_kubeconfig(kube)
                .spec("n", "t", "session", &me);
            let m = s
                .mounts
                .iter()
                .find(|m| m.destination == "/etc/pod-exec-mcp/kube/config")
                .expect("kubeconfig mount");
            assert_eq!(m.source, "/etc/hostname");
            assert!(m.options.contains(&"ro".to_owned()), "{:?}", m.options);
            assert_eq!(s.env["KUBECONFIG"], "/etc/pod-exec-mcp/kube/config");
        }
        let c = Config::try_parse_from(["x"]).unwrap();
        let s = SandboxTemplate::from_config(&c).spec("n", "t", "session", &me);
        assert!(!s.env.contains_key("KUBECONFIG"));
        assert!(s.mounts.iter().all(|m| !m.destination.contains("kube")));
    }

    #[test]
    fn short_command_is_one_chunk_and_tagged() {
        let e = shell_exec("echo 'a b'; exit 3", "tok");
        assert_eq!(e.cmd.len(), 5);
        assert_eq!(e.cmd[4], "echo 'a b'; exit 3");
        assert_eq!(e.env, vec!["POD_EXEC_CALL=tok".to_owned()]);
        assert!(!e.attach_stdin);
    }

    #[test]
    fn long_command_is_chunked_on_char_boundaries() {
        let cmd = "é".repeat(300_000); // 600 000 bytes, 2-byte chars
        let e = shell_exec(&cmd, "t");
        let chunks = &e.cmd[4..];
        assert!(chunks.len() > 5);
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES));
        assert_eq!(chunks.concat(), cmd);
    }
}
