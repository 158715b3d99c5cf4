//! Sandbox handles and capacity against the real server and Podman, driven
//! by rmcp's client: a handle reaches one sandbox from any session, is
//! bound to its caller, expires by its TTL (also across a restart), survives
//! SIGTERM and SIGKILL of the server; a client opening a session per call
//! is never refused and never holds more than POD_EXEC_MAX_SESSIONS
//! containers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::live_podman;
use common::mcp::{self, Client, connect, connect_with_token};
use common::server::{self, ServerProcess, wait_for};
use pod_exec_mcp::podman::PodmanClient;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde_json::{Value, json};

const ALICE: &str = "alice-token-6f0e9c1d2b3a4f5e6d7c8b9a";
const BOB: &str = "bob-token-1a2b3c4d5e6f7a8b9c0d1e2f3a4b";

/// Tests that must not overlap: the 200-session one loads Podman enough
/// that a server started beside it can miss its 1.5 s start-up check, and
/// a server with a short POD_EXEC_SANDBOX_TTL expires every idle handle
/// sandbox on the Podman, other tests' too (as replicas would).
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn tool(client: &Client, name: &str, args: Value) -> CallToolResult {
    let args = args.as_object().cloned().unwrap_or_default();
    client
        .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("call {name}: {e}"))
}

/// A successful tool call's structuredContent.
async fn ok(client: &Client, name: &str, args: Value) -> Value {
    let r = tool(client, name, args.clone()).await;
    assert_ne!(r.is_error, Some(true), "{name} {args} failed: {r:?}");
    r.structured_content.expect("structuredContent")
}

async fn create(client: &Client, name: &str) -> String {
    let sc = ok(client, "sandbox_create", json!({ "name": name })).await;
    let h = sc["sandbox"].as_str().expect("sandbox handle").to_owned();
    assert!(h.len() >= 32, "{h}");
    h
}

async fn sh(client: &Client, handle: &str, command: &str) -> Value {
    ok(
        client,
        "shell_exec",
        json!({ "command": command, "sandbox": handle }),
    )
    .await
}

async fn sh_error(client: &Client, handle: &str) -> String {
    let r = tool(
        client,
        "shell_exec",
        json!({ "command": "true", "sandbox": handle }),
    )
    .await;
    mcp::error_text(&r)
}

/// A tokens file naming one caller of this test alone, so that handles
/// other tests make (as "local", or as another caller) are not in its
/// sandbox_list. Returns the file's path and the token.
fn own_caller(test: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(common::unique("pem-caller"));
    std::fs::create_dir_all(&dir).expect("dir");
    let name = common::unique(test).replace('-', "_");
    let token = format!("token-{}", common::unique("t")).replace('-', "x");
    let file = dir.join("tokens");
    std::fs::write(&file, format!("{name}:{token}{}\n", "0".repeat(24))).expect("tokens");
    (file, format!("{token}{}", "0".repeat(24)))
}

/// Waits until Podman answers a ping promptly again: right after a server
/// is killed (and on this shared machine) it can take longer than the next
/// server's 1.5 s start-up ping allows.
async fn podman_settled(podman: &PodmanClient) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let t = std::time::Instant::now();
        let ok = podman.ping().await.is_ok();
        if ok && t.elapsed() < Duration::from_millis(500) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Podman stays slow to answer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Managed containers with `label` (k=v).
async fn count(podman: &PodmanClient, label: &str) -> usize {
    podman
        .list_containers(&["pod-exec-mcp.managed=true", label])
        .await
        .expect("list")
        .len()
}

#[tokio::test]
async fn a_handle_reaches_one_sandbox_from_any_session_and_fails_alike_when_gone() {
    let podman = live_podman().await;
    let (tokens, token) = own_caller("list");
    let srv = server::start(&[("POD_EXEC_AUTH_TOKENS_FILE", tokens.to_str().expect("path"))]);
    let a = connect_with_token(&srv.url, &token).await;
    let b = connect_with_token(&srv.url, &token).await;
    let tools = a.list_all_tools().await.expect("tools/list");
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "sandbox_create",
            "sandbox_destroy",
            "sandbox_list",
            "shell_exec"
        ]
    );

    let h = create(&a, "box-one").await;
    let host = sh(&a, &h, "echo kept > f.txt; hostname").await["output"]
        .as_str()
        .expect("output")
        .to_owned();
    // Another session, same handle: the same container and its file.
    let sc = sh(&b, &h, "cat f.txt; hostname").await;
    assert_eq!(sc["output"], format!("kept\n{host}"));
    // The session's own sandbox is another container.
    let own = mcp::run(&b, "hostname").await.output;
    assert_ne!(own, host);

    let list = ok(&b, "sandbox_list", json!({})).await;
    let list = list["sandboxes"].as_array().expect("sandboxes").clone();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["name"], "box-one");
    assert!(list[0]["idle_seconds"].as_u64().expect("idle") < 60);
    assert!(list[0]["expires_in_seconds"].as_u64().expect("expires") > 1700);

    let handles = "pod-exec-mcp.kind=handle";
    let mine = format!("pod-exec-mcp.instance={}", srv.instance);
    assert_eq!(count(&podman, &mine).await, 2, "the handle and b's session");
    let d = ok(&a, "sandbox_destroy", json!({ "sandbox": h })).await;
    assert_eq!(d["destroyed"], true);
    let destroyed = sh_error(&a, &h).await;
    let made_up = sh_error(&a, &format!("sbx_{}", "ab".repeat(16))).await;
    let garbage = sh_error(&a, "not-a-handle").await;
    assert_eq!(destroyed, made_up);
    assert_eq!(destroyed, garbage);
    assert!(destroyed.contains("expired or unknown"), "{destroyed}");
    assert!(destroyed.contains("sandbox_create"), "{destroyed}");
    let r = tool(&a, "sandbox_destroy", json!({ "sandbox": h })).await;
    assert_eq!(mcp::error_text(&r), destroyed);
    let containers = podman
        .list_containers(&["pod-exec-mcp.managed=true", &mine, handles])
        .await
        .expect("list");
    assert!(
        containers.is_empty(),
        "destroyed handle left {containers:?}"
    );
    let list = ok(&a, "sandbox_list", json!({})).await;
    assert_eq!(list["sandboxes"], json!([]));

    // A bad name is a tool error that says what to fix.
    let r = tool(&a, "sandbox_create", json!({ "name": "x".repeat(65) })).await;
    assert!(mcp::error_text(&r).contains("64"), "{r:?}");
}

#[tokio::test]
async fn a_handle_is_bound_to_its_caller() {
    let _podman = live_podman().await;
    let dir = std::env::temp_dir().join(common::unique("pem-handles"));
    std::fs::create_dir_all(&dir).expect("dir");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("alice:{ALICE}\nbob:{BOB}\n")).expect("tokens");
    let srv = server::start(&[("POD_EXEC_AUTH_TOKENS_FILE", tokens.to_str().expect("path"))]);
    let alice = connect_with_token(&srv.url, ALICE).await;
    let bob = connect_with_token(&srv.url, BOB).await;
    let h = create(&alice, "alices").await;
    sh(&alice, &h, "echo secret > s.txt").await;
    let foreign = sh_error(&bob, &h).await;
    let made_up = sh_error(&bob, &format!("sbx_{}", "cd".repeat(16))).await;
    assert_eq!(foreign, made_up, "a foreign handle must look unknown");
    let r = tool(&bob, "sandbox_destroy", json!({ "sandbox": h })).await;
    assert_eq!(mcp::error_text(&r), made_up);
    let bobs = ok(&bob, "sandbox_list", json!({})).await;
    assert_eq!(bobs["sandboxes"], json!([]));
    let hb = create(&bob, "bobs").await;
    let alices = ok(&alice, "sandbox_list", json!({})).await;
    let names: Vec<_> = alices["sandboxes"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, [json!("alices")]);
    assert_eq!(sh_error(&alice, &hb).await, made_up);
    // Still Alice's, untouched by Bob's attempts.
    assert_eq!(sh(&alice, &h, "cat s.txt").await["output"], "secret\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_handle_expires_after_its_ttl() {
    let _turn = HEAVY.lock().await;
    let podman = live_podman().await;
    let srv = server::start(&[("POD_EXEC_SANDBOX_TTL", "3")]);
    let a = connect(&srv.url).await;
    let h = create(&a, "short").await;
    sh(&a, &h, "true").await;
    let handles = "pod-exec-mcp.kind=handle";
    let mine = format!("pod-exec-mcp.instance={}", srv.instance);
    assert_eq!(count(&podman, handles).await.min(1), 1);
    // Removed by the server on its own (no call needed)...
    wait_for(
        Duration::from_secs(15),
        "the idle handle sandbox removed",
        || {
            let podman = podman.clone();
            let mine = mine.clone();
            async move {
                podman
                    .list_containers(&["pod-exec-mcp.managed=true", &mine, handles])
                    .await
                    .map(|l| l.is_empty())
                    .unwrap_or(false)
            }
        },
    )
    .await;
    // ...and its handle then gets the same error as one never made.
    let expired = sh_error(&a, &h).await;
    assert_eq!(
        expired,
        sh_error(&a, &format!("sbx_{}", "ef".repeat(16))).await
    );
    assert!(
        srv.logs().contains("handle sandbox expired"),
        "{}",
        srv.logs()
    );
}

/// The restart scenario: SIGTERM keeps handle sandboxes and removes session
/// sandboxes; a new server serves the handle; SIGKILL and restart: the
/// same, and the new server reaps the dead one's session sandbox.
#[tokio::test]
async fn handles_survive_sigterm_and_sigkill_of_the_server() {
    let _turn = HEAVY.lock().await;
    let podman = live_podman().await;
    let (tokens, token) = own_caller("restart");
    let envs = [("POD_EXEC_AUTH_TOKENS_FILE", tokens.to_str().expect("path"))];
    let mut first = server::start(&envs);
    let a = connect_with_token(&first.url, &token).await;
    let h = create(&a, "durable").await;
    let host = sh(&a, &h, "echo durable > d.txt; hostname").await["output"].clone();
    mcp::run(&a, "true").await; // a session sandbox too
    let of_first = format!("pod-exec-mcp.instance={}", first.instance);
    assert_eq!(count(&podman, &of_first).await, 2);
    drop(a);
    first.signal("TERM");
    assert!(
        first.wait_exit(Duration::from_secs(10)).is_some(),
        "SIGTERM: no exit"
    );
    let left = podman
        .list_containers(&["pod-exec-mcp.managed=true", &of_first])
        .await
        .expect("list");
    assert_eq!(left.len(), 1, "only the handle sandbox stays: {left:?}");
    assert_eq!(left[0].labels["pod-exec-mcp.kind"], "handle");
    assert!(
        !left[0].labels.values().any(|v| v.contains(&h)),
        "the handle itself is in a label"
    );
    // No owner process: dead-owner reaping (any server's) leaves it alone.
    assert!(
        !left[0].labels.contains_key("pod-exec-mcp.owner"),
        "{:?}",
        left[0].labels
    );

    podman_settled(&podman).await;
    let mut second = server::start(&envs);
    let b = connect_with_token(&second.url, &token).await;
    let r = tool(
        &b,
        "shell_exec",
        json!({"command": "cat d.txt; hostname", "sandbox": h}),
    )
    .await;
    assert_ne!(
        r.is_error,
        Some(true),
        "{r:?}\n--- first\n{}\n--- second\n{}",
        first.logs(),
        second.logs()
    );
    let sc = r.structured_content.expect("structuredContent");
    assert_eq!(
        sc["output"],
        format!("durable\n{}", host.as_str().expect("host"))
    );
    let list = ok(&b, "sandbox_list", json!({})).await;
    assert_eq!(list["sandboxes"][0]["name"], "durable");
    mcp::run(&b, "true").await;
    let of_second = format!("pod-exec-mcp.instance={}", second.instance);
    assert_eq!(count(&podman, &of_second).await, 1, "its session sandbox");
    drop(b);
    second.signal("KILL");
    assert!(second.wait_exit(Duration::from_secs(10)).is_some());

    podman_settled(&podman).await;
    let third = server::start(&envs);
    let c = connect_with_token(&third.url, &token).await;
    let sc = sh(&c, &h, "cat d.txt").await;
    assert_eq!(sc["output"], "durable\n");
    // The killed server's session sandbox is reaped; the handle's stays.
    wait_for(
        Duration::from_secs(15),
        "the SIGKILLed server's session sandbox reaped",
        || {
            let podman = podman.clone();
            let of_second = of_second.clone();
            async move { count(&podman, &of_second).await == 0 }
        },
    )
    .await;
    assert_eq!(count(&podman, &of_first).await, 1, "the handle sandbox");
    ok(&c, "sandbox_destroy", json!({ "sandbox": h })).await;
    assert_eq!(count(&podman, &of_first).await, 0);
    drop((first, second, third));
}

/// A handle sandbox whose server was killed still expires by its TTL: the
/// next server judges it by the last use recorded in the sandbox.
#[tokio::test]
async fn a_handle_expires_by_its_ttl_across_a_restart() {
    let _turn = HEAVY.lock().await;
    let podman = live_podman().await;
    let mut first = server::start(&[("POD_EXEC_SANDBOX_TTL", "4")]);
    let a = connect(&first.url).await;
    let h = create(&a, "orphan").await;
    sh(&a, &h, "true").await;
    let of_first = format!("pod-exec-mcp.instance={}", first.instance);
    drop(a);
    first.signal("KILL");
    assert!(first.wait_exit(Duration::from_secs(10)).is_some());
    assert_eq!(count(&podman, &of_first).await, 1);
    podman_settled(&podman).await;
    let second = server::start(&[("POD_EXEC_SANDBOX_TTL", "4")]);
    wait_for(
        Duration::from_secs(20),
        "the orphaned handle sandbox expired by the next server",
        || {
            let podman = podman.clone();
            let of_first = of_first.clone();
            async move { count(&podman, &of_first).await == 0 }
        },
    )
    .await;
    let b = connect(&second.url).await;
    let e = sh_error(&b, &h).await;
    assert!(e.contains("expired or unknown"), "{e}");
    drop((first, second));
}

/// Starts an MCP session by hand (initialize + initialized), returning its
/// id: a client that never sends DELETE.
async fn raw_session(http: &reqwest::Client, url: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},
        "clientInfo":{"name":"per-call","version":"0"}}});
    let resp = http
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .expect("initialize");
    assert!(resp.status().is_success(), "initialize: {}", resp.status());
    let id = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_owned();
    let _ = resp.bytes().await;
    let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    let resp = http
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .header("Mcp-Session-Id", &id)
        .header("MCP-Protocol-Version", "2025-11-25")
        .json(&note)
        .send()
        .await
        .expect("initialized");
    assert!(resp.status().is_success(), "initialized: {}", resp.status());
    id
}

/// One shell_exec in session `id`; the JSON-RPC result.
async fn raw_call(http: &reqwest::Client, url: &str, id: &str, command: &str) -> Value {
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"shell_exec","arguments":{"command":command}}});
    let body = http
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .header("Mcp-Session-Id", id)
        .header("MCP-Protocol-Version", "2025-11-25")
        .json(&call)
        .send()
        .await
        .expect("tools/call")
        .text()
        .await
        .expect("body");
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("id") == Some(&json!(2)))
        .unwrap_or_else(|| panic!("no response in {body}"))
}

#[tokio::test]
async fn a_session_per_call_client_is_never_refused_and_stays_within_the_limit() {
    let _turn = HEAVY.lock().await;
    let podman = live_podman().await;
    let srv = server::start(&[
        ("POD_EXEC_MAX_SESSIONS", "20"),
        ("POD_EXEC_EVICT_AFTER", "0"),
    ]);
    let mine = format!("pod-exec-mcp.instance={}", srv.instance);
    let most = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let (podman, mine, most, stop) = (podman.clone(), mine.clone(), most.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let n = count(&podman, &mine).await;
                most.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let http = reqwest::Client::new();
    let url = srv.url.clone();
    let started = std::time::Instant::now();
    // Four at a time: 200 calls, each in a session of its own.
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..4).map(|_| {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        tokio::spawn(async move {
            let mut refused = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < 200 {
                let id = raw_session(&http, &url).await;
                let r = raw_call(&http, &url, &id, "echo ok").await;
                let result = &r["result"];
                if result["isError"] == json!(true)
                    || result["structuredContent"]["output"] != "ok\n"
                {
                    refused.push(r.clone());
                }
            }
            refused
        })
    });
    let mut refused = Vec::new();
    for w in futures::future::join_all(workers).await {
        refused.extend(w.expect("worker"));
    }
    stop.cancel();
    let _ = watcher.await;
    assert!(
        refused.is_empty(),
        "{} calls failed, e.g. {:?}",
        refused.len(),
        refused.first()
    );
    let most = most.load(Ordering::Relaxed);
    eprintln!(
        "200 calls, a session each, at POD_EXEC_MAX_SESSIONS=20: {:?}, at most {most} containers seen",
        started.elapsed()
    );
    assert!(most <= 20, "{most} containers at once, the limit is 20");
    assert!(count(&podman, &mine).await <= 20);
    assert!(
        srv.logs()
            .contains("evicted the least recently used sandbox")
    );
}

/// With eviction not yet allowed (POD_EXEC_EVICT_AFTER), a full server
/// refuses with the limit's name; a busy sandbox is never evicted.
#[tokio::test]
async fn a_full_server_refuses_when_nothing_may_be_evicted() {
    let _podman = live_podman().await;
    let srv: ServerProcess = server::start(&[
        ("POD_EXEC_MAX_SESSIONS", "1"),
        ("POD_EXEC_EVICT_AFTER", "600"),
    ]);
    let a = connect(&srv.url).await;
    let b = connect(&srv.url).await;
    mcp::run(&a, "true").await;
    let r = mcp::call(&b, "true").await;
    assert!(
        mcp::error_text(&r).contains("POD_EXEC_MAX_SESSIONS"),
        "{r:?}"
    );
    // The first session still has its sandbox.
    mcp::run(&a, "true").await;
}
