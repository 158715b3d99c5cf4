//! The built-in `k8s` profile: kubectl, helm, istioctl and argocd; the
//! `K8S_CONTEXT` / `K8S_NAMESPACE` defaults, added the way k8s-mcp-server
//! adds them (only to kubectl and istioctl; the namespace only to commands
//! on namespaced resources, never beside `-n`, `--namespace`, `-A`); and
//! the kubeconfig mounted read-only into each sandbox.

use std::path::{Path, PathBuf};

use crate::config::Config;

use super::{CliTool, shell_quote};

/// The built-in profile's name.
pub const PROFILE: &str = "k8s";

/// The image that carries the profile's CLIs.
pub const IMAGE_HINT: &str = "the k8s image (images/k8s/build.sh builds \
    localhost/pod_exec_mcp_k8s:latest; start the server with POD_EXEC_IMAGE set to it)";

/// Where the kubeconfig appears in a sandbox; `KUBECONFIG` points there.
pub const MOUNT_DIR: &str = "/etc/pod-exec-mcp/kube";

/// The profile's tools.
pub(super) fn tools() -> Vec<CliTool> {
    let tool = |name: &str, description: &str, kube_defaults: bool| CliTool {
        name: name.into(),
        description: description.into(),
        image: IMAGE_HINT.into(),
        help_flag: "--help".into(),
        kube_defaults,
        mutating: Vec::new(),
    };
    vec![
        tool("kubectl", "kubectl, the Kubernetes command-line tool", true),
        tool("helm", "Helm, the Kubernetes package manager", false),
        tool("istioctl", "istioctl, the Istio service mesh CLI", true),
        tool("argocd", "the Argo CD GitOps CLI", false),
    ]
}

/// The context and namespace defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeSettings {
    context: Option<String>,
    namespace: Option<String>,
}

/// kubectl verbs that act on resources (k8s-mcp-server's list).
const RESOURCE_COMMANDS: &[&str] = &[
    "get",
    "describe",
    "delete",
    "edit",
    "label",
    "annotate",
    "patch",
    "apply",
    "logs",
    "exec",
    "rollout",
    "scale",
    "autoscale",
    "expose",
];

/// Resources that live outside namespaces (k8s-mcp-server's, with the
/// singular and short forms kubectl also accepts).
const CLUSTER_RESOURCES: &[&str] = &[
    "nodes",
    "node",
    "no",
    "namespaces",
    "namespace",
    "ns",
    "pv",
    "persistentvolumes",
    "persistentvolume",
    "storageclasses",
    "storageclass",
    "sc",
    "clusterroles",
    "clusterrole",
    "clusterrolebindings",
    "clusterrolebinding",
    "apiservices",
    "apiservice",
    "certificatesigningrequests",
    "certificatesigningrequest",
    "csr",
    "customresourcedefinitions",
    "customresourcedefinition",
    "crd",
    "crds",
    "priorityclasses",
    "priorityclass",
    "pc",
    "ingressclasses",
    "ingressclass",
    "runtimeclasses",
    "runtimeclass",
];

/// Commands with no namespace (k8s-mcp-server's list).
const CLUSTER_COMMANDS: &[&str] = &[
    "api-resources",
    "api-versions",
    "cluster-info",
    "config",
    "version",
    "completion",
    "plugin",
];

/// Global options whose value is the next word when not given with `=`.
const VALUE_OPTIONS: &[&str] = &[
    "-n",
    "--namespace",
    "--context",
    "--cluster",
    "--user",
    "--request-timeout",
    "-v",
    "--v",
    "--cache-dir",
    "-l",
    "--selector",
    "-o",
    "--output",
    "-c",
    "--container",
    "-f",
    "--filename",
];

impl KubeSettings {
    /// From `K8S_CONTEXT` (empty: the kubeconfig's current context) and
    /// `K8S_NAMESPACE` (default `default`; empty: none).
    pub fn from_config(c: &Config) -> Self {
        let nonempty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        KubeSettings {
            context: c.k8s_context.as_deref().and_then(nonempty),
            namespace: nonempty(&c.k8s_namespace),
        }
    }

    /// The flags to insert after `tool` for the command `rest` (the words
    /// after the tool's name), already quoted for the shell.
    pub fn defaults_for(&self, tool: &str, rest: &str) -> Vec<String> {
        // Only the tool's own words count: a pipe ends them.
        let args = tool_words(rest);
        let has = |pred: &dyn Fn(&str) -> bool| args.iter().any(|a| pred(a));
        let mut flags = Vec::new();
        if let Some(ctx) = &self.context
            && !has(&|a| a.starts_with("--context"))
        {
            flags.push(format!("--context={}", shell_quote(ctx)));
        }
        let Some(ns) = &self.namespace else {
            return flags;
        };
        let has_namespace = has(&|a| a.starts_with("--namespace") || a.starts_with("-n"));
        let all = has(&|a| a == "-A" || a.starts_with("--all-namespaces"));
        if has_namespace || all {
            return flags;
        }
        let words = positional(&args);
        let resource_command = match words.first() {
            Some(verb) if RESOURCE_COMMANDS.contains(verb) => true,
            Some(_) => tool == "istioctl" && words.contains(&"analyze"),
            None => false,
        };
        let cluster_command = words.iter().any(|w| CLUSTER_COMMANDS.contains(w));
        let cluster_resource = words.get(1).is_some_and(|r| {
            // `nodes/n1`, `nodes,pods`: the type before `/`; every type of a list.
            let ty = r.split('/').next().unwrap_or(r);
            ty.split(',').any(|t| {
                let t = t.to_ascii_lowercase();
                let base = t.split('.').next().unwrap_or(&t);
                CLUSTER_RESOURCES.contains(&base)
            })
        });
        if resource_command && !cluster_command && !cluster_resource {
            flags.push(format!("--namespace={}", shell_quote(ns)));
        }
        flags
    }
}

/// The words of `rest` up to the first unquoted `|` (best effort; a line
/// strict mode refuses never runs, and in permissive mode an unparsable
/// line gets no namespace).
fn tool_words(rest: &str) -> Vec<String> {
    let head = unquoted_before_pipe(rest);
    match crate::policy::pipeline::split(head) {
        Ok(p) => p.segments.into_iter().next().unwrap_or_default(),
        Err(_) => head.split_whitespace().map(str::to_owned).collect(),
    }
}

fn unquoted_before_pipe(s: &str) -> &str {
    let (mut single, mut double, mut escaped) = (false, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '|' | ';' | '&' if !single && !double => return &s[..i],
            _ => {}
        }
    }
    s
}

/// Non-option words, skipping the values of known value-taking options and
/// everything after `--`.
fn positional(args: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "--" {
            break;
        }
        if a.starts_with('-') && a.len() > 1 {
            if !a.contains('=') && VALUE_OPTIONS.contains(&a.as_str()) {
                i += 1;
            }
            continue;
        }
        out.push(a.as_str());
    }
    out
}

/// The host kubeconfig (file or directory) mounted read-only into each
/// sandbox, with `KUBECONFIG` pointing at it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeMount {
    /// Host path.
    pub source: PathBuf,
    /// Path in the sandbox (a directory's mount point, or the file's).
    pub destination: String,
    /// The sandbox's `KUBECONFIG`.
    pub kubeconfig: String,
}

impl KubeMount {
    /// For the file or directory at `path`; `None` if it does not exist.
    pub fn at(path: &Path) -> Option<KubeMount> {
        let meta = std::fs::metadata(path).ok()?;
        let source = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let file = format!("{MOUNT_DIR}/config");
        Some(if meta.is_dir() {
            KubeMount {
                source,
                destination: MOUNT_DIR.into(),
                kubeconfig: file,
            }
        } else {
            KubeMount {
                source,
                destination: file.clone(),
                kubeconfig: file,
            }
        })
    }

    /// The environment sandboxes get: `KUBECONFIG`, and a writable
    /// discovery cache (the kubeconfig's directory is read-only).
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("KUBECONFIG", self.kubeconfig.clone()),
            ("KUBECACHEDIR", "/tmp/.kube-cache".into()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(ctx: Option<&str>, ns: Option<&str>) -> KubeSettings {
        KubeSettings {
            context: ctx.map(Into::into),
            namespace: ns.map(Into::into),
        }
    }

    #[test]
    fn namespace_follows_k8s_mcp_servers_rules() {
        let s = k(None, Some("team-a"));
        let ns = vec!["--namespace=team-a".to_string()];
        assert_eq!(s.defaults_for("kubectl", "get pods"), ns);
        assert_eq!(s.defaults_for("kubectl", "get pods -o json | jq ."), ns);
        assert_eq!(s.defaults_for("kubectl", "logs web-1"), ns);
        assert_eq!(s.defaults_for("kubectl", "--context=x get pods"), ns);
        for none in [
            "get pods -n other",
            "get pods -nother",
            "get pods --namespace=other",
            "get pods --namespace other",
            "get pods -A",
            "get pods --all-namespaces",
            "get nodes",
            "get ns",
            "get node/n1",
            "get crd",
            "version",
            "config view",
            "api-resources",
            "cluster-info",
            "top pods",
            "",
        ] {
            assert!(s.defaults_for("kubectl", none).is_empty(), "{none}");
        }
        assert_eq!(s.defaults_for("istioctl", "analyze"), ns);
        assert!(s.defaults_for("istioctl", "version").is_empty());
    }

    #[test]
    fn context_is_added_unless_given() {
        let s = k(Some("prod cluster"), None);
        assert_eq!(
            s.defaults_for("kubectl", "version"),
            vec!["--context='prod cluster'".to_string()]
        );
        assert!(
            s.defaults_for("kubectl", "--context=dev get pods")
                .is_empty()
        );
        assert!(
            s.defaults_for("kubectl", "get pods --context dev")
                .is_empty()
        );
        let both = k(Some("dev"), Some("x"));
        assert_eq!(
            both.defaults_for("kubectl", "get pods"),
            vec!["--context=dev".to_string(), "--namespace=x".to_string()]
        );
    }

    #[test]
    fn kube_mount_for_a_file_and_a_directory() {
        let d = std::env::temp_dir();
        let m = KubeMount::at(&d).unwrap();
        assert_eq!(m.destination, MOUNT_DIR);
        assert_eq!(m.kubeconfig, format!("{MOUNT_DIR}/config"));
        let f = KubeMount::at(Path::new("/etc/hostname")).unwrap();
        assert_eq!(f.destination, format!("{MOUNT_DIR}/config"));
        assert!(KubeMount::at(Path::new("/nonexistent/x")).is_none());
    }
}
