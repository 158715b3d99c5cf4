//! Commands that misbehave, through the real server and a real Podman:
//! timeouts that kill the whole process tree, bounded output, cancellation,
//! progress, concurrent calls, odd inputs.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::live_podman;
use common::mcp::{Client, call, call_args, connect, error_text, run};
use common::server::{self, wait_for};
use pod_exec_mcp::mcp::ShellExecResult;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest, Implementation,
    ProgressNotificationParam, ProtocolVersion, Request,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestHandle};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::json;

fn parse(r: &rmcp::model::CallToolResult) -> ShellExecResult {
    assert_ne!(r.is_error, Some(true), "tool error: {r:?}");
    serde_json::from_value(r.structured_content.clone().expect("structured")).expect("schema")
}

/// Processes in the session's container whose command line starts with
/// `prefix`, as `ps` in that container sees them (the container's own
/// `sleep infinity` excepted).
async fn processes(client: &Client, prefix: &str) -> Vec<String> {
    run(client, "ps -eo args=")
        .await
        .output
        .lines()
        .filter(|l| l.starts_with(prefix) && *l != "sleep infinity")
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn timeout_kills_children_background_jobs_and_setsid_daemons() {
    let _podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;
    let t = Instant::now();
    let r = parse(
        &call_args(
            &client,
            json!({
                "command": "echo before; sh -c 'sleep 1000 & setsid sleep 1000 & sleep 1000'",
                "timeout": 2
            }),
        )
        .await,
    );
    let took = t.elapsed();
    assert!(took < Duration::from_secs(4), "returned after {took:?}");
    assert!(took >= Duration::from_secs(2), "returned early: {took:?}");
    assert!(r.timed_out, "{r:?}");
    assert!(r.retval == 124 || r.retval == 137, "{r:?}");
    // What was printed is kept; the shell may add "Terminated" when it
    // outlives its killed child by a moment.
    assert!(r.output.starts_with("before\n"), "{:?}", r.output);
    assert_eq!(processes(&client, "sleep").await, Vec::<String>::new());
    eprintln!("timeout 2 s returned after {took:?}, retval {}", r.retval);

    // A command that ignores SIGTERM needs SIGKILL: 137.
    let r = parse(
        &call_args(
            &client,
            json!({"command": "trap '' TERM; sleep 1000 & trap '' TERM; while :; do sleep 0.1; done", "timeout": 1}),
        )
        .await,
    );
    assert!(r.timed_out, "{r:?}");
    assert_eq!(r.retval, 137, "{r:?}");
    assert_eq!(processes(&client, "sleep").await, Vec::<String>::new());
    // The session goes on.
    assert_eq!(run(&client, "echo alive").await.output, "alive\n");
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn default_timeout_applies_and_requests_are_capped() {
    let _podman = live_podman().await;
    let srv = server::start(&[("POD_EXEC_TIMEOUT", "1"), ("POD_EXEC_MAX_TIMEOUT", "2")]);
    let client = connect(&srv.url).await;
    let t = Instant::now();
    let r = parse(&call(&client, "sleep 30").await);
    assert!(r.timed_out && t.elapsed() < Duration::from_secs(3), "{r:?}");
    let t = Instant::now();
    let r = parse(&call_args(&client, json!({"command": "sleep 30", "timeout": 600})).await);
    let took = t.elapsed();
    assert!(r.timed_out, "{r:?}");
    assert!(
        took < Duration::from_secs(4),
        "capped at 2 s, took {took:?}"
    );
    let msg = error_text(&call_args(&client, json!({"command": "true", "timeout": -1})).await);
    assert!(msg.contains("timeout"), "{msg}");
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn background_job_holding_stdout_does_not_hold_the_call() {
    let _podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;
    let t = Instant::now();
    let r = run(&client, "sleep 1000 & echo started; exit 5").await;
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "returned after {took:?}");
    assert!(!r.timed_out);
    assert_eq!((r.output.as_str(), r.retval), ("started\n", 5));
    // Background jobs outlive a call that ended normally, like in a
    // terminal (servers started with `&` keep serving later calls).
    assert_eq!(processes(&client, "sleep 1000").await.len(), 1);
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn huge_output_keeps_head_and_tail_within_the_cap() {
    let _podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;
    let r = run(
        &client,
        "echo FIRST-LINE; yes | head -c 50000000; echo; echo LAST-LINE",
    )
    .await;
    assert!(r.truncated, "{}", r.output.len());
    assert_eq!(r.total_bytes, Some(50_000_000 + 11 + 1 + 10));
    assert!(r.output.starts_with("FIRST-LINE\ny\ny\n"));
    assert!(
        r.output.ends_with("y\ny\n\nLAST-LINE\n"),
        "{}",
        &r.output[r.output.len() - 40..]
    );
    assert!(r.output.contains("bytes of output omitted"));
    let len = r.output.chars().count();
    assert!((100_000..100_200).contains(&len), "{len}");
    assert_eq!(r.retval, 0);
    client.cancel().await.expect("close");
}

/// Sends `sleep 1000` without waiting for its answer; returns once the
/// sleep runs in the container.
async fn sleep_in_flight(client: &Client) -> RequestHandle<RoleClient> {
    let args = json!({"command": "sleep 1000"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let handle = client
        .peer()
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(
                CallToolRequestParams::new("shell_exec").with_arguments(args),
            )),
            PeerRequestOptions::default(),
        )
        .await
        .expect("send");
    wait_for(Duration::from_secs(10), "sleep 1000 running", || async {
        processes(client, "sleep 1000").await.len() == 1
    })
    .await;
    handle
}

#[tokio::test]
async fn cancelled_call_leaves_nothing_and_session_goes_on() {
    let _podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;
    run(&client, "true").await;
    let handle = sleep_in_flight(&client).await;
    handle.cancel(Some("test".into())).await.expect("cancel");
    wait_for(Duration::from_secs(5), "sleep 1000 killed", || async {
        processes(&client, "sleep").await.is_empty()
    })
    .await;
    assert_eq!(run(&client, "echo next").await.output, "next\n");
    client.cancel().await.expect("close");
}

/// A client that records progress notifications.
#[derive(Clone)]
struct ProgressClient {
    info: ClientConfig,
    seen: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for ProgressClient {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(params);
    }
}

#[tokio::test]
async fn progress_notifications_while_a_command_runs() {
    let _podman = live_podman().await;
    let srv = server::start(&[]);
    let handler = ProgressClient {
        info: ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("progress-test", "0"),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25),
        seen: Arc::default(),
    };
    let seen = handler.seen.clone();
    let client = handler
        .serve(StreamableHttpClientTransport::from_uri(srv.url.clone()))
        .await
        .expect("connect");
    let args = json!({"command": "for i in 1 2 3 4 5; do echo $i; sleep 1; done"});
    // rmcp's client attaches a progress token to every request.
    let r = client
        .call_tool(
            CallToolRequestParams::new("shell_exec")
                .with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
        .await
        .expect("call");
    assert_eq!(parse(&r).output, "1\n2\n3\n4\n5\n");
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // About two a second for five seconds; never more than a few a second.
    assert!(
        (5..=14).contains(&seen.len()),
        "{} notifications: {seen:?}",
        seen.len()
    );
    assert!(
        seen.windows(2).all(|w| w[0].progress < w[1].progress),
        "increasing"
    );
    let last = seen
        .last()
        .and_then(|p| p.message.clone())
        .unwrap_or_default();
    assert!(last.contains("bytes: "), "{last}");
    assert!(
        seen.iter()
            .filter_map(|p| p.message.as_deref())
            .any(|m| m.ends_with(": 3")),
        "the latest line appears: {seen:?}"
    );
    let _ = client.cancel().await;
}

#[tokio::test]
async fn concurrent_calls_in_one_session_and_the_limit() {
    let _podman = live_podman().await;
    let srv = server::start(&[
        ("POD_EXEC_MAX_CONCURRENT_PER_SESSION", "8"),
        ("POD_EXEC_MAX_QUEUED_PER_SESSION", "1"),
    ]);
    let client = connect(&srv.url).await;
    run(&client, "true").await; // the container exists
    let t = Instant::now();
    let eight = futures::future::join_all((0..8).map(|_| call(&client, "sleep 2; echo done")));
    let more = async {
        // Once the eight are running, a ninth waits its turn and a tenth,
        // with the one-place queue full, is refused at once.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let ninth = call(&client, "echo ninth");
        let tenth = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let t = Instant::now();
            (call(&client, "echo tenth").await, t.elapsed())
        };
        tokio::join!(ninth, tenth)
    };
    let (results, (ninth, (tenth, tenth_took))) = tokio::join!(eight, more);
    let took = t.elapsed();
    for r in &results {
        assert_eq!(parse(r).output, "done\n");
    }
    assert!(took < Duration::from_secs(4), "8 x sleep 2 took {took:?}");
    assert_eq!(parse(&ninth).output, "ninth\n", "the queued call ran");
    let msg = error_text(&tenth);
    assert!(
        msg.contains("POD_EXEC_MAX_QUEUED_PER_SESSION") && msg.contains('8'),
        "{msg}"
    );
    assert!(
        tenth_took < Duration::from_secs(1),
        "refused at once: {tenth_took:?}"
    );
    eprintln!("8 concurrent sleep 2: {took:?}");
    // Afterwards there is room again.
    assert_eq!(run(&client, "echo again").await.output, "again\n");
    client.cancel().await.expect("close");
}

/// 20 calls at once in one session (more than may run at once): all are
/// answered, none refused.
#[tokio::test]
async fn twenty_concurrent_calls_all_succeed() {
    let _podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;
    let commands: Vec<String> = (0..20)
        .map(|i| format!("sleep 0.3; echo call-{i}"))
        .collect();
    let results = futures::future::join_all(commands.iter().map(|c| call(&client, c))).await;
    for (i, r) in results.iter().enumerate() {
        assert_eq!(parse(r).output, format!("call-{i}\n"));
    }
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn odd_inputs_and_outputs() {
    let _podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;

    // A 1 MiB command (one argv string is limited to 128 KiB by Linux).
    let payload = "x".repeat(1 << 20);
    let cmd = format!("v='{payload}'; printf %s \"$v\" | wc -c");
    assert!(cmd.len() > 1 << 20);
    let r = run(&client, &cmd).await;
    assert_eq!((r.output.trim(), r.retval), ("1048576", 0));

    // Multi-byte text split across chunks survives.
    let text = "é".repeat(200_000);
    let r = run(&client, &format!("printf %s '{text}' | md5sum")).await;
    let r2 = run(
        &client,
        &format!("printf %s '{}' | md5sum", "é".repeat(200_000)),
    )
    .await;
    assert_eq!(r.output, r2.output);

    assert!(error_text(&call(&client, "echo a\0b").await).contains("NUL"));
    assert!(error_text(&call(&client, "").await).contains("empty"));

    // Binary output: replaced, never an error.
    let r = run(&client, "head -c 4096 /dev/urandom").await;
    assert_eq!(r.retval, 0);
    assert!(!r.output.is_empty());

    // Only stderr.
    assert_eq!(run(&client, "echo to-err >&2").await.output, "to-err\n");
    // stdout closed early; stderr still arrives, in order.
    let r = run(&client, "echo one; exec 1>&-; echo two >&2").await;
    assert_eq!((r.output.as_str(), r.retval), ("one\ntwo\n", 0));
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn session_ending_mid_call_leaves_nothing() {
    let podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;
    run(&client, "true").await;
    let _pending = sleep_in_flight(&client).await;
    // The client ends its session (HTTP DELETE) with the call in flight.
    client.cancel().await.expect("close");
    wait_for(
        Duration::from_secs(5),
        "the session's container removed",
        || async { srv.containers(&podman).await.is_empty() },
    )
    .await;
}
