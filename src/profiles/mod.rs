//! CLI profiles: sets of command-line tools (the built-in `k8s` one with
//! kubectl, helm, istioctl and argocd, and any a user declares in a YAML
//! file) that become `execute_<tool>` / `describe_<tool>` MCP tools when
//! enabled. Owns which tools exist, how a call's command line is built
//! (the tool's name, Kubernetes context/namespace defaults), and the
//! kubeconfig mount; knows no MCP and no containers.
//!
//! # Layout
//! - `file`: the user's profiles file.
//! - `k8s`: the built-in profile, the context/namespace defaults, the
//!   kubeconfig mount.
//! - `prompts`: prompt templates (k8s-mcp-server's ten, and the sandbox's).

mod file;
pub mod k8s;
pub mod prompts;

use std::path::PathBuf;
use std::sync::Arc;

use tracing::warn;

use crate::config::Config;

pub use k8s::KubeMount;

/// One CLI exposed as tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliTool {
    /// The program's name, as typed in the sandbox (`kubectl`).
    pub name: String,
    /// What it is for; the start of the tools' descriptions.
    pub description: String,
    /// Which image provides it, for the error when the sandbox lacks it.
    pub image: String,
    /// The help flag `describe_<tool>` appends (`--help`).
    pub help_flag: String,
    /// Takes Kubernetes `--context` / `--namespace` defaults (kubectl and
    /// istioctl, as in k8s-mcp-server).
    pub kube_defaults: bool,
    /// Verbs (word prefixes, `git push`) read-only mode refuses; the k8s
    /// CLIs' are in the policy's own table.
    pub mutating: Vec<String>,
}

/// A profile that cannot be used. Display is one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The profiles file could not be read.
    #[error("{path}: cannot read the profiles file: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The profiles file is malformed.
    #[error("{path}:{line}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line, or `?`.
        line: String,
        /// What is wrong.
        reason: String,
    },
    /// A profile named in POD_EXEC_PROFILES exists nowhere.
    #[error("unknown profile {name:?}: known profiles are {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// What exists.
        known: String,
    },
    /// Two enabled profiles declare the same tool.
    #[error("the tool {0:?} is declared by two enabled profiles; enable one of them")]
    Duplicate(String),
    /// POD_EXEC_KUBECONFIG names nothing.
    #[error("POD_EXEC_KUBECONFIG {0}: no such file or directory")]
    Kubeconfig(PathBuf),
}

/// The enabled profiles' tools and what they need. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    tools: Vec<Arc<CliTool>>,
    kube: Option<k8s::KubeSettings>,
    kube_mount: Option<KubeMount>,
}

impl Profiles {
    /// The profiles POD_EXEC_PROFILES enables, from the built-in set and
    /// POD_EXEC_PROFILES_FILE. Blocking (reads files): for start-up.
    ///
    /// # Errors
    /// An unreadable or malformed profiles file, an unknown profile name,
    /// a tool declared twice, or a POD_EXEC_KUBECONFIG that does not exist.
    pub fn from_config(c: &Config) -> Result<Profiles, ProfileError> {
        let declared = match &c.profiles_file {
            Some(p) => file::load(p)?,
            None => Vec::new(),
        };
        let mut out = Profiles::default();
        for name in c
            .profiles
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
        {
            let tools = if name == k8s::PROFILE {
                out.kube = Some(k8s::KubeSettings::from_config(c));
                k8s::tools()
            } else if let Some((_, tools)) = declared.iter().find(|(n, _)| n == name) {
                tools.clone()
            } else {
                let mut known = vec![format!("{} (built-in)", k8s::PROFILE)];
                known.extend(declared.iter().map(|(n, _)| n.clone()));
                return Err(ProfileError::Unknown {
                    name: name.to_owned(),
                    known: known.join(", "),
                });
            };
            for t in tools {
                if out.tools.iter().any(|o| o.name == t.name) {
                    return Err(ProfileError::Duplicate(t.name));
                }
                out.tools.push(Arc::new(t));
            }
        }
        if out.kube.is_some() {
            out.kube_mount = match &c.kubeconfig {
                Some(p) => {
                    Some(KubeMount::at(p).ok_or_else(|| ProfileError::Kubeconfig(p.clone()))?)
                }
                None => {
                    let default = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube"));
                    let found = default.as_deref().and_then(KubeMount::at);
                    if found.is_none() {
                        warn!(
                            "the k8s profile is on but ~/.kube does not exist: sandboxes get no \
                             kubeconfig (set POD_EXEC_KUBECONFIG to a kubeconfig file or directory)"
                        );
                    }
                    found
                }
            };
        }
        Ok(out)
    }

    /// `policy` with what the enabled profiles add: the Kubernetes CLIs'
    /// rules (k8s profile) and user CLIs' mutating verbs.
    pub fn policy(&self, mut policy: crate::policy::Policy) -> crate::policy::Policy {
        if self.k8s() {
            policy = policy.with_k8s_defaults();
        }
        for t in &self.tools {
            policy = policy.with_mutating(&t.name, &t.mutating);
        }
        policy
    }

    /// The enabled tools, in declaration order.
    pub fn tools(&self) -> &[Arc<CliTool>] {
        &self.tools
    }

    /// Whether the `k8s` profile is on.
    pub fn k8s(&self) -> bool {
        self.kube.is_some()
    }

    /// The kubeconfig to mount read-only into every sandbox (k8s profile
    /// only).
    pub fn kube_mount(&self) -> Option<&KubeMount> {
        self.kube_mount.as_ref()
    }

    /// The command line `execute_<tool>` runs for `command`: the tool's
    /// name (unless the command starts with it), then, for kubectl and
    /// istioctl, the `--context` / `--namespace` defaults where
    /// k8s-mcp-server would add them, then the command as given.
    pub fn command_line(&self, tool: &CliTool, command: &str) -> String {
        let rest = strip_tool(&tool.name, command);
        let flags = match (&self.kube, tool.kube_defaults) {
            (Some(k), true) => k.defaults_for(&tool.name, rest),
            _ => Vec::new(),
        };
        let mut line = tool.name.clone();
        for f in flags {
            line.push(' ');
            line.push_str(&f);
        }
        if !rest.is_empty() {
            line.push(' ');
            line.push_str(rest);
        }
        line
    }
}

/// `command` without a leading `tool` word.
fn strip_tool<'a>(tool: &str, command: &'a str) -> &'a str {
    let c = command.trim();
    match c.strip_prefix(tool) {
        Some(rest) if rest.is_empty() || rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => c,
    }
}

/// A tool or profile name usable in an MCP tool name (`execute_<name>`).
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `word` quoted for /bin/sh when it needs it.
pub(crate) fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn profiles(args: &[&str]) -> Profiles {
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        Profiles::from_config(&Config::try_parse_from(argv).unwrap()).unwrap()
    }

    #[test]
    fn tool_name_is_added_unless_given() {
        let p = profiles(&["--profile", "k8s", "--kubeconfig", "/etc/hostname"]);
        let helm = p.tools().iter().find(|t| t.name == "helm").unwrap();
        assert_eq!(p.command_line(helm, "list"), "helm list");
        assert_eq!(p.command_line(helm, "  helm list  "), "helm list");
        assert_eq!(p.command_line(helm, "helmfile x"), "helm helmfile x");
        assert_eq!(p.command_line(helm, "helm"), "helm");
    }

    #[test]
    fn unknown_profile_and_missing_kubeconfig_are_errors() {
        let c = Config::try_parse_from(["x", "--profile", "nope"]).unwrap();
        let e = Profiles::from_config(&c).unwrap_err().to_string();
        assert!(
            e.contains("unknown profile \"nope\"") && e.contains("k8s"),
            "{e}"
        );
        let c =
            Config::try_parse_from(["x", "--profile", "k8s", "--kubeconfig", "/nonexistent/kc"])
                .unwrap();
        let e = Profiles::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/kc"), "{e}");
    }

    #[test]
    fn no_profile_no_tools() {
        let p = profiles(&[]);
        assert!(p.tools().is_empty() && !p.k8s() && p.kube_mount().is_none());
    }

    #[test]
    fn names_and_quoting() {
        assert!(valid_name("kubectl") && valid_name("git-lfs") && !valid_name("Git"));
        assert!(!valid_name("a b") && !valid_name("") && !valid_name("1x"));
        assert_eq!(shell_quote("prod-1"), "prod-1");
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
    }
}
