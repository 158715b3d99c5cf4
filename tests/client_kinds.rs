//! Every kind of client keeps its sandbox, with clients nobody here wrote:
//! the Python SDK 2.x high-level client (stateless 2026-07-28) through
//! sandbox handles; the Python SDK's stdio clients launching
//! `pod_exec_mcp --transport stdio` (2.x in its default "auto" mode, which
//! probes `server/discover` first, and in legacy mode; 1.x); the legacy
//! HTTP+SSE transport with the Python SDK 1.x `sse_client` and the MCP
//! Inspector CLI `--transport sse`. Clients are installed by
//! tests/clients/setup.sh; a missing one fails with that instruction.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::clients::{clients_dir, installed};
use common::server::{ServerProcess, wait_for};
use pod_exec_mcp::podman::PodmanClient;
use serde_json::Value;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// A server with a short POD_EXEC_SANDBOX_TTL expires every idle handle
/// sandbox on the Podman (as a replica would): the tests that keep one
/// idle for a while take turns with it.
static HANDLE_TTL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const TOKEN: &str = "client-kinds-token-7c2d9e0f1a3b5c";

/// Runs a client in tests/clients, bounded by [`CLIENT_TIMEOUT`]; `logs`
/// is shown if it overruns.
async fn run(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    logs: &dyn Fn() -> String,
) -> Output {
    common::clients::run(program, args, envs, CLIENT_TIMEOUT, logs)
        .await
        .out
}

/// The last stdout line as JSON, after checking the run succeeded.
fn summary(out: &Output, logs: &dyn Fn() -> String) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{}",
        out.status,
        logs()
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n--- stderr\n{stderr}"));
    assert_eq!(v["ok"], true, "{v}");
    eprintln!("{v}");
    v
}

/// Managed containers whose id starts with `hostname` (a sandbox's
/// hostname is its container id's first 12 digits).
async fn containers_named(podman: &PodmanClient, hostname: &str) -> usize {
    assert!(hostname.len() >= 12, "{hostname:?}");
    podman
        .list_containers(&["pod-exec-mcp.managed=true"])
        .await
        .expect("list")
        .iter()
        .filter(|c| c.id.starts_with(hostname))
        .count()
}

async fn none_of_instance_soon(podman: &PodmanClient, server: &ServerProcess, why: &str) {
    wait_for(Duration::from_secs(10), why, || async {
        server.containers(podman).await.is_empty()
    })
    .await;
}

/// The 2.x high-level client is stateless (2026-07-28): a plain call says
/// it ran one-shot and how to keep state; with a handle, files persist
/// across its calls; sandbox_list shows it; destroyed, made-up and expired
/// handles all get one error.
#[tokio::test]
async fn python_sdk_2x_stateless_client_keeps_state_with_a_handle() {
    let _turn = HANDLE_TTL.lock().await;
    let podman = common::live_podman().await;
    let python = installed(".venv-mcp2/bin/python");
    let server = common::server::start(&[("POD_EXEC_SANDBOX_TTL", "4")]);
    let logs = || server.logs();
    let out = run(
        &python,
        &["py_client.py", "--handles", &server.url],
        &[("PY_CLIENT_TTL_WAIT", "7")],
        &logs,
    )
    .await;
    let s = summary(&out, &logs);
    assert_eq!(s["protocol_version"], "2026-07-28", "{s}");
    assert_eq!(s["expired_same_error"], true, "{s}");
    assert_eq!(
        s["tools"],
        serde_json::json!([
            "sandbox_create",
            "sandbox_destroy",
            "sandbox_list",
            "shell_exec"
        ])
    );
    none_of_instance_soon(&podman, &server, "every sandbox of the run removed").await;
    let l = server.logs();
    assert!(
        !l.contains("session opened"),
        "a stateless client opened a session:\n{l}"
    );
    assert!(l.contains("handle sandbox expired"), "{l}");
}

/// The Python SDK launches `pod_exec_mcp --transport stdio`: calls share
/// one sandbox, a handle works, and when the client closes stdin nothing
/// managed is left.
async fn python_stdio(venv: &str, mode: &str, expect_version: &str) {
    let _turn = HANDLE_TTL.lock().await;
    let podman = common::live_podman().await;
    let python = installed(&format!("{venv}/bin/python"));
    let bin = env!("CARGO_BIN_EXE_pod_exec_mcp");
    let flag = format!("--stdio-{mode}");
    let no_logs = || String::from("(the server's log is in the client's stderr above)");
    let out = run(
        &python,
        &["py_client.py", &flag, bin, "--transport", "stdio"],
        &[("RUST_LOG", "info,rmcp=warn")],
        &no_logs,
    )
    .await;
    let s = summary(&out, &no_logs);
    let pv = s["protocol_version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(pv, expect_version, "{s}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The server's log reached the client's stderr, not the protocol.
    assert!(stderr.contains("serving MCP on stdio"), "{stderr}");
    for key in ["hostname", "handle_hostname"] {
        if let Some(h) = s[key].as_str() {
            assert_eq!(
                containers_named(&podman, h).await,
                0,
                "{key} {h}'s container outlived the stdio server\n{stderr}"
            );
        }
    }
    assert!(stderr.contains("why=\"stdio closed\""), "{stderr}");
}

#[tokio::test]
async fn python_sdk_2x_stdio_client_with_discover_probe() {
    // Mode "auto" probes server/discover and then speaks 2026-07-28.
    python_stdio(".venv-mcp2", "auto", "2026-07-28").await;
}

#[tokio::test]
async fn python_sdk_2x_stdio_client_with_handshake() {
    python_stdio(".venv-mcp2", "legacy", "2025-11-25").await;
}

#[tokio::test]
async fn python_sdk_1x_stdio_client() {
    python_stdio(".venv-mcp1", "legacy", "2025-11-25").await;
}

/// The legacy HTTP+SSE transport with the 1.x `sse_client`, behind the
/// bearer token: refused without it; with it, calls share the stream's
/// sandbox, which goes when the client closes the stream.
#[tokio::test]
async fn python_sdk_1x_sse_client() {
    let podman = common::live_podman().await;
    let python = installed(".venv-mcp1/bin/python");
    let server = common::server::start(&[("POD_EXEC_SSE", "true"), ("POD_EXEC_AUTH_TOKEN", TOKEN)]);
    let logs = || server.logs();
    let sse = server.url.replace("/mcp", "/sse");
    let refused = run(&python, &["py_client.py", "--sse", &sse], &[], &logs).await;
    assert!(!refused.status.success(), "no token, yet it ran");
    let out = run(
        &python,
        &["py_client.py", "--sse", &sse],
        &[("MCP_BEARER_TOKEN", TOKEN)],
        &logs,
    )
    .await;
    let s = summary(&out, &logs);
    assert!(s["tools"].as_array().is_some_and(|t| t.len() == 4), "{s}");
    none_of_instance_soon(&podman, &server, "the SSE session's sandbox removed").await;
    // The log line follows the removal.
    wait_for(Duration::from_secs(5), "the removal logged", || async {
        server.logs().contains("why=\"stream closed\"")
    })
    .await;
    assert!(
        server.logs().contains("SSE session ended"),
        "{}",
        server.logs()
    );
}

/// The MCP Inspector CLI over `--transport sse`.
#[tokio::test]
async fn inspector_cli_over_sse() {
    let podman = common::live_podman().await;
    let inspector = installed("node_modules/.bin/mcp-inspector");
    let server = common::server::start(&[("POD_EXEC_SSE", "true"), ("POD_EXEC_AUTH_TOKEN", TOKEN)]);
    let logs = || server.logs();
    let sse = server.url.replace("/mcp", "/sse");
    let header = format!("Authorization: Bearer {TOKEN}");
    let out = run(
        &inspector,
        &[
            "--cli",
            &sse,
            "--transport",
            "sse",
            "--header",
            &header,
            "--method",
            "tools/call",
            "--tool-name",
            "shell_exec",
            "--tool-arg",
            "command=echo hi over sse",
        ],
        &[],
        &logs,
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    let result: Value = serde_json::from_str(&stdout).expect("inspector JSON");
    assert_eq!(
        result["structuredContent"]["output"], "hi over sse\n",
        "{result}"
    );
    none_of_instance_soon(&podman, &server, "the Inspector's SSE sandbox removed").await;
}

/// The Inspector CLI 2.x (on Node 22 from the npm `node` package) in a
/// protocol era: its JSON result.
async fn inspector2(server: &ServerProcess, era: &str, tool: &str, args: &[&str]) -> Value {
    let bin = installed("inspector2/node_modules/.bin");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let header = format!("Authorization: Bearer {TOKEN}");
    let mut all = vec![
        "--cli",
        server.url.as_str(),
        "--transport",
        "http",
        "--protocol-era",
        era,
        "--header",
        header.as_str(),
        "--method",
        "tools/call",
        "--tool-name",
        tool,
    ];
    for a in args {
        all.push("--tool-arg");
        all.push(a);
    }
    let logs = || server.logs();
    let out = run(&bin.join("mcp-inspector"), &all, &[("PATH", &path)], &logs).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", logs());
    assert!(!stderr.contains("unknown format"), "{stderr}");
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("inspector JSON ({e}): {stdout}\n{stderr}"));
    assert_eq!(v["isError"], false, "{v}");
    v["structuredContent"].clone()
}

/// The Inspector CLI 2.x in its default (legacy: handshake, a session per
/// process) and its modern (2026-07-28, stateless) protocol era. Each run
/// is a process of its own, so only a handle carries state from one to the
/// next.
#[tokio::test]
async fn inspector_cli_2x_default_and_modern_eras() {
    let _turn = HANDLE_TTL.lock().await;
    let podman = common::live_podman().await;
    let server = common::server::start(&[("POD_EXEC_AUTH_TOKEN", TOKEN)]);
    let sc = inspector2(&server, "legacy", "shell_exec", &["command=echo legacy"]).await;
    assert_eq!(sc["output"], "legacy\n", "{sc}");
    assert!(
        sc.get("oneshot").is_none(),
        "a session call marked one-shot: {sc}"
    );
    let sc = inspector2(&server, "modern", "shell_exec", &["command=echo modern"]).await;
    assert_eq!(sc["output"], "modern\n", "{sc}");
    assert_eq!(sc["oneshot"], true, "{sc}");
    let h = inspector2(&server, "modern", "sandbox_create", &["name=insp"]).await;
    let h = h["sandbox"].as_str().expect("handle").to_owned();
    let arg = format!("sandbox={h}");
    inspector2(
        &server,
        "modern",
        "shell_exec",
        &["command=echo across > x.txt", &arg],
    )
    .await;
    let sc = inspector2(
        &server,
        "legacy",
        "shell_exec",
        &["command=cat x.txt", &arg],
    )
    .await;
    assert_eq!(
        sc["output"], "across\n",
        "the handle did not carry state: {sc}"
    );
    let sc = inspector2(&server, "modern", "sandbox_destroy", &[&arg]).await;
    assert_eq!(sc["destroyed"], true, "{sc}");
    // The legacy run's session is never DELETEd by the CLI: only it may
    // remain, until the idle timeout.
    let left = server.containers(&podman).await;
    assert!(
        left.iter()
            .all(|c| c.labels.get("pod-exec-mcp.kind").map(String::as_str) == Some("session")),
        "{left:?}"
    );
}

/// The 2.x stateless client keeps its handle across a server restart: it
/// pauses after writing a file through the handle, the server is stopped
/// with SIGTERM and a new one started on the same port, and the client's
/// next call with the handle reads the file.
#[tokio::test]
async fn python_sdk_2x_handle_survives_a_server_restart() {
    let _turn = HANDLE_TTL.lock().await;
    use tokio::io::AsyncBufReadExt;
    let _podman = common::live_podman().await;
    let python = installed(".venv-mcp2/bin/python");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port().to_string()
    };
    let mut first = common::server::start(&[("MCP_PORT", &port)]);
    let flag = std::env::temp_dir().join(common::unique("pem-restart-flag"));
    let mut child = tokio::process::Command::new(&python)
        .args(["py_client.py", "--handles", &first.url])
        .env("PY_CLIENT_PAUSE_WITH_HANDLE", &flag)
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start py_client.py");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(CLIENT_TIMEOUT, lines.next_line())
        .await
        .expect("the client got its handle in time")
        .expect("read")
        .unwrap_or_default();
    assert!(ready.contains("handle_ready"), "{ready}\n{}", first.logs());
    first.signal("TERM");
    assert!(
        first.wait_exit(Duration::from_secs(10)).is_some(),
        "no exit on SIGTERM"
    );
    let second = common::server::start(&[("MCP_PORT", &port)]);
    assert_eq!(second.url, first.url);
    std::fs::write(&flag, b"go").expect("flag");
    let out = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .expect("the client finished in time")
        .expect("wait");
    let _ = std::fs::remove_file(&flag);
    let mut rest = Vec::new();
    while let Ok(Some(l)) = lines.next_line().await {
        rest.push(l);
    }
    let last = rest.last().cloned().unwrap_or_default();
    assert!(
        out.status.success(),
        "client failed: {last}\n{}\n--- second server\n{}",
        String::from_utf8_lossy(&out.stderr),
        second.logs()
    );
    let s: Value = serde_json::from_str(&last).expect("summary JSON");
    assert_eq!(s["after_restart"], true, "{s}");
    assert!(
        second.logs().contains("handle sandbox taken over"),
        "{}",
        second.logs()
    );
    drop((first, second));
}
