//! Records real libpod replies as fixtures for the offline replay tests
//! (`tests/fixtures_replay.rs`).
//!
//! ```sh
//! eval "$(tests/podman-env.sh)" && cargo run --example record_fixtures
//! ```
//!
//! It talks to the Podman API at CONTAINER_HOST (unix:// only) over a raw
//! Unix socket, deliberately NOT through this crate's client, so the
//! recordings do not depend on the code they test. Each request is sent with
//! `Connection: close` and the reply is read to EOF; the exact bytes
//! (status line, headers, body; chunked bodies as received) are saved to
//! `podman-api-fixtures/<podman version>/<name>.http`, and
//! `manifest.json` there lists every fixture with the exact request (method,
//! path+query, JSON body) and the ids used, so a replay can match the
//! client's calls.
//!
//! Paths and bodies are written the way `pod_exec_mcp::podman` writes them
//! (same percent-encoding, same JSON fields) so the replay can match them
//! exactly; that is the only thing the two share.
//!
//! Every container created here carries `pod-exec-mcp.managed=true` and
//! `pod-exec-mcp.fixture-recorder=true`, and is force-removed at the end
//! even when a step fails; so is the image the build step makes. Nothing is
//! written unless every step succeeded (the new set replaces the old one).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// Route prefix, as the client sends it.
const B: &str = "/v4.0.0/libpod";
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

const DEFAULT_IMAGE: &str = "localhost/pod_exec_mcp_base:latest";
const BASE_IMAGE: &str = "localhost/debian-bootstrap:bookworm";
const MISSING_IMAGE: &str = "localhost/pod-exec-mcp-no-such-image:missing";
const MISSING_CONTAINER: &str = "pod-exec-mcp-no-such-container";
const BUILD_OK_TAG: &str = "localhost/pod-exec-mcp-fixture:ok";
const BUILD_FAIL_TAG: &str = "localhost/pod-exec-mcp-fixture:fail";
const LABEL_FILTER: &str = "pod-exec-mcp.fixture-recorder=true";
const MIB: usize = 1 << 20;

/// A request body.
enum Body {
    None,
    Json(Value),
    /// A tar build context, with the Containerfile text for the manifest.
    Tar(Vec<u8>, String),
}

/// A reply, split for the recorder's own checks (the raw bytes are what is
/// stored).
struct Reply {
    raw: Vec<u8>,
    status: u16,
    /// The body, de-chunked when the reply was chunked.
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "reply body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
            )
            .into()
        })
    }

    fn expect(&self, what: &str, status: u16) -> Result<()> {
        if self.status == status {
            Ok(())
        } else {
            Err(format!(
                "{what}: expected HTTP {status}, got {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
            )
            .into())
        }
    }

    fn id(&self, what: &str) -> Result<String> {
        self.json()?
            .get("Id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{what}: no Id in reply").into())
    }
}

struct Recorder {
    sock: PathBuf,
    /// (name, raw reply) in recording order.
    files: Vec<(String, Vec<u8>)>,
    /// Manifest entries, parallel to `files`.
    entries: Vec<Value>,
    ids: BTreeMap<String, Value>,
    /// Containers to force-remove at the end.
    containers: Vec<String>,
    /// Images to remove at the end.
    images: Vec<String>,
}

impl Recorder {
    fn new(sock: PathBuf) -> Self {
        Recorder {
            sock,
            files: Vec::new(),
            entries: Vec::new(),
            ids: BTreeMap::new(),
            containers: Vec::new(),
            images: Vec::new(),
        }
    }

    /// Sends one request and returns the reply, without recording it.
    async fn call(&self, method: &str, path: &str, body: &Body) -> Result<Reply> {
        let limit = if path.starts_with(&format!("{B}/build")) {
            BUILD_TIMEOUT
        } else {
            CALL_TIMEOUT
        };
        let fut = async {
            let mut conn = UnixStream::connect(&self.sock).await?;
            conn.write_all(&request_bytes(method, path, body)).await?;
            let mut raw = Vec::new();
            conn.read_to_end(&mut raw).await?;
            parse_reply(raw)
        };
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| format!("{method} {path}: no reply within {} s", limit.as_secs()))?
    }

    /// Sends one request and records the reply as fixture `name`. A second
    /// recording under the same name (a retry) replaces the first.
    async fn record(&mut self, name: &str, method: &str, path: &str, body: Body) -> Result<Reply> {
        let reply = self.call(method, path, &body).await?;
        self.store(name, method, path, &body, &reply)?;
        Ok(reply)
    }

    fn store(
        &mut self,
        name: &str,
        method: &str,
        path: &str,
        body: &Body,
        reply: &Reply,
    ) -> Result<()> {
        let (body_json, context) = match body {
            Body::None => (Value::Null, None),
            Body::Json(v) => (v.clone(), None),
            Body::Tar(_, containerfile) => (Value::Null, Some(containerfile.clone())),
        };
        // The replay matches on (method, path, JSON body): keep that unique.
        if self.entries.iter().any(|e| {
            e["name"] != name
                && e["method"] == method
                && e["path"] == path
                && e["body"] == body_json
        }) {
            return Err(
                format!("two fixtures would answer {method} {path} with the same body").into(),
            );
        }
        let file = format!("{name}.http");
        let mut entry = json!({
            "name": name,
            "method": method,
            "path": path,
            "body": body_json,
            "file": file,
            "status": reply.status,
            "bytes": reply.raw.len(),
        });
        if let Some(c) = context {
            entry["body_kind"] = json!("tar");
            entry["containerfile"] = json!(c);
        }
        if let Some(i) = self.entries.iter().position(|e| e["name"] == name) {
            self.entries[i] = entry;
            self.files[i] = (file, reply.raw.clone());
        } else {
            self.entries.push(entry);
            self.files.push((file, reply.raw.clone()));
        }
        println!(
            "  {name:<32} {method:<6} {:>4} {:>9} bytes  {}",
            reply.status,
            reply.raw.len(),
            shorten(path)
        );
        Ok(())
    }

    fn set_id(&mut self, key: &str, id: &str) {
        self.ids.insert(key.to_owned(), json!(id));
    }

    fn set_exec_id(&mut self, key: &str, id: &str) {
        let execs = self
            .ids
            .entry("exec".to_owned())
            .or_insert_with(|| json!({}));
        execs[key] = json!(id);
    }

    /// Creates a container (recorded), remembering it for cleanup.
    async fn create_container(&mut self, name: &str, role: &str, image: &str) -> Result<String> {
        let reply = self
            .record(
                name,
                "POST",
                &format!("{B}/containers/create"),
                Body::Json(container_spec(image, role)),
            )
            .await?;
        if reply.status == 201 {
            let id = reply.id(name)?;
            self.containers.push(id.clone());
        }
        Ok(reply.id(name).unwrap_or_default())
    }

    /// Exec create (recorded as `exec_create_<key>`); returns the exec id.
    async fn create_exec(
        &mut self,
        key: &str,
        container: &str,
        cmd: &[&str],
        tty: bool,
    ) -> Result<String> {
        let name = format!("exec_create_{key}");
        let reply = self
            .record(
                &name,
                "POST",
                &format!("{B}/containers/{}/exec", encode(container)),
                Body::Json(exec_config(cmd, tty)),
            )
            .await?;
        reply.expect(&name, 201)?;
        let id = reply.id(&name)?;
        self.set_exec_id(key, &id);
        Ok(id)
    }

    /// Exec start, attached, read to EOF (recorded as `exec_start_<key>`).
    async fn start_exec(&mut self, key: &str, exec_id: &str, tty: bool) -> Result<Reply> {
        let name = format!("exec_start_{key}");
        let reply = self
            .record(
                &name,
                "POST",
                &exec_start_path(exec_id),
                Body::Json(exec_start_body(tty)),
            )
            .await?;
        reply.expect(&name, 200)?;
        Ok(reply)
    }

    /// Force-removes everything this run created. Never fails: it reports.
    async fn cleanup(&mut self) -> bool {
        let mut ok = true;
        for id in std::mem::take(&mut self.containers) {
            let path = format!(
                "{B}/containers/{}?force=true&timeout=0&ignore=true",
                encode(&id)
            );
            match self.call("DELETE", &path, &Body::None).await {
                Ok(r) if r.status == 200 => {}
                Ok(r) => {
                    ok = false;
                    eprintln!(
                        "cleanup: removing container {id}: HTTP {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                }
                Err(e) => {
                    ok = false;
                    eprintln!("cleanup: removing container {id}: {e}");
                }
            }
        }
        for name in std::mem::take(&mut self.images) {
            let path = format!("{B}/images/{}?force=true", encode(&name));
            match self.call("DELETE", &path, &Body::None).await {
                Ok(r) if r.status == 200 || r.status == 404 => {}
                Ok(r) => {
                    ok = false;
                    eprintln!(
                        "cleanup: removing image {name}: HTTP {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                }
                Err(e) => {
                    ok = false;
                    eprintln!("cleanup: removing image {name}: {e}");
                }
            }
        }
        ok
    }

    /// Writes the fixtures and manifest to `root/<version>`, replacing what
    /// was there.
    fn write(&self, root: &Path, version: &str, api_version: &str, image: &str) -> Result<PathBuf> {
        let dest = root.join(version);
        let tmp = root.join(format!(".{version}.tmp"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        for (file, raw) in &self.files {
            std::fs::write(tmp.join(file), raw)?;
        }
        let manifest = json!({
            "podman_version": version,
            "libpod_api_version": api_version,
            "recorded_with": "examples/record_fixtures.rs",
            "note": "Each .http file is the exact raw HTTP reply (status line, headers, body as received, chunked bodies included) to the request described here, sent with Connection: close. Replay matches (method, path, JSON body).",
            "image": image,
            "base_image": BASE_IMAGE,
            "missing_image": MISSING_IMAGE,
            "missing_container": MISSING_CONTAINER,
            "label_filter": LABEL_FILTER,
            "build_tags": { "ok": BUILD_OK_TAG, "fail": BUILD_FAIL_TAG },
            "ids": self.ids,
            "fixtures": self.entries,
        });
        let mut text = serde_json::to_string_pretty(&manifest)?;
        text.push('\n');
        std::fs::write(tmp.join("manifest.json"), text)?;
        if dest.exists() {
            std::fs::remove_dir_all(&dest)?;
        }
        std::fs::rename(&tmp, &dest)?;
        Ok(dest)
    }
}

/// The SpecGenerator the client's `ContainerSpec` serializes to for these
/// fields.
fn container_spec(image: &str, role: &str) -> Value {
    json!({
        "image": image,
        "command": ["sleep", "infinity"],
        "init": true,
        "labels": {
            "pod-exec-mcp.managed": "true",
            "pod-exec-mcp.fixture-recorder": "true",
            "pod-exec-mcp.fixture-role": role,
        },
    })
}

/// What the client's `ExecConfig::command(cmd)` (with `tty`) serializes to.
fn exec_config(cmd: &[&str], tty: bool) -> Value {
    json!({
        "Cmd": cmd,
        "Tty": tty,
        "AttachStdin": false,
        "AttachStdout": true,
        "AttachStderr": true,
    })
}

fn exec_start_body(tty: bool) -> Value {
    json!({ "Detach": false, "Tty": tty })
}

fn exec_start_path(exec_id: &str) -> String {
    format!("{B}/exec/{}/start", encode(exec_id))
}

fn request_bytes(method: &str, path: &str, body: &Body) -> Vec<u8> {
    let (ctype, bytes): (Option<&str>, Vec<u8>) = match body {
        Body::None => (None, Vec::new()),
        Body::Json(v) => (Some("application/json"), v.to_string().into_bytes()),
        Body::Tar(t, _) => (Some("application/x-tar"), t.clone()),
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: d\r\nUser-Agent: pod-exec-mcp-fixture-recorder\r\nConnection: close\r\n"
    );
    if let Some(ct) = ctype {
        let _ = write!(head, "Content-Type: {ct}\r\n");
    }
    if ctype.is_some() || method != "GET" {
        let _ = write!(head, "Content-Length: {}\r\n", bytes.len());
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&bytes);
    out
}

/// Index just past the blank line ending the reply head.
fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn parse_reply(raw: Vec<u8>) -> Result<Reply> {
    let end = head_end(&raw).ok_or("reply has no complete HTTP head")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {}", head.lines().next().unwrap_or("")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(&raw[end..])?
    } else {
        raw[end..].to_vec()
    };
    Ok(Reply { raw, status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body: missing size line")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("chunked body: bad size {size_text:?}: {e}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("chunked body: truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Splits a Tty=false exec stream into (stream byte, payload) frames, for
/// the recorder's own sanity checks.
fn deframe(mut data: &[u8]) -> Result<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 8 {
            return Err("exec stream ends inside a frame header".into());
        }
        let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        if data.len() < 8 + len {
            return Err("exec stream ends inside a frame payload".into());
        }
        out.push((data[0], data[8..8 + len].to_vec()));
        data = &data[8 + len..];
    }
    Ok(out)
}

/// Frames merged per run of one stream.
fn merged(frames: &[(u8, Vec<u8>)]) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    for (s, p) in frames {
        match out.last_mut() {
            Some((ls, v)) if ls == s => v.extend_from_slice(p),
            _ => out.push((*s, p.clone())),
        }
    }
    out
}

fn stream_bytes(frames: &[(u8, Vec<u8>)], stream: u8) -> Vec<u8> {
    frames
        .iter()
        .filter(|(s, _)| *s == stream)
        .flat_map(|(_, p)| p.iter().copied())
        .collect()
}

/// Percent-encodes a path segment or query value exactly as the client does
/// (everything but RFC 3986 unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn printable(frames: &[(u8, Vec<u8>)]) -> Vec<(u8, String)> {
    frames
        .iter()
        .map(|(s, p)| (*s, String::from_utf8_lossy(p).into_owned()))
        .collect()
}

fn shorten(path: &str) -> String {
    if path.len() > 90 {
        format!("{}…", &path[..90])
    } else {
        path.to_owned()
    }
}

/// An in-memory build context holding one `Containerfile`.
fn tar_context(containerfile: &str) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(containerfile.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, "Containerfile", containerfile.as_bytes())?;
    Ok(builder.into_inner()?)
}

/// Reads from `conn` until the reply head is complete; returns the bytes read.
async fn read_head(conn: &mut UnixStream) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while head_end(&raw).is_none() {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Err("connection closed before the reply head".into());
        }
        raw.extend_from_slice(&buf[..n]);
    }
    Ok(raw)
}

async fn record_all(rec: &mut Recorder, image: &str) -> Result<(String, String)> {
    // --- service --------------------------------------------------------
    let ping = rec.record("ping", "GET", "/_ping", Body::None).await?;
    ping.expect("ping", 200)?;
    let head = String::from_utf8_lossy(&ping.raw[..head_end(&ping.raw).unwrap_or(0)]).into_owned();
    let api_version = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("libpod-api-version")
                .then(|| v.trim().to_owned())
        })
        .ok_or("GET /_ping: no Libpod-Api-Version header; is this Podman?")?;
    let version = rec
        .record("version", "GET", &format!("{B}/version"), Body::None)
        .await?;
    version.expect("version", 200)?;
    let podman_version = version
        .json()?
        .get("Version")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or("version: no Version field")?;
    println!("podman {podman_version}, libpod API {api_version}");

    // --- images -----------------------------------------------------------
    rec.record(
        "image_exists",
        "GET",
        &format!("{B}/images/{}/exists", encode(image)),
        Body::None,
    )
    .await?
    .expect("image_exists", 204)?;
    let missing = rec
        .record(
            "image_missing",
            "GET",
            &format!("{B}/images/{}/exists", encode(MISSING_IMAGE)),
            Body::None,
        )
        .await?;
    missing.expect("image_missing", 404)?;

    // --- containers --------------------------------------------------------
    let id = rec
        .create_container("container_create", "main", image)
        .await?;
    if id.is_empty() {
        return Err("container_create: no container id".into());
    }
    rec.set_id("container", &id);
    let bad = rec
        .create_container(
            "container_create_missing_image",
            "missing-image",
            MISSING_IMAGE,
        )
        .await?;
    if !bad.is_empty() {
        return Err("a container was created from a missing image".into());
    }
    rec.record(
        "container_start",
        "POST",
        &format!("{B}/containers/{}/start", encode(&id)),
        Body::None,
    )
    .await?
    .expect("container_start", 204)?;
    let inspect = rec
        .record(
            "container_inspect",
            "GET",
            &format!("{B}/containers/{}/json", encode(&id)),
            Body::None,
        )
        .await?;
    inspect.expect("container_inspect", 200)?;
    if inspect.json()?["State"]["Running"] != json!(true) {
        return Err("container_inspect: not running".into());
    }
    rec.record(
        "container_inspect_missing",
        "GET",
        &format!("{B}/containers/{}/json", encode(MISSING_CONTAINER)),
        Body::None,
    )
    .await?;

    // --- exec streams --------------------------------------------------------
    // Mixed stdout/stderr, as fast as the shell writes: conmon reads the two
    // pipes separately, so the order across streams is not kept (4.3.1 sends
    // "out1\nout2\n" in one stdout frame, then "err1\n"). Checked per stream.
    let e = rec
        .create_exec(
            "mixed",
            &id,
            &["sh", "-c", "echo out1; echo err1 >&2; echo out2"],
            false,
        )
        .await?;
    let r = rec.start_exec("mixed", &e, false).await?;
    let frames = deframe(&r.body)?;
    println!("    frames {:?}", printable(&frames));
    if stream_bytes(&frames, 1) != b"out1\nout2\n" || stream_bytes(&frames, 2) != b"err1\n" {
        return Err("mixed: wrong bytes on stdout/stderr".into());
    }
    // The same with pauses between the writes: now the order across streams
    // is the write order. Retried until it is (a loaded machine may delay).
    let mut in_order = false;
    for attempt in 1..=5 {
        let e = rec
            .create_exec(
                "mixed_paced",
                &id,
                &[
                    "sh",
                    "-c",
                    "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2",
                ],
                false,
            )
            .await?;
        let r = rec.start_exec("mixed_paced", &e, false).await?;
        let got = merged(&deframe(&r.body)?);
        let want = vec![
            (1, b"out1\n".to_vec()),
            (2, b"err1\n".to_vec()),
            (1, b"out2\n".to_vec()),
        ];
        if got == want {
            in_order = true;
            break;
        }
        println!(
            "  (paced stream out of order on attempt {attempt}: {:?}; retrying)",
            printable(&got)
        );
    }
    if !in_order {
        return Err("the paced mixed stream never came out in write order".into());
    }

    let e = rec
        .create_exec(
            "big",
            &id,
            &[
                "sh",
                "-c",
                "head -c 1048576 /dev/zero | tr '\\0' o; head -c 1048576 /dev/zero | tr '\\0' e >&2",
            ],
            false,
        )
        .await?;
    let r = rec.start_exec("big", &e, false).await?;
    let frames = deframe(&r.body)?;
    let (out, err) = (stream_bytes(&frames, 1), stream_bytes(&frames, 2));
    if out != vec![b'o'; MIB] || err != vec![b'e'; MIB] {
        return Err(format!(
            "big: got {} stdout / {} stderr bytes, want 1 MiB of 'o' / 'e'",
            out.len(),
            err.len()
        )
        .into());
    }
    println!(
        "    {} frames, largest payload {} bytes",
        frames.len(),
        frames.iter().map(|(_, p)| p.len()).max().unwrap_or(0)
    );

    let e = rec
        .create_exec("missing_binary", &id, &["/nonexistent"], false)
        .await?;
    let r = rec.start_exec("missing_binary", &e, false).await?;
    println!("    frames {:?}", printable(&deframe(&r.body)?));
    let r = rec
        .record(
            "exec_inspect_missing_binary",
            "GET",
            &format!("{B}/exec/{}/json", encode(&e)),
            Body::None,
        )
        .await?;
    println!("    ExitCode {}", r.json()?["ExitCode"]);

    let e = rec
        .create_exec(
            "tty",
            &id,
            &["sh", "-c", "echo tty-out; echo tty-err >&2"],
            true,
        )
        .await?;
    let r = rec.start_exec("tty", &e, true).await?;
    println!("    raw body {:?}", String::from_utf8_lossy(&r.body));

    let e = rec
        .create_exec("exit3", &id, &["sh", "-c", "exit 3"], false)
        .await?;
    rec.start_exec("exit3", &e, false).await?;
    let r = rec
        .record(
            "exec_inspect_exited",
            "GET",
            &format!("{B}/exec/{}/json", encode(&e)),
            Body::None,
        )
        .await?;
    r.expect("exec_inspect_exited", 200)?;
    if r.json()?["ExitCode"] != json!(3) || r.json()?["Running"] != json!(false) {
        return Err(format!("exec_inspect_exited: {}", String::from_utf8_lossy(&r.body)).into());
    }

    // Inspect while the attached stream is still open.
    let e = rec
        .create_exec("sleep", &id, &["sleep", "5"], false)
        .await?;
    let start_path = exec_start_path(&e);
    let start_body = Body::Json(exec_start_body(false));
    let mut conn = UnixStream::connect(&rec.sock).await?;
    conn.write_all(&request_bytes("POST", &start_path, &start_body))
        .await?;
    let mut raw = tokio::time::timeout(CALL_TIMEOUT, read_head(&mut conn))
        .await
        .map_err(|_| "exec_start_sleep: no reply head")??;
    let r = rec
        .record(
            "exec_inspect_running",
            "GET",
            &format!("{B}/exec/{}/json", encode(&e)),
            Body::None,
        )
        .await?;
    r.expect("exec_inspect_running", 200)?;
    if r.json()?["Running"] != json!(true) {
        return Err(format!("exec_inspect_running: {}", String::from_utf8_lossy(&r.body)).into());
    }
    tokio::time::timeout(CALL_TIMEOUT, conn.read_to_end(&mut raw))
        .await
        .map_err(|_| "exec_start_sleep: stream did not end")??;
    let r = parse_reply(raw)?;
    rec.store("exec_start_sleep", "POST", &start_path, &start_body, &r)?;
    r.expect("exec_start_sleep", 200)?;

    // --- a second container: exec while not running ----------------------------
    let second = rec
        .create_container("container_create_second", "second", image)
        .await?;
    if second.is_empty() {
        return Err("container_create_second: no container id".into());
    }
    rec.set_id("second_container", &second);
    let exec_path = format!("{B}/containers/{}/exec", encode(&second));
    rec.record(
        "exec_create_not_running",
        "POST",
        &exec_path,
        Body::Json(exec_config(&["true"], false)),
    )
    .await?;
    // Start it, create an exec, stop it, then try both exec calls again.
    rec.call(
        "POST",
        &format!("{B}/containers/{}/start", encode(&second)),
        &Body::None,
    )
    .await?
    .expect("start second container", 204)?;
    let orphan = rec
        .create_exec("orphan", &second, &["echo", "orphan"], false)
        .await?;
    rec.call(
        "POST",
        &format!("{B}/containers/{}/stop?timeout=0", encode(&second)),
        &Body::None,
    )
    .await?
    .expect("stop second container", 204)?;
    rec.record(
        "exec_create_stopped",
        "POST",
        &exec_path,
        Body::Json(exec_config(&["echo", "stopped"], false)),
    )
    .await?;
    let r = rec
        .record(
            "exec_start_stopped",
            "POST",
            &exec_start_path(&orphan),
            Body::Json(exec_start_body(false)),
        )
        .await?;
    println!("    body {:?}", String::from_utf8_lossy(&r.body));

    // --- list, errors --------------------------------------------------------
    let filters = json!({ "label": [LABEL_FILTER] }).to_string();
    let list = rec
        .record(
            "container_list",
            "GET",
            &format!("{B}/containers/json?all=true&filters={}", encode(&filters)),
            Body::None,
        )
        .await?;
    list.expect("container_list", 200)?;
    rec.record("unversioned_route", "GET", "/libpod/nope", Body::None)
        .await?;

    // --- build ----------------------------------------------------------------
    for (name, tag, containerfile) in [
        (
            "build_ok",
            BUILD_OK_TAG,
            format!("FROM {BASE_IMAGE}\nRUN echo built\n"),
        ),
        (
            "build_fail",
            BUILD_FAIL_TAG,
            format!("FROM {BASE_IMAGE}\nRUN false\n"),
        ),
    ] {
        rec.images.push(tag.to_owned());
        let path = format!(
            "{B}/build?t={}&dockerfile={}",
            encode(tag),
            encode("Containerfile")
        );
        let tar = tar_context(&containerfile)?;
        let r = rec
            .record(name, "POST", &path, Body::Tar(tar, containerfile))
            .await?;
        r.expect(name, 200)?;
        let text = String::from_utf8_lossy(&r.body);
        println!(
            "    last line {:?}",
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
        );
    }
    let r = rec
        .record(
            "image_remove_built",
            "DELETE",
            &format!("{B}/images/{}?force=true", encode(BUILD_OK_TAG)),
            Body::None,
        )
        .await?;
    r.expect("image_remove_built", 200)?;

    // --- remove ------------------------------------------------------------------
    let r = rec
        .record(
            "container_remove",
            "DELETE",
            &format!(
                "{B}/containers/{}?force=true&timeout=0&ignore=false",
                encode(&id)
            ),
            Body::None,
        )
        .await?;
    r.expect("container_remove", 200)?;
    rec.containers.retain(|c| *c != id);

    Ok((podman_version, api_version))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let host = std::env::var("CONTAINER_HOST").unwrap_or_default();
    let Some(sock) = host.strip_prefix("unix://") else {
        eprintln!(
            "record_fixtures: set CONTAINER_HOST=unix:///path/to/podman.sock \
             (eval \"$(tests/podman-env.sh)\"); got {host:?}"
        );
        return ExitCode::FAILURE;
    };
    let image = std::env::var("POD_EXEC_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("podman-api-fixtures");
    println!("recording from {host} with image {image}");

    let mut rec = Recorder::new(PathBuf::from(sock));
    let outcome = record_all(&mut rec, &image).await;
    let cleaned = rec.cleanup().await;
    match outcome {
        Ok((version, api_version)) => match rec.write(&root, &version, &api_version, &image) {
            Ok(dir) => {
                println!("wrote {} fixtures to {}", rec.files.len(), dir.display());
                if cleaned {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("record_fixtures: writing fixtures: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("record_fixtures: {e} (nothing written)");
            ExitCode::FAILURE
        }
    }
}
