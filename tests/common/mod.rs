//! Helpers for tests that run against a real Podman: connect (or fail with
//! how to start one), create labelled containers that are removed even when
//! a test fails, run execs to completion.
#![allow(dead_code)] // each test binary uses a different subset

pub mod clients;
pub mod mcp;
pub mod server;

use std::time::{SystemTime, UNIX_EPOCH};

use pod_exec_mcp::podman::{
    ContainerSpec, Endpoint, ExecConfig, PodmanClient, PodmanError, StreamKind,
};

/// Printed when no Podman answers: tests fail with it, they never skip.
pub const HOW_TO_START: &str = "\
These tests need a real Podman API. Prepare one (installs podman if needed,
builds the session image, starts a service on a project-private socket):

    eval \"$(tests/podman-env.sh)\"

then run the tests again from that shell (CONTAINER_HOST must point at it).";

/// The label every managed container carries.
pub const MANAGED: &str = "pod-exec-mcp.managed=true";

/// The session image under test.
pub fn image() -> String {
    std::env::var("POD_EXEC_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost/pod_exec_mcp_base:latest".to_owned())
}

/// A client for the live Podman, or a panic that says how to start one.
pub async fn live_podman() -> PodmanClient {
    let endpoint = match Endpoint::from_env() {
        Ok(e) => e,
        Err(e) => panic!("{e}\n\n{HOW_TO_START}"),
    };
    let client = PodmanClient::new(endpoint.clone());
    if let Err(e) = client.ping().await {
        panic!("no Podman API answers at {endpoint}: {e}\n\n{HOW_TO_START}");
    }
    let image = image();
    match client.image_exists(&image).await {
        Ok(true) => {}
        Ok(false) => panic!("image {image} is missing from {endpoint}\n\n{HOW_TO_START}"),
        Err(e) => panic!("cannot check image {image}: {e}\n\n{HOW_TO_START}"),
    }
    client
}

/// A value unique to this test process and call, for names and labels.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// Removes its container when dropped, also while a failing test unwinds.
pub struct ContainerGuard {
    pub id: String,
    endpoint: Endpoint,
}

impl ContainerGuard {
    /// Guards container `id`, removing it through `endpoint`.
    pub fn new(id: String, endpoint: Endpoint) -> Self {
        ContainerGuard { id, endpoint }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: use
        // a fresh runtime and client on a thread of our own.
        let id = std::mem::take(&mut self.id);
        let endpoint = self.endpoint.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for cleanup");
            rt.block_on(async {
                let client = PodmanClient::new(endpoint);
                if let Err(e) = client.remove_container(&id, true).await {
                    eprintln!("cleanup: could not remove container {id}: {e}");
                }
            });
        })
        .join();
    }
}

/// The spec of a test sandbox: managed label, a per-test label, init, and a
/// command that sleeps forever.
pub fn sandbox_spec(test: &str) -> ContainerSpec {
    let mut spec = ContainerSpec {
        image: image(),
        command: vec!["sleep".into(), "infinity".into()],
        init: Some(true),
        ..Default::default()
    };
    spec.labels
        .insert("pod-exec-mcp.managed".into(), "true".into());
    spec.labels.insert("pod-exec-mcp.test".into(), test.into());
    spec
}

/// Creates (not starts) a container from `spec`, guarded.
pub async fn create(client: &PodmanClient, spec: &ContainerSpec) -> ContainerGuard {
    assert_eq!(
        spec.labels.get("pod-exec-mcp.managed").map(String::as_str),
        Some("true"),
        "every test container must carry {MANAGED}"
    );
    let id = client
        .create_container(spec)
        .await
        .unwrap_or_else(|e| panic!("create container: {e}"));
    ContainerGuard {
        id,
        endpoint: client.endpoint().clone(),
    }
}

/// Creates and starts a test sandbox.
pub async fn sandbox(client: &PodmanClient, test: &str) -> ContainerGuard {
    let guard = create(client, &sandbox_spec(test)).await;
    client
        .start_container(&guard.id)
        .await
        .unwrap_or_else(|e| panic!("start container: {e}"));
    guard
}

/// Output of a finished exec: chunks merged per run of one stream.
#[derive(Debug, Default)]
pub struct ExecResult {
    pub chunks: Vec<(StreamKind, Vec<u8>)>,
    pub exit_code: i64,
}

impl ExecResult {
    pub fn stream(&self, kind: StreamKind) -> Vec<u8> {
        self.chunks
            .iter()
            .filter(|(k, _)| *k == kind)
            .flat_map(|(_, v)| v.iter().copied())
            .collect()
    }
}

/// create + start + read to EOF + inspect.
pub async fn exec(
    client: &PodmanClient,
    container: &str,
    config: &ExecConfig,
) -> Result<ExecResult, PodmanError> {
    let exec_id = client.create_exec(container, config).await?;
    let mut stream = client.start_exec(&exec_id, config.tty).await?;
    let mut out = ExecResult::default();
    while let Some(chunk) = stream.next_chunk().await {
        let chunk = chunk?;
        match out.chunks.last_mut() {
            Some((k, v)) if *k == chunk.stream => v.extend_from_slice(&chunk.data),
            _ => out.chunks.push((chunk.stream, chunk.data.to_vec())),
        }
    }
    out.exit_code = client.inspect_exec(&exec_id).await?.exit_code;
    Ok(out)
}

/// `sh -c script` in `container`.
pub async fn sh(client: &PodmanClient, container: &str, script: &str) -> ExecResult {
    exec(
        client,
        container,
        &ExecConfig::command(["sh", "-c", script]),
    )
    .await
    .unwrap_or_else(|e| panic!("exec {script:?}: {e}"))
}
