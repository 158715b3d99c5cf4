//! Sandbox confinement, checked on the real container: what Podman's
//! inspect reports, and what a process inside sees. Also what a fork bomb
//! and a memory hog do to the server and to other sessions.

mod common;

use std::time::{Duration, Instant};

use common::mcp::{Client, call_args, connect, run};
use common::server::{self, ServerProcess, wait_for};
use common::{live_podman, unique};
use pod_exec_mcp::podman::{ContainerInspect, PodmanClient};

/// Bits of the capabilities a sandbox keeps (CHOWN 0, DAC_OVERRIDE 1,
/// FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7, NET_BIND_SERVICE 10).
const KEPT_CAPS_HEX: &str = "00000000000004fb";

/// The fork bomb and the memory hog load the whole machine: they run
/// alone (write lock), the other tests of this file beside each other
/// (read lock), so neither skews the other's timings.
static MACHINE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Runs `true` so the session's container exists, then inspects it.
async fn session_container(
    podman: &PodmanClient,
    srv: &ServerProcess,
    client: &Client,
) -> ContainerInspect {
    // The hostname is the container id's first 12 characters.
    let host = run(client, "hostname").await.output.trim().to_owned();
    assert_eq!(host.len(), 12, "{host:?}");
    let list = srv.containers(podman).await;
    let mine: Vec<_> = list.iter().filter(|c| c.id.starts_with(&host)).collect();
    assert_eq!(mine.len(), 1, "the session's container ({host}): {list:?}");
    assert_eq!(mine[0].labels["pod-exec-mcp.kind"], "session");
    podman
        .inspect_container(&mine[0].id)
        .await
        .expect("inspect the session container")
}

/// Prints the inspect fields this file checks (for the record).
fn show(what: &str, info: &ContainerInspect) {
    let hc = &info.host_config;
    let fields = [
        "CapAdd",
        "CapDrop",
        "SecurityOpt",
        "IDMappings",
        "UsernsMode",
        "NanoCpus",
        "CpuQuota",
        "CpuPeriod",
        "Ulimits",
        "PidsLimit",
        "Memory",
        "NetworkMode",
        "ReadonlyRootfs",
        "Tmpfs",
        "Binds",
    ];
    let picked: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|f| ((*f).to_owned(), hc[*f].clone()))
        .collect();
    eprintln!(
        "{what}: HostConfig {}\nConfig.User {} EffectiveCaps {}",
        serde_json::Value::Object(picked),
        info.config["User"],
        info.extra["EffectiveCaps"]
    );
}

fn caps(v: &serde_json::Value) -> Vec<String> {
    let mut c: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str())
                .map(|s| s.trim_start_matches("CAP_").to_owned())
                .collect()
        })
        .unwrap_or_default();
    c.sort();
    c
}

#[tokio::test]
async fn default_sandbox_is_confined() {
    let _machine = MACHINE.read().await;
    let podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;
    let info = session_container(&podman, &srv, &client).await;
    show("default", &info);
    let hc = &info.host_config;

    // Capabilities: all dropped, the minimal list added back.
    let mut kept = vec![
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "NET_BIND_SERVICE",
        "SETGID",
        "SETUID",
    ];
    kept.sort();
    assert_eq!(caps(&info.extra["EffectiveCaps"]), kept, "EffectiveCaps");
    for dropped in ["NET_RAW", "MKNOD", "SYS_CHROOT", "AUDIT_WRITE", "SETFCAP"] {
        assert!(
            !caps(&hc["CapAdd"]).iter().any(|c| c == dropped),
            "{dropped} kept: {}",
            hc["CapAdd"]
        );
    }
    assert!(
        hc["SecurityOpt"].to_string().contains("no-new-privileges"),
        "{}",
        hc["SecurityOpt"]
    );
    // User namespace: the default fixed mapping.
    assert_eq!(hc["UsernsMode"], "private");
    assert_eq!(
        hc["IDMappings"],
        serde_json::json!({"UidMap": ["0:1000000000:65536"], "GidMap": ["0:1000000000:65536"]})
    );
    // Limits: 1 CPU, 4096 open files, 1024 processes, 2 GiB.
    assert_eq!(hc["CpuQuota"], 100_000);
    assert_eq!(hc["CpuPeriod"], 100_000);
    let nofile = hc["Ulimits"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["Name"] == "RLIMIT_NOFILE"))
        .unwrap_or_else(|| panic!("no RLIMIT_NOFILE in {}", hc["Ulimits"]));
    assert_eq!(
        (&nofile["Soft"], &nofile["Hard"]),
        (&4096.into(), &4096.into())
    );
    assert_eq!(hc["PidsLimit"], 1024);
    assert_eq!(hc["Memory"], 2u64 << 30);
    // Network: Podman's default bridge; root writable.
    assert_eq!(hc["NetworkMode"], "bridge");
    assert_eq!(hc["ReadonlyRootfs"], false);

    // From inside.
    let r = run(
        &client,
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; ulimit -n; ulimit -Hn; \
         cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max; \
         ls /sys/class/net | sort | tr '\\n' ' '",
    )
    .await;
    let lines: Vec<&str> = r.output.lines().collect();
    assert_eq!(
        lines[..6],
        [
            &format!("CapEff:\t{KEPT_CAPS_HEX}") as &str,
            "NoNewPrivs:\t1",
            "4096",
            "4096",
            "100000",
            "1024"
        ],
        "{}",
        r.output
    );
    assert!(lines[6].contains("eth0"), "bridge gives eth0: {}", r.output);

    // What root still does with those capabilities: own and chmod files,
    // switch users, open ICMP datagram sockets; what it no longer does:
    // raw sockets, device nodes, chroot.
    let r = run(
        &client,
        "set -e; touch /tmp/f; chown nobody:nogroup /tmp/f; chmod 600 /tmp/f; \
         su -s /bin/sh nobody -c 'id -un'; \
         python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 1)' \
           && echo icmp-dgram-ok; \
         mknod /tmp/dev c 1 3 2>/dev/null && echo mknod-ok || echo no-mknod; \
         chroot / true 2>/dev/null && echo chroot-ok || echo no-chroot; \
         python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)' 2>/dev/null \
           && echo raw-ok || echo no-raw",
    )
    .await;
    assert_eq!(
        r.output, "nobody\nicmp-dgram-ok\nno-mknod\nno-chroot\nno-raw\n",
        "{r:?}"
    );
}

#[tokio::test]
async fn sandbox_root_maps_to_an_unprivileged_host_uid() {
    let _machine = MACHINE.read().await;
    let podman = live_podman().await;
    let srv = server::start(&[]);
    let client = connect(&srv.url).await;
    let info = session_container(&podman, &srv, &client).await;

    let r = run(&client, "id -u; cat /proc/self/uid_map /proc/self/gid_map").await;
    let rows: Vec<Vec<&str>> = r
        .output
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(r.output.lines().next(), Some("0"), "{}", r.output);
    assert_eq!(
        rows,
        [["0", "1000000000", "65536"], ["0", "1000000000", "65536"]],
        "{}",
        r.output
    );
    // And from the host: the container's init runs as that uid.
    let status = std::fs::read_to_string(format!("/proc/{}/status", info.state.pid))
        .expect("the container's init is a host process (Podman on this machine)");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    assert!(
        uid_line.split_whitespace().nth(1) == Some("1000000000"),
        "host view of the sandbox's root: {uid_line}"
    );
}

#[tokio::test]
async fn userns_auto_without_subordinate_ids_falls_back_and_host_is_host() {
    let _machine = MACHINE.read().await;
    let podman = live_podman().await;
    let srv = server::start(&[("POD_EXEC_USERNS", "auto")]);
    let client = connect(&srv.url).await;
    let info = session_container(&podman, &srv, &client).await;
    let r = run(&client, "cat /proc/self/uid_map").await;
    let row: Vec<&str> = r.output.split_whitespace().collect();
    assert_eq!(row.len(), 3, "{}", r.output);
    if srv
        .logs()
        .contains("POD_EXEC_USERNS=auto is not available on this Podman")
    {
        // This machine has no /etc/subuid entry for `containers`.
        assert_eq!(row, ["0", "1000000000", "65536"], "fallback map");
        assert_eq!(info.host_config["UsernsMode"], "private");
    } else {
        // It has one: Podman picked a range of 65536.
        assert_eq!(row[0], "0");
        assert_ne!(row[1], "0", "auto must not map root to root");
        assert_eq!(row[2], "65536");
    }
    drop(client);
    drop(srv);

    let srv = server::start(&[("POD_EXEC_USERNS", "host")]);
    let client = connect(&srv.url).await;
    let r = run(&client, "cat /proc/self/uid_map").await;
    assert_eq!(
        r.output.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
    assert!(
        srv.logs().contains("a sandbox's root is the host's root"),
        "{}",
        srv.logs()
    );
}

/// A host directory for a bind mount, removed when dropped.
struct HostDir(std::path::PathBuf);

impl HostDir {
    fn new(name: &str, mode: u32) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(unique(name));
        std::fs::create_dir(&p).expect("mkdir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        HostDir(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn read_only_root_non_root_user_and_bind_mounts() {
    let _machine = MACHINE.read().await;
    let podman = live_podman().await;
    let data = HostDir::new("pem-ro", 0o755);
    std::fs::write(data.0.join("hello"), "from the host\n").expect("write");
    // World-writable: sandbox uids are mapped host uids.
    let out = HostDir::new("pem-rw", 0o777);
    let mounts = format!("{}:/data,{}:/out:rw", data.path(), out.path());
    let srv = server::start(&[
        ("POD_EXEC_READ_ONLY_ROOT", "true"),
        ("POD_EXEC_USER", "1000:1000"),
        ("POD_EXEC_MOUNTS", &mounts),
        ("POD_EXEC_NETWORK", "none"),
    ]);
    let client = connect(&srv.url).await;
    let info = session_container(&podman, &srv, &client).await;
    show("read-only root, user, mounts", &info);
    let hc = &info.host_config;
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(hc["NetworkMode"], "none");
    assert_eq!(info.config["User"], "1000:1000");
    for t in ["/tmp", "/work"] {
        assert!(hc["Tmpfs"].get(t).is_some(), "{t}: {}", hc["Tmpfs"]);
    }
    let mounts = info.extra["Mounts"].as_array().cloned().unwrap_or_default();
    let rw_of = |dst: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == dst)
            .map(|m| m["RW"].clone())
            .unwrap_or_else(|| panic!("no mount at {dst}: {mounts:?}"))
    };
    assert_eq!(rw_of("/data"), false);
    assert_eq!(rw_of("/out"), true);

    let r = run(
        &client,
        "id -u; pwd; touch /etc/x 2>/dev/null && echo etc-rw || echo etc-ro; \
         echo x > /tmp/y && echo tmp-ok; echo x > /work/z && echo work-ok; \
         cat /data/hello; sh -c 'echo x > /data/f' 2>/dev/null && echo data-rw || echo data-ro; \
         echo from-sandbox > /out/f && echo out-ok; ls /sys/class/net; echo $PATH",
    )
    .await;
    // The login profile gives a non-root user the non-root PATH.
    assert_eq!(
        r.output,
        "1000\n/work\netc-ro\ntmp-ok\nwork-ok\nfrom the host\ndata-ro\nout-ok\nlo\n\
         /usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games\n",
        "{r:?}"
    );
    assert_eq!(
        std::fs::read_to_string(out.0.join("f")).ok().as_deref(),
        Some("from-sandbox\n")
    );
    // The killer exec still ends a non-root user's timed-out call, the
    // background job included (as root it could not see that user's
    // /proc/N/environ without CAP_SYS_PTRACE).
    let t = Instant::now();
    let r = call_args(
        &client,
        serde_json::json!({"command": "sleep 60 & sleep 60", "timeout": 1}),
    )
    .await;
    let v = r.structured_content.expect("structured result");
    assert_eq!(v["timed_out"], true, "{v}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let r = run(&client, "pgrep -c -x -f 'sleep 60' || true").await;
    assert_eq!(r.output.trim(), "0", "sleeps left behind: {}", r.output);
}

#[tokio::test]
async fn read_only_mode_forces_read_only_everything() {
    let _machine = MACHINE.read().await;
    use clap::Parser;
    use pod_exec_mcp::config::Config;
    use pod_exec_mcp::sandbox::owner::Identity;
    use pod_exec_mcp::sandbox::spec::SandboxTemplate;
    use pod_exec_mcp::sandbox::{ExecOptions, Limits, SandboxKey, SandboxManager};

    let podman = live_podman().await;
    let out = HostDir::new("pem-rom", 0o777);
    let mount = format!("{}:/out:rw", out.path());
    let config = Config::try_parse_from(["x", "--mount", &mount, "--image", &common::image()])
        .expect("config");
    let template = SandboxTemplate::from_config(&config).with_read_only_mode(true);
    let me = Identity::current();
    let instance = me.instance.clone();
    let m = SandboxManager::new(
        podman.clone(),
        template,
        me,
        Limits {
            max_output: 10_000,
            max_calls_per_sandbox: 2,
            max_sandboxes: 4,
            max_queued_per_sandbox: 0,
            sandbox_ttl: std::time::Duration::from_secs(1800),
            evict_after: std::time::Duration::from_secs(60),
            handles_survive: true,
        },
    );
    let key = SandboxKey::Session(unique("rom"));
    m.open(&key);
    let r = m
        .exec(
            &key,
            "touch /etc/x 2>/dev/null && echo etc-rw || echo etc-ro; \
             echo x > /tmp/y && echo tmp-ok; echo x > /work/z && echo work-ok; \
             sh -c 'echo x > /out/f' 2>/dev/null && echo out-rw || echo out-ro",
            ExecOptions::default(),
        )
        .await;
    let list = server::containers_of(&podman, &instance).await;
    let info = match list.first() {
        Some(c) => podman.inspect_container(&c.id).await.ok(),
        None => None,
    };
    m.shutdown().await;
    let r = r.expect("exec in read-only mode");
    assert_eq!(r.output.text, "etc-ro\ntmp-ok\nwork-ok\nout-ro\n");
    let info = info.expect("the sandbox container, inspected");
    show("read-only mode", &info);
    assert_eq!(info.host_config["ReadonlyRootfs"], true);
    let mounts = info.extra["Mounts"].as_array().cloned().unwrap_or_default();
    let out_mount = mounts
        .iter()
        .find(|m| m["Destination"] == "/out")
        .unwrap_or_else(|| panic!("no /out mount: {mounts:?}"));
    assert_eq!(out_mount["RW"], false, "rw bind forced read-only");
    for t in ["/tmp", "/work"] {
        assert!(
            info.host_config["Tmpfs"].get(t).is_some(),
            "{t}: {}",
            info.host_config["Tmpfs"]
        );
    }
    assert!(server::containers_of(&podman, &instance).await.is_empty());
}

/// p50 of `n` warm `true` calls, in ms.
async fn p50_true(client: &Client, n: usize) -> f64 {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        run(client, "true").await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    ms[n / 2]
}

/// The cgroup of process `pid` for v1 controller `controller`, as the
/// host sees it.
fn cgroup_path(pid: i64, controller: &str) -> Option<String> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    cg.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_owned())
    })
}

/// A value of a container's cgroup (v1 controller `controller`), read on
/// the host.
fn cgroup_value(pid: i64, controller: &str, file: &str) -> Option<u64> {
    let path = cgroup_path(pid, controller)?;
    std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}{path}/{file}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `pids.current` of a container's cgroup.
fn pids_current(pid: i64) -> Option<u64> {
    cgroup_value(pid, "pids", "pids.current")
}

#[tokio::test]
async fn fork_bomb_is_held_by_pids_and_cpu_limits() {
    let _machine = MACHINE.write().await;
    let podman = live_podman().await;
    // A strict command policy (another branch) may refuse fork bombs.
    // Half a CPU: this machine has two cores, and at the default (1 CPU,
    // half the machine) the bystander's p50 went from ~100-170 ms to
    // 360-630 ms in three runs out of four; at 0.5 it stayed within 1.7x.
    let srv = server::start(&[
        ("POD_EXEC_SECURITY_MODE", "permissive"),
        ("POD_EXEC_CPUS", "0.5"),
    ]);
    let bystander = connect(&srv.url).await;
    let bomber = connect(&srv.url).await;
    run(&bystander, "true").await;
    let before = p50_true(&bystander, 10).await;

    let info = session_container(&podman, &srv, &bomber).await;
    let r = call_args(
        &bomber,
        serde_json::json!({"command": "f(){ f|f& }; f", "timeout": 10}),
    )
    .await;
    assert_ne!(r.is_error, Some(true), "starting the bomb: {r:?}");
    // Wait until it has filled the pids limit.
    wait_for(
        Duration::from_secs(60),
        "the fork bomb reaching pids.max",
        || {
            let n = pids_current(info.state.pid);
            async move { n.is_some_and(|n| n >= 1000) }
        },
    )
    .await;
    // The CPU limit holds: over two seconds of the bomb, its container
    // used at most its half CPU (read from the kernel's accounting, not
    // timed, so a busy machine cannot fail it; slack for the edges).
    let usage = || cgroup_value(info.state.pid, "cpuacct", "cpuacct.usage");
    let (u0, t0) = (usage().expect("cpuacct.usage"), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (u1, secs) = (usage().expect("cpuacct.usage"), t0.elapsed().as_secs_f64());
    let cpus = (u1 - u0) as f64 / 1e9 / secs;
    // The bystander still gets its calls through (its latency is printed:
    // timing is the benchmark's business, not a test's).
    let during = p50_true(&bystander, 10).await;
    eprintln!(
        "bomb used {cpus:.2} CPUs; bystander `true` p50: {before:.0} ms before, \
         {during:.0} ms during the bomb"
    );
    assert!(cpus <= 0.6, "the bomb used {cpus:.2} CPUs (limit 0.5)");
    assert!(
        pids_current(info.state.pid).is_some_and(|n| n <= 1024),
        "pids.max held"
    );

    // The bombed session still answers (the call may fail: no process
    // can be forked in there), and the server with it.
    let t = Instant::now();
    let r = call_args(
        &bomber,
        serde_json::json!({"command": "echo alive", "timeout": 5}),
    )
    .await;
    eprintln!("bombed session answered in {:?}: {r:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(30));
    run(&bystander, "echo still-here").await;

    // Ending the session removes the container, which ends the bomb.
    bomber.cancel().await.expect("close the bombed session");
    wait_for(
        Duration::from_secs(30),
        "the bombed container removed",
        || {
            let podman = podman.clone();
            let id = info.id.clone();
            async move { podman.inspect_container(&id).await.is_err() }
        },
    )
    .await;
}

#[tokio::test]
async fn memory_hog_is_killed_and_the_session_goes_on() {
    let _machine = MACHINE.write().await;
    let podman = live_podman().await;
    let srv = server::start(&[("POD_EXEC_MEMORY", "256m")]);
    let client = connect(&srv.url).await;
    let info = session_container(&podman, &srv, &client).await;
    assert_eq!(info.host_config["Memory"], 256 << 20);

    let t = Instant::now();
    let r = run(&client, "head -c 3G /dev/zero | tail; echo \"status $?\"").await;
    eprintln!("memory hog: {:?} in {:?}", r.output, t.elapsed());
    assert!(r.output.ends_with("status 137\n"), "{r:?}");
    let r = run(&client, "echo next").await;
    assert_eq!(r.output, "next\n");
    // The same container: only the hog was killed.
    let after = session_container(&podman, &srv, &client).await;
    assert_eq!(after.id, info.id);
    assert!(after.state.running);
}

#[tokio::test]
async fn bad_mount_fails_at_start_up() {
    let (status, stderr, took) = server::start_failure(&[("POD_EXEC_MOUNTS", "/srv:/x,data:/y")]);
    assert!(!status.success());
    assert!(stderr.contains("not an absolute path"), "{stderr}");
    assert!(took < Duration::from_secs(5));
    let (status, stderr, _) = server::start_failure(&[("POD_EXEC_USERNS", "map:0:65536")]);
    assert!(!status.success());
    assert!(stderr.contains("host root"), "{stderr}");
}

/// A server with POD_EXEC_CGROUP_PARENT=`setting`: its session container
/// and that container's cgroup (checked to hold the container's own CPU
/// quota and pids limit). The server is gone when this returns.
async fn sandbox_cgroup(podman: &PodmanClient, setting: &str) -> (ContainerInspect, String) {
    let srv = server::start(&[("POD_EXEC_CGROUP_PARENT", setting)]);
    let client = connect(&srv.url).await;
    let info = session_container(podman, &srv, &client).await;
    let pid = info.state.pid;
    let path = cgroup_path(pid, "cpu").expect("the sandbox's cpu cgroup");
    eprintln!(
        "{setting}: CgroupParent {} cgroup {path}",
        info.host_config["CgroupParent"]
    );
    assert_eq!(cgroup_value(pid, "cpu", "cpu.cfs_quota_us"), Some(100_000));
    assert_eq!(cgroup_value(pid, "pids", "pids.max"), Some(1024));
    assert_eq!(cgroup_path(pid, "pids").as_deref(), Some(path.as_str()));
    client.cancel().await.expect("close the session");
    (info, path)
}

/// Where a session container's cgroup sits, and that its limits hold
/// there: under the default `auto` on a rootful cgroupfs Podman each
/// sandbox is at the top of the hierarchy (not all together in one
/// `/libpod_parent`, which weighs as one host process); `podman` keeps
/// Podman's default; a path is taken as given; a parent the cgroup manager
/// does not take stops the server at start-up.
#[tokio::test]
async fn cgroup_parent_places_sandboxes_where_configured() {
    let _machine = MACHINE.read().await;
    let podman = live_podman().await;
    let host = podman.info().await.expect("GET /libpod/info");
    assert!(
        !host.rootless && host.cgroup_manager == "cgroupfs" && host.cgroup_version == "v1",
        "this test reads v1 cgroups of a rootful cgroupfs Podman; this one is {host:?}"
    );
    // Podman's default first: it also tells where this Podman's own
    // hierarchy starts as the host sees it ("" here; a Podman in a
    // container has the container's cgroup as its root).
    let (info, path) = sandbox_cgroup(&podman, "podman").await;
    assert_eq!(info.host_config["CgroupParent"], "");
    let root = path
        .strip_suffix(&format!("/libpod_parent/libpod-{}", info.id))
        .unwrap_or_else(|| panic!("Podman's default is /libpod_parent: {path}"))
        .to_owned();

    let (info, path) = sandbox_cgroup(&podman, "auto").await;
    assert_eq!(info.host_config["CgroupParent"], "/");
    assert_eq!(path, format!("{root}/libpod-{}", info.id));

    let parent = format!("/{}", unique("pod_exec_test_"));
    let (info, path) = sandbox_cgroup(&podman, &parent).await;
    assert_eq!(info.host_config["CgroupParent"], parent.as_str());
    assert_eq!(path, format!("{root}{parent}/libpod-{}", info.id));
    // Podman leaves the parent it made behind (as it does /libpod_parent):
    // remove what is empty once the container is gone.
    let instance = info.labels()["pod-exec-mcp.instance"].clone();
    wait_for(Duration::from_secs(10), "the container removed", || async {
        server::containers_of(&podman, &instance).await.is_empty()
    })
    .await;
    // Its conmon may still be leaving that parent's conmon group: retry.
    let rel = format!("{root}{parent}");
    let dirs: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .expect("/sys/fs/cgroup")
        .flatten()
        .map(|d| d.path().join(rel.trim_start_matches('/')))
        .filter(|p| p.exists())
        .collect();
    wait_for(
        Duration::from_secs(10),
        "the test parent's cgroups removed",
        || async {
            for p in &dirs {
                let _ = std::fs::remove_dir(p.join("conmon"));
                let _ = std::fs::remove_dir(p);
            }
            dirs.iter().all(|p| !p.exists())
        },
    )
    .await;

    let (status, stderr, took) =
        server::start_failure(&[("POD_EXEC_CGROUP_PARENT", "machine.slice")]);
    assert!(!status.success());
    assert!(stderr.contains("takes an absolute path"), "{stderr}");
    assert!(!stderr.contains("serving MCP"), "{stderr}");
    assert!(took < Duration::from_secs(5));
    let (status, stderr, _) = server::start_failure(&[("POD_EXEC_CGROUP_PARENT", "a/../b")]);
    assert!(!status.success());
    assert!(stderr.contains("not a cgroup parent"), "{stderr}");
}
