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

/// Waits until the collected log has `what` (its reader may lag).
async fn logged(log: &std::sync::Arc<std::sync::Mutex<String>>, what: &str) {
    wait_for(Duration::from_secs(5), what, || async {
        log.lock().unwrap_or_else(|e| e.into_inner()).contains(what)
    })
    .await;
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
    logged(&log, "why=\"stdio closed\"").await;
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
    logged(&log, "why=\"signal\"").await;
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

/// Over stdio, stdout carries only JSON-RPC: a `server/discover` probe and
/// a 2026-07-28 call (no handshake) are answered, each line is a JSON-RPC
/// message, and the process exits with its sandbox gone when stdin closes.
#[tokio::test]
async fn stdio_answers_discover_and_a_stateless_call_with_protocol_only_on_stdout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let podman = live_podman().await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
    });
    let discover =
        json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta": meta}});
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name":"shell_exec","arguments":{"command":"echo hi; hostname"},"_meta": meta}});
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pod_exec_mcp"))
        .args(["--transport", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    stdin
        .write_all(format!("{discover}\n{call}\n").as_bytes())
        .await
        .expect("write");
    // Read until both answers are in, then close stdin.
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while String::from_utf8_lossy(&out).matches("\"id\":").count() < 2
        || !String::from_utf8_lossy(&out).contains("\"id\":2")
    {
        let n = tokio::time::timeout_at(deadline, stdout.read(&mut buf))
            .await
            .expect("answers in time")
            .expect("read");
        assert!(
            n > 0,
            "stdout closed early: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exit after stdin closed")
        .expect("wait");
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest).await;
    out.extend_from_slice(&rest);
    assert!(status.success(), "{status}");
    let text = String::from_utf8_lossy(&out).into_owned();
    let messages: Vec<Value> = text
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {l:?}"))
        })
        .collect();
    assert!(messages.iter().all(|m| m["jsonrpc"] == "2.0"), "{text}");
    let d = messages
        .iter()
        .find(|m| m["id"] == 1)
        .expect("discover answered");
    assert!(d["result"].is_object(), "{d}");
    let r = messages
        .iter()
        .find(|m| m["id"] == 2)
        .expect("call answered");
    let output = r["result"]["structuredContent"]["output"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    let host = output.strip_prefix("hi\n").expect("hi").trim().to_owned();
    assert!(
        !exists(&podman, &host).await,
        "the stdio sandbox outlived the process"
    );
}

/// An open SSE stream read raw: its `message` events as JSON.
struct SseStream {
    conn: tokio::net::TcpStream,
    got: String,
    addr: String,
    session: String,
}

impl SseStream {
    async fn open(addr: &str) -> SseStream {
        use tokio::io::AsyncWriteExt;
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(
            b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .expect("write");
        let mut s = SseStream {
            conn,
            got: String::new(),
            addr: addr.to_owned(),
            session: String::new(),
        };
        let line = s.until("sessionId=").await;
        s.session = line
            .split("sessionId=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("the endpoint event's session")
            .to_owned();
        s
    }

    /// Reads until `what` has arrived; returns the text from there to the
    /// end of its line and consumes everything up to it.
    async fn until(&mut self, what: &str) -> String {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 16384];
        loop {
            if let Some(at) = self.got.find(what)
                && let Some(end) = self.got[at..].find('\n')
            {
                let line = self.got[at..at + end].to_owned();
                self.got.drain(..at + end);
                return line;
            }
            let n = tokio::time::timeout_at(deadline, self.conn.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {what:?} on the stream in time: {}", self.got))
                .expect("read");
            assert!(n > 0, "the stream ended: {}", self.got);
            self.got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// The next message event's JSON.
    async fn next(&mut self) -> Value {
        let line = self.until("data: {").await;
        serde_json::from_str(line.trim_start_matches("data: ")).expect("JSON data")
    }

    /// The next message answering request `id`.
    async fn answer(&mut self, id: u64) -> Value {
        loop {
            let m = self.next().await;
            if m["id"] == id && (m.get("result").is_some() || m.get("error").is_some()) {
                return m;
            }
        }
    }

    async fn post(&self, body: Value) {
        let body = body.to_string();
        let r = raw(
            &self.addr,
            &format!(
                "POST /messages?sessionId={} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.session,
                body.len()
            ),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 202"), "{r}");
    }

    async fn call(&self, id: u64, command: &str) {
        self.post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "shell_exec", "arguments": {"command": command}}}))
            .await;
    }
}

/// Over SSE as over /mcp: a request whose id is still in flight gets an
/// error at once and the first still gets its own answer; an answered or
/// cancelled request's id is free again.
#[tokio::test]
async fn sse_duplicate_request_ids_are_refused_until_answered_or_cancelled() {
    let _podman = live_podman().await;
    let srv = server::start(&[("POD_EXEC_SSE", "1")]);
    let addr = srv
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let mut sse = SseStream::open(&addr).await;
    sse.post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {},
        "clientInfo": {"name": "raw-sse", "version": "0"}}}),
    )
    .await;
    assert!(sse.answer(1).await.get("result").is_some());
    sse.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;

    sse.call(5, "sleep 2; echo first").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    sse.call(5, "echo second").await;
    let t = std::time::Instant::now();
    let dup = sse.answer(5).await;
    assert_eq!(dup["error"]["code"], -32600, "{dup}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let first = sse.answer(5).await;
    assert_eq!(
        first["result"]["structuredContent"]["output"], "first\n",
        "{first}"
    );
    sse.call(5, "echo again").await;
    let again = sse.answer(5).await;
    assert_eq!(
        again["result"]["structuredContent"]["output"], "again\n",
        "{again}"
    );

    // Cancelled: no answer comes, and the id may be used again.
    sse.call(7, "sleep 30").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    sse.post(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "test"}}),
    )
    .await;
    sse.call(7, "echo after-cancel").await;
    let after = sse.answer(7).await;
    assert_eq!(
        after["result"]["structuredContent"]["output"], "after-cancel\n",
        "{after}"
    );
}
