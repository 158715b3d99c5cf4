//! The Kubernetes CLIs' rules (kubectl, helm, istioctl, argocd): flags that
//! point a call at other credentials or another cluster, mass deletion,
//! the verbs read-only mode refuses, and k8s-mcp-server's default rule set.
//!
//! Everything matches on words of the normalized invocation, never on the
//! text, so `kubectl -n x delete ns y` and `kubectl  delete …` are the same
//! command, and `--token=x` is caught wherever it stands before `--` (after
//! `--` the words belong to the command `kubectl exec` runs in a pod).

use std::sync::LazyLock;

use super::builtin::BuiltinRule;
use super::command::Invocation;
use super::rules::{Prefix, RuleFile};

/// The tools these rules cover.
pub(crate) const TOOLS: &[&str] = &["kubectl", "helm", "istioctl", "argocd"];

/// Built-in strict-mode rules of `tool` (empty for other tools).
pub(crate) fn builtin_rules(tool: &str) -> &'static [BuiltinRule] {
    match tool {
        "kubectl" => KUBECTL,
        "helm" | "istioctl" | "argocd" => OTHERS,
        _ => &[],
    }
}

const KUBECTL: &[BuiltinRule] = &[
    BuiltinRule {
        id: "k8s:credential-flag",
        check: credential_flag,
    },
    BuiltinRule {
        id: "k8s:delete-all",
        check: delete_all,
    },
];

const OTHERS: &[BuiltinRule] = &[BuiltinRule {
    id: "k8s:credential-flag",
    check: credential_flag,
}];

/// Long flags that redirect credentials or the cluster, as their names
/// before any `=`; `PREFIXES` cover the families (`--client-key`, …).
const CREDENTIAL_FLAGS: &[&str] = &[
    "--server",
    "--kubeconfig",
    "--token",
    "--as",
    "--as-group",
    "--as-uid",
    "--insecure-skip-tls-verify",
    "--username",
    "--password",
    "--tls-server-name",
    // argocd
    "--auth-token",
    "--config",
    "--core",
    "--plaintext",
    "--insecure",
];
const CREDENTIAL_PREFIXES: &[&str] = &["--certificate-", "--client-", "--kube-"];
/// `helm --kube-context` only picks a context of the mounted kubeconfig,
/// like `kubectl --context`, which is allowed.
const CREDENTIAL_EXEMPT: &[&str] = &["--kube-context"];

fn credential_flag(inv: &Invocation) -> Option<String> {
    if !TOOLS.contains(&inv.program.as_str()) {
        return None;
    }
    for a in inv.args.iter().take_while(|a| *a != "--") {
        let name = a.split('=').next().unwrap_or(a);
        let long = name.starts_with("--")
            && !CREDENTIAL_EXEMPT.contains(&name)
            && (CREDENTIAL_FLAGS.contains(&name)
                || CREDENTIAL_PREFIXES.iter().any(|p| name.starts_with(p)));
        // kubectl's `-s` is `--server`.
        let short = inv.program == "kubectl" && (name == "-s" || a.starts_with("-s="));
        if long || short {
            return Some(format!(
                "{name} would point {} at other credentials or another cluster than the \
                 mounted kubeconfig's; drop it (select a context of that kubeconfig with \
                 --context)",
                inv.program
            ));
        }
    }
    None
}

/// `kubectl delete` of everything of a kind, or across namespaces: refused
/// even when a safe pattern names the resource type (`kubectl delete pod
/// --all`), because safe patterns excuse only dangerous prefixes.
fn delete_all(inv: &Invocation) -> Option<String> {
    if inv.program != "kubectl" {
        return None;
    }
    let delete = Prefix::new("kubectl delete")?;
    if !delete.matches(inv, false) {
        return None;
    }
    let all = inv.args.iter().take_while(|a| *a != "--").find(|a| {
        let name = a.split('=').next().unwrap_or(a);
        matches!(name, "--all" | "--all-namespaces" | "-A")
    })?;
    Some(format!(
        "`kubectl delete` with {all} deletes every resource of a kind; name the resources to delete"
    ))
}

/// The verbs that change a cluster, its workloads or the kubeconfig,
/// refused in read-only mode whatever the security mode. Matched as word
/// prefixes with options allowed between the words.
#[rustfmt::skip]
const MUTATING: &[&str] = &[
    // kubectl
    "kubectl delete", "kubectl apply", "kubectl create", "kubectl patch", "kubectl replace",
    "kubectl scale", "kubectl autoscale", "kubectl edit", "kubectl label", "kubectl annotate",
    "kubectl drain", "kubectl cordon", "kubectl uncordon", "kubectl taint",
    "kubectl rollout restart", "kubectl rollout undo", "kubectl rollout pause",
    "kubectl rollout resume", "kubectl exec", "kubectl cp", "kubectl port-forward",
    "kubectl attach", "kubectl run", "kubectl expose", "kubectl set", "kubectl debug",
    "kubectl proxy", "kubectl certificate approve", "kubectl certificate deny",
    "kubectl auth reconcile", "kubectl config set", "kubectl config set-cluster",
    "kubectl config set-context", "kubectl config set-credentials", "kubectl config unset",
    "kubectl config use-context", "kubectl config use", "kubectl config delete-cluster",
    "kubectl config delete-context", "kubectl config delete-user", "kubectl config rename-context",
    // helm
    "helm install", "helm upgrade", "helm uninstall", "helm delete", "helm del", "helm un",
    "helm rollback", "helm test", "helm push",
    // argocd
    "argocd app sync", "argocd app delete", "argocd app set", "argocd app unset",
    "argocd app create", "argocd app edit", "argocd app patch", "argocd app patch-resource",
    "argocd app delete-resource", "argocd app rollback", "argocd app terminate-op",
    "argocd app actions run", "argocd appset create", "argocd appset delete",
    "argocd cluster add", "argocd cluster rm", "argocd cluster set", "argocd repo add",
    "argocd repo rm", "argocd proj create", "argocd proj delete", "argocd proj set",
    "argocd account update-password",
    // istioctl
    "istioctl install", "istioctl uninstall", "istioctl upgrade", "istioctl manifest install",
    "istioctl operator init", "istioctl operator remove", "istioctl tag set",
    "istioctl tag remove", "istioctl waypoint apply", "istioctl waypoint delete",
    "istioctl experimental waypoint apply", "istioctl experimental waypoint delete",
    "istioctl x waypoint apply", "istioctl x waypoint delete", "istioctl dashboard",
];

static MUTATING_PREFIXES: LazyLock<Vec<(&'static str, Prefix)>> = LazyLock::new(|| {
    MUTATING
        .iter()
        .filter_map(|t| {
            let tool = t.split(' ').next()?;
            Some((tool, Prefix::new(t)?))
        })
        .collect()
});

static MUTATING_BY_TOOL: LazyLock<Vec<(&'static str, Vec<Prefix>)>> = LazyLock::new(|| {
    TOOLS
        .iter()
        .map(|tool| {
            let list = MUTATING_PREFIXES
                .iter()
                .filter(|(t, _)| t == tool)
                .map(|(_, p)| p.clone())
                .collect();
            (*tool, list)
        })
        .collect()
});

/// The mutating verbs of `tool`, for read-only mode (empty for other tools).
pub(crate) fn mutating_verbs(tool: &str) -> &'static [Prefix] {
    MUTATING_BY_TOOL
        .iter()
        .find(|(t, _)| *t == tool)
        .map_or(&[], |(_, l)| l.as_slice())
}

/// k8s-mcp-server's built-in rules (its `DEFAULT_DANGEROUS_COMMANDS` and
/// `DEFAULT_SAFE_PATTERNS`), in its own file format.
const DEFAULTS_YAML: &str = include_str!("k8s_defaults.yaml");

/// The default rule set, parsed once.
pub(crate) fn default_rules() -> RuleFile {
    static PARSED: LazyLock<Option<RuleFile>> = LazyLock::new(|| {
        RuleFile::parse(
            "the built-in kubectl/helm/istioctl/argocd rules",
            DEFAULTS_YAML,
        )
        .ok()
    });
    // The embedded file is tested to parse (`defaults_parse` below).
    PARSED.clone().unwrap_or_else(|| RuleFile {
        path: String::new(),
        tools: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_every_mutating_verb_is_a_prefix() {
        let r = RuleFile::parse("x", DEFAULTS_YAML).expect("embedded defaults parse");
        for t in TOOLS {
            assert!(r.tool(t).is_some(), "{t}");
            assert!(!mutating_verbs(t).is_empty(), "{t}");
        }
        assert_eq!(MUTATING_PREFIXES.len(), MUTATING.len());
    }
}
