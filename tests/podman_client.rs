//! The libpod client against a real Podman: containers, execs, streams,
//! errors. Fails (never skips) with how to start Podman when none answers.

mod common;

use common::{
    ContainerGuard, ExecResult, create, exec, live_podman, sandbox, sandbox_spec, sh, unique,
};
use pod_exec_mcp::podman::{
    ContainerSpec, CpuLimit, Endpoint, ExecConfig, MemoryLimit, Mount, Namespace, PidsLimit,
    PodmanClient, PodmanError, ResourceLimits, StreamKind,
};

fn text(r: &ExecResult, k: StreamKind) -> String {
    String::from_utf8_lossy(&r.stream(k)).into_owned()
}

#[tokio::test]
async fn ping_and_version() {
    let client = live_podman().await;
    let ping = client.ping().await.expect("ping");
    let v = client.version().await.expect("version");
    assert!(!v.version.is_empty());
    assert_eq!(
        ping.libpod_api_version.as_deref(),
        Some(v.api_version.as_str())
    );
    eprintln!("podman {} (API {})", v.version, v.api_version);
}

#[tokio::test]
async fn sandbox_settings_take_effect() {
    let client = live_podman().await;
    let mut spec: ContainerSpec = sandbox_spec("settings");
    let name = unique("pem-settings");
    spec.name = Some(name.clone());
    spec.hostname = Some("box-1".into());
    spec.env.insert("GREETING".into(), "hi there".into());
    spec.work_dir = Some("/tmp".into());
    spec.user = Some("65534:65534".into());
    spec.cap_drop = vec!["ALL".into()];
    spec.no_new_privileges = Some(true);
    spec.read_only_filesystem = Some(true);
    spec.netns = Some(Namespace {
        nsmode: "none".into(),
    });
    spec.mounts = vec![Mount::tmpfs("/tmp", &["rw", "size=16m", "mode=1777"])];
    spec.resource_limits = Some(ResourceLimits {
        memory: Some(MemoryLimit { limit: 256 << 20 }),
        pids: Some(PidsLimit { limit: 128 }),
        cpu: Some(CpuLimit {
            quota: 50_000,
            period: 100_000,
        }),
    });
    let guard = create(&client, &spec).await;
    client.start_container(&guard.id).await.expect("start");

    let info = client.inspect_container(&guard.id).await.expect("inspect");
    assert!(info.state.running, "{:?}", info.state);
    assert_eq!(info.name, name);
    assert_eq!(info.hostname(), Some("box-1"));
    assert_eq!(
        info.labels()
            .get("pod-exec-mcp.managed")
            .map(String::as_str),
        Some("true")
    );
    let hc = &info.host_config;
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(hc["Memory"], 256 << 20);
    assert_eq!(hc["PidsLimit"], 128);
    assert_eq!(hc["NetworkMode"], "none");
    assert_eq!(hc["Init"], true);
    assert!(hc["Tmpfs"].get("/tmp").is_some(), "{}", hc["Tmpfs"]);
    assert!(
        hc["SecurityOpt"].to_string().contains("no-new-privileges"),
        "{}",
        hc["SecurityOpt"]
    );

    // And from inside: the settings are real, not just recorded.
    let r = sh(
        &client,
        &guard.id,
        "id -u; hostname; echo \"$GREETING\"; pwd; \
         touch /ro-test 2>/dev/null && echo rw-root || echo ro-root; \
         touch /tmp/x && echo tmp-ok; \
         grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; \
         ls /sys/class/net",
    )
    .await;
    let out = text(&r, StreamKind::Stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..6],
        &["65534", "box-1", "hi there", "/tmp", "ro-root", "tmp-ok"],
        "{out}"
    );
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert_eq!(lines.last(), Some(&"lo"), "only loopback: {out}");
}

#[tokio::test]
async fn exec_streams_and_exit_codes() {
    let client = live_podman().await;
    let guard = sandbox(&client, "exec-streams").await;
    let id = &guard.id;

    let r = sh(&client, id, "echo only-out").await;
    assert_eq!(r.chunks, vec![(StreamKind::Stdout, b"only-out\n".to_vec())]);
    assert_eq!(r.exit_code, 0);

    let r = sh(&client, id, "echo only-err >&2").await;
    assert_eq!(r.chunks, vec![(StreamKind::Stderr, b"only-err\n".to_vec())]);

    // conmon reads stdout and stderr from separate pipes, so the order
    // *across* the two streams is not kept (seen: "a c" then "b")...
    let r = sh(&client, id, "echo a; echo b >&2; echo c").await;
    assert_eq!(text(&r, StreamKind::Stdout), "a\nc\n");
    assert_eq!(text(&r, StreamKind::Stderr), "b\n");
    // ...which is why the server merges at the source, with one pipe.
    let r = sh(&client, id, "exec 2>&1; echo a; echo b >&2; echo c").await;
    assert_eq!(r.chunks, vec![(StreamKind::Stdout, b"a\nb\nc\n".to_vec())]);

    assert_eq!(sh(&client, id, "true").await.exit_code, 0);
    assert_eq!(sh(&client, id, "exit 3").await.exit_code, 3);
    let r = sh(&client, id, "no-such-command-xyz").await;
    assert_eq!(r.exit_code, 127);
    assert!(text(&r, StreamKind::Stderr).contains("not found"));

    // A binary that does not exist, exec'd directly: podman reports it on
    // stderr and with exit code 127.
    let r = exec(&client, id, &ExecConfig::command(["/no/such/binary"]))
        .await
        .expect("exec of a missing binary is a result, not a call error");
    assert_eq!(r.exit_code, 127, "{r:?}");
    assert!(!r.stream(StreamKind::Stderr).is_empty(), "{r:?}");
}

#[tokio::test]
async fn stdin_is_closed() {
    let client = live_podman().await;
    let guard = sandbox(&client, "stdin").await;
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        sh(&client, &guard.id, "cat; echo cat-done"),
    )
    .await
    .expect("a command reading stdin must see EOF, not hang");
    assert_eq!(text(&r, StreamKind::Stdout), "cat-done\n");
    eprintln!("cat returned in {:?}", started.elapsed());
}

#[tokio::test]
async fn missing_user_is_an_error() {
    let client = live_podman().await;
    let guard = sandbox(&client, "bad-user").await;
    let mut cfg = ExecConfig::command(["true"]);
    cfg.user = Some("no-such-user".into());
    match exec(&client, &guard.id, &cfg).await {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("no-such-user"), "{msg}");
        }
        Ok(r) => assert_ne!(r.exit_code, 0, "a missing user cannot succeed: {r:?}"),
    }
}

#[tokio::test]
async fn one_mib_on_both_streams_arrives_complete() {
    let client = live_podman().await;
    let guard = sandbox(&client, "one-mib").await;
    let r = sh(
        &client,
        &guard.id,
        "head -c 1048576 /dev/zero | tr '\\0' o & head -c 1048576 /dev/zero | tr '\\0' e >&2; wait",
    )
    .await;
    let out = r.stream(StreamKind::Stdout);
    let err = r.stream(StreamKind::Stderr);
    assert_eq!(out.len(), 1 << 20);
    assert_eq!(err.len(), 1 << 20);
    assert!(out.iter().all(|&b| b == b'o'));
    assert!(err.iter().all(|&b| b == b'e'));
    assert_eq!(r.exit_code, 0);
}

#[tokio::test]
async fn tty_exec_is_raw() {
    let client = live_podman().await;
    let guard = sandbox(&client, "tty").await;
    let mut cfg = ExecConfig::command(["sh", "-c", "echo to-out; echo to-err >&2"]);
    cfg.tty = true;
    let r = exec(&client, &guard.id, &cfg).await.expect("tty exec");
    assert_eq!(text(&r, StreamKind::Stdout), "to-out\r\nto-err\r\n");
    assert!(r.stream(StreamKind::Stderr).is_empty());
}

#[tokio::test]
async fn list_by_label_and_remove() {
    let client = live_podman().await;
    let run = unique("list");
    let mut spec = sandbox_spec("list");
    spec.labels
        .insert("pod-exec-mcp.test-run".into(), run.clone());
    let a = create(&client, &spec).await;
    let b = create(&client, &spec).await;
    let filter = format!("pod-exec-mcp.test-run={run}");

    let mut listed: Vec<String> = list_ids(&client, &filter).await;
    let mut want = vec![a.id.clone(), b.id.clone()];
    listed.sort();
    want.sort();
    assert_eq!(listed, want);

    client.remove_container(&a.id, false).await.expect("remove");
    assert_eq!(list_ids(&client, &filter).await, vec![b.id.clone()]);

    // Gone: an error without ignore, a success with it.
    let e = client.remove_container(&a.id, false).await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    client
        .remove_container(&a.id, true)
        .await
        .expect("ignore missing");
}

async fn list_ids(client: &PodmanClient, filter: &str) -> Vec<String> {
    client
        .list_containers(&["pod-exec-mcp.managed=true", filter])
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect()
}

#[tokio::test]
async fn errors_keep_podmans_words() {
    let client = live_podman().await;

    let e = client
        .inspect_container("pem-no-such-ctr")
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert!(e.to_string().contains("pem-no-such-ctr"), "{e}");

    let e = client
        .create_exec("pem-no-such-ctr", &ExecConfig::command(["true"]))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");

    let mut spec = sandbox_spec("errors");
    spec.image = "localhost/pem-no-such-image:latest".into();
    let e = client.create_container(&spec).await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert!(!client.image_exists(&spec.image).await.expect("exists"));

    // A created but stopped container refuses execs.
    let stopped = create(&client, &sandbox_spec("errors")).await;
    let e = client
        .create_exec(&stopped.id, &ExecConfig::command(["true"]))
        .await;
    let e = match e {
        Err(e) => e,
        Ok(exec_id) => client
            .start_exec(&exec_id, false)
            .await
            .expect_err("exec in a stopped container must fail"),
    };
    assert!(matches!(e, PodmanError::Conflict(_)), "{e:?}");
}

/// Relays TCP connections to the Podman Unix socket, so the TCP transport
/// (`tcp://host:port`, as for a remote `podman system service`) is tested
/// against the real Podman.
async fn tcp_relay(socket: std::path::PathBuf) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind relay");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut unix) = tokio::net::UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn tcp_endpoint_works_end_to_end() {
    let unix_client = live_podman().await;
    let Endpoint::Unix(socket) = unix_client.endpoint().clone() else {
        panic!("this test relays to a unix:// CONTAINER_HOST");
    };
    let authority = tcp_relay(socket).await;
    let client =
        PodmanClient::new(Endpoint::parse(&format!("tcp://{authority}")).expect("tcp endpoint"));
    client.ping().await.expect("ping over tcp");
    let id = client
        .create_container(&sandbox_spec("tcp"))
        .await
        .expect("create over tcp");
    // Cleanup goes over the Unix socket: the relay lives on this test's
    // runtime, which a guard's Drop blocks.
    let guard = ContainerGuard::new(id, unix_client.endpoint().clone());
    client
        .start_container(&guard.id)
        .await
        .expect("start over tcp");
    let r = sh(&client, &guard.id, "echo over-tcp; echo err >&2; exit 4").await;
    assert_eq!(text(&r, StreamKind::Stdout), "over-tcp\n");
    assert_eq!(text(&r, StreamKind::Stderr), "err\n");
    assert_eq!(r.exit_code, 4);
}

/// A duplex exec: stdin bytes reach the process as they are written, its
/// output comes back framed, and a write half-close is its EOF. With the
/// detach keys moved to ctrl-^, ctrl-p and ctrl-q arriving as separate
/// writes no longer cut the connection.
#[tokio::test]
async fn duplex_exec_carries_stdin_and_half_close() {
    let client = live_podman().await;
    let guard = sandbox(&client, "duplex").await;
    let mut cfg = ExecConfig::command(["/bin/sh", "-c", "cat; echo eof-seen"]);
    cfg.attach_stdin = true;
    cfg.detach_keys = Some("ctrl-^".into());
    let exec = client.create_exec(&guard.id, &cfg).await.expect("create");
    let (mut r, mut w) = client.start_exec_duplex(&exec).await.expect("start");
    let mut got = Vec::new();
    for piece in [&b"hello\n"[..], b"\x10", b"\x11", b"world\n"] {
        w.write_all(piece).await.expect("write");
        // Not a wait for a condition: the pause makes Podman's stdin copy
        // see each piece as a read of its own, the case that trips the
        // default detach keys.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    w.shutdown().await.expect("half-close");
    let read = async {
        while let Some(chunk) = r.next_chunk().await {
            got.extend_from_slice(&chunk.expect("chunk").data);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("EOF after the half-close");
    assert_eq!(got, b"hello\n\x10\x11world\neof-seen\n");
    let info = client.inspect_exec(&exec).await.expect("inspect");
    assert_eq!(info.exit_code, 0);
}
