//! Protocol conformance where a client errs or the server stops, over real
//! HTTP against the real server: malformed JSON gets 400 with a JSON-RPC
//! parse error (-32700); DELETE of an unknown session gets 404; a second
//! request with the id of one in flight gets an error instead of hanging;
//! calls in flight at shutdown get a JSON-RPC error before their streams
//! close (rmcp's client sees it at once, not after a reconnect timeout).

mod common;

use std::time::{Duration, Instant};

use common::live_podman;
use common::mcp::connect;
use common::server;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

const ACCEPT: &str = "application/json, text/event-stream";

async fn session(http: &reqwest::Client, url: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"0"}}});
    let resp = http
        .post(url)
        .header("Accept", ACCEPT)
        .json(&init)
        .send()
        .await
        .expect("initialize");
    let id = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_owned();
    let _ = resp.bytes().await;
    let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    http.post(url)
        .header("Accept", ACCEPT)
        .header("Mcp-Session-Id", &id)
        .header("MCP-Protocol-Version", "2025-11-25")
        .json(&note)
        .send()
        .await
        .expect("initialized");
    id
}

/// tools/call shell_exec with JSON-RPC id `rid`; the messages of the reply.
async fn call(http: &reqwest::Client, url: &str, sid: &str, rid: u64, command: &str) -> Vec<Value> {
    let body = json!({"jsonrpc":"2.0","id":rid,"method":"tools/call",
        "params":{"name":"shell_exec","arguments":{"command":command}}});
    let text = http
        .post(url)
        .header("Accept", ACCEPT)
        .header("Mcp-Session-Id", sid)
        .header("MCP-Protocol-Version", "2025-11-25")
        .json(&body)
        .send()
        .await
        .expect("tools/call")
        .text()
        .await
        .expect("body");
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

#[tokio::test]
async fn malformed_json_and_unknown_sessions_get_the_protocols_answers() {
    let _podman = live_podman().await;
    let srv = server::start(&[]);
    let http = reqwest::Client::new();
    let resp = http
        .post(&srv.url)
        .header("Accept", ACCEPT)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("a JSON-RPC error body");
    assert_eq!(v["error"]["code"], -32700, "{v}");
    assert_eq!(v["id"], Value::Null, "{v}");
    // A wrong content type is still rmcp's 415.
    let resp = http
        .post(&srv.url)
        .header("Accept", ACCEPT)
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 415);

    let resp = http
        .delete(&srv.url)
        .header("Mcp-Session-Id", "no-such-session")
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 404);
    // A real one ends (200), and a second DELETE finds it gone (404).
    let sid = session(&http, &srv.url).await;
    let resp = http
        .delete(&srv.url)
        .header("Mcp-Session-Id", &sid)
        .header("MCP-Protocol-Version", "2025-11-25")
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    let resp = http
        .delete(&srv.url)
        .header("Mcp-Session-Id", &sid)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn a_duplicate_request_id_in_flight_gets_an_error() {
    let _podman = live_podman().await;
    let srv = server::start(&[]);
    let http = reqwest::Client::new();
    let sid = session(&http, &srv.url).await;
    let first = {
        let (http, url, sid) = (http.clone(), srv.url.clone(), sid.clone());
        tokio::spawn(async move { call(&http, &url, &sid, 5, "sleep 2; echo first").await })
    };
    // Until the first is surely in flight (its command runs).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let t = Instant::now();
    let second = tokio::time::timeout(
        Duration::from_secs(10),
        call(&http, &srv.url, &sid, 5, "echo second"),
    )
    .await
    .expect("the duplicate was answered");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let err = second.iter().find(|m| m["id"] == 5).expect("a reply");
    assert_eq!(err["error"]["code"], -32600, "{second:?}");
    let first = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .expect("the first call finished")
        .expect("join");
    let r = first.iter().find(|m| m["id"] == 5).expect("a reply");
    assert_eq!(
        r["result"]["structuredContent"]["output"], "first\n",
        "{first:?}"
    );
    // The id is free again once answered.
    let again = call(&http, &srv.url, &sid, 5, "echo again").await;
    let r = again.iter().find(|m| m["id"] == 5).expect("a reply");
    assert_eq!(
        r["result"]["structuredContent"]["output"], "again\n",
        "{again:?}"
    );
}

#[tokio::test]
async fn calls_in_flight_at_shutdown_get_an_error_reply() {
    let _podman = live_podman().await;
    let mut srv = server::start(&[]);
    let client = connect(&srv.url).await;
    let pending = tokio::spawn(async move {
        let args = json!({"command": "sleep 60"});
        let r = client
            .call_tool(
                CallToolRequestParams::new("shell_exec")
                    .with_arguments(args.as_object().cloned().unwrap_or_default()),
            )
            .await;
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let signalled = Instant::now();
    srv.signal("TERM");
    let (r, at) = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("the call ended")
        .expect("join");
    let waited = at.duration_since(signalled);
    let e = r.expect_err("a call cut by shutdown has no result");
    assert!(e.to_string().contains("server stopped"), "{e}");
    assert!(
        waited < Duration::from_secs(3),
        "the client waited {waited:?}"
    );
    assert!(srv.wait_exit(Duration::from_secs(10)).is_some());
    assert!(
        srv.logs()
            .contains("requests in flight answered with an error")
    );
}
