//! `ssh://` Podman endpoints, as podman's remote client reads them: the
//! remote socket is forwarded by the system's ssh client to a private local
//! unix socket (`ssh -nNT -L LOCAL:REMOTE`), which the libpod client dials.
//! A supervisor task restarts the forward when it drops; the socket and its
//! directory go when the forward is closed or dropped.
//!
//! The ssh client, not a Rust SSH library, does the work so that the user's
//! ssh config, agent, known_hosts and keys behave exactly as with `podman
//! --remote`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Endpoint, PodmanClient};

/// How long one start of the forward may take to come up (ssh's own
/// ConnectTimeout is 10 s of it).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often to look for the local socket while ssh starts.
const READY_POLL: Duration = Duration::from_millis(20);
/// First and longest pause before restarting a dropped forward.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A forward up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);
/// What is kept of ssh's stderr (its tail), and of one line.
const STDERR_KEEP: usize = 4096;
const LINE_MAX: usize = 300;
/// sockaddr_un's path limit, less the terminating NUL.
const SUN_PATH_MAX: usize = 107;

/// `ssh://[user@]host[:port]/path/to/podman.sock`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Remote user; ssh's default (config, then the local user) if absent.
    pub user: Option<String>,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port; ssh's default (config, then 22) if absent.
    pub port: Option<u16>,
    /// The Podman socket on the remote host (absolute).
    pub path: String,
}

impl SshTarget {
    /// Parses what follows `ssh://`; `Err` is the reason, for one line.
    pub(super) fn parse(rest: &str) -> Result<Self, &'static str> {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.len() < 2 {
            return Err("the remote socket's path is missing");
        }
        if path.contains(':') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the socket path may not contain ':', spaces or control characters");
        }
        if path.contains('?') || path.contains('#') {
            return Err("query parameters are not supported");
        }
        let (user, hostport) = match authority.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if let Some(u) = user {
            let ok = !u.is_empty()
                && !u.starts_with('-')
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return Err("bad user name");
            }
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err("bad IPv6 address");
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("bad port")?),
            };
            (h, port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let host_ok = !host.is_empty()
            && !host.starts_with('-')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
        if !host_ok {
            return Err("bad host");
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 => Some(n),
                _ => return Err("bad port"),
            },
        };
        Ok(SshTarget {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// `user@host:port`, for messages.
    fn destination(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        if self.host.contains(':') {
            s.push_str(&format!("[{}]", self.host));
        } else {
            s.push_str(&self.host);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ssh://{}{}", self.destination(), self.path)
    }
}

/// How to run ssh; from CONTAINER_SSHKEY and POD_EXEC_SSH_* (config.rs).
#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    /// `-i KEY` (and only that key); else the agent and ssh's default keys.
    pub key: Option<PathBuf>,
    /// A known_hosts file instead of ssh's defaults.
    pub known_hosts: Option<PathBuf>,
    /// Accept any host key (a warning is logged).
    pub insecure_host_key: bool,
    /// The ssh program; `ssh` from PATH when `None`.
    pub program: Option<PathBuf>,
}

/// Why the forward could not be set up; each is one line a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// No ssh client to run.
    #[error(
        "{target}: the ssh client `{program}` was not found (CONTAINER_HOST=ssh:// runs the \
         system's ssh; install openssh-client)"
    )]
    MissingClient {
        /// The endpoint.
        target: SshTarget,
        /// What was looked for.
        program: String,
    },
    /// CONTAINER_SSHKEY names no readable file.
    #[error("{target}: CONTAINER_SSHKEY={}: {source}", key.display())]
    Key {
        /// The endpoint.
        target: SshTarget,
        /// The key file.
        key: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The server refused every key offered.
    #[error(
        "{target}: the ssh server refused the key ({detail}); {}",
        match key { Some(k) => format!("CONTAINER_SSHKEY={} is not authorized for that user", k.display()),
                    None => "set CONTAINER_SSHKEY to a key in the remote user's authorized_keys (no agent or default key was accepted)".to_owned() }
    )]
    KeyRejected {
        /// The endpoint.
        target: SshTarget,
        /// The key offered, if one was given.
        key: Option<PathBuf>,
        /// ssh's line.
        detail: String,
    },
    /// The host key is unknown or has changed.
    #[error(
        "{target}: the host key could not be verified ({detail}); add it to known_hosts \
         (ssh-keyscan{} {} >> ~/.ssh/known_hosts, or POD_EXEC_SSH_KNOWN_HOSTS=FILE) after \
         checking it, or set POD_EXEC_SSH_INSECURE_HOST_KEY=1 to skip the check",
        target.port.map(|p| format!(" -p {p}")).unwrap_or_default(), target.host
    )]
    HostKey {
        /// The endpoint.
        target: SshTarget,
        /// ssh's line.
        detail: String,
    },
    /// Nothing listens for ssh there.
    #[error("{target}: the host refused the ssh connection ({detail})")]
    Refused {
        /// The endpoint.
        target: SshTarget,
        /// ssh's line.
        detail: String,
    },
    /// ssh failed otherwise.
    #[error("{target}: ssh failed: {detail}")]
    Failed {
        /// The endpoint.
        target: SshTarget,
        /// ssh's last line, or its exit status.
        detail: String,
    },
    /// ssh ran but the forward did not come up in time.
    #[error("{target}: the ssh forward was not up within {}s", READY_TIMEOUT.as_secs())]
    Timeout {
        /// The endpoint.
        target: SshTarget,
    },
    /// The private local socket cannot be made.
    #[error("{target}: cannot create the local socket directory {}: {source}", dir.display())]
    LocalDir {
        /// The endpoint.
        target: SshTarget,
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A running forward: the remote socket reachable at [`Self::local_socket`].
/// Dropping it stops ssh and removes the socket; [`Self::close`] also
/// waits for ssh to be gone.
#[derive(Debug)]
pub struct SshForward {
    target: SshTarget,
    dir: PathBuf,
    local: PathBuf,
    cancel: CancellationToken,
    supervisor: Option<JoinHandle<()>>,
}

/// Everything needed to (re)start ssh.
#[derive(Debug)]
struct Spec {
    target: SshTarget,
    opts: SshOptions,
    local: PathBuf,
}

impl SshForward {
    /// Starts ssh, waits until the local socket is there, and leaves a
    /// supervisor restarting it whenever it exits.
    ///
    /// # Errors
    /// See [`SshError`]: missing ssh, refused host, rejected key, unknown
    /// host key, timeout.
    pub async fn start(target: SshTarget, opts: SshOptions) -> Result<Self, SshError> {
        if let Some(key) = &opts.key {
            if let Err(source) = tokio::fs::File::open(key).await {
                return Err(SshError::Key {
                    target,
                    key: key.clone(),
                    source,
                });
            }
        }
        if opts.insecure_host_key {
            warn!(
                %target,
                "POD_EXEC_SSH_INSECURE_HOST_KEY: the ssh host key is NOT checked; \
                 anyone on the path could pose as this host"
            );
        }
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "pod-exec-ssh-{}-{}",
            std::process::id(),
            crate::random_hex(4)
        ));
        let local = dir.join("podman.sock");
        if local.as_os_str().len() > SUN_PATH_MAX {
            return Err(SshError::LocalDir {
                target,
                dir,
                source: std::io::Error::other("the socket path is too long for a unix socket"),
            });
        }
        let mut builder = tokio::fs::DirBuilder::new();
        builder.mode(0o700);
        if let Err(source) = builder.create(&dir).await {
            return Err(SshError::LocalDir {
                target,
                dir,
                source,
            });
        }
        let spec = Arc::new(Spec {
            target: target.clone(),
            opts,
            local: local.clone(),
        });
        let cancel = CancellationToken::new();
        let mut forward = SshForward {
            target,
            dir,
            local,
            cancel: cancel.clone(),
            supervisor: None,
        };
        // On error `forward` drops here and removes the directory.
        let running = spawn_ready(&spec, &cancel).await?;
        info!(target = %spec.target, local = %spec.local.display(), "ssh forward up");
        forward.supervisor = Some(tokio::spawn(supervise(spec, running, cancel)));
        Ok(forward)
    }

    /// The local end of the forward.
    pub fn local_socket(&self) -> &Path {
        &self.local
    }

    /// The remote endpoint.
    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// Stops ssh, waits for it to exit, removes the local socket.
    pub async fn close(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.supervisor.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        // Drop removes the directory.
    }
}

impl Drop for SshForward {
    fn drop(&mut self) {
        self.cancel.cancel();
        // A small, local removal: Drop cannot await, and at exit there is
        // no later moment to do it.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client for `endpoint`, and for `ssh://` the forward it dials, which
/// must be kept as long as the client is used (dropping it stops ssh).
///
/// # Errors
/// The forward of an `ssh://` endpoint could not be set up.
pub async fn connect(
    endpoint: Endpoint,
    opts: &SshOptions,
) -> Result<(PodmanClient, Option<SshForward>), SshError> {
    match endpoint {
        Endpoint::Ssh(target) => {
            let forward = SshForward::start(target, opts.clone()).await?;
            Ok((PodmanClient::through(&forward), Some(forward)))
        }
        other => Ok((PodmanClient::new(other), None)),
    }
}

/// One ssh process and the tail of its stderr.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    drain: JoinHandle<()>,
}

impl Running {
    fn last_line(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        tail.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned()
    }
}

fn command(spec: &Spec) -> Command {
    let program = spec
        .opts
        .program
        .clone()
        .unwrap_or_else(|| PathBuf::from("ssh"));
    let mut cmd = Command::new(program);
    cmd.arg("-nNT");
    for opt in [
        "BatchMode=yes",
        "ExitOnForwardFailure=yes",
        "StreamLocalBindUnlink=yes",
        "StreamLocalBindMask=0177",
        "ConnectTimeout=10",
        // A dead link is noticed within 45 s and the forward restarted.
        "ServerAliveInterval=15",
        "ServerAliveCountMax=3",
        "LogLevel=ERROR",
    ] {
        cmd.arg("-o").arg(opt);
    }
    if spec.opts.insecure_host_key {
        cmd.args(["-o", "StrictHostKeyChecking=no"]);
        cmd.args(["-o", "UserKnownHostsFile=/dev/null"]);
    } else {
        cmd.args(["-o", "StrictHostKeyChecking=yes"]);
        if let Some(kh) = &spec.opts.known_hosts {
            cmd.arg("-o")
                .arg(format!("UserKnownHostsFile={}", kh.display()));
        }
    }
    if let Some(key) = &spec.opts.key {
        cmd.arg("-i").arg(key).args(["-o", "IdentitiesOnly=yes"]);
    }
    if let Some(port) = spec.target.port {
        cmd.arg("-p").arg(port.to_string());
    }
    if let Some(user) = &spec.target.user {
        cmd.arg("-l").arg(user);
    }
    cmd.arg("-L")
        .arg(format!("{}:{}", spec.local.display(), spec.target.path));
    // The host was checked not to start with '-'; `--` makes sure.
    cmd.arg("--").arg(&spec.target.host);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    cmd
}

/// ssh gets SIGTERM when this process dies, even by SIGKILL (no Drop
/// runs then): an orphaned `ssh -N` would hold the forward open forever.
/// The signal follows the spawning *thread*; tokio's worker threads, from
/// which the forward is spawned, live as long as the runtime.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: between fork and exec the closure calls only prctl(2) and
    // getppid(2), both async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::other("parent exited"));
            }
            Ok(())
        });
    }
}

/// Starts ssh and waits for the local socket (or ssh's exit, or timeout).
async fn spawn_ready(spec: &Spec, cancel: &CancellationToken) -> Result<Running, SshError> {
    let target = || spec.target.clone();
    // A socket left by the previous ssh would look ready.
    let _ = tokio::fs::remove_file(&spec.local).await;
    let mut child = command(spec).spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SshError::MissingClient {
                target: target(),
                program: spec
                    .opts
                    .program
                    .as_deref()
                    .unwrap_or(Path::new("ssh"))
                    .display()
                    .to_string(),
            }
        } else {
            SshError::Failed {
                target: target(),
                detail: format!("cannot run ssh: {e}"),
            }
        }
    })?;
    let stderr = Arc::new(Mutex::new(String::new()));
    let up = Arc::new(AtomicBool::new(false));
    let drain = match child.stderr.take() {
        Some(pipe) => tokio::spawn(drain_stderr(
            pipe,
            stderr.clone(),
            spec.target.clone(),
            up.clone(),
        )),
        None => tokio::spawn(async {}),
    };
    let mut running = Running {
        child,
        stderr,
        drain,
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = running.child.kill().await;
                return Err(SshError::Failed { target: target(), detail: "stopped".into() });
            }
            status = running.child.wait() => {
                // Let the drain read what ssh wrote before it exited.
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut running.drain).await;
                let text = running.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                return Err(classify(spec, &text, &status));
            }
            _ = tokio::time::sleep(READY_POLL) => {
                if tokio::fs::symlink_metadata(&spec.local).await.is_ok() {
                    up.store(true, Ordering::Relaxed);
                    return Ok(running);
                }
                if Instant::now() >= deadline {
                    let _ = running.child.kill().await;
                    return Err(SshError::Timeout { target: target() });
                }
            }
        }
    }
}

/// The one line for a failed ssh, from what it printed.
fn classify(spec: &Spec, stderr: &str, status: &str) -> SshError {
    let target = spec.target.clone();
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '@'))
        .collect();
    let find = |pat: &str| {
        lines
            .iter()
            .find(|l| l.contains(pat))
            .map(|l| (*l).to_owned())
    };
    if let Some(l) = find("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        return SshError::HostKey { target, detail: l };
    }
    if let Some(l) = find("host key is known").or_else(|| find("Host key verification failed")) {
        return SshError::HostKey { target, detail: l };
    }
    if let Some(l) = find("Permission denied") {
        return SshError::KeyRejected {
            target,
            key: spec.opts.key.clone(),
            detail: l,
        };
    }
    if let Some(l) = find("Connection refused") {
        return SshError::Refused { target, detail: l };
    }
    let detail = lines
        .iter()
        .rev()
        .find(|l| !l.starts_with("Warning:"))
        .or(lines.last())
        .map(|l| (*l).to_owned())
        .unwrap_or_else(|| format!("ssh exited ({status})"));
    SshError::Failed { target, detail }
}

/// Keeps the tail of ssh's stderr (bounded) and, once the forward is up,
/// logs each line: ssh then only speaks about trouble (LogLevel=ERROR), e.g. a
/// remote socket that refuses connections.
async fn drain_stderr(
    mut pipe: tokio::process::ChildStderr,
    tail: Arc<Mutex<String>>,
    target: SshTarget,
    up: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 1024];
    let mut line = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                line.clear();
                if text.is_empty() {
                    continue;
                }
                // Before the forward is up, the failure's one line says it.
                if up.load(Ordering::Relaxed) {
                    warn!(%target, "ssh: {text}");
                }
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                t.push_str(&text);
                t.push('\n');
                if t.len() > STDERR_KEEP {
                    let cut = t.len() - STDERR_KEEP;
                    let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                    t.drain(..cut);
                }
            } else if line.len() < LINE_MAX {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
        t.push_str(&text);
        t.push('\n');
    }
}

/// Restarts ssh whenever it exits, until cancelled; then stops it.
async fn supervise(spec: Arc<Spec>, mut running: Running, cancel: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let up_since = Instant::now();
        let status = tokio::select! {
            _ = cancel.cancelled() => {
                let _ = running.child.kill().await;
                return;
            }
            status = running.child.wait() => status,
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), &mut running.drain).await;
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        warn!(
            target = %spec.target, %status, last = %running.last_line(),
            "ssh forward dropped; restarting"
        );
        if up_since.elapsed() >= STABLE {
            backoff = BACKOFF_MIN;
        }
        running = loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            match spawn_ready(&spec, &cancel).await {
                Ok(r) => {
                    info!(target = %spec.target, "ssh forward up again");
                    break r;
                }
                Err(e) => warn!("{e}; retrying in {backoff:?}"),
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SshTarget, &'static str> {
        SshTarget::parse(s.strip_prefix("ssh://").unwrap())
    }

    #[test]
    fn forms_podman_accepts() {
        let t = parse("ssh://core@host.example:2222/run/podman/podman.sock").unwrap();
        assert_eq!(t.user.as_deref(), Some("core"));
        assert_eq!(t.host, "host.example");
        assert_eq!(t.port, Some(2222));
        assert_eq!(t.path, "/run/podman/podman.sock");
        let t = parse("ssh://h/run/user/1000/podman/podman.sock").unwrap();
        assert_eq!((t.user, t.port), (None, None));
        let t = parse("ssh://root@[::1]:22/p.sock").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.to_string(), "ssh://root@[::1]:22/p.sock");
    }

    #[test]
    fn bad_forms_say_why() {
        for (s, why) in [
            ("ssh://core@host", "path"),
            ("ssh://core@host/", "path"),
            ("ssh://-oProxyCommand=x/p", "host"),
            ("ssh://-l@h/p", "user"),
            ("ssh://u@h:0/p", "port"),
            ("ssh://u@h:x/p", "port"),
            ("ssh://u@[::1/p", "'['"),
            ("ssh://u@h/a:b", "':'"),
            ("ssh://u@h/a b", "':'"),
            ("ssh://u@h/p?secure=true", "query"),
            ("ssh://@h/p", "user"),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    fn spec(key: Option<&str>) -> Spec {
        Spec {
            target: parse("ssh://root@127.0.0.1:2222/run/podman/podman.sock").unwrap(),
            opts: SshOptions {
                key: key.map(PathBuf::from),
                ..Default::default()
            },
            local: PathBuf::from("/tmp/x.sock"),
        }
    }

    // What OpenSSH 9.2 prints for each failure (recorded here).
    #[test]
    fn classify_ssh_messages() {
        let s = spec(Some("/k"));
        let e = classify(
            &s,
            "root@127.0.0.1: Permission denied (publickey).\r\n",
            "exit status: 255",
        );
        assert!(matches!(e, SshError::KeyRejected { .. }), "{e}");
        assert!(e.to_string().contains("CONTAINER_SSHKEY=/k"), "{e}");
        let e = classify(
            &s,
            "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.\n",
            "exit status: 255",
        );
        assert!(matches!(e, SshError::HostKey { .. }), "{e}");
        assert!(
            e.to_string().contains("ssh-keyscan -p 2222 127.0.0.1"),
            "{e}"
        );
        let e = classify(
            &s,
            "ssh: connect to host 127.0.0.1 port 2222: Connection refused\n",
            "exit status: 255",
        );
        assert!(matches!(e, SshError::Refused { .. }), "{e}");
        let e = classify(&s, "", "exit status: 255");
        assert!(e.to_string().contains("exit status: 255"), "{e}");
        let e = classify(&s, "Warning: x\nssh: Could not resolve hostname h\n", "255");
        assert!(
            e.to_string()
                .ends_with("ssh failed: ssh: Could not resolve hostname h"),
            "{e}"
        );
        let e = classify(
            &spec(None),
            "u@h: Permission denied (publickey).\n",
            "exit status: 255",
        );
        assert!(e.to_string().contains("set CONTAINER_SSHKEY"), "{e}");
        assert_eq!(e.to_string().lines().count(), 1);
    }

    #[test]
    fn command_line() {
        let s = spec(Some("/k"));
        let cmd = command(&s);
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        for want in [
            "-nNT",
            "BatchMode=yes",
            "ExitOnForwardFailure=yes",
            "StreamLocalBindUnlink=yes",
            "StrictHostKeyChecking=yes",
            "-i /k -o IdentitiesOnly=yes",
            "-p 2222",
            "-l root",
            "-L /tmp/x.sock:/run/podman/podman.sock",
            "-- 127.0.0.1",
        ] {
            assert!(joined.contains(want), "{want} in {joined}");
        }
    }
}
