//! CONTAINER_HOST=ssh://user@127.0.0.1:PORT/path/to/podman.sock against a
//! real OpenSSH server: a dedicated sshd on a free loopback port with its
//! own host key, config and authorized key (in a temporary state
//! directory), forwarding to the test's own Podman socket. The server works
//! through it; a wrong key, an unknown host key, a refused port and a
//! missing ssh binary each stop start-up with one line; a killed ssh is
//! restarted and the next call in the same session works; the local socket
//! is gone after exit, and ssh goes with a server killed by SIGKILL.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::mcp::{connect, run};
use common::server::{self, wait_for};
use pod_exec_mcp::podman::Endpoint;

const HOW_TO_START: &str = "\
These tests need OpenSSH's server and client (Debian: openssh-server,
openssh-client) and a real Podman. As root:

    tests/ssh-env.sh && eval \"$(tests/podman-env.sh)\"

then run the tests again from that shell.";

const SSHD: &str = "/usr/sbin/sshd";

/// A private sshd on 127.0.0.1, stopped (and its state removed) on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sshd {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "pod-exec-mcp-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("ssh-keygen: {e}\n\n{HOW_TO_START}"));
    assert!(st.success(), "ssh-keygen failed");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn user_name() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Starts sshd with a fresh host key, a client key (authorized) and a wrong
/// key (not), and writes a known_hosts file naming its host key.
fn start_sshd() -> Sshd {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing\n\n{HOW_TO_START}"
    );
    let dir = std::env::temp_dir().join(common::unique("pem-sshd"));
    std::fs::create_dir_all(&dir).expect("state dir");
    for k in ["host_key", "client_key", "wrong_key"] {
        keygen(&dir.join(k));
    }
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
        .expect("authorized_keys");
    // sshd's privilege-separation directory (Debian's init script makes it).
    std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
    for _attempt in 0..3 {
        let port = free_port();
        let config = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {dir}/host_key\n\
             PidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             UsePAM no\n\
             StrictModes no\n\
             AllowStreamLocalForwarding yes\n\
             X11Forwarding no\n\
             PrintMotd no\n",
            dir = dir.display()
        );
        // Note: `AllowTcpForwarding no` would deny the unix-socket forward
        // too (OpenSSH 9.2: "request was denied").
        std::fs::write(dir.join("sshd_config"), config).expect("sshd_config");
        let log = std::fs::File::create(dir.join("sshd.log")).expect("sshd.log");
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{SSHD}: {e}\n\n{HOW_TO_START}"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break; // port taken in the meantime: try another
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).expect("pub");
                let mut fields = host_pub.split_whitespace();
                let (kind, key) = (fields.next().expect("type"), fields.next().expect("key"));
                std::fs::write(
                    dir.join("known_hosts"),
                    format!("[127.0.0.1]:{port} {kind} {key}\n"),
                )
                .expect("known_hosts");
                std::fs::write(dir.join("empty_known_hosts"), "").expect("known_hosts");
                return Sshd { child, port, dir };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!(
        "sshd did not start; its log:\n{}",
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );
}

/// The test Podman's socket, which the sshd forwards to.
async fn podman_socket() -> PathBuf {
    let podman = common::live_podman().await;
    match podman.endpoint() {
        Endpoint::Unix(p) => p.clone(),
        other => panic!("the ssh test forwards a unix socket; CONTAINER_HOST is {other}"),
    }
}

fn ssh_host(sshd: &Sshd, socket: &Path) -> String {
    format!(
        "ssh://{}@127.0.0.1:{}{}",
        user_name(),
        sshd.port,
        socket.display()
    )
}

/// PIDs of `parent`'s children named `comm`.
fn children(parent: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        let name = head.split_once(" (").map(|(_, n)| n).unwrap_or("");
        let mut rest = tail.split_whitespace();
        let state = rest.next().unwrap_or("");
        let ppid = rest.next().and_then(|p| p.parse::<u32>().ok());
        if name == comm && ppid == Some(parent) && state != "Z" {
            out.push(pid);
        }
    }
    out
}

fn field<'a>(logs: &'a str, line_has: &str, key: &str) -> Option<&'a str> {
    let line = logs.lines().find(|l| l.contains(line_has))?;
    let rest = line.split(key).nth(1)?;
    rest.split_whitespace().next()
}

/// The server's environment for a forward through `sshd` to `socket`
/// with the right key and known_hosts.
fn forward_env(sshd: &Sshd, socket: &Path) -> [(&'static str, String); 3] {
    let path = |n: &str| sshd.path(n).to_str().expect("utf-8").to_owned();
    [
        ("CONTAINER_HOST", ssh_host(sshd, socket)),
        ("CONTAINER_SSHKEY", path("client_key")),
        ("POD_EXEC_SSH_KNOWN_HOSTS", path("known_hosts")),
    ]
}

fn as_envs<'a>(owned: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    owned.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn shell_exec_over_ssh_survives_a_killed_forward() {
    let socket = podman_socket().await;
    let sshd = start_sshd();
    let env = forward_env(&sshd, &socket);
    let host = env[0].1.clone();
    let t = Instant::now();
    let mut srv = server::start(&as_envs(&env));
    println!("server up over ssh in {:?}", t.elapsed());
    let logs = srv.logs();
    assert!(logs.contains("ssh forward up"), "{logs}");
    assert!(logs.contains(&format!("endpoint={host}")), "{logs}");
    let local = PathBuf::from(
        field(&logs, "ssh forward up", "local=").unwrap_or_else(|| panic!("local= in {logs}")),
    );
    assert!(local.exists(), "{} missing", local.display());
    let sshd_log = sshd.log();
    assert!(sshd_log.contains("Accepted publickey"), "{sshd_log}");

    let client = connect(&srv.url).await;
    let r = run(&client, "echo over-ssh; id -u").await;
    assert_eq!(r.retval, 0, "{r:?}");
    assert!(r.output.starts_with("over-ssh\n"), "{r:?}");

    // Kill ssh mid-session: the supervisor brings the forward back and the
    // next call of the same session works.
    let ssh = children(srv.pid(), "ssh");
    assert_eq!(ssh.len(), 1, "one ssh child of the server: {ssh:?}");
    let st = Command::new("kill")
        .args(["-KILL", &ssh[0].to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let t = Instant::now();
    wait_for(Duration::from_secs(15), "the forward to come back", || {
        let up = srv.logs().contains("ssh forward up again");
        async move { up }
    })
    .await;
    println!("forward back after {:?}", t.elapsed());
    let again = children(srv.pid(), "ssh");
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again[0], ssh[0]);
    let logs = srv.logs();
    assert!(logs.contains("ssh forward dropped; restarting"), "{logs}");
    let t = Instant::now();
    let r = run(&client, "echo again").await;
    assert_eq!((r.retval, r.output.as_str()), (0, "again\n"), "{r:?}");
    println!("next call after the restart: {:?}", t.elapsed());

    // SIGTERM: sessions removed, ssh stopped, the local socket gone.
    drop(client);
    srv.signal("TERM");
    let st = srv.wait_exit(Duration::from_secs(10));
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{}", srv.logs());
    assert!(!local.exists(), "{} left behind", local.display());
    assert!(
        local.parent().is_some_and(|d| !d.exists()),
        "socket directory left"
    );
    assert!(
        !Path::new(&format!("/proc/{}", again[0])).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", again[0]))
                .is_ok_and(|s| s.contains(") Z ")),
        "ssh {} still running after the server exited",
        again[0]
    );
}

/// Runs the server expecting start-up to fail; returns its one line.
fn one_line_failure(envs: &[(&str, &str)]) -> String {
    let (st, err, took) = server::start_failure(envs);
    assert!(!st.success(), "started: {err}");
    let err = err.trim().to_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("pod_exec_mcp: ssh://"), "{err}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    err
}

#[tokio::test]
async fn ssh_failures_are_one_clear_line() {
    let socket = podman_socket().await;
    let sshd = start_sshd();
    let host = ssh_host(&sshd, &socket);
    let path = |n: &str| sshd.path(n).to_str().expect("utf-8").to_owned();
    let (key, wrong, known, empty) = (
        path("client_key"),
        path("wrong_key"),
        path("known_hosts"),
        path("empty_known_hosts"),
    );

    let err = one_line_failure(&[
        ("CONTAINER_HOST", &host),
        ("CONTAINER_SSHKEY", &wrong),
        ("POD_EXEC_SSH_KNOWN_HOSTS", &known),
    ]);
    assert!(err.contains("refused the key"), "{err}");
    assert!(err.contains(&format!("CONTAINER_SSHKEY={wrong}")), "{err}");
    println!("wrong key: {err}");

    let err = one_line_failure(&[
        ("CONTAINER_HOST", &host),
        ("CONTAINER_SSHKEY", &key),
        ("POD_EXEC_SSH_KNOWN_HOSTS", &empty),
    ]);
    assert!(err.contains("host key could not be verified"), "{err}");
    assert!(err.contains("POD_EXEC_SSH_INSECURE_HOST_KEY=1"), "{err}");
    println!("unknown host key: {err}");

    let err = one_line_failure(&[
        ("CONTAINER_HOST", &host),
        ("CONTAINER_SSHKEY", &key),
        ("POD_EXEC_SSH_KNOWN_HOSTS", &known),
        ("PATH", "/nonexistent-pem-bin"),
    ]);
    assert!(err.contains("the ssh client `ssh` was not found"), "{err}");
    println!("no ssh: {err}");

    let closed = format!(
        "ssh://{}@127.0.0.1:{}{}",
        user_name(),
        free_port(),
        socket.display()
    );
    let err = one_line_failure(&[
        ("CONTAINER_HOST", &closed),
        ("CONTAINER_SSHKEY", &key),
        ("POD_EXEC_SSH_KNOWN_HOSTS", &known),
    ]);
    assert!(err.contains("refused the ssh connection"), "{err}");
    println!("refused: {err}");

    let err = one_line_failure(&[
        ("CONTAINER_HOST", &host),
        ("CONTAINER_SSHKEY", &path("no-such-key")),
    ]);
    assert!(err.contains("CONTAINER_SSHKEY="), "{err}");
    println!("missing key file: {err}");

    // Not one of those sshd logins got in.
    let log = sshd.log();
    assert!(!log.contains("Accepted publickey"), "{log}");
}

#[tokio::test]
async fn insecure_host_key_is_accepted_with_a_warning() {
    let socket = podman_socket().await;
    let sshd = start_sshd();
    let host = ssh_host(&sshd, &socket);
    let key = sshd.path("client_key");
    let empty = sshd.path("empty_known_hosts");
    let srv = server::start(&[
        ("CONTAINER_HOST", host.as_str()),
        ("CONTAINER_SSHKEY", key.to_str().expect("utf-8")),
        ("POD_EXEC_SSH_KNOWN_HOSTS", empty.to_str().expect("utf-8")),
        ("POD_EXEC_SSH_INSECURE_HOST_KEY", "1"),
    ]);
    let logs = srv.logs();
    assert!(logs.contains("the ssh host key is NOT checked"), "{logs}");
    // Killed below, the server cannot remove its socket directory: we do.
    let local_dir = field(&logs, "ssh forward up", "local=")
        .and_then(|l| Path::new(l).parent().map(Path::to_owned))
        .unwrap_or_else(|| panic!("local= in {logs}"));
    let client = connect(&srv.url).await;
    let r = run(&client, "echo ok").await;
    assert_eq!(r.output, "ok\n");

    // A server killed outright (no Drop, no cleanup) takes its ssh along:
    // an orphaned `ssh -N` would keep the forward open forever.
    let ssh = children(srv.pid(), "ssh");
    assert_eq!(ssh.len(), 1, "{ssh:?}");
    drop(client);
    let mut srv = srv;
    srv.signal("KILL");
    assert!(srv.wait_exit(Duration::from_secs(5)).is_some());
    let gone = format!("/proc/{}", ssh[0]);
    wait_for(
        Duration::from_secs(5),
        "ssh to exit with the server",
        || {
            let alive = Path::new(&gone).exists();
            async move { !alive }
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(local_dir);
}

/// A SIGKILLed server runs no cleanup: its ssh dies with it (PDEATHSIG)
/// and the next server that starts a forward removes its directory.
#[tokio::test]
async fn a_killed_servers_forward_directory_is_removed_by_the_next_one() {
    let socket = podman_socket().await;
    let sshd = start_sshd();
    let env = forward_env(&sshd, &socket);
    let envs = as_envs(&env);
    let mut first = server::start(&envs);
    let logs = first.logs();
    let local = PathBuf::from(
        field(&logs, "ssh forward up", "local=").unwrap_or_else(|| panic!("local= in {logs}")),
    );
    let dir = local.parent().expect("the socket's directory").to_owned();
    let ssh = children(first.pid(), "ssh");
    assert_eq!(ssh.len(), 1, "{ssh:?}");
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    wait_for(Duration::from_secs(5), "ssh to die with its server", || {
        let gone = !Path::new(&format!("/proc/{}", ssh[0])).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", ssh[0]))
                .is_ok_and(|s| s.contains(") Z "));
        async move { gone }
    })
    .await;
    assert!(
        dir.exists(),
        "{} is what a killed server leaves",
        dir.display()
    );

    let second = server::start(&envs);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let client = connect(&second.url).await;
    assert_eq!(run(&client, "echo ok").await.output, "ok\n");
    client.cancel().await.expect("close");
}
