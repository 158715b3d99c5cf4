//! The HTTP face of the security issue, against the real server binary and
//! a real Podman: bearer tokens on every path and method, OAuth discovery
//! answered 404, browser Origins, 405 for a session-less GET, refusal to
//! serve a non-loopback address without a token, tokens absent from logs,
//! the sandbox limit, the audit log and the tool annotations.

mod common;

use std::time::Duration;

use common::live_podman;
use common::mcp::{self, connect_with_token};
use common::server::{self, ServerProcess, wait_for};
use reqwest::StatusCode;

const TOKEN: &str = "test-token-7f3a9c1e5b2d4f60";
const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-fedcba9876543210xx";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// The server's base, `http://127.0.0.1:PORT`.
fn base(srv: &ServerProcess) -> String {
    srv.url.trim_end_matches("/mcp").to_owned()
}

fn initialize_body() -> String {
    serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}
        }
    })
    .to_string()
}

/// POSTs an initialize request with the given extra headers.
async fn post_initialize(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize_body());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

/// Every path and method without (or with a wrong) token is 401 with a
/// plain `WWW-Authenticate: Bearer` and a body that says nothing more;
/// discovery paths are a plain 404 even without a token; the right token
/// works with rmcp's client; the token never reaches the log.
#[tokio::test]
async fn bearer_token_on_every_path_and_method() {
    let _podman = live_podman().await;
    let srv = server::start(&[("POD_EXEC_AUTH_TOKEN", TOKEN)]);
    let b = base(&srv);
    let client = http();
    let wrong = format!("Bearer {TOKEN}x");
    let basic = "Basic dXNlcjpwYXNz".to_owned();
    for (method, path) in [
        ("POST", "/mcp"),
        ("GET", "/mcp"),
        ("DELETE", "/mcp"),
        ("PUT", "/mcp"),
        ("GET", "/"),
        ("GET", "/anything"),
        ("OPTIONS", "/mcp"),
    ] {
        for auth in [None, Some(&wrong), Some(&basic)] {
            let mut req = client.request(method.parse().expect("method"), format!("{b}{path}"));
            if let Some(a) = auth {
                req = req.header("authorization", a.as_str());
            }
            let resp = req.send().await.expect("request");
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {auth:?}"
            );
            let www: Vec<_> = resp.headers().get_all("www-authenticate").iter().collect();
            assert_eq!(www.len(), 1, "{method} {path}");
            assert_eq!(www[0], "Bearer", "{method} {path}: no resource_metadata");
            let body = resp.text().await.expect("body");
            assert_eq!(body, "unauthorized\n", "{method} {path}");
        }
    }
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        for auth in [None, Some(format!("Bearer {TOKEN}"))] {
            let mut req = client.get(format!("{b}{path}"));
            if let Some(a) = &auth {
                req = req.header("authorization", a.as_str());
            }
            let resp = req.send().await.expect("request");
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(resp.headers().get("www-authenticate").is_none(), "{path}");
        }
    }
    // The right token: a session and a real call.
    let c = connect_with_token(&srv.url, TOKEN).await;
    let r = mcp::run(&c, "echo authenticated").await;
    assert_eq!(r.output, "authenticated\n");
    // The scheme is case-insensitive (RFC 6750).
    let resp = post_initialize(&srv.url, &[("authorization", &format!("bearer {TOKEN}"))]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    c.cancel().await.expect("close");

    let logs = srv.logs();
    assert!(logs.contains("authentication: bearer token"), "{logs}");
    assert!(!logs.contains(TOKEN), "the token is in the log:\n{logs}");
    assert!(
        !logs.contains("7f3a9c1e"),
        "part of the token is in the log"
    );
}

/// A foreign browser Origin gets 403; loopback pages and configured
/// origins pass; non-browser requests (no Origin) pass.
#[tokio::test]
async fn browser_origins() {
    let _podman = live_podman().await;
    let srv = server::start(&[
        ("POD_EXEC_AUTH_TOKEN", TOKEN),
        ("POD_EXEC_ALLOWED_ORIGINS", "https://app.example.com:443"),
    ]);
    let auth = format!("Bearer {TOKEN}");
    for (origin, want) in [
        (Some("https://evil.example"), StatusCode::FORBIDDEN),
        (Some("http://app.example.com"), StatusCode::FORBIDDEN),
        (Some("null"), StatusCode::FORBIDDEN),
        (Some("http://localhost:6274"), StatusCode::OK),
        (Some("http://127.0.0.1:5173"), StatusCode::OK),
        (Some("https://app.example.com"), StatusCode::OK),
        (None, StatusCode::OK),
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        let resp = post_initialize(&srv.url, &headers).await;
        assert_eq!(resp.status(), want, "Origin {origin:?}");
    }
}

/// GET on /mcp without a session: 405 with `Allow`, not rmcp's 400 (Claude
/// clients treat 400 and 404 there as fatal).
#[tokio::test]
async fn session_less_get_is_405_with_allow() {
    let _podman = live_podman().await;
    let srv = server::start(&[]);
    let resp = http()
        .get(&srv.url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = resp.headers().get("allow").expect("Allow header");
    assert_eq!(allow, "POST, DELETE");
}

/// 0.0.0.0 without a token does not start, in one line saying how to set
/// one; --insecure-no-auth starts and warns; a token lets it start quietly.
#[tokio::test]
async fn non_loopback_needs_a_token() {
    let _podman = live_podman().await;
    let (st, err, took) = server::start_failure(&[("MCP_HOST", "0.0.0.0")]);
    assert!(!st.success());
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("without authentication"), "{err}");
    assert!(err.contains("POD_EXEC_AUTH_TOKEN"), "{err}");
    assert!(err.contains("--insecure-no-auth"), "{err}");

    let (st, err, _) =
        server::start_failure(&[("MCP_HOST", "0.0.0.0"), ("POD_EXEC_AUTH_TOKEN", "short")]);
    assert!(!st.success());
    assert!(err.contains("at least 16"), "{err}");
    assert!(!err.contains("short\""), "{err}");

    let open = server::start(&[("MCP_HOST", "0.0.0.0"), ("POD_EXEC_INSECURE_NO_AUTH", "1")]);
    assert!(
        open.logs().contains("WITHOUT authentication"),
        "{}",
        open.logs()
    );
    drop(open);
    let safe = server::start(&[("MCP_HOST", "0.0.0.0"), ("POD_EXEC_AUTH_TOKEN", TOKEN)]);
    assert!(!safe.logs().contains("WITHOUT"), "{}", safe.logs());
    assert!(!safe.logs().contains(TOKEN));

    // --help shows the variable's name, never its value.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pod_exec_mcp"))
        .arg("--help")
        .env("POD_EXEC_AUTH_TOKEN", TOKEN)
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("POD_EXEC_AUTH_TOKEN"), "{help}");
    assert!(!help.contains(TOKEN), "--help shows the token:\n{help}");
}

/// Named tokens: each caller's identity lands in the audit log with the
/// sandbox tag, the command, retval and duration; the command text is not
/// in the ordinary log.
#[tokio::test]
async fn named_tokens_and_the_audit_log() {
    let _podman = live_podman().await;
    let dir = std::env::temp_dir().join(common::unique("pem-audit"));
    std::fs::create_dir_all(&dir).expect("dir");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("# who\nalice:{ALICE}\nbob:{BOB}\n")).expect("tokens");
    let audit = dir.join("audit.jsonl");
    let srv = server::start(&[
        ("POD_EXEC_AUTH_TOKENS_FILE", tokens.to_str().expect("path")),
        ("POD_EXEC_AUDIT_LOG", audit.to_str().expect("path")),
    ]);
    let a = connect_with_token(&srv.url, ALICE).await;
    let b = connect_with_token(&srv.url, BOB).await;
    let marker = "audit-marker-5e1f";
    let r = mcp::run(&a, &format!("echo {marker}; exit 4")).await;
    assert_eq!(r.retval, 4);
    let r = mcp::call(&b, "").await;
    assert_eq!(r.is_error, Some(true));

    let text = std::fs::read_to_string(&audit).expect("audit log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first = &lines[0];
    assert_eq!(first["caller"], "alice", "{first}");
    assert_eq!(first["tool"], "shell_exec");
    assert_eq!(first["command"], format!("echo {marker}; exit 4"));
    assert_eq!(first["retval"], 4);
    assert!(first["duration_ms"].as_u64().is_some(), "{first}");
    assert!(first["refused_by"].is_null(), "{first}");
    assert!(first["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let tag = first["sandbox"].as_str().expect("sandbox tag");
    let logs = srv.logs();
    assert!(
        logs.contains(tag),
        "the tag is the one the log uses:\n{logs}"
    );
    assert!(!logs.contains(marker), "command text in the ordinary log");
    assert_eq!(lines[1]["caller"], "bob");
    assert!(lines[1]["retval"].is_null());
    assert!(
        lines[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("empty")),
        "{}",
        lines[1]
    );
    assert!(!logs.contains(ALICE) && !logs.contains(BOB));
    a.cancel().await.expect("close");
    b.cancel().await.expect("close");
    let _ = std::fs::remove_dir_all(&dir);
}

/// POD_EXEC_MAX_SESSIONS bounds live sandboxes: one more is a tool error
/// naming the limit; once one ends, a new one fits.
#[tokio::test]
async fn sandbox_limit() {
    let podman = live_podman().await;
    let srv = server::start(&[("POD_EXEC_MAX_SESSIONS", "1")]);
    let a = mcp::connect(&srv.url).await;
    let b = mcp::connect(&srv.url).await;
    mcp::run(&a, "true").await;
    let refused = mcp::error_text(&mcp::call(&b, "true").await);
    assert!(refused.contains("POD_EXEC_MAX_SESSIONS"), "{refused}");
    assert!(refused.contains('1'), "{refused}");
    // A session-less call needs a sandbox too.
    let reply = mcp::stateless_call(&srv.url, "true").await;
    assert!(reply.contains("POD_EXEC_MAX_SESSIONS"), "{reply}");
    assert_eq!(srv.containers(&podman).await.len(), 1);
    a.cancel().await.expect("close");
    wait_for(Duration::from_secs(10), "a's container removed", || async {
        srv.containers(&podman).await.is_empty()
    })
    .await;
    let r = mcp::run(&b, "echo fits").await;
    assert_eq!(r.output, "fits\n");
    b.cancel().await.expect("close");
}

/// Annotations are honest and follow the configuration.
#[tokio::test]
async fn tool_annotations() {
    let _podman = live_podman().await;
    for (env, open_world, destructive) in [
        (vec![], true, true),
        (vec![("POD_EXEC_NETWORK", "none")], false, true),
        (vec![("POD_EXEC_READ_ONLY", "true")], true, false),
    ] {
        let srv = server::start(&env);
        let c = mcp::connect(&srv.url).await;
        let tools = c.list_all_tools().await.expect("tools/list");
        let t = tools
            .iter()
            .find(|t| t.name == "shell_exec")
            .expect("shell_exec");
        let a = t.annotations.as_ref().expect("annotations");
        assert_eq!(a.read_only_hint, Some(false), "{env:?}");
        assert_eq!(a.destructive_hint, Some(destructive), "{env:?}");
        assert_eq!(a.idempotent_hint, Some(false), "{env:?}");
        assert_eq!(a.open_world_hint, Some(open_world), "{env:?}");
        c.cancel().await.expect("close");
    }
}
