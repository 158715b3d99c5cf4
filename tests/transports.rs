//! The stdio and legacy SSE transports against real Podman: rmcp's
//! child-process client launches `pod_exec_mcp --transport stdio` (one
//! session, one sandbox, handles too; all removed when stdin closes or on
//! SIGTERM); the SSE endpoints keep the HTTP gate's rules (token, Host) and
//! answer bad requests plainly; without `--sse` they do not exist.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::live_podman;
use common::server::{self, wait_for};
use pod_exec_mcp::podman::PodmanClient;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

type StdioClient = rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>;

/// Launches the server over stdio; its stderr (the log) is collected.
async fn stdio_server() -> (StdioClient, u32, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pod_exec_mcp"));
    cmd.args(["--transport", "stdio"])
        .env("RUST_LOG", "info,rmcp=warn");
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pod_exec_mcp --transport stdio");
    let pid = transport.id().expect("pid");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    if let Some(stderr) = stderr {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut g = log.lock().unwrap_or_else(|e| e.into_inner());
                g.push_str(&l);
                g.push('\n');
            }
        });
    }
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("stdio-test", "0"),
    );
    let client = info.serve(transport).await.expect("initialize over stdio");
    (client, pid, log)
}

async fn call(client: &StdioClient, name: &str, args: Value) -> Value {
    let r = client
        .call_tool(
            CallToolRequestParams::new(name.to_owned())
                .with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
        .await
        .expect("call");
    assert_ne!(r.is_error, Some(true), "{name}: {r:?}");
    r.structured_content.expect("structuredContent")
}

async fn exists(podman: &PodmanClient, hostname: &str) -> bool {
    podman
        .list_containers(&["pod-exec-mcp.managed=true"])
        .await
        .expect("list")
        .iter()
        .any(|c| c.id.starts_with(hostname.trim()))
}

/// The two sandboxes a stdio session made: its own and a handle's.
async fn two_sandboxes(client: &StdioClient) -> (String, String) {
    let h = call(
        client,
        "shell_exec",
        json!({"command": "echo a > a.txt; hostname"}),
    )
    .await;
    let host = h["output"].as_str().expect("output").trim().to_owned();
    let again = call(
        client,
        "shell_exec",
        json!({"command": "cat a.txt; hostname"}),
    )
    .await;
    assert_eq!(
        again["output"],
        format!("a\n{host}\n"),
        "one sandbox per stdio session"
    );
    let handle = call(client, "sandbox_create", json!({})).await["sandbox"]
        .as_str()
        .expect("handle")
        .to_owned();
    let hh = call(
        client,
        "shell_exec",
        json!({"command": "hostname", "sandbox": handle}),
    )
    .await;
    let handle_host = hh["output"].as_str().expect("output").trim().to_owned();
    assert_ne!(host, handle_host);
    (host, handle_host)
}

#[tokio::test]
async fn stdio_sandboxes_go_when_stdin_closes() {
    let podman = live_podman().await;
    let (client, pid, log) = stdio_server().await;
    let (a, b) = two_sandboxes(&client).await;
    assert!(exists(&podman, &a).await && exists(&podman, &b).await);
    // Closing the client closes the server's stdin.
    let _ = client.cancel().await;
    wait_for(
        Duration::from_secs(15),
        "the stdio server to exit",
        || async {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        },
    )
    .await;
    assert!(!exists(&podman, &a).await, "session sandbox left");
    assert!(!exists(&podman, &b).await, "handle sandbox left");
    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(log.contains("why=\"stdio closed\""), "{log}");
}

#[tokio::test]
async fn stdio_sandboxes_go_on_sigterm() {
    let podman = live_podman().await;
    let (client, pid, log) = stdio_server().await;
    let (a, b) = two_sandboxes(&client).await;
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -TERM {pid}");
    wait_for(
        Duration::from_secs(15),
        "the sandboxes removed after SIGTERM",
        || {
            let podman = podman.clone();
            let (a, b) = (a.clone(), b.clone());
            async move { !exists(&podman, &a).await && !exists(&podman, &b).await }
        },
    )
    .await;
    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(log.contains("why=\"signal\""), "{log}");
    drop(client);
}

/// Raw HTTP/1.1 request; returns status line and the head of the body.
async fn raw(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    // Until the head and, for an event stream, its first event are in
    // (they may come in separate reads); the stream itself stays open.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        let complete = text.contains("\r\n\r\n")
            && (!text.contains("text/event-stream") || text.contains("sessionId="));
        if complete {
            return text;
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no complete reply in time: {text}"))
            .expect("read");
        if n == 0 {
            return text;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn sse_endpoints_keep_the_gate_and_answer_plainly() {
    let _podman = live_podman().await;
    let token = "sse-gate-token-0a1b2c3d4e5f6a7b8c9d";
    let srv = server::start(&[("POD_EXEC_SSE", "1"), ("POD_EXEC_AUTH_TOKEN", token)]);
    let addr = srv
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let auth = format!("Authorization: Bearer {token}\r\n");
    let get = |host: &str, auth: &str| {
        format!("GET /sse HTTP/1.1\r\nHost: {host}\r\n{auth}Accept: text/event-stream\r\n\r\n")
    };
    let r = raw(&addr, &get("127.0.0.1", "")).await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = raw(&addr, &get("evil.example", &auth)).await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = raw(&addr, &get("127.0.0.1", &auth)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("text/event-stream"), "{r}");
    assert!(
        r.contains("event: endpoint\ndata: /messages?sessionId="),
        "{r}"
    );
    let post = |q: &str, body: &str| {
        format!(
            "POST /messages?{q} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let r = raw(&addr, &post("sessionId=00ff", "{}")).await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = raw(&addr, &post("x=1", "{}")).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // Without --sse there is no such endpoint.
    let plain = server::start(&[("POD_EXEC_AUTH_TOKEN", token)]);
    let addr = plain
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let r = raw(&addr, &get("127.0.0.1", &auth)).await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
}
