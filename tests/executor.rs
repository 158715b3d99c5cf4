//! The resident executor through the real server and a real Podman: exact
//! `/bin/sh -lc` semantics, long commands, kills that nothing escapes, no
//! zombies, background jobs that keep running, recovery when a command
//! kills the executor or the whole container. These servers always run with
//! the executor (whatever POD_EXEC_EXECUTOR says in the environment): one
//! exec per call, the fallback, is what the other test files cover in
//! tests/run.sh's second pass.

mod common;

use std::time::{Duration, Instant};

use common::live_podman;
use common::mcp::{call_args, connect, run};
use common::server::{self, ServerProcess, wait_for};

/// A server with the executor and no command policy (the fork bomb and
/// `kill -9 -1` must reach the sandbox).
fn start_with(extra: &[(&str, &str)]) -> ServerProcess {
    let mut env = vec![
        ("POD_EXEC_EXECUTOR", "on"),
        ("POD_EXEC_SECURITY_MODE", "permissive"),
    ];
    env.extend_from_slice(extra);
    let srv = server::start(&env);
    assert!(srv.logs().contains("executor on"), "{}", srv.logs());
    srv
}

fn start() -> ServerProcess {
    start_with(&[])
}

/// `ps` lines (pid, state, args) whose command line contains `needle`,
/// leaving out the `ps`/`grep` of the probe itself.
async fn processes(client: &common::mcp::Client, needle: &str) -> Vec<String> {
    let r = run(client, "ps -eo pid=,stat=,args=").await;
    r.output
        .lines()
        .filter(|l| l.contains(needle) && !l.contains("ps -eo"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn plain_sh_semantics() {
    let _podman = live_podman().await;
    let srv = start();
    let c = connect(&srv.url).await;
    assert_eq!(run(&c, "echo $0").await.output, "/bin/sh\n");
    // A login shell: the image's /etc/profile sets root's PATH (without
    // forking `id`, see images/Containerfile).
    assert_eq!(
        run(&c, "echo $PATH").await.output,
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    let r = run(&c, "no-such-command-xyz").await;
    assert_eq!(r.retval, 127);
    assert_eq!(r.output, "/bin/sh: 1: no-such-command-xyz: not found\n");
    assert_eq!(
        run(&c, "echo a; echo b >&2; echo c").await.output,
        "a\nb\nc\n"
    );
    assert_eq!(run(&c, "set -e; false; echo never").await.retval, 1);
    assert_eq!(run(&c, "exit 7").await.retval, 7);
    assert_eq!(run(&c, "read x; echo \"[$x]\"").await.output, "[]\n");
    // 300 KiB: more than one argv string may hold.
    let body = "x".repeat(300 * 1024);
    let r = run(
        &c,
        &format!("v='{body}'; printf %s \"$v\" | wc -c; echo end"),
    )
    .await;
    assert_eq!(
        r.output,
        format!("{}\nend\n", 300 * 1024),
        "{}",
        r.output.len()
    );
    c.cancel().await.expect("close");
}

/// A timed-out call leaves nothing: children, background jobs, setsid
/// daemons and processes that cleared their environment.
#[tokio::test]
async fn timeout_kills_everything_the_call_started() {
    let _podman = live_podman().await;
    let srv = start();
    let c = connect(&srv.url).await;
    let t = Instant::now();
    let r = call_args(
        &c,
        serde_json::json!({
            "command": "sh -c 'sleep 1000 & setsid sleep 1000 & env -i sleep 1000'",
            "timeout": 2
        }),
    )
    .await;
    let took = t.elapsed();
    let sc = r.structured_content.expect("structured");
    assert_eq!(sc["timed_out"], true, "{sc}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    let left = processes(&c, "sleep 1000").await;
    assert!(left.is_empty(), "left behind: {left:?}");
    c.cancel().await.expect("close");
}

/// A foreground fork bomb with a timeout: 5 s after the call returns, none
/// of its processes is left.
#[tokio::test]
async fn foreground_fork_bomb_is_killed_completely() {
    let _podman = live_podman().await;
    let srv = start_with(&[("POD_EXEC_CPUS", "0.5")]);
    let c = connect(&srv.url).await;
    run(&c, "true").await;
    let r = call_args(
        &c,
        serde_json::json!({"command": "bomb(){ bomb|bomb& }; bomb; sleep 30", "timeout": 10}),
    )
    .await;
    let sc = r.structured_content.clone().unwrap_or_default();
    assert_eq!(sc["timed_out"], true, "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes(&c, "bomb").await;
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} bomb processes 5 s after the call: {:?}",
            left.len(),
            &left[..left.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.cancel().await.expect("close");
}

/// Orphans are reaped: 200 background jobs that exit leave no zombie.
#[tokio::test]
async fn no_zombies_after_many_background_jobs() {
    let _podman = live_podman().await;
    let srv = start();
    let c = connect(&srv.url).await;
    run(
        &c,
        "for i in $(seq 200); do (sleep 0.05 &) ; done; sleep 0.5",
    )
    .await;
    wait_for(Duration::from_secs(5), "no zombie left", || async {
        run(&c, "ps -eo stat= | grep -c '^Z' || true")
            .await
            .output
            .trim()
            == "0"
    })
    .await;
    c.cancel().await.expect("close");
}

/// A background server keeps answering, and a background writer keeps
/// writing, after the call that started them returned: the executor keeps
/// reading their output pipe (one exec per call cannot: its pipe closes
/// with the exec).
#[tokio::test]
async fn background_jobs_keep_running_and_writing() {
    let _podman = live_podman().await;
    let srv = start();
    let c = connect(&srv.url).await;
    let r = run(
        &c,
        "cd /tmp && python3 -m http.server 8099 & \
         (while :; do echo tick; date +%s%N > /tmp/tick; sleep 0.1; done) & echo started",
    )
    .await;
    assert!(r.output.contains("started"), "{r:?}");
    for _ in 0..3 {
        let r = run(
            &c,
            "curl -s -o /dev/null -w '%{http_code}' --retry 20 --retry-connrefused \
             --retry-delay 0 http://127.0.0.1:8099/",
        )
        .await;
        assert_eq!(r.output, "200", "{r:?}");
    }
    let a = run(&c, "cat /tmp/tick").await.output;
    wait_for(Duration::from_secs(5), "the writer writes on", || async {
        run(&c, "cat /tmp/tick").await.output != a
    })
    .await;
    c.cancel().await.expect("close");
}

/// `kill -9 -1` inside the sandbox ends the executor (and the container's
/// init): the call gets a clear error, the next call works, and a file
/// written before is still there.
#[tokio::test]
async fn kill_minus_one_then_the_next_call_works() {
    let podman = live_podman().await;
    let srv = start();
    let c = connect(&srv.url).await;
    run(&c, "echo kept > /work/before.txt").await;
    let first = srv.containers(&podman).await;
    let r = call_args(
        &c,
        serde_json::json!({"command": "kill -9 -1; sleep 5", "timeout": 20}),
    )
    .await;
    eprintln!("kill -9 -1 gave: {r:?}");
    let after = run(&c, "cat /work/before.txt").await;
    assert_eq!(after.output, "kept\n");
    let now = srv.containers(&podman).await;
    assert_eq!(
        first.iter().map(|c| &c.id).collect::<Vec<_>>(),
        now.iter().map(|c| &c.id).collect::<Vec<_>>(),
        "the same container"
    );
    c.cancel().await.expect("close");
}

/// Where the agent cannot run (here: the volume holds a file of the
/// agent's size that no kernel can execute, as an agent of another
/// architecture would be), the server falls back to one exec per call,
/// says so once, and every call still works.
#[tokio::test]
async fn an_agent_that_cannot_run_falls_back_to_one_exec_per_call() {
    use pod_exec_mcp::executor::AGENT;
    use pod_exec_mcp::podman::{ContainerSpec, NamedVolume};

    let podman = live_podman().await;
    let volume = common::unique("pem-test-badagent");
    podman
        .create_volume(&volume, &Default::default())
        .await
        .expect("create the volume");
    // Filled the way the server fills its own, through a created container.
    let mut spec = ContainerSpec {
        image: common::image(),
        command: vec!["true".into()],
        ..Default::default()
    };
    spec.labels
        .insert("pod-exec-mcp.managed".into(), "true".into());
    spec.volumes = vec![NamedVolume {
        name: volume.clone(),
        dest: "/fill".into(),
        options: Vec::new(),
    }];
    let helper = podman.create_container(&spec).await.expect("helper");
    let mut tar = tar::Builder::new(Vec::new());
    let junk = vec![0u8; AGENT.len()];
    let mut header = tar::Header::new_gnu();
    header.set_size(junk.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    tar.append_data(&mut header, "pod-exec-executor", &junk[..])
        .expect("tar");
    let put = podman
        .put_archive(&helper, "/fill", tar.into_inner().expect("tar").into())
        .await;
    let _ = podman.remove_container(&helper, true).await;
    put.expect("fill the volume");

    let srv = server::start(&[
        ("POD_EXEC_EXECUTOR", "on"),
        ("POD_EXEC_EXECUTOR_VOLUME", volume.as_str()),
    ]);
    let a = connect(&srv.url).await;
    let r = run(&a, "echo $0; echo works").await;
    // `pod-exec` is the fallback's wrapper; the agent would say /bin/sh.
    assert_eq!(r.output, "pod-exec\nworks\n", "{}", srv.logs());
    let b = connect(&srv.url).await;
    assert_eq!(run(&b, "echo second").await.output, "second\n");
    assert_eq!(run(&a, "echo again").await.output, "again\n");
    let logs = srv.logs();
    assert_eq!(
        logs.matches("falling back to one exec per call").count(),
        1,
        "{logs}"
    );
    a.cancel().await.expect("close");
    b.cancel().await.expect("close");
    drop(srv);
    let _ = podman.remove_volume(&volume).await;
}
