//! The server against a non-root user's own Podman (rootless), at that
//! user's default socket `unix://$XDG_RUNTIME_DIR/podman/podman.sock`, set up
//! by `tests/rootless-env.sh`: a call runs, in that user's user namespace,
//! through the executor; a timeout kills what the call started; closing the
//! session removes its container; a killed server's containers are reaped by
//! the next start; orphans of a call leave no zombie.

mod common;

use std::time::{Duration, Instant};

use common::mcp::{Client, call_args, connect, run};
use common::server::{self, ServerProcess, containers_of, wait_for};
use pod_exec_mcp::podman::{Endpoint, PodmanClient};

const HOW_TO_START: &str = "\
These tests need a rootless Podman (a non-root user's service). As root:

    eval \"$(tests/podman-env.sh)\" && eval \"$(tests/rootless-env.sh)\"

then run the tests again from that shell (POD_EXEC_ROOTLESS_HOST must name
the user's socket, unix:///run/user/UID/podman/podman.sock).";

/// The user's socket and a client for it, or a panic saying how to start it.
async fn rootless_podman() -> (String, PodmanClient) {
    let host = std::env::var("POD_EXEC_ROOTLESS_HOST")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("POD_EXEC_ROOTLESS_HOST is not set\n\n{HOW_TO_START}"));
    let endpoint =
        Endpoint::parse(&host).unwrap_or_else(|e| panic!("{host}: {e}\n\n{HOW_TO_START}"));
    let client = PodmanClient::new(endpoint);
    let info = client
        .info()
        .await
        .unwrap_or_else(|e| panic!("no Podman answers at {host}: {e}\n\n{HOW_TO_START}"));
    assert!(
        info.rootless,
        "the Podman at {host} is not rootless\n\n{HOW_TO_START}"
    );
    assert!(
        host.starts_with("unix:///run/user/") && host.ends_with("/podman/podman.sock"),
        "{host} is not a user's default socket"
    );
    (host, client)
}

fn start(host: &str) -> ServerProcess {
    server::start(&[("CONTAINER_HOST", host)])
}

/// `ps` lines in the sandbox that contain `needle`.
async fn processes(client: &Client, needle: &str) -> Vec<String> {
    run(client, "ps -eo pid=,stat=,args=")
        .await
        .output
        .lines()
        .filter(|l| l.contains(needle) && !l.contains("ps -eo"))
        .map(str::to_owned)
        .collect()
}

/// The host uid owning process `pid` (from /proc/PID/status).
fn host_uid(pid: i64) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("no Uid line in /proc/{pid}/status"))
}

/// The uid of the user whose runtime directory holds the socket.
fn socket_owner(host: &str) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let path = host.trim_start_matches("unix://");
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .uid()
}

#[tokio::test]
async fn calls_run_in_the_users_namespace_through_the_executor() {
    let (host, podman) = rootless_podman().await;
    let user = socket_owner(&host);
    assert_ne!(user, 0, "the socket {host} belongs to root");
    let srv = start(&host);
    let logs = srv.logs();
    assert!(logs.contains("rootless=true"), "{logs}");
    assert!(logs.contains("executor on"), "{logs}");
    // cgroups v1 (this machine): Podman drops the limits, the server says so.
    let v1 = podman.info().await.expect("info").cgroup_version == "v1";
    assert_eq!(v1, logs.contains("limits are not enforced"), "{logs}");
    let c = connect(&srv.url).await;

    let r = run(&c, "id -u; echo hello; exit 3").await;
    assert_eq!(r.output, "0\nhello\n");
    assert_eq!(r.retval, 3);

    // The sandbox's root is the user: its processes are the user's on the
    // host, and its uid map starts with "0 <user> 1".
    let list = srv.containers(&podman).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let inspect = podman
        .inspect_container(&list[0].id)
        .await
        .expect("inspect");
    assert!(inspect.state.running);
    assert_eq!(host_uid(inspect.state.pid), user);
    let map =
        std::fs::read_to_string(format!("/proc/{}/uid_map", inspect.state.pid)).expect("uid_map");
    let first: Vec<&str> = map.split_whitespace().take(3).collect();
    assert_eq!(first, ["0", &user.to_string(), "1"], "{map}");

    // The call's shell is a child of the resident agent, not of an exec.
    let parent = run(&c, "tr '\\0' ' ' </proc/$PPID/cmdline").await.output;
    assert!(
        parent.contains("/.pod-exec-mcp/"),
        "parent of the call: {parent:?}"
    );

    c.cancel().await.expect("close");
}

#[tokio::test]
async fn timeout_kills_what_the_call_started_and_orphans_are_reaped() {
    let (host, _podman) = rootless_podman().await;
    let srv = start(&host);
    let c = connect(&srv.url).await;
    let t = Instant::now();
    let r = call_args(
        &c,
        serde_json::json!({
            "command": "sh -c 'sleep 1000 & setsid sleep 1000 & sleep 1000'",
            "timeout": 2
        }),
    )
    .await;
    let took = t.elapsed();
    let sc = r.structured_content.expect("structured");
    assert_eq!(sc["timed_out"], true, "{sc}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    let left = processes(&c, "sleep 1000").await;
    assert!(left.is_empty(), "left behind: {left:?}");

    // 100 background jobs that exit: none stays a zombie.
    run(&c, "for i in $(seq 100); do (sleep 0.01 &); done; sleep 1").await;
    let zombies: Vec<String> = run(&c, "ps -eo stat=,pid=,args=")
        .await
        .output
        .lines()
        .filter(|l| l.trim_start().starts_with('Z'))
        .map(str::to_owned)
        .collect();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    c.cancel().await.expect("close");
}

#[tokio::test]
async fn closing_the_session_removes_its_container_and_a_killed_servers_are_reaped() {
    let (host, podman) = rootless_podman().await;

    let srv = start(&host);
    let c = connect(&srv.url).await;
    run(&c, "true").await;
    assert_eq!(srv.containers(&podman).await.len(), 1);
    c.cancel().await.expect("close");
    wait_for(
        Duration::from_secs(15),
        "the closed session's container removed",
        || async { srv.containers(&podman).await.is_empty() },
    )
    .await;

    let mut first = start(&host);
    let c = connect(&first.url).await;
    run(&c, "true").await;
    let dead = first.instance.clone();
    assert_eq!(containers_of(&podman, &dead).await.len(), 1);
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    drop(c);
    let _second = start(&host);
    wait_for(
        Duration::from_secs(15),
        "the killed server's container reaped",
        || async { containers_of(&podman, &dead).await.is_empty() },
    )
    .await;
    drop(first);
}
