//! Turns the server's configuration into a session container's spec and a
//! command into an exec.

use crate::config::Config;
use crate::podman::{ContainerSpec, ExecConfig, MemoryLimit, Namespace, PidsLimit, ResourceLimits};

use super::owner::{Identity, labels};

/// What every sandbox container gets, decided once at start-up.
#[derive(Debug, Clone)]
pub struct SandboxTemplate {
    image: String,
    network_none: bool,
    memory: u64,
    pids: u32,
}

impl SandboxTemplate {
    /// From the validated configuration.
    pub fn from_config(c: &Config) -> Self {
        SandboxTemplate {
            image: c.image.clone(),
            network_none: c.network == "none",
            memory: c.memory,
            pids: c.pids_limit,
        }
    }

    /// The image sandboxes run.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// A spec for one sandbox: the image's shell kept alive by `sleep` under
    /// an init (which reaps orphans a command leaves behind), no new
    /// privileges, limits, and the ownership labels.
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
        spec
    }
}

/// The exec for `command`: `/bin/sh -lc command` with stderr joined to
/// stdout at the source. conmon reads the two pipes separately and does not
/// keep their relative order, so merging after the fact would reorder
/// output; one pipe keeps it exactly as written.
pub fn shell_exec(command: &str) -> ExecConfig {
    ExecConfig::command([
        "/bin/sh",
        "-c",
        "exec /bin/sh -lc \"$1\" 2>&1",
        "pod-exec",
        command,
    ])
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
    fn command_is_one_argument() {
        let e = shell_exec("echo 'a b'; exit 3");
        assert_eq!(e.cmd.last().map(String::as_str), Some("echo 'a b'; exit 3"));
        assert!(!e.attach_stdin);
    }
}
