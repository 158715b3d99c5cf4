//! Runs the real `pod_exec_mcp` binary for a test: port 0, its address and
//! instance id read from its log, logs kept for failure messages, and every
//! container of the instance removed when the test ends, pass or fail.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pod_exec_mcp::podman::{ContainerSummary, PodmanClient};

/// A running server process.
pub struct ServerProcess {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
    /// The instance label value of its containers.
    pub instance: String,
    logs: Arc<Mutex<String>>,
    endpoint: pod_exec_mcp::podman::Endpoint,
}

/// Starts the server with extra environment, waiting until it serves.
pub fn start(envs: &[(&str, &str)]) -> ServerProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pod_exec_mcp"));
    cmd.env("MCP_HOST", "127.0.0.1")
        .env("MCP_PORT", "0")
        .env("RUST_LOG", "info,rmcp=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn pod_exec_mcp");
    let stderr = child.stderr.take().expect("stderr piped");
    let logs = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
    {
        let logs = logs.clone();
        std::thread::spawn(move || {
            let mut instance = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = field(&line, "instance=") {
                    instance = i;
                }
                if let Some(rest) = line.split("serving MCP at ").nth(1) {
                    let _ = tx.send((rest.trim().to_owned(), instance.clone()));
                }
                let mut l = logs.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    // The Podman the server talks to: a CONTAINER_HOST given here wins;
    // an ssh:// one is forwarded to the test's own Podman (tests/ssh_remote.rs).
    let endpoint = match envs.iter().find(|(k, _)| *k == "CONTAINER_HOST") {
        Some((_, v)) => match pod_exec_mcp::podman::Endpoint::parse(v) {
            Ok(pod_exec_mcp::podman::Endpoint::Ssh(_)) => {
                pod_exec_mcp::podman::Endpoint::from_env().expect("CONTAINER_HOST")
            }
            other => other.expect("CONTAINER_HOST given"),
        },
        None => pod_exec_mcp::podman::Endpoint::from_env().expect("CONTAINER_HOST"),
    };
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok((url, instance)) => ServerProcess {
            child: Some(child),
            url,
            instance,
            logs,
            endpoint,
        },
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!(
                "server did not start (exit {status:?}); its log:\n{}",
                logs.lock().unwrap_or_else(|e| e.into_inner())
            );
        }
    }
}

fn field(line: &str, key: &str) -> Option<String> {
    let rest = line.split(key).nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

/// Runs the server expecting it to fail at start-up; returns exit status,
/// stderr, and how long it took.
pub fn start_failure(envs: &[(&str, &str)]) -> (ExitStatus, String, Duration) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pod_exec_mcp"))
        .env("MCP_HOST", "127.0.0.1")
        .env("MCP_PORT", "0")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run pod_exec_mcp");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t.elapsed(),
    )
}

impl ServerProcess {
    /// The server's log so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// OS process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends a signal by name ("TERM", "KILL", "INT"). Only to our own
    /// child: once it has exited its pid may be anyone's (pids are reused
    /// quickly on these machines).
    pub fn signal(&self, sig: &str) {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Field 4 (after the parenthesised name) is the parent pid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        assert_eq!(
            ppid,
            Some(std::process::id()),
            "the server (pid {}) is no longer this test's child",
            self.pid()
        );
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Managed containers of this instance.
    pub async fn containers(&self, podman: &PodmanClient) -> Vec<ContainerSummary> {
        containers_of(podman, &self.instance).await
    }
}

/// Managed containers carrying `instance`.
pub async fn containers_of(podman: &PodmanClient, instance: &str) -> Vec<ContainerSummary> {
    let label = format!("pod-exec-mcp.instance={instance}");
    podman
        .list_containers(&["pod-exec-mcp.managed=true", label.as_str()])
        .await
        .expect("list containers")
}

/// Polls `cond` until it holds or `limit` passes; panics with `what`.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Whatever the test did, its containers go (on a thread with its own
        // runtime: Drop cannot await).
        let instance = self.instance.clone();
        let endpoint = self.endpoint.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let podman = PodmanClient::new(endpoint);
                let label = format!("pod-exec-mcp.instance={instance}");
                if let Ok(list) = podman
                    .list_containers(&["pod-exec-mcp.managed=true", label.as_str()])
                    .await
                {
                    for c in list {
                        let _ = podman.remove_container(&c.id, true).await;
                    }
                }
            });
        })
        .join();
    }
}
