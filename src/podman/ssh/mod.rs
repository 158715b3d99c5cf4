//! `ssh://` Podman endpoints, as podman's remote client reads them: the
//! remote socket is forwarded by the system's ssh client to a private local
//! unix socket (`ssh -nNT -L LOCAL:REMOTE`), which the libpod client dials.
//! A supervisor task restarts the forward when it drops; the socket and its
//! directory go when the forward is closed or dropped.
//!
//! The ssh client, not a Rust SSH library, does the work so that the user's
//! ssh config, agent, known_hosts and keys behave exactly as with `podman
//! --remote`.

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

mod error;
mod local_dir;
mod target;

pub use error::SshError;
use error::classify;
pub use target::SshTarget;

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
        if let Some(key) = &opts.key
            && let Err(source) = tokio::fs::File::open(key).await
        {
            return Err(SshError::Key {
                target,
                key: key.clone(),
                source,
            });
        }
        if opts.insecure_host_key {
            warn!(
                %target,
                "POD_EXEC_SSH_INSECURE_HOST_KEY: the ssh host key is NOT checked; \
                 anyone on the path could pose as this host"
            );
        }
        let (dir, local) =
            local_dir::create()
                .await
                .map_err(|(dir, source)| SshError::LocalDir {
                    target: target.clone(),
                    dir,
                    source,
                })?;
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

    fn spec(key: Option<&str>) -> Spec {
        Spec {
            target: SshTarget::parse("root@127.0.0.1:2222/run/podman/podman.sock").unwrap(),
            opts: SshOptions {
                key: key.map(PathBuf::from),
                ..Default::default()
            },
            local: PathBuf::from("/tmp/x.sock"),
        }
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
