//! Prompt templates: k8s-mcp-server's ten (same names and arguments), on
//! when the `k8s` profile is, and three for the plain sandbox, always on.
//! A template is text with `{arg}` holes; an absent optional argument takes
//! its default.

/// One argument of a template.
#[derive(Debug, Clone, Copy)]
pub struct Arg {
    /// Its name.
    pub name: &'static str,
    /// What to pass.
    pub description: &'static str,
    /// `None`: required; `Some(d)`: optional with default `d`.
    pub default: Option<&'static str>,
}

/// A prompt template.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Its name in prompts/list.
    pub name: &'static str,
    /// One line on what it is for.
    pub description: &'static str,
    /// Its arguments.
    pub args: &'static [Arg],
    /// The text, with `{name}` holes.
    pub text: &'static str,
}

const fn req(name: &'static str, description: &'static str) -> Arg {
    Arg {
        name,
        description,
        default: None,
    }
}

const fn opt(name: &'static str, description: &'static str, default: &'static str) -> Arg {
    Arg {
        name,
        description,
        default: Some(default),
    }
}

const NS: Arg = opt("namespace", "Kubernetes namespace", "default");

/// k8s-mcp-server's templates.
pub const K8S: &[Template] = &[
    Template {
        name: "k8s_resource_status",
        description: "Check the status of Kubernetes resources of one type",
        args: &[
            req("resource_type", "Resource type, e.g. pods, deployments"),
            NS,
        ],
        text: "Check the status of the {resource_type} in namespace {namespace}. With \
               execute_kubectl, list them (`get {resource_type} -n {namespace} -o wide`), then \
               describe any that are not ready or healthy and read the recent events \
               (`get events -n {namespace} --sort-by=.lastTimestamp`). Summarize what is \
               healthy, what is not, and the likely cause of each problem.",
    },
    Template {
        name: "k8s_deploy_application",
        description: "Deploy an application to Kubernetes",
        args: &[
            req("app_name", "Name of the application"),
            req("image", "Container image to run"),
            NS,
            opt("replicas", "Number of replicas", "1"),
        ],
        text: "Deploy the application {app_name} from image {image} with {replicas} \
               replica(s) in namespace {namespace}. Check first that the namespace exists and \
               whether a deployment named {app_name} already exists. Write a Deployment (and a \
               Service if the application listens on a port) with resource requests and \
               readiness probes, apply it with execute_kubectl, and follow \
               `rollout status deployment/{app_name} -n {namespace}` until it is available. \
               Report what was created.",
    },
    Template {
        name: "k8s_troubleshoot",
        description: "Troubleshoot a Kubernetes resource",
        args: &[
            req("resource_type", "Resource type, e.g. pod, deployment"),
            req("resource_name", "Name of the resource"),
            NS,
        ],
        text: "Troubleshoot the {resource_type} {resource_name} in namespace {namespace}. \
               Describe it, read its events and, for pods, the logs of each container \
               (including `--previous` after restarts). Check what it depends on: images, \
               config maps, secrets, volumes, services, node capacity. Explain the root cause \
               and propose the smallest fix; do not change anything before saying what you \
               will change.",
    },
    Template {
        name: "k8s_resource_inventory",
        description: "Take an inventory of the resources in a namespace or the cluster",
        args: &[opt("namespace", "Namespace (empty: all namespaces)", "")],
        text: "Take an inventory of the workloads and services{namespace_scope}. List \
               deployments, statefulsets, daemonsets, jobs, cronjobs, services, ingresses, \
               config maps, secrets (names only) and persistent volume claims, grouped by \
               namespace, with counts and anything that looks unused or unhealthy.",
    },
    Template {
        name: "k8s_security_check",
        description: "Review security settings of workloads",
        args: &[opt("namespace", "Namespace (empty: all namespaces)", "")],
        text: "Review the security posture of the workloads{namespace_scope}. Look for \
               privileged containers, containers running as root, host namespaces and host \
               paths, missing resource limits, images with the latest tag, service accounts \
               with broad RBAC bindings, secrets in environment variables, and namespaces \
               without network policies. Rank the findings by risk, with the resource names \
               and a concrete remedy for each. Only read; change nothing.",
    },
    Template {
        name: "k8s_resource_scaling",
        description: "Scale a Kubernetes resource",
        args: &[
            req(
                "resource_type",
                "Resource type, e.g. deployment, statefulset",
            ),
            req("resource_name", "Name of the resource"),
            NS,
        ],
        text: "Help scale the {resource_type} {resource_name} in namespace {namespace}. Show \
               its current replicas, resource requests and usage (`top pods` if metrics are \
               available) and any horizontal pod autoscaler. Recommend a replica count or an \
               autoscaler configuration with reasons, and apply it only after stating it.",
    },
    Template {
        name: "k8s_logs_analysis",
        description: "Analyze the logs of a pod",
        args: &[
            req("pod_name", "Name of the pod"),
            NS,
            opt("container", "Container (empty: every container)", ""),
        ],
        text: "Analyze the logs of pod {pod_name}{container_scope} in namespace {namespace}. \
               Read the recent logs (and `--previous` if it restarted), find errors, warnings \
               and stack traces, group repeated messages, and relate them to the pod's events \
               and status. Summarize what went wrong and when.",
    },
    Template {
        name: "istio_service_mesh",
        description: "Inspect the Istio service mesh",
        args: &[NS],
        text: "Inspect the Istio service mesh in namespace {namespace}. With execute_istioctl, \
               run `analyze -n {namespace}` and `proxy-status`; with execute_kubectl, list \
               virtual services, destination rules, gateways and peer authentications. Report \
               configuration problems, proxies out of sync and workloads without sidecars.",
    },
    Template {
        name: "helm_chart_management",
        description: "Manage Helm releases",
        args: &[opt("release_name", "Release (empty: all releases)", ""), NS],
        text: "Review the Helm releases{release_scope} in namespace {namespace}. With \
               execute_helm, list them with status and chart versions, show the history and \
               values of each, and point out failed or pending releases and charts with newer \
               versions. Propose upgrades or rollbacks without running them.",
    },
    Template {
        name: "argocd_application",
        description: "Inspect Argo CD applications",
        args: &[
            opt("app_name", "Application (empty: all applications)", ""),
            opt("namespace", "Namespace of Argo CD", "argocd"),
        ],
        text: "Inspect the Argo CD application(s){app_scope} (Argo CD in namespace {namespace}). \
               With execute_argocd, show sync and health status, the differences between the \
               live state and git, and recent sync history. Explain any drift or degraded \
               resource and propose how to bring it back in sync.",
    },
];

/// The plain sandbox's templates.
pub const SANDBOX: &[Template] = &[
    Template {
        name: "explore_repository",
        description: "Explore a code repository in the sandbox",
        args: &[req("repository", "Git URL or path in the sandbox")],
        text: "Explore the repository {repository} with shell_exec (clone it into /work first \
               if it is a URL). Describe its layout, languages, build system, entry points, \
               tests and how to run them, reading the README and the build files rather than \
               guessing.",
    },
    Template {
        name: "run_test_suite",
        description: "Run a project's test suite in the sandbox",
        args: &[
            req("path", "Project directory in the sandbox"),
            opt("command", "Test command (empty: find it)", ""),
        ],
        text: "Run the test suite of the project in {path}{command_scope}. Install what it \
               needs first, run the tests, and report the number passed and failed, with the \
               first lines of each failure.",
    },
    Template {
        name: "diagnose_build_failure",
        description: "Diagnose a failing build in the sandbox",
        args: &[
            req("path", "Project directory in the sandbox"),
            opt("command", "Build command (empty: find it)", ""),
        ],
        text: "The build of the project in {path}{command_scope} fails. Reproduce the failure, \
               read the first error rather than the last, find its cause (a missing tool or \
               library, a version mismatch, a code error) and propose the smallest fix; apply \
               it only if it stays inside the sandbox.",
    },
];

/// Fills `t`'s holes from `get(name)` (absent: the default). Scope holes
/// (`{namespace_scope}`, …) read well whether their argument is empty.
///
/// # Errors
/// The name of a required argument that is missing or empty.
pub fn render(t: &Template, get: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut values = Vec::new();
    for a in t.args {
        let v = get(a.name).filter(|v| !v.trim().is_empty());
        let v = match (v, a.default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_owned(),
            (None, None) => {
                return Err(format!(
                    "prompt {:?} needs the argument {:?} ({})",
                    t.name, a.name, a.description
                ));
            }
        };
        values.push((a.name, v));
    }
    let value = |n: &str| {
        values
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let scope = |n: &str, with: &dyn Fn(&str) -> String, without: &str| {
        let v = value(n);
        if v.is_empty() {
            without.to_owned()
        } else {
            with(v)
        }
    };
    let mut text = t.text.to_owned();
    text = text.replace(
        "{namespace_scope}",
        &scope(
            "namespace",
            &|v| format!(" in namespace {v}"),
            " in all namespaces",
        ),
    );
    text = text.replace(
        "{container_scope}",
        &scope("container", &|v| format!(" (container {v})"), ""),
    );
    text = text.replace(
        "{release_scope}",
        &scope("release_name", &|v| format!(" named {v}"), ""),
    );
    text = text.replace("{app_scope}", &scope("app_name", &|v| format!(" {v}"), ""));
    text = text.replace(
        "{command_scope}",
        &scope("command", &|v| format!(" (with `{v}`)"), ""),
    );
    for (k, v) in &values {
        text = text.replace(&format!("{{{k}}}"), v);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_k8s_templates_and_every_hole_is_filled() {
        assert_eq!(K8S.len(), 10);
        for t in K8S.iter().chain(SANDBOX) {
            let text = render(t, |n| Some(format!("<{n}>"))).unwrap();
            assert!(!text.contains('{'), "{}: {text}", t.name);
            let text = render(t, |n| {
                t.args
                    .iter()
                    .find(|a| a.name == n && a.default.is_none())
                    .map(|_| "x".to_owned())
            })
            .unwrap();
            assert!(!text.contains('{'), "{}: {text}", t.name);
        }
    }

    #[test]
    fn missing_required_argument_is_named() {
        let e = render(&K8S[0], |_| None).unwrap_err();
        assert!(e.contains("resource_type"), "{e}");
        let t = render(&K8S[3], |_| None).unwrap();
        assert!(t.contains("in all namespaces"), "{t}");
    }
}
