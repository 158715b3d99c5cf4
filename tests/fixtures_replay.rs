//! Offline replay of real libpod replies against the project's client.
//!
//! `podman-api-fixtures/<version>/` holds raw HTTP replies recorded from a
//! real Podman by `examples/record_fixtures.rs` (see the README there); each
//! test below runs against every recorded version (4.3.1 and 5.4.2). A
//! tiny server on a temporary Unix socket answers each request whose
//! (method, path+query, JSON body) matches a manifest entry with the
//! recorded bytes, verbatim, then closes the connection; anything else gets
//! a `599` the tests notice. The real `PodmanClient` talks to it — no Podman
//! is needed, and CONTAINER_HOST is never read.
//!
//! A missing or truncated fixture file fails the tests; nothing is skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use pod_exec_mcp::podman::attach::decode_all;
use pod_exec_mcp::podman::{
    BuildOptions, ContainerSpec, Endpoint, ExecConfig, ExecStream, Framing, PodmanClient,
    PodmanError, StreamKind,
};

/// The recorded Podmans whose replies these tests replay: every test runs
/// once per version (the assertions say which one failed).
const VERSIONS: &[&str] = &["4.3.1", "5.4.2"];
const MIB: usize = 1 << 20;

// ---- fixtures ---------------------------------------------------------------

struct Fixture {
    name: String,
    method: String,
    path: String,
    /// The JSON request body, or null.
    body: Value,
    /// True for a tar build context (any body matches).
    tar_body: bool,
    status: u16,
    raw: Vec<u8>,
}

impl Fixture {
    /// The reply body as sent (after the head; chunked bodies still chunked).
    fn body_bytes(&self) -> &[u8] {
        &self.raw[head_end(&self.raw).expect("fixture has an HTTP head")..]
    }
}

struct Fixtures {
    manifest: Value,
    list: Vec<Fixture>,
}

impl Fixtures {
    fn get(&self, name: &str) -> &Fixture {
        self.list
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("fixture {name:?} is not in the manifest"))
    }

    fn id(&self, key: &str) -> String {
        self.manifest["ids"][key]
            .as_str()
            .unwrap_or_else(|| panic!("manifest has no ids.{key}"))
            .to_owned()
    }

    fn exec_id(&self, key: &str) -> String {
        self.manifest["ids"]["exec"][key]
            .as_str()
            .unwrap_or_else(|| panic!("manifest has no ids.exec.{key}"))
            .to_owned()
    }

    fn str(&self, key: &str) -> String {
        self.manifest[key]
            .as_str()
            .unwrap_or_else(|| panic!("manifest has no {key}"))
            .to_owned()
    }
}

/// Every fixture the tests below use. The manifest may list more.
const REQUIRED: &[&str] = &[
    "ping",
    "version",
    "image_exists",
    "image_missing",
    "container_create",
    "container_create_missing_image",
    "container_start",
    "container_inspect",
    "container_inspect_missing",
    "exec_create_mixed",
    "exec_start_mixed",
    "exec_create_mixed_paced",
    "exec_start_mixed_paced",
    "exec_create_big",
    "exec_start_big",
    "exec_create_missing_binary",
    "exec_start_missing_binary",
    "exec_inspect_missing_binary",
    "exec_create_tty",
    "exec_start_tty",
    "exec_create_exit3",
    "exec_start_exit3",
    "exec_inspect_exited",
    "exec_create_sleep",
    "exec_inspect_running",
    "exec_start_sleep",
    "container_create_second",
    "exec_create_not_running",
    "exec_create_orphan",
    "exec_create_stopped",
    "exec_start_stopped",
    "container_list",
    "unversioned_route",
    "build_ok",
    "build_fail",
    "container_remove",
];

fn fixture_dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("podman-api-fixtures")
        .join(version)
}

/// Loads (once) the manifest and every file it names. Panics — failing the
/// test — when anything is missing or does not match the manifest.
fn fixtures(version: &str) -> &'static Fixtures {
    static CELLS: [OnceLock<Fixtures>; 2] = [OnceLock::new(), OnceLock::new()];
    let at = VERSIONS
        .iter()
        .position(|v| *v == version)
        .unwrap_or_else(|| panic!("no fixture set {version} in VERSIONS"));
    CELLS[at].get_or_init(|| {
        let dir = fixture_dir(version);
        let manifest_path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&manifest_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; record fixtures with `cargo run --example record_fixtures`",
                manifest_path.display()
            )
        });
        let manifest: Value = serde_json::from_str(&text).expect("manifest.json is JSON");
        assert_eq!(manifest["podman_version"], version);
        let mut list = Vec::new();
        for e in manifest["fixtures"].as_array().expect("fixtures array") {
            let s = |k: &str| {
                e[k].as_str()
                    .unwrap_or_else(|| panic!("fixture entry without {k}: {e}"))
                    .to_owned()
            };
            let file = dir.join(s("file"));
            let raw = std::fs::read(&file)
                .unwrap_or_else(|err| panic!("fixture file {}: {err}", file.display()));
            assert_eq!(
                Some(raw.len() as u64),
                e["bytes"].as_u64(),
                "{} has the wrong size",
                file.display()
            );
            let status = e["status"].as_u64().expect("status") as u16;
            assert!(
                raw.starts_with(format!("HTTP/1.1 {status} ").as_bytes()),
                "{} does not start with the recorded status line",
                file.display()
            );
            list.push(Fixture {
                name: s("name"),
                method: s("method"),
                path: s("path"),
                body: e["body"].clone(),
                tar_body: e["body_kind"] == "tar",
                status,
                raw,
            });
        }
        for name in REQUIRED {
            assert!(
                list.iter().any(|f| f.name == *name),
                "fixture {name:?} missing from {}",
                manifest_path.display()
            );
        }
        Fixtures { manifest, list }
    })
}

fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

// ---- replay server ------------------------------------------------------------

/// A replay server on a temporary socket; stops and cleans up on drop.
struct Replay {
    dir: PathBuf,
    sock: PathBuf,
    misses: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Serve fixture `.2` for requests `(.0 method, .1 path)` regardless of the
/// manifest (to show the client a reply to a request it cannot make itself).
type Override = (&'static str, String, &'static str);

impl Replay {
    async fn start(version: &str) -> Replay {
        Self::with_overrides(version, Vec::new()).await
    }

    async fn with_overrides(version: &str, overrides: Vec<Override>) -> Replay {
        static N: AtomicUsize = AtomicUsize::new(0);
        let fx = fixtures(version);
        let dir = std::env::temp_dir().join(format!(
            "pod-exec-replay-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sock = dir.join("api.sock");
        let listener = UnixListener::bind(&sock).expect("bind replay socket");
        let misses = Arc::new(Mutex::new(Vec::new()));
        let overrides = Arc::new(overrides);
        let m = misses.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let m = m.clone();
                let o = overrides.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(conn, fx, &o, &m).await {
                        m.lock().unwrap().push(format!("connection error: {e}"));
                    }
                });
            }
        });
        Replay {
            dir,
            sock,
            misses,
            task,
        }
    }

    fn client(&self) -> PodmanClient {
        PodmanClient::new(Endpoint::Unix(self.sock.clone()))
    }

    /// Fails the test if any request found no fixture.
    fn assert_no_misses(&self) {
        let misses = self.misses.lock().unwrap();
        assert!(misses.is_empty(), "unmatched requests: {misses:#?}");
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads one request, writes the matching recorded reply, closes.
async fn serve(
    mut conn: UnixStream,
    fx: &'static Fixtures,
    overrides: &[Override],
    misses: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > 64 << 10 {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            // The client opened and closed a connection without a request.
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_owned();
    let target = request_line.next().unwrap_or("").to_owned();
    let mut content_length = 0usize;
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                content_length = v.parse().unwrap_or(0);
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = buf[end..].to_vec();
    while body.len() < content_length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }

    let found = if chunked {
        None
    } else if let Some((_, _, name)) = overrides
        .iter()
        .find(|(m, p, _)| *m == method && *p == target)
    {
        Some(fx.get(name))
    } else {
        fx.list.iter().find(|f| {
            f.method == method
                && f.path == target
                && if f.tar_body {
                    true
                } else if f.body.is_null() {
                    body.is_empty()
                } else {
                    serde_json::from_slice::<Value>(&body).is_ok_and(|b| b == f.body)
                }
        })
    };
    match found {
        Some(f) => conn.write_all(&f.raw).await?,
        None => {
            let what = format!(
                "{method} {target} body={}{}",
                String::from_utf8_lossy(&body[..body.len().min(300)]),
                if chunked { " (chunked)" } else { "" }
            );
            let text = format!("replay: no fixture for {what}\n");
            misses.lock().unwrap().push(what);
            let reply = format!(
                "HTTP/1.1 599 No Fixture\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            conn.write_all(reply.as_bytes()).await?;
        }
    }
    conn.shutdown().await
}

// ---- helpers ------------------------------------------------------------------

fn spec(image: &str, role: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.to_owned(),
        command: vec!["sleep".into(), "infinity".into()],
        init: Some(true),
        labels: BTreeMap::from([
            ("pod-exec-mcp.managed".to_owned(), "true".to_owned()),
            (
                "pod-exec-mcp.fixture-recorder".to_owned(),
                "true".to_owned(),
            ),
            ("pod-exec-mcp.fixture-role".to_owned(), role.to_owned()),
        ]),
        ..Default::default()
    }
}

fn exec(cmd: &[&str], tty: bool) -> ExecConfig {
    let mut c = ExecConfig::command(cmd.iter().copied());
    c.tty = tty;
    c
}

const MIXED: &str = "echo out1; echo err1 >&2; echo out2";
const MIXED_PACED: &str = "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2";
const BIG: &str =
    "head -c 1048576 /dev/zero | tr '\\0' o; head -c 1048576 /dev/zero | tr '\\0' e >&2";
const TTY: &str = "echo tty-out; echo tty-err >&2";

/// Reads a stream to its end, merging adjacent chunks of one stream.
async fn drain(mut s: ExecStream) -> Vec<(StreamKind, Vec<u8>)> {
    let mut out: Vec<(StreamKind, Vec<u8>)> = Vec::new();
    while let Some(chunk) = s.next_chunk().await {
        let chunk = chunk.expect("exec stream chunk");
        assert!(!chunk.data.is_empty(), "empty chunk");
        match out.last_mut() {
            Some((k, v)) if *k == chunk.stream => v.extend_from_slice(&chunk.data),
            _ => out.push((chunk.stream, chunk.data.to_vec())),
        }
    }
    out
}

fn stream_of(out: &[(StreamKind, Vec<u8>)], kind: StreamKind) -> Vec<u8> {
    out.iter()
        .filter(|(k, _)| *k == kind)
        .flat_map(|(_, v)| v.iter().copied())
        .collect()
}

/// An independent reading of a multiplexed body (not the crate's decoder):
/// runs of one stream merged, empty frames dropped.
fn deframe(mut data: &[u8]) -> Vec<(StreamKind, Vec<u8>)> {
    let mut out: Vec<(StreamKind, Vec<u8>)> = Vec::new();
    while !data.is_empty() {
        assert!(data.len() >= 8, "fixture ends inside a frame header");
        assert_eq!(data[1..4], [0, 0, 0], "frame padding");
        let kind = match data[0] {
            1 => StreamKind::Stdout,
            2 => StreamKind::Stderr,
            s => panic!("unexpected stream byte {s}"),
        };
        let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        assert!(data.len() >= 8 + len, "fixture ends inside a payload");
        let payload = &data[8..8 + len];
        if !payload.is_empty() {
            match out.last_mut() {
                Some((k, v)) if *k == kind => v.extend_from_slice(payload),
                _ => out.push((kind, payload.to_vec())),
            }
        }
        data = &data[8 + len..];
    }
    out
}

fn text(v: &[(StreamKind, Vec<u8>)]) -> Vec<(StreamKind, String)> {
    v.iter()
        .map(|(k, b)| (*k, String::from_utf8_lossy(b).into_owned()))
        .collect()
}

/// A build context holding one Containerfile.
fn tar_context(containerfile: &str) -> Bytes {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(containerfile.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    builder
        .append_data(&mut header, "Containerfile", containerfile.as_bytes())
        .expect("tar entry");
    Bytes::from(builder.into_inner().expect("tar"))
}

// ---- the fixtures themselves ------------------------------------------------------

#[test]
fn every_fixture_file_is_present_and_matches_the_manifest() {
    for v in VERSIONS {
        every_fixture_file_is_present_and_matches_the_manifest_on(v);
    }
}

fn every_fixture_file_is_present_and_matches_the_manifest_on(v: &'static str) {
    let fx = fixtures(v);
    assert!(fx.list.len() >= REQUIRED.len());
    // No two entries answer the same request.
    for (i, a) in fx.list.iter().enumerate() {
        for b in &fx.list[i + 1..] {
            assert!(
                !(a.method == b.method && a.path == b.path && a.body == b.body),
                "{} and {} answer the same request",
                a.name,
                b.name
            );
        }
    }
    // Hijacked exec replies: 200, no length, no chunking.
    for f in fx.list.iter().filter(|f| f.name.starts_with("exec_start_")) {
        let head = String::from_utf8_lossy(&f.raw[..head_end(&f.raw).unwrap()]).to_lowercase();
        if f.status == 200 {
            assert!(!head.contains("content-length"), "{}", f.name);
            assert!(!head.contains("transfer-encoding"), "{}", f.name);
        }
    }
}

// ---- client against the replay ------------------------------------------------------

#[tokio::test]
async fn ping_and_version() {
    for v in VERSIONS {
        ping_and_version_on(v).await;
    }
}

async fn ping_and_version_on(v: &'static str) {
    let r = Replay::start(v).await;
    let c = r.client();
    let ping = c.ping().await.expect("ping");
    assert_eq!(ping.libpod_api_version.as_deref(), Some(v));
    let version = c.version().await.expect("version");
    assert_eq!(version.version, v);
    assert_eq!(version.api_version, v);
    assert!(!version.kernel_version.is_empty());
    r.assert_no_misses();
}

#[tokio::test]
async fn image_exists_true_and_false() {
    for v in VERSIONS {
        image_exists_true_and_false_on(v).await;
    }
}

async fn image_exists_true_and_false_on(v: &'static str) {
    let fx = fixtures(v);
    let r = Replay::start(v).await;
    let c = r.client();
    assert!(c.image_exists(&fx.str("image")).await.expect("exists"));
    assert!(
        !c.image_exists(&fx.str("missing_image"))
            .await
            .expect("missing")
    );
    r.assert_no_misses();
}

#[tokio::test]
async fn container_create_start_inspect_list_remove() {
    for v in VERSIONS {
        container_create_start_inspect_list_remove_on(v).await;
    }
}

async fn container_create_start_inspect_list_remove_on(v: &'static str) {
    let fx = fixtures(v);
    let r = Replay::start(v).await;
    let c = r.client();
    let image = fx.str("image");
    let id = fx.id("container");
    let second = fx.id("second_container");

    assert_eq!(c.create_container(&spec(&image, "main")).await.unwrap(), id);
    assert_eq!(
        c.create_container(&spec(&image, "second")).await.unwrap(),
        second
    );
    c.start_container(&id).await.expect("start");

    let inspect = c.inspect_container(&id).await.expect("inspect");
    assert_eq!(inspect.id, id);
    assert_eq!(inspect.state.status, "running");
    assert!(inspect.state.running);
    assert!(inspect.state.pid > 0);
    let labels = inspect.labels();
    assert_eq!(labels["pod-exec-mcp.managed"], "true");
    assert_eq!(labels["pod-exec-mcp.fixture-recorder"], "true");
    assert_eq!(labels["pod-exec-mcp.fixture-role"], "main");
    assert_eq!(
        inspect.config["Cmd"],
        serde_json::json!(["sleep", "infinity"])
    );

    let list = c
        .list_containers(&["pod-exec-mcp.fixture-recorder=true"])
        .await
        .expect("list");
    assert_eq!(list.len(), 2, "{list:#?}");
    let main = list.iter().find(|s| s.id == id).expect("main listed");
    assert_eq!(main.state, "running");
    assert_eq!(main.labels["pod-exec-mcp.managed"], "true");
    assert_eq!(main.labels["pod-exec-mcp.fixture-role"], "main");
    assert_eq!(main.image, image);
    assert!(!main.names.is_empty());
    let other = list.iter().find(|s| s.id == second).expect("second listed");
    assert_eq!(other.state, "exited");
    assert_eq!(other.labels["pod-exec-mcp.fixture-role"], "second");

    let reports = c.remove_container(&id, false).await.expect("remove");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].id, id);
    assert_eq!(reports[0].err, None);
    r.assert_no_misses();
}

#[tokio::test]
async fn exec_create_and_inspect_running_and_exited() {
    for v in VERSIONS {
        exec_create_and_inspect_running_and_exited_on(v).await;
    }
}

async fn exec_create_and_inspect_running_and_exited_on(v: &'static str) {
    let fx = fixtures(v);
    let r = Replay::start(v).await;
    let c = r.client();
    let id = fx.id("container");
    for (key, cmd, tty) in [
        ("mixed", vec!["sh", "-c", MIXED], false),
        ("mixed_paced", vec!["sh", "-c", MIXED_PACED], false),
        ("big", vec!["sh", "-c", BIG], false),
        ("missing_binary", vec!["/nonexistent"], false),
        ("tty", vec!["sh", "-c", TTY], true),
        ("exit3", vec!["sh", "-c", "exit 3"], false),
        ("sleep", vec!["sleep", "5"], false),
    ] {
        let got = c.create_exec(&id, &exec(&cmd, tty)).await;
        assert_eq!(got.expect(key), fx.exec_id(key), "{key}");
    }

    let running = c.inspect_exec(&fx.exec_id("sleep")).await.expect("running");
    assert!(running.running);
    assert_eq!(running.exit_code, 0);
    assert!(running.pid > 0);
    assert_eq!(running.id, fx.exec_id("sleep"));
    assert_eq!(running.container_id, id);

    let exited = c.inspect_exec(&fx.exec_id("exit3")).await.expect("exited");
    assert!(!exited.running);
    assert_eq!(exited.exit_code, 3);

    let missing = c
        .inspect_exec(&fx.exec_id("missing_binary"))
        .await
        .expect("missing binary");
    assert!(!missing.running);
    assert_eq!(missing.exit_code, 127);
    r.assert_no_misses();
}

#[tokio::test]
async fn exec_stream_mixed_stdout_stderr() {
    for v in VERSIONS {
        exec_stream_mixed_stdout_stderr_on(v).await;
    }
}

async fn exec_stream_mixed_stdout_stderr_on(v: &'static str) {
    let fx = fixtures(v);
    let r = Replay::start(v).await;
    let c = r.client();

    // As fast as the shell writes: each stream's bytes are exact; the order
    // across streams is whatever conmon produced when this was recorded
    // (podman does not keep it), so compare with an independent reading.
    let out = drain(c.start_exec(&fx.exec_id("mixed"), false).await.unwrap()).await;
    assert_eq!(stream_of(&out, StreamKind::Stdout), b"out1\nout2\n");
    assert_eq!(stream_of(&out, StreamKind::Stderr), b"err1\n");
    assert_eq!(out, deframe(fx.get("exec_start_mixed").body_bytes()));

    // With pauses between the writes the order is the write order.
    let out = drain(
        c.start_exec(&fx.exec_id("mixed_paced"), false)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        text(&out),
        vec![
            (StreamKind::Stdout, "out1\n".to_owned()),
            (StreamKind::Stderr, "err1\n".to_owned()),
            (StreamKind::Stdout, "out2\n".to_owned()),
        ]
    );
    r.assert_no_misses();
}

#[tokio::test]
async fn exec_stream_one_mib_on_each_stream() {
    for v in VERSIONS {
        exec_stream_one_mib_on_each_stream_on(v).await;
    }
}

async fn exec_stream_one_mib_on_each_stream_on(v: &'static str) {
    let fx = fixtures(v);
    let r = Replay::start(v).await;
    let c = r.client();
    let out = drain(c.start_exec(&fx.exec_id("big"), false).await.unwrap()).await;
    let stdout = stream_of(&out, StreamKind::Stdout);
    let stderr = stream_of(&out, StreamKind::Stderr);
    assert_eq!(stdout.len(), MIB);
    assert_eq!(stderr.len(), MIB);
    assert!(stdout.iter().all(|&b| b == b'o'));
    assert!(stderr.iter().all(|&b| b == b'e'));
    r.assert_no_misses();
}

#[tokio::test]
async fn exec_stream_missing_binary() {
    for v in VERSIONS {
        exec_stream_missing_binary_on(v).await;
    }
}

async fn exec_stream_missing_binary_on(v: &'static str) {
    let fx = fixtures(v);
    let r = Replay::start(v).await;
    let c = r.client();
    // 4.3.1: exec create succeeds, start answers 200 and the stream carries
    // podman's own "Error: ..." lines on stderr; the exit code is 127.
    let out = drain(
        c.start_exec(&fx.exec_id("missing_binary"), false)
            .await
            .expect("start answers 200"),
    )
    .await;
    assert!(
        stream_of(&out, StreamKind::Stdout).is_empty(),
        "{:?}",
        text(&out)
    );
    let stderr = String::from_utf8(stream_of(&out, StreamKind::Stderr)).unwrap();
    assert!(
        stderr.starts_with("Error: runc: exec failed: "),
        "{stderr:?}"
    );
    assert!(
        stderr.contains(r#"exec: "/nonexistent": stat /nonexistent: no such file or directory"#),
        "{stderr:?}"
    );
    assert!(
        stderr.lines().all(|l| l.starts_with("Error: ")),
        "{stderr:?}"
    );
    assert!(stderr.ends_with('\n'));
    r.assert_no_misses();
}

#[tokio::test]
async fn exec_stream_tty_is_raw_with_crlf() {
    for v in VERSIONS {
        exec_stream_tty_is_raw_with_crlf_on(v).await;
    }
}

async fn exec_stream_tty_is_raw_with_crlf_on(v: &'static str) {
    let fx = fixtures(v);
    let r = Replay::start(v).await;
    let c = r.client();
    let out = drain(c.start_exec(&fx.exec_id("tty"), true).await.unwrap()).await;
    assert_eq!(
        out,
        vec![(StreamKind::Stdout, b"tty-out\r\ntty-err\r\n".to_vec())]
    );
    r.assert_no_misses();
}

#[tokio::test]
async fn exec_stream_silent_commands_end_cleanly() {
    for v in VERSIONS {
        exec_stream_silent_commands_end_cleanly_on(v).await;
    }
}

async fn exec_stream_silent_commands_end_cleanly_on(v: &'static str) {
    let fx = fixtures(v);
    let r = Replay::start(v).await;
    let c = r.client();
    for key in ["exit3", "sleep"] {
        let out = drain(c.start_exec(&fx.exec_id(key), false).await.unwrap()).await;
        assert!(out.is_empty(), "{key}: {:?}", text(&out));
    }
    r.assert_no_misses();
}

#[tokio::test]
async fn error_replies_are_classified_and_keep_podmans_words() {
    for v in VERSIONS {
        error_replies_are_classified_and_keep_podmans_words_on(v).await;
    }
}

async fn error_replies_are_classified_and_keep_podmans_words_on(v: &'static str) {
    let fx = fixtures(v);
    let r = Replay::start(v).await;
    let c = r.client();

    // Missing image on create: 4.3.1 answers 500 {"cause":"image not known"}
    // (no "no such ..." cause, no 404); 5.x answers 404 with "no such image: "
    // in front of the message. Both are a NotFound.
    let e = c
        .create_container(&spec(&fx.str("missing_image"), "missing-image"))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{v}: {e:?}");
    let PodmanError::NotFound(api) = &e else {
        panic!("{v}: {e:?}")
    };
    let (status, prefix) = if v.starts_with("4.") {
        (500, "")
    } else {
        (404, "no such image: ")
    };
    assert_eq!(api.status, status, "{v}");
    assert_eq!(api.cause, "image not known", "{v}");
    assert_eq!(
        api.message,
        format!("{prefix}{}: image not known", fx.str("missing_image")),
        "{v}"
    );
    assert!(e.to_string().contains("image not known"), "{e}");

    // Missing container: JSON 404.
    let e = c
        .inspect_container(&fx.str("missing_container"))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    let PodmanError::NotFound(api) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(api.status, 404);
    assert_eq!(api.cause, "no such container");
    assert_eq!(
        api.message,
        r#"no container with name or ID "pod-exec-mcp-no-such-container" found: no such container"#
    );
    assert_eq!(api.response, Some(404));
    assert!(
        e.to_string().contains("no container with name or ID"),
        "{e}"
    );

    // Exec create in a container that is not running (created, never
    // started; and started then stopped): 500 "container state improper".
    let second = fx.id("second_container");
    for cmd in [&["true"][..], &["echo", "stopped"][..]] {
        let e = c.create_exec(&second, &exec(cmd, false)).await.unwrap_err();
        let PodmanError::Conflict(api) = &e else {
            panic!("{cmd:?}: {e:?}")
        };
        assert_eq!(api.status, 500);
        assert_eq!(api.cause, "container state improper");
        assert!(
            api.message
                .starts_with("can only create exec sessions on running containers"),
            "{api:?}"
        );
    }

    // Exec created while running, started after the container stopped: a
    // JSON 409 before any hijack, so no stream at all.
    let e = c
        .start_exec(&fx.exec_id("orphan"), false)
        .await
        .unwrap_err();
    let PodmanError::Conflict(api) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(api.status, 409);
    assert!(
        api.message
            .starts_with("cannot exec in a container that is not running; container "),
        "{api:?}"
    );
    assert!(api.message.ends_with(" is exited"), "{api:?}");
    r.assert_no_misses();
}

#[tokio::test]
async fn plain_text_404_is_route_missing() {
    for v in VERSIONS {
        plain_text_404_is_route_missing_on(v).await;
    }
}

async fn plain_text_404_is_route_missing_on(v: &'static str) {
    // The client never asks for an unversioned route, so serve the recorded
    // `GET /libpod/nope` reply (plain-text 404) to its version call: what a
    // server without that route answers.
    let path = "/v4.0.0/libpod/version".to_owned();
    let r = Replay::with_overrides(v, vec![("GET", path.clone(), "unversioned_route")]).await;
    let e = r.client().version().await.unwrap_err();
    match &e {
        PodmanError::RouteMissing {
            method,
            path: p,
            body,
        } => {
            assert_eq!(method, "GET");
            assert_eq!(*p, path);
            assert_eq!(body, "Not Found");
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.is_not_found());
    r.assert_no_misses();
}

#[tokio::test]
async fn build_ok_and_failed() {
    for v in VERSIONS {
        build_ok_and_failed_on(v).await;
    }
}

async fn build_ok_and_failed_on(v: &'static str) {
    let fx = fixtures(v);
    let r = Replay::start(v).await;
    let c = r.client();
    let tags = &fx.manifest["build_tags"];
    let base = fx.str("base_image");

    let ok = c
        .build_image(
            tar_context(&format!("FROM {base}\nRUN echo built\n")),
            &BuildOptions {
                tag: tags["ok"].as_str().unwrap().to_owned(),
                dockerfile: "Containerfile".to_owned(),
                ..Default::default()
            },
        )
        .await
        .expect("build ok");
    // 4.3.1 sends no {"aux":{"ID":...}} line; the image id is the last
    // "stream" line, on its own.
    let body = String::from_utf8_lossy(fx.get("build_ok").body_bytes()).into_owned();
    let id_line = body
        .lines()
        .rfind(|l| l.starts_with("{\"stream\""))
        .expect("stream lines");
    let last: Value = serde_json::from_str(id_line).unwrap();
    let image_id = last["stream"].as_str().unwrap().trim().to_owned();
    assert_eq!(image_id.len(), 64, "{image_id:?}");
    assert!(ok.log_tail.ends_with(&image_id), "{}", ok.log_tail);
    assert!(ok.log_tail.contains("STEP 2/2: RUN echo built\nbuilt\n"));
    assert!(
        ok.log_tail
            .contains("Successfully tagged localhost/pod-exec-mcp-fixture:ok")
    );
    if let Some(id) = &ok.image_id {
        assert!(id.trim_start_matches("sha256:") == image_id, "{id}");
    }

    let e = c
        .build_image(
            tar_context(&format!("FROM {base}\nRUN false\n")),
            &BuildOptions {
                tag: tags["fail"].as_str().unwrap().to_owned(),
                dockerfile: "Containerfile".to_owned(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    match &e {
        PodmanError::BuildFailed { message, log_tail } => {
            assert_eq!(
                message,
                r#"building at STEP "RUN false": while running runtime: exit status 1"#
            );
            assert!(log_tail.ends_with("STEP 2/2: RUN false"), "{log_tail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("exit status 1"), "{e}");
    r.assert_no_misses();
}

#[tokio::test]
async fn unknown_request_is_noticed() {
    for v in VERSIONS {
        unknown_request_is_noticed_on(v).await;
    }
}

async fn unknown_request_is_noticed_on(v: &'static str) {
    let r = Replay::start(v).await;
    let e = r.client().inspect_exec("not-recorded").await.unwrap_err();
    assert_eq!(e.api().map(|a| a.status), Some(599), "{e:?}");
    assert_eq!(r.misses.lock().unwrap().len(), 1);
}

// Podman 4.3.1 sends no `aux` ID line; the id is the last bare "stream" line.
#[tokio::test]
async fn build_ok_reports_the_image_id() {
    for v in VERSIONS {
        build_ok_reports_the_image_id_on(v).await;
    }
}

async fn build_ok_reports_the_image_id_on(v: &'static str) {
    let fx = fixtures(v);
    let r = Replay::start(v).await;
    let ok = r
        .client()
        .build_image(
            tar_context(&format!("FROM {}\nRUN echo built\n", fx.str("base_image"))),
            &BuildOptions {
                tag: fx.manifest["build_tags"]["ok"].as_str().unwrap().to_owned(),
                dockerfile: "Containerfile".to_owned(),
                ..Default::default()
            },
        )
        .await
        .expect("build ok");
    let id = ok.image_id.as_deref().unwrap_or_default();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{ok:?}"
    );
}

// ---- the decoder over the raw recorded streams ------------------------------------

fn exec_body(version: &str, name: &str) -> &'static [u8] {
    fixtures(version).get(name).body_bytes()
}

#[test]
fn decoder_small_fixtures_every_split() {
    for v in VERSIONS {
        decoder_small_fixtures_every_split_on(v);
    }
}

fn decoder_small_fixtures_every_split_on(v: &'static str) {
    for name in [
        "exec_start_mixed",
        "exec_start_mixed_paced",
        "exec_start_missing_binary",
        "exec_start_exit3",
        "exec_start_sleep",
    ] {
        let body = exec_body(v, name);
        let whole = decode_all(Framing::Multiplexed, [body]).expect(name);
        assert_eq!(whole, deframe(body), "{name}");
        assert_eq!(
            decode_all(Framing::Multiplexed, body.chunks(1)).expect(name),
            whole,
            "{name} byte by byte"
        );
        for cut in 0..=body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(
                decode_all(Framing::Multiplexed, [a, b]).expect(name),
                whole,
                "{name} split at {cut}"
            );
        }
    }
    // The paced one in write order; the missing binary all on stderr.
    assert_eq!(
        text(
            &decode_all(
                Framing::Multiplexed,
                [exec_body(v, "exec_start_mixed_paced")]
            )
            .unwrap()
        ),
        vec![
            (StreamKind::Stdout, "out1\n".to_owned()),
            (StreamKind::Stderr, "err1\n".to_owned()),
            (StreamKind::Stdout, "out2\n".to_owned()),
        ]
    );
    let missing = decode_all(
        Framing::Multiplexed,
        [exec_body(v, "exec_start_missing_binary")],
    )
    .unwrap();
    assert!(missing.iter().all(|(k, _)| *k == StreamKind::Stderr));
}

#[test]
fn decoder_tty_fixture_is_passed_through() {
    for v in VERSIONS {
        decoder_tty_fixture_is_passed_through_on(v);
    }
}

fn decoder_tty_fixture_is_passed_through_on(v: &'static str) {
    let body = exec_body(v, "exec_start_tty");
    assert_eq!(body, b"tty-out\r\ntty-err\r\n");
    for step in 1..=body.len() {
        assert_eq!(
            decode_all(Framing::Raw, body.chunks(step)).unwrap(),
            vec![(StreamKind::Stdout, body.to_vec())]
        );
    }
}

/// xorshift64*: a deterministic source of piece sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn decoder_one_mib_fixture_in_random_pieces() {
    for v in VERSIONS {
        decoder_one_mib_fixture_in_random_pieces_on(v);
    }
}

fn decoder_one_mib_fixture_in_random_pieces_on(v: &'static str) {
    let body = exec_body(v, "exec_start_big");
    let whole = decode_all(Framing::Multiplexed, [body]).unwrap();
    assert_eq!(whole, deframe(body));
    let stdout = stream_of(&whole, StreamKind::Stdout);
    let stderr = stream_of(&whole, StreamKind::Stderr);
    assert_eq!(stdout, vec![b'o'; MIB]);
    assert_eq!(stderr, vec![b'e'; MIB]);

    // Piece sizes from tiny (headers split everywhere) to larger than a frame.
    for (seed, max_piece) in [(1u64, 7usize), (2, 64), (3, 1000), (4, 9000), (5, 70_000)] {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let n = (1 + rng.below(max_piece)).min(body.len() - at);
            pieces.push(&body[at..at + n]);
            at += n;
        }
        assert_eq!(
            decode_all(Framing::Multiplexed, pieces.iter().copied()).unwrap(),
            whole,
            "seed {seed}, pieces up to {max_piece} bytes"
        );
    }
}
