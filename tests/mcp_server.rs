//! The real server binary, driven by rmcp's client over streamable HTTP,
//! against a real Podman: sessions, shell_exec, and container lifetimes.

mod common;

use std::time::{Duration, Instant};

use common::mcp::{call, connect, error_text, run, stateless_call};
use common::server::{self, ServerProcess, containers_of, wait_for};
use common::{image, live_podman};
use pod_exec_mcp::podman::PodmanClient;

async fn count(podman: &PodmanClient, srv: &ServerProcess) -> usize {
    srv.containers(podman).await.len()
}

#[tokio::test]
async fn shell_exec_semantics() {
    let podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;

    let tools = client.list_all_tools().await.expect("tools/list");
    let tool = tools
        .iter()
        .find(|t| t.name == "shell_exec")
        .expect("shell_exec listed");
    let schema = serde_json::to_value(tool.output_schema.as_deref()).expect("schema");
    assert!(schema["properties"]["output"].is_object(), "{schema}");
    assert!(schema["properties"]["retval"].is_object(), "{schema}");

    // No container until the first call.
    assert_eq!(count(&podman, &srv).await, 0);

    let r = run(&client, "echo a; echo b >&2; echo c").await;
    assert_eq!(r.output, "a\nb\nc\n");
    assert_eq!(r.retval, 0);
    assert_eq!(run(&client, "exit 3").await.retval, 3);
    let r = run(&client, "no-such-command-xyz").await;
    assert_eq!(r.retval, 127);
    assert!(r.output.contains("not found"), "{}", r.output);

    // stdin is closed: `cat` sees EOF at once.
    let t = Instant::now();
    let r = run(&client, "cat; echo after-cat").await;
    assert_eq!(r.output, "after-cat\n");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "cat took {:?}",
        t.elapsed()
    );

    // Invalid UTF-8 is replaced, not an error.
    let r = run(&client, "printf 'a\\377b'").await;
    assert_eq!(r.output, "a\u{FFFD}b");

    // Bad input: a tool error the model can read, nothing runs.
    assert!(error_text(&call(&client, "  ").await).contains("empty"));
    assert!(error_text(&call(&client, "echo a\0b").await).contains("NUL"));

    // The session's container: labels, a name nobody can guess.
    let list = srv.containers(&podman).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let c = &list[0];
    assert_eq!(c.labels["pod-exec-mcp.managed"], "true");
    assert_eq!(c.labels["pod-exec-mcp.instance"], srv.instance);
    assert_eq!(c.labels["pod-exec-mcp.kind"], "session");
    let tag = &c.labels["pod-exec-mcp.sandbox"];
    assert!(
        srv.logs().contains(tag.as_str()),
        "log names the sandbox tag"
    );
    assert!(c.names[0].starts_with("pod-exec-"), "{:?}", c.names);
    assert_eq!(c.image, image());

    client.cancel().await.expect("close session");
}

#[tokio::test]
async fn sessions_are_isolated_and_delete_removes_the_container() {
    let podman = live_podman().await;
    let srv = server::start(&[]);
    let a = connect(&srv.url).await;
    let b = connect(&srv.url).await;

    run(&a, "echo secret > /work/mine").await;
    let host_a = run(&a, "hostname").await.output;
    let host_b = run(&b, "hostname").await.output;
    assert_ne!(host_a, host_b);
    assert_eq!(run(&a, "cat /work/mine").await.output, "secret\n");
    let r = run(&b, "cat /work/mine").await;
    assert_ne!(
        r.retval, 0,
        "the other session must not see the file: {r:?}"
    );
    // The same session keeps its container.
    assert_eq!(run(&a, "hostname").await.output, host_a);
    assert_eq!(count(&podman, &srv).await, 2);

    // Closing a session (HTTP DELETE) removes its container, only its.
    a.cancel().await.expect("close a");
    wait_for(Duration::from_secs(10), "a's container removed", || async {
        count(&podman, &srv).await == 1
    })
    .await;
    assert_eq!(run(&b, "hostname").await.output, host_b);
    b.cancel().await.expect("close b");
    wait_for(Duration::from_secs(10), "b's container removed", || async {
        count(&podman, &srv).await == 0
    })
    .await;
}

#[tokio::test]
async fn concurrent_first_calls_create_one_container() {
    let podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;
    let calls = (0..4).map(|_| run(&client, "hostname"));
    let results = futures::future::join_all(calls).await;
    let first = &results[0].output;
    assert!(results.iter().all(|r| &r.output == first), "{results:?}");
    assert_eq!(count(&podman, &srv).await, 1);
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn container_removed_from_outside_then_next_call_works() {
    let podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;
    let before = run(&client, "hostname").await.output;
    let list = srv.containers(&podman).await;
    assert_eq!(list.len(), 1);
    // As `podman rm -f` from outside. Podman 4.3 sometimes fails a removal
    // while an exec (the executor) runs, with "unlinkat .../shm: device or
    // resource busy"; a second attempt completes it.
    let mut attempt = 0;
    while let Err(e) = podman.remove_container(&list[0].id, attempt > 0).await {
        attempt += 1;
        assert!(attempt < 3, "remove from outside: {e}");
        eprintln!("removal failed, retrying: {e}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let msg = error_text(&call(&client, "echo hi").await);
    assert!(msg.contains("gone"), "{msg}");
    let after = run(&client, "hostname").await.output;
    assert_ne!(after, before, "a fresh container");
    assert_eq!(count(&podman, &srv).await, 1);
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn idle_session_expires_with_its_container() {
    let podman = live_podman().await;
    let srv = server::start(&[("POD_EXEC_IDLE_TIMEOUT", "2")]);
    let client = connect(&srv.url).await;
    run(&client, "true").await;
    assert_eq!(count(&podman, &srv).await, 1);
    wait_for(
        Duration::from_secs(10),
        "idle container removed",
        || async { count(&podman, &srv).await == 0 },
    )
    .await;
    assert!(srv.logs().contains("why=\"idle\""), "{}", srv.logs());
}

#[tokio::test]
async fn sigterm_with_a_call_in_flight_exits_fast_and_cleans_up() {
    let podman = live_podman().await;
    let mut srv = server::start(&[]);
    let client = connect(&srv.url).await;
    run(&client, "true").await;
    let in_flight = tokio::spawn(async move {
        let r = call(&client, "sleep 60").await;
        (r, client)
    });
    // Wait until the sleep really runs in the container.
    let id = srv.containers(&podman).await[0].id.clone();
    wait_for(Duration::from_secs(10), "sleep 60 running", || async {
        let probe = common::sh(&podman, &id, "ps -eo args | grep -c '^sleep 60'").await;
        String::from_utf8_lossy(&probe.stream(pod_exec_mcp::podman::StreamKind::Stdout)).trim()
            != "0"
    })
    .await;

    let t = Instant::now();
    srv.signal("TERM");
    let status = srv.wait_exit(Duration::from_secs(5));
    let took = t.elapsed();
    assert!(
        status.is_some(),
        "still running 5 s after SIGTERM; log:\n{}",
        srv.logs()
    );
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(count(&podman, &srv).await, 0, "no container left");
    eprintln!("SIGTERM to exit: {took:?}");
    // The client gets an answer or a broken connection, not a hang.
    let _ = tokio::time::timeout(Duration::from_secs(10), in_flight).await;
}

#[tokio::test]
async fn a_killed_servers_containers_are_reaped_by_the_next_start() {
    let podman = live_podman().await;
    let mut first = server::start(&[]);
    let client = connect(&first.url).await;
    run(&client, "true").await;
    let dead_instance = first.instance.clone();
    assert_eq!(containers_of(&podman, &dead_instance).await.len(), 1);
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    drop(client);

    // Any server starting on this Podman reaps it (tests running in
    // parallel start servers too, so which one does is not asserted).
    let _second = server::start(&[]);
    wait_for(
        Duration::from_secs(10),
        "stale container reaped",
        || async { containers_of(&podman, &dead_instance).await.is_empty() },
    )
    .await;
    drop(first);
}

#[tokio::test]
async fn startup_failures_are_fast_and_clear() {
    let _podman = live_podman().await;

    let (st, err, took) =
        server::start_failure(&[("CONTAINER_HOST", "unix:///nonexistent/podman.sock")]);
    assert!(!st.success());
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        err.contains("cannot reach the Podman API at unix:///nonexistent/podman.sock"),
        "{err}"
    );
    assert!(err.contains("podman system service"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let (st, err, took) =
        server::start_failure(&[("POD_EXEC_IMAGE", "localhost/pem-no-such-image:latest")]);
    assert!(!st.success());
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        err.contains("image localhost/pem-no-such-image:latest is not present"),
        "{err}"
    );
    assert!(err.contains("podman build"), "{err}");

    let (st, err, _) =
        server::start_failure(&[("CONTAINER_HOST", "ssh://core@host/run/podman.sock")]);
    assert!(!st.success());
    assert!(err.contains("ssh://"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let (st, err, took) = server::start_failure(&[("MCP_PORT", port.as_str())]);
    assert!(!st.success());
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn calls_without_a_session_run_in_a_one_shot_sandbox() {
    let podman = live_podman().await;
    let srv = server::start(&[]);
    let reply = stateless_call(&srv.url, "echo stateless; exit 4").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains(r#""oneshot":true,"output":"stateless\n","retval":4}"#),
        "{reply}"
    );
    // The note tells the model how to keep state.
    assert!(reply.contains("sandbox_create"), "{reply}");
    // Nothing stays behind, and no session was opened.
    wait_for(
        Duration::from_secs(10),
        "one-shot container removed",
        || async { count(&podman, &srv).await == 0 },
    )
    .await;
    assert!(!srv.logs().contains("session opened"), "{}", srv.logs());
}

#[tokio::test]
async fn warm_pool_serves_first_calls_and_refills() {
    let podman = live_podman().await;
    let mut srv = server::start(&[("POD_EXEC_WARM_POOL", "1")]);
    let kind = |c: &pod_exec_mcp::podman::ContainerSummary| c.labels["pod-exec-mcp.kind"].clone();
    wait_for(Duration::from_secs(10), "one pooled container", || async {
        srv.containers(&podman)
            .await
            .iter()
            .filter(|c| kind(c) == "pool")
            .count()
            == 1
    })
    .await;
    // Ready: started, with its executor (a session arriving before that
    // gets a container of its own).
    wait_for(
        Duration::from_secs(10),
        "the pooled container ready",
        || async { srv.logs().contains("warm pool: container ready") },
    )
    .await;
    let pooled = srv.containers(&podman).await[0].id.clone();

    let client = connect(&srv.url).await;
    let host = run(&client, "hostname").await.output;
    assert!(
        pooled.starts_with(host.trim()),
        "the pooled container served the call"
    );
    assert!(srv.logs().contains("pooled container assigned"));
    // The pool refills: one for the session, one waiting.
    wait_for(Duration::from_secs(10), "pool refilled", || async {
        count(&podman, &srv).await == 2
    })
    .await;

    client.cancel().await.expect("close");
    srv.signal("TERM");
    assert!(
        srv.wait_exit(Duration::from_secs(5))
            .is_some_and(|s| s.success())
    );
    assert_eq!(
        count(&podman, &srv).await,
        0,
        "pooled containers removed too"
    );
}

/// A container of this instance that no sandbox holds (as after a removal
/// that failed while Podman was down) is removed by the periodic sweep; the
/// session's own container is not.
#[tokio::test]
async fn sweep_removes_containers_no_sandbox_holds() {
    let podman = live_podman().await;
    let srv = server::start(&[("POD_EXEC_SWEEP_INTERVAL", "1")]);
    let client = connect(&srv.url).await;
    run(&client, "true").await;
    let mut spec = pod_exec_mcp::podman::ContainerSpec {
        image: common::image(),
        command: vec!["sleep".into(), "infinity".into()],
        ..Default::default()
    };
    spec.labels
        .insert("pod-exec-mcp.managed".into(), "true".into());
    spec.labels
        .insert("pod-exec-mcp.instance".into(), srv.instance.clone());
    spec.labels
        .insert("pod-exec-mcp.kind".into(), "session".into());
    let stray = podman.create_container(&spec).await.expect("create");
    let _guard = common::ContainerGuard::new(stray.clone(), podman.endpoint().clone());
    wait_for(
        Duration::from_secs(10),
        "the stray container swept",
        || async { podman.inspect_container(&stray).await.is_err() },
    )
    .await;
    wait_for(Duration::from_secs(5), "the sweep's log line", || async {
        srv.logs().contains("removed a container no sandbox holds")
    })
    .await;
    assert_eq!(run(&client, "echo still").await.output, "still\n");
    assert_eq!(count(&podman, &srv).await, 1);
    client.cancel().await.expect("close");
}
