//! The command policy and read-only mode through the real server and a
//! real Podman: strict refusals are tool errors quoting the rule (and
//! audited), permissive mode runs the same command, a bad rule file stops
//! start-up with its line, and read-only mode makes writes fail in the
//! kernel even where a command passes the patterns.

mod common;

use std::time::Duration;

use common::live_podman;
use common::mcp::{call, connect, error_text, run};
use common::server;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn strict_refuses_permissive_runs() {
    let _podman = live_podman().await;
    let dir = std::env::temp_dir().join(common::unique("pem-policy"));
    std::fs::create_dir_all(&dir).expect("dir");
    let audit = dir.join("audit.jsonl");
    let strict = server::start(&[
        ("POD_EXEC_AUDIT_LOG", audit.to_str().expect("path")),
        (
            "POD_EXEC_SECURITY_CONFIG",
            &fixture("k8s-mcp-server-security-config.yaml"),
        ),
    ]);
    let c = connect(&strict.url).await;
    // The catastrophic ones, in bypass spellings, are tool errors.
    for cmd in [
        "rm -rf /srv",
        "cd /tmp &&  rm  -r -f /srv/",
        "sudo /bin/rm -fr /srv",
        "sh -c 'mkfs.ext4 /dev/sda'",
        ":(){ :|:& };:",
    ] {
        let msg = error_text(&call(&c, cmd).await);
        assert!(
            msg.starts_with("refused by the command policy (strict mode)"),
            "{cmd}: {msg}"
        );
        assert!(msg.contains("POD_EXEC_SECURITY_MODE=permissive"), "{msg}");
    }
    // Ordinary work passes, and /srv is still there.
    let r = run(&c, "rm -rf /tmp/x ./build; ls -d /srv; echo rm -rf /").await;
    assert_eq!(r.retval, 0, "{r:?}");
    assert_eq!(r.output, "/srv\nrm -rf /\n");
    c.cancel().await.expect("close");

    let text = std::fs::read_to_string(&audit).expect("audit log");
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    assert_eq!(first["command"], "rm -rf /srv");
    assert_eq!(first["refused_by"], "shell:rm-system-dir", "{first}");
    assert!(first["retval"].is_null());
    drop(strict);

    let permissive = server::start(&[("POD_EXEC_SECURITY_MODE", "permissive")]);
    let c = connect(&permissive.url).await;
    let r = run(&c, "rm -rf /srv && test ! -e /srv && echo removed").await;
    assert_eq!(r.output, "removed\n", "{r:?}");
    c.cancel().await.expect("close");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bad_rule_file_stops_start_up_with_its_line() {
    let _podman = live_podman().await;
    let dir = std::env::temp_dir().join(common::unique("pem-badrules"));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("rules.yaml");
    std::fs::write(
        &bad,
        "dangerous_commands:\n  shell:\n    - \"rm -rf\"\nregex_rules:\n  shell:\n    - pattern: \"([unclosed\"\n      description: broken\n",
    )
    .expect("write");
    let path = bad.to_str().expect("path");
    let (st, err, took) = server::start_failure(&[("POD_EXEC_SECURITY_CONFIG", path)]);
    assert!(!st.success());
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(err.contains(&format!("{path}:6:")), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    std::fs::write(&bad, "dangerous_commands: [\"not\", \"a map\"]\n").expect("write");
    let (st, err, _) = server::start_failure(&[("POD_EXEC_SECURITY_CONFIG", path)]);
    assert!(!st.success());
    assert!(err.contains(&format!("{path}:1:")), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Read-only mode: the root and every mount are read-only in the kernel
/// (inspect says so), only tmpfs scratch is writable, and the destructive
/// rules apply even in permissive mode.
#[tokio::test]
async fn read_only_mode_is_enforced_by_the_kernel() {
    let podman = live_podman().await;
    let srv = server::start(&[
        ("POD_EXEC_READ_ONLY", "true"),
        ("POD_EXEC_SECURITY_MODE", "permissive"),
    ]);
    let c = connect(&srv.url).await;

    let r = run(&c, "touch /etc/x").await;
    assert_ne!(r.retval, 0, "{r:?}");
    assert!(r.output.contains("Read-only file system"), "{r:?}");
    // Past the patterns (not a top-level directory): the kernel refuses.
    let r = run(
        &c,
        "rm -rf /usr/share/doc; test -d /usr/share/doc && echo still-there",
    )
    .await;
    assert!(r.output.contains("Read-only file system"), "{r:?}");
    assert!(r.output.ends_with("still-there\n"), "{r:?}");
    // The destructive rules apply although the mode is permissive.
    let msg = error_text(&call(&c, "rm -rf /usr").await);
    assert!(msg.contains("read-only"), "{msg}");
    let r = run(
        &c,
        "echo x > /tmp/y && cat /tmp/y && echo z > /work/z && cat /work/z",
    )
    .await;
    assert_eq!(r.output, "x\nz\n", "{r:?}");

    let list = srv.containers(&podman).await;
    assert_eq!(list.len(), 1);
    let info = podman
        .inspect_container(&list[0].id)
        .await
        .expect("inspect");
    assert_eq!(
        info.host_config["ReadonlyRootfs"], true,
        "{:?}",
        info.host_config
    );
    let tmpfs = &info.host_config["Tmpfs"];
    assert!(
        tmpfs.get("/tmp").is_some() && tmpfs.get("/work").is_some(),
        "{tmpfs}"
    );
    c.cancel().await.expect("close");
}
