//! The `k8s` profile end to end: the real server, a real Podman, the k8s
//! image (images/k8s/build.sh) with the real kubectl and helm, and a fake
//! Kubernetes API server (tests/fixtures/fake_kube_apiserver.py) started
//! inside the session's sandbox, reached through a kubeconfig that the
//! server mounts read-only.

mod common;

use std::time::Duration;

use common::live_podman;
use common::mcp::{Client, connect, error_text, ran, run, tool};
use common::server::{self, ServerProcess};
use rmcp::model::GetPromptRequestParams;

const K8S_IMAGE: &str = "localhost/pod_exec_mcp_k8s:latest";
const PORT: u16 = 18080;

fn k8s_image() -> String {
    std::env::var("POD_EXEC_K8S_IMAGE").unwrap_or_else(|_| K8S_IMAGE.to_owned())
}

async fn require_image() {
    let podman = live_podman().await;
    let image = k8s_image();
    if !podman.image_exists(&image).await.unwrap_or(false) {
        panic!(
            "the k8s image {image} is missing: build it with `bash images/k8s/build.sh` \
             (after `eval \"$(tests/podman-env.sh)\"`); tests/run.sh does this"
        );
    }
}

/// A kubeconfig directory: context `fake` (the API server in the sandbox,
/// the current one), `down` (nothing listens), `other` (same server).
fn kubeconfig_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(common::unique("pem-kube"));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://127.0.0.1:{PORT}\"}}\n\
         - name: down\n  cluster: {{server: \"http://127.0.0.1:1\"}}\nusers:\n- name: u\n  user: {{}}\n\
         contexts:\n- name: fake\n  context: {{cluster: fake, user: u}}\n- name: other\n  context: {{cluster: fake, user: u}}\n\
         - name: down\n  context: {{cluster: down, user: u}}\ncurrent-context: fake\n"
    );
    std::fs::write(dir.join("config"), config).expect("kubeconfig");
    dir
}

fn start(extra: &[(&str, &str)]) -> (ServerProcess, std::path::PathBuf) {
    let kube = kubeconfig_dir();
    let fixtures = format!("{}/tests/fixtures:/fixtures", env!("CARGO_MANIFEST_DIR"));
    let image = k8s_image();
    let mut env = vec![
        ("POD_EXEC_IMAGE", image.as_str()),
        ("POD_EXEC_PROFILES", "k8s"),
        ("POD_EXEC_KUBECONFIG", kube.to_str().expect("path")),
        ("POD_EXEC_MOUNTS", fixtures.as_str()),
        ("K8S_CONTEXT", "fake"),
    ];
    env.extend_from_slice(extra);
    let s = server::start(&env);
    (s, kube)
}

/// Starts the fake API server in this session's sandbox and waits for it.
async fn start_fake_apiserver(c: &Client) {
    let r = run(
        c,
        &format!(
            "python3 /fixtures/fake_kube_apiserver.py {PORT} /tmp/requests.log >/tmp/fake.log 2>&1 & \
             for i in $(seq 100); do python3 -c 'import urllib.request,sys; urllib.request.urlopen(\"http://127.0.0.1:{PORT}/version\")' 2>/dev/null && exit 0; sleep 0.1; done; cat /tmp/fake.log; exit 1"
        ),
    )
    .await;
    assert_eq!(r.retval, 0, "fake API server did not start: {}", r.output);
}

async fn refused(c: &Client, name: &str, command: &str) -> String {
    let r = tool(c, name, serde_json::json!({ "command": command })).await;
    error_text(&r)
}

#[tokio::test]
async fn kubectl_against_a_fake_api_server() {
    require_image().await;
    let (s, _kube) = start(&[]);
    let c = connect(&s.url).await;

    let tools = c.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for t in ["kubectl", "helm", "istioctl", "argocd"] {
        assert!(
            names.contains(&format!("execute_{t}").as_str()),
            "{names:?}"
        );
        assert!(
            names.contains(&format!("describe_{t}").as_str()),
            "{names:?}"
        );
    }
    assert!(names.contains(&"shell_exec"));

    // The kubeconfig is mounted read-only, KUBECONFIG points at it: seen
    // from inside, and in the real container's inspect.
    let r = run(
        &c,
        "echo $KUBECONFIG; grep -c 127.0.0.1 $KUBECONFIG; grep ' /etc/pod-exec-mcp/kube ' /proc/mounts; hostname",
    )
    .await;
    let lines: Vec<&str> = r.output.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.output);
    assert_eq!(lines[0], "/etc/pod-exec-mcp/kube/config");
    assert_eq!(lines[1], "2");
    assert!(
        lines[2]
            .split(' ')
            .nth(3)
            .is_some_and(|o| o.split(',').any(|f| f == "ro")),
        "{}",
        lines[2]
    );
    let podman = live_podman().await;
    let mine: Vec<_> = s
        .containers(&podman)
        .await
        .into_iter()
        .filter(|x| x.id.starts_with(lines[3]))
        .collect();
    assert_eq!(mine.len(), 1, "the session's container");
    let info = podman
        .inspect_container(&mine[0].id)
        .await
        .expect("inspect");
    let mounts = info.extra.get("Mounts").cloned().unwrap_or_default();
    let kube = mounts
        .as_array()
        .and_then(|m| {
            m.iter()
                .find(|m| m["Destination"] == "/etc/pod-exec-mcp/kube")
        })
        .unwrap_or_else(|| panic!("no kubeconfig mount in {mounts}"));
    assert_eq!(kube["RW"], false, "{kube}");
    assert_eq!(
        kube["Source"],
        _kube.canonicalize().expect("dir").to_str().expect("path"),
        "{kube}"
    );
    let env = info.config["Env"].to_string();
    assert!(
        env.contains("KUBECONFIG=/etc/pod-exec-mcp/kube/config"),
        "{env}"
    );

    start_fake_apiserver(&c).await;

    // describe_kubectl: kubectl's own help.
    let r = tool(
        &c,
        "describe_kubectl",
        serde_json::json!({"command": "get"}),
    )
    .await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let v = r.structured_content.expect("structured");
    assert!(
        v["output"]
            .as_str()
            .unwrap_or("")
            .contains("Display one or many resources"),
        "{v}"
    );
    assert_eq!(v["command"], "kubectl get --help");

    // get pods: the fake pods, with the context and namespace defaults.
    let (out, rv, line) = ran(&c, "execute_kubectl", "get pods").await;
    assert_eq!(rv, 0, "{out}");
    assert!(
        out.contains("web-1") && out.contains("web-2") && out.contains("Running"),
        "{out}"
    );
    assert_eq!(line, "kubectl --context=fake --namespace=default get pods");
    // …not duplicated when the command gives its own.
    let (out, rv, line) = ran(
        &c,
        "execute_kubectl",
        "kubectl get pods -n team-a --context=other",
    )
    .await;
    assert_eq!(rv, 0, "{out}");
    assert!(out.contains("api-1") && !out.contains("web-1"), "{out}");
    assert_eq!(line, "kubectl get pods -n team-a --context=other");
    let (_, _, line) = ran(&c, "execute_kubectl", "get pods -A -o name").await;
    assert_eq!(line, "kubectl --context=fake get pods -A -o name");
    let (_, _, line) = ran(&c, "execute_kubectl", "get nodes").await;
    assert_eq!(line, "kubectl --context=fake get nodes");
    let log = run(&c, "cat /tmp/requests.log").await.output;
    assert!(log.contains("GET /api/v1/namespaces/team-a/pods"), "{log}");
    assert!(log.contains("GET /api/v1/namespaces/default/pods"), "{log}");

    // jsonpath and a pipe into jq.
    let (out, rv, _) = ran(
        &c,
        "execute_kubectl",
        "get pods -o jsonpath='{.items[*].metadata.name}'",
    )
    .await;
    assert_eq!((out.as_str(), rv), ("web-1 web-2", 0));
    let (out, rv, _) = ran(
        &c,
        "execute_kubectl",
        "get pods -o json | jq -r '.items[].metadata.name' | sort -r",
    )
    .await;
    assert_eq!((out.as_str(), rv), ("web-2\nweb-1\n", 0));
    let (out, _, _) = ran(&c, "execute_kubectl", "logs web-1 | grep serving").await;
    assert_eq!(out, "web-1: serving\n");
    let (out, rv, _) = ran(&c, "execute_kubectl", "get events").await;
    assert!(rv == 0 && out.contains("web-1.1"), "{out}");

    // Strict mode: no shell after the pipe, no sequencing.
    for bad in [
        "get pods | sh",
        "get pods; rm -rf /",
        "get pods && id",
        "get pods > /tmp/x",
        "get $(id -u)",
    ] {
        let e = refused(&c, "execute_kubectl", bad).await;
        assert!(
            e.contains("strict mode") && e.contains("filters only"),
            "{bad}: {e}"
        );
    }
    // Credential and cluster redirection.
    for bad in [
        "--server=http://elsewhere get pods",
        "get pods --token=x",
        "get pods --token x",
        "-s http://elsewhere get pods",
        "get pods --kubeconfig=/tmp/k",
        "get pods --as=system:admin",
        "get pods --insecure-skip-tls-verify",
        "get pods --client-key=/k",
    ] {
        let e = refused(&c, "execute_kubectl", bad).await;
        assert!(
            e.contains("other credentials or another cluster"),
            "{bad}: {e}"
        );
    }
    // shell_exec is no way around them.
    let e = error_text(&common::mcp::call(&c, "cd /tmp && kubectl --token=x get pods").await);
    assert!(e.contains("other credentials"), "{e}");
    // k8s-mcp-server's default rules, matched on words.
    for bad in [
        "-n x delete ns y",
        "kubectl  delete ns y",
        "delete pods --all",
        "delete pod --all",
        "drain node-1",
    ] {
        let e = refused(&c, "execute_kubectl", bad).await;
        assert!(e.contains("refused by the command policy"), "{bad}: {e}");
    }
    // The safe pattern lets a named pod go; the fake server deletes it.
    let (out, rv, _) = ran(&c, "execute_kubectl", "delete pod web-2 --wait=false").await;
    assert_eq!(rv, 0, "{out}");
    assert!(out.contains("\"web-2\" deleted"), "{out}");
    let (out, _, _) = ran(&c, "execute_kubectl", "get pods -o name").await;
    assert_eq!(out, "pod/web-1\n");

    // Errors are kubectl's own, with its exit code.
    let (out, rv, _) = ran(&c, "execute_kubectl", "get pod nope").await;
    assert_ne!(rv, 0);
    assert!(out.contains("pods \"nope\" not found"), "{out}");
    let (out, rv, _) = ran(&c, "execute_kubectl", "--context=down get pods").await;
    assert_ne!(rv, 0);
    assert!(
        out.contains("127.0.0.1:1") && out.contains("refused"),
        "{out}"
    );

    // helm is in the image; istioctl is not, and the error says where it is.
    let (out, rv, _) = ran(&c, "execute_helm", "version --short").await;
    assert!(rv == 0 && out.starts_with('v'), "{out}");
    let e = refused(&c, "execute_istioctl", "version").await;
    assert!(
        e.contains("not installed") && e.contains("images/k8s/build.sh"),
        "{e}"
    );
    let e = refused(&c, "execute_helm", "list --kube-apiserver=http://x").await;
    assert!(e.contains("other credentials"), "{e}");
    c.cancel().await.ok();
}

#[tokio::test]
async fn read_only_refuses_every_mutating_verb() {
    require_image().await;
    let (s, _kube) = start(&[
        ("POD_EXEC_READ_ONLY", "1"),
        ("POD_EXEC_SECURITY_MODE", "permissive"),
    ]);
    let c = connect(&s.url).await;
    start_fake_apiserver(&c).await;
    for bad in [
        "delete pod web-1",
        "apply -f /fixtures/x.yaml",
        "-n default scale deploy web --replicas=0",
        "rollout restart deploy/web",
        "label pod web-1 a=b",
        "exec web-1 -- id",
        "cordon node-1",
        "create ns x",
    ] {
        let e = refused(&c, "execute_kubectl", bad).await;
        assert!(e.contains("read-only"), "{bad}: {e}");
    }
    for bad in [
        "install x chart",
        "upgrade x chart",
        "uninstall x",
        "rollback x 1",
    ] {
        let e = refused(&c, "execute_helm", bad).await;
        assert!(e.contains("read-only"), "{bad}: {e}");
    }
    let (out, rv, _) = ran(&c, "execute_kubectl", "get pods").await;
    assert!(rv == 0 && out.contains("web-1"), "{out}");
    let (out, rv, _) = ran(&c, "execute_kubectl", "describe pod web-1").await;
    assert!(rv == 0 && out.contains("web-1"), "{out}");
    let (out, rv, _) = ran(&c, "execute_kubectl", "logs web-1").await;
    assert!(rv == 0 && out.contains("serving"), "{out}");
    // Permissive mode passes a line to the shell, filters or not.
    let (out, _, _) = ran(&c, "execute_kubectl", "get pods -o name; echo after").await;
    assert!(out.contains("pod/web-1") && out.contains("after"), "{out}");
    c.cancel().await.ok();
}

#[tokio::test]
async fn prompts_list_and_get() {
    require_image().await;
    let (s, _kube) = start(&[]);
    let c = connect(&s.url).await;
    let prompts = c.list_all_prompts().await.expect("prompts/list");
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    for n in [
        "k8s_resource_status",
        "k8s_deploy_application",
        "k8s_troubleshoot",
        "k8s_resource_inventory",
        "k8s_security_check",
        "k8s_resource_scaling",
        "k8s_logs_analysis",
        "istio_service_mesh",
        "helm_chart_management",
        "argocd_application",
        "explore_repository",
        "run_test_suite",
        "diagnose_build_failure",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let t = prompts
        .iter()
        .find(|p| p.name == "k8s_troubleshoot")
        .expect("troubleshoot");
    let args = t.arguments.as_ref().expect("arguments");
    let req: Vec<(&str, bool)> = args
        .iter()
        .map(|a| (a.name.as_str(), a.required == Some(true)))
        .collect();
    assert_eq!(
        req,
        [
            ("resource_type", true),
            ("resource_name", true),
            ("namespace", false)
        ]
    );

    let args = serde_json::json!({"resource_type": "pod", "resource_name": "web-1"});
    let got = c
        .get_prompt(
            GetPromptRequestParams::new("k8s_troubleshoot")
                .with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
        .await
        .expect("prompts/get");
    let text = serde_json::to_string(&got.messages).expect("json");
    assert!(text.contains("pod web-1 in namespace default"), "{text}");
    let missing = c
        .get_prompt(GetPromptRequestParams::new("k8s_troubleshoot"))
        .await;
    let e = format!("{:?}", missing.expect_err("missing argument"));
    assert!(e.contains("resource_type"), "{e}");
    c.cancel().await.ok();
    let _ = Duration::from_secs(0);
}
