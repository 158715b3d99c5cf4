//! The benchmark program: measures the raw libpod floor with the project's
//! own client and the real server over MCP streamable HTTP in the same run,
//! and reports every server figure as a ratio to that floor.
//!
//! ```sh
//! eval "$(tests/podman-env.sh)"
//! cargo bench --bench bench                    # full run
//! cargo bench --bench bench -- --smoke         # tiny, for CI
//! ```
//!
//! Phases: (1) raw create+start, and exec create+start+inspect of the
//! command, sequentially; (2) the server, one session: setup (initialize +
//! first call) and warm calls; (3) raw and server at S-way concurrency,
//! S x M calls each, for throughput; (4) server RSS idle, with open
//! sessions, and while one call prints 1 GiB.
//!
//! Kinds of samples alternate, and each sample (or block of back-to-back
//! warm samples) starts on a quiet machine ([`settle`]): a libpod exec goes
//! on costing CPU after it has answered, and on two cores that would
//! otherwise be charged to whichever sample comes next. The raw floor's
//! containers use the server's own sandbox spec.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use pod_exec_mcp::config::Config;
use pod_exec_mcp::podman::{ContainerSpec, PodmanClient};
use pod_exec_mcp::sandbox::owner::Identity;
use pod_exec_mcp::sandbox::spec::{SandboxTemplate, shell_exec};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Client = RunningService<RoleClient, ClientConfig>;

#[derive(Parser, Debug, Clone)]
#[command(about = "pod_exec_mcp benchmark: the server against the raw libpod API, same run")]
struct Args {
    /// Sequential samples for the latency phases.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Concurrent sessions in the throughput phase.
    #[arg(long, default_value_t = 8)]
    sessions: usize,
    /// Sequential calls per session in the throughput phase.
    #[arg(long, default_value_t = 20)]
    calls: usize,
    /// The command each call runs.
    #[arg(long, default_value = "true")]
    command: String,
    /// Open sessions for the per-session memory figure.
    #[arg(long, default_value_t = 50)]
    open_sessions: usize,
    /// Sequential calls in one sandbox for the conmon count (0 skips it).
    #[arg(long, default_value_t = 2000)]
    long_calls: usize,
    /// Bytes printed by the big-output call (0 skips it).
    #[arg(long, default_value_t = 1 << 30)]
    big_output: u64,
    /// Tiny run (CI smoke): 3 samples, 2 x 3 calls, 5 sessions, 16 MiB.
    #[arg(long)]
    smoke: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench/latest.json")]
    json: PathBuf,
    /// Session image.
    #[arg(
        long,
        env = "POD_EXEC_IMAGE",
        default_value = "localhost/pod_exec_mcp_base:latest"
    )]
    image: String,
    /// Only the server's throughput phase, this many times (for studying
    /// its tail); prints one line per round and writes no report.
    #[arg(long, default_value_t = 0)]
    only_concurrency: usize,
    /// Extra server environment for --only-concurrency, as NAME=VALUE.
    #[arg(long = "server-env")]
    server_env: Vec<String>,
    /// Accepted for `cargo bench` compatibility.
    #[arg(long, hide = true)]
    bench: bool,
}

// ---- statistics -----------------------------------------------------------------

#[derive(Debug, Clone, Default, serde::Serialize)]
struct Stats {
    n: usize,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn stats(v: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        if ms.is_empty() {
            f64::NAN
        } else {
            ms[((ms.len() - 1) as f64 * p).round() as usize]
        }
    };
    Stats {
        n: ms.len(),
        p50_ms: pick(0.5),
        p90_ms: pick(0.9),
        p99_ms: pick(0.99),
        max_ms: pick(1.0),
    }
}

/// Median of `a[i] - b[i]` in ms: samples taken back to back share the
/// machine's momentary load, so their difference is steadier than a
/// difference of medians.
fn paired_median(a: &[Duration], b: &[Duration]) -> f64 {
    let mut d: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x.as_secs_f64() - y.as_secs_f64()) * 1e3)
        .collect();
    d.sort_by(f64::total_cmp);
    if d.is_empty() {
        f64::NAN
    } else {
        d[d.len() / 2]
    }
}

// ---- raw libpod -------------------------------------------------------------------

/// The raw floor's container: the server's own sandbox spec (the same
/// hardening, limits and user namespace, from the same configuration), so
/// that "setup minus create+start" is what the server adds, not what its
/// confinement costs Podman. Only the labels differ: no server owns these.
fn spec(template: &SandboxTemplate) -> ContainerSpec {
    let mut s = template.spec(
        &format!("pod-exec-bench-{}", pod_exec_mcp::random_hex(6)),
        "bench",
        "raw",
        &Identity::current(),
    );
    s.labels.retain(|k, _| k == "pod-exec-mcp.managed");
    s.labels.insert("pod-exec-mcp.bench".into(), "raw".into());
    s
}

/// Removes the raw phase's containers whatever happens.
struct RawContainers {
    podman: PodmanClient,
    template: SandboxTemplate,
    ids: Vec<String>,
}

impl RawContainers {
    async fn create_start(&mut self) -> Result<(String, Duration), Error> {
        let spec = spec(&self.template);
        let t = Instant::now();
        let id = self.podman.create_container(&spec).await?;
        self.ids.push(id.clone());
        self.podman.start_container(&id).await?;
        Ok((id, t.elapsed()))
    }

    async fn remove_all(&mut self) {
        let removes = self
            .ids
            .drain(..)
            .map(|id| {
                let p = self.podman.clone();
                async move { p.remove_container(&id, true).await }
            })
            .collect::<Vec<_>>();
        futures::future::join_all(removes).await;
    }
}

/// The raw floor of one call: exec create + start + read to EOF + inspect
/// of exactly the exec the server makes (same wrapper, same tag).
async fn raw_exec(podman: &PodmanClient, id: &str, command: &str) -> Result<Duration, Error> {
    let t = Instant::now();
    let cfg = shell_exec(command, &pod_exec_mcp::random_hex(16));
    let exec_id = podman.create_exec(id, &cfg).await?;
    let mut stream = podman.start_exec(&exec_id, false).await?;
    while let Some(chunk) = stream.next_chunk().await {
        chunk?;
    }
    match podman.inspect_exec(&exec_id).await {
        Ok(_) => {}
        // Under heavy load Podman can forget an exec session before it is
        // inspected (past `exit_command_delay`): the exec ran to EOF, so
        // its time counts, and the run reports how often this happened.
        Err(e) if e.is_not_found() => {
            RAW_FORGOTTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(t.elapsed())
}

/// Raw execs whose session Podman had forgotten by their inspect.
static RAW_FORGOTTEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// ---- the server ---------------------------------------------------------------------

struct ServerProc {
    child: Child,
    url: String,
    instance: String,
}

impl ServerProc {
    fn start(image: &str, envs: &[(&str, &str)]) -> Result<Self, Error> {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_pod_exec_mcp"))
            .env("MCP_HOST", "127.0.0.1")
            .env("MCP_PORT", "0")
            .env("POD_EXEC_IMAGE", image)
            .env("RUST_LOG", "warn,pod_exec_mcp::server=info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut instance = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.split("instance=").nth(1) {
                    instance = i.split_whitespace().next().unwrap_or("").to_owned();
                }
                if let Some(url) = line.split("serving MCP at ").nth(1) {
                    let _ = tx.send((url.trim().to_owned(), instance.clone()));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok((url, instance)) => Ok(ServerProc {
                child,
                url,
                instance,
            }),
            Err(_) => {
                let _ = child.kill();
                Err("server did not start".into())
            }
        }
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// SIGTERM and wait: the server removes its containers itself.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn connect(url: &str) -> Result<Client, Error> {
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("pod-exec-mcp-bench", "0"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25);
    Ok(info
        .serve(StreamableHttpClientTransport::from_uri(url.to_owned()))
        .await?)
}

async fn call(client: &Client, command: &str) -> Result<serde_json::Value, Error> {
    let args = json!({ "command": command });
    let args = args.as_object().cloned().unwrap_or_default();
    let r = client
        .call_tool(CallToolRequestParams::new("shell_exec").with_arguments(args))
        .await?;
    if r.is_error == Some(true) {
        return Err(format!("tool error: {:?}", r.content).into());
    }
    r.structured_content
        .ok_or_else(|| "no structuredContent".into())
}

// ---- phases -------------------------------------------------------------------------

#[derive(Debug, Default, serde::Serialize)]
struct Report {
    command: String,
    podman_version: String,
    raw_create_start: Stats,
    raw_exec: Stats,
    server_setup: Stats,
    server_setup_pooled: Stats,
    server_warm: Stats,
    /// Warm calls each made after the machine went quiet.
    server_warm_idle: Stats,
    /// Warm calls through the fallback (POD_EXEC_EXECUTOR=off: one exec a call).
    fallback_warm: Stats,
    fallback_setup: Stats,
    server_mcp_roundtrip: Stats,
    /// Median of (server warm call - raw exec) over alternating pairs.
    warm_paired_diff_ms: f64,
    /// Median of (pooled setup - raw create+start) over alternating pairs.
    setup_pooled_paired_diff_ms: f64,
    concurrency: usize,
    calls_per_session: usize,
    raw_concurrent_exec: Stats,
    raw_throughput_cps: f64,
    /// Why the raw concurrency phase failed, if it did.
    raw_concurrency_error: Option<String>,
    raw_forgotten_inspects: usize,
    server_concurrent_warm: Stats,
    server_throughput_cps: f64,
    rss_idle_kib: u64,
    open_sessions: usize,
    rss_open_sessions_kib: u64,
    rss_per_session_kib: f64,
    big_output_bytes: u64,
    big_output_rss_before_kib: u64,
    big_output_rss_peak_kib: u64,
    big_output_secs: f64,
    big_output_truncated: bool,
    big_output_len: usize,
    fallback_big_output_secs: f64,
    /// The same command with its output to /dev/null, in the same kind of
    /// sandbox: what the command itself costs under the CPU limit, so the
    /// best ratio any reader could reach is fallback / this.
    big_output_silent_secs: f64,
    /// The same bytes through `tr '\0' x`: a printer that spends CPU on
    /// every byte, inside the sandbox's CPU limit that the executor's
    /// reader shares (the fallback's reader, conmon, runs outside it).
    busy_output_secs: f64,
    fallback_busy_output_secs: f64,
    busy_output_silent_secs: f64,
    /// conmon processes on this host before and after the concurrency phase.
    conmon_before: usize,
    conmon_after: usize,
    /// conmon processes before and after `long_calls` calls in one sandbox.
    long_calls: usize,
    conmon_long_before: usize,
    conmon_long_after: usize,
    long_calls_secs: f64,
    /// CPU time the hypervisor took from this VM during the run (steal, in
    /// /proc/stat): a run with much of it measured a machine that was not
    /// all there.
    steal_secs: f64,
}

/// Latency, sequential, raw and server samples alternating so both see the
/// same machine: create+start vs session setup (without and with a warm
/// pool), and exec vs warm call.
/// Samples of one kind taken back to back in the warm phase.
const WARM_BLOCK: usize = 10;

async fn latency_phase(
    args: &Args,
    podman: &PodmanClient,
    servers: &Servers,
    raw: &mut RawContainers,
    r: &mut Report,
) -> Result<(), Error> {
    let Servers {
        server,
        pooled,
        fallback,
    } = servers;
    let (mut cs, mut setup, mut setup_pooled) = (Vec::new(), Vec::new(), Vec::new());
    let mut setup_fallback = Vec::new();
    for _ in 0..args.samples {
        settle().await;
        cs.push(raw.create_start().await?.1);

        settle().await;
        let t = Instant::now();
        let client = connect(&server.url).await?;
        call(&client, &args.command).await?;
        setup.push(t.elapsed());
        client.cancel().await?;

        settle().await;
        let t = Instant::now();
        let client = connect(&fallback.url).await?;
        call(&client, &args.command).await?;
        setup_fallback.push(t.elapsed());
        client.cancel().await?;

        wait_pool_ready(podman, pooled).await?;
        settle().await;
        let t = Instant::now();
        let client = connect(&pooled.url).await?;
        call(&client, &args.command).await?;
        setup_pooled.push(t.elapsed());
        client.cancel().await?;
    }

    let id = raw.ids[0].clone();
    let client = connect(&server.url).await?;
    let fb = connect(&fallback.url).await?;
    raw_exec(podman, &id, &args.command).await?; // warm-ups
    call(&client, &args.command).await?;
    call(&fb, &args.command).await?;
    let (mut ex, mut warm, mut rt) = (Vec::new(), Vec::new(), Vec::new());
    let (mut warm_fb, mut idle) = (Vec::new(), Vec::new());
    // Blocks of WARM_BLOCK back-to-back samples of each kind in turn, as a
    // client calling in a loop sees them; then as many single calls that
    // each start on an idle machine, as a client that thinks between
    // calls sees them (on this VM a sleeping CPU is slow to wake).
    let mut left = args.samples;
    while left > 0 {
        let n = left.min(WARM_BLOCK);
        left -= n;
        settle().await;
        for _ in 0..n {
            ex.push(raw_exec(podman, &id, &args.command).await?);
        }
        settle().await;
        for _ in 0..n {
            let t = Instant::now();
            call(&client, &args.command).await?;
            warm.push(t.elapsed());
        }
        settle().await;
        for _ in 0..n {
            let t = Instant::now();
            call(&fb, &args.command).await?;
            warm_fb.push(t.elapsed());
        }
        // The MCP layer alone (no Podman): what HTTP + rmcp cost a call.
        settle().await;
        for _ in 0..n {
            let t = Instant::now();
            client.list_all_tools().await?;
            rt.push(t.elapsed());
        }
        for _ in 0..n {
            settle().await;
            let t = Instant::now();
            call(&client, &args.command).await?;
            idle.push(t.elapsed());
        }
    }
    client.cancel().await?;
    fb.cancel().await?;
    r.fallback_warm = stats(&warm_fb);
    r.fallback_setup = stats(&setup_fallback);
    r.raw_create_start = stats(&cs);
    r.server_setup = stats(&setup);
    r.server_setup_pooled = stats(&setup_pooled);
    r.warm_paired_diff_ms = paired_median(&warm, &ex);
    r.setup_pooled_paired_diff_ms = paired_median(&setup_pooled, &cs);
    r.raw_exec = stats(&ex);
    r.server_warm = stats(&warm);
    r.server_warm_idle = stats(&idle);
    r.server_mcp_roundtrip = stats(&rt);
    Ok(())
}

/// Waits until the pooled server has a container waiting.
async fn wait_pool_ready(podman: &PodmanClient, pooled: &ServerProc) -> Result<(), Error> {
    let instance = format!("pod-exec-mcp.instance={}", pooled.instance);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = podman
            .list_containers(&[
                "pod-exec-mcp.managed=true",
                "pod-exec-mcp.kind=pool",
                instance.as_str(),
            ])
            .await?;
        if list.iter().any(|c| c.state == "running") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the warm pool did not refill within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// S raw containers and S server sessions, M sequential calls each, all at
/// once: throughput at the same concurrency.
async fn concurrency_phase(
    args: &Args,
    podman: &PodmanClient,
    server: &ServerProc,
    raw: &RawContainers,
    r: &mut Report,
) -> Result<(), Error> {
    let ids: Vec<String> = raw.ids.iter().take(args.sessions).cloned().collect();
    if ids.len() < args.sessions {
        return Err("need as many raw containers as sessions: raise --samples".into());
    }
    // At high concurrency the raw floor itself can fail: that is recorded,
    // and the server is still measured.
    settle().await;
    match drive(&ids, args.calls, |id| raw_exec(podman, id, &args.command)).await {
        Ok((all, cps)) => {
            r.raw_throughput_cps = cps;
            r.raw_concurrent_exec = stats(&all);
        }
        Err(e) => r.raw_concurrency_error = Some(e.to_string()),
    }

    let clients = warm_sessions(&server.url, args).await?;
    settle().await;
    let (all, cps) = drive_sessions(&clients, args).await?;
    r.server_throughput_cps = cps;
    r.server_concurrent_warm = stats(&all);
    for c in clients {
        c.cancel().await?;
    }
    Ok(())
}

/// `--sessions` sessions of the server at `url`, each past its first call.
async fn warm_sessions(url: &str, args: &Args) -> Result<Vec<Client>, Error> {
    let mut clients = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let c = connect(url).await?;
        call(&c, &args.command).await?;
        clients.push(c);
    }
    Ok(clients)
}

/// `--calls` timed calls in each of `clients`, all sessions at once.
async fn drive_sessions(clients: &[Client], args: &Args) -> Result<(Vec<Duration>, f64), Error> {
    drive(clients, args.calls, |c| async move {
        let t = Instant::now();
        call(c, &args.command).await?;
        Ok(t.elapsed())
    })
    .await
}

/// Runs `calls` sequential calls against each target, all targets at once;
/// returns every call's latency and the calls per second overall.
async fn drive<'a, T, F, Fut>(
    targets: &'a [T],
    calls: usize,
    one: F,
) -> Result<(Vec<Duration>, f64), Error>
where
    F: Fn(&'a T) -> Fut + Copy,
    Fut: std::future::Future<Output = Result<Duration, Error>>,
{
    let t = Instant::now();
    let tasks = targets.iter().map(|target| async move {
        let mut v = Vec::with_capacity(calls);
        for _ in 0..calls {
            v.push(one(target).await?);
        }
        Ok::<_, Error>(v)
    });
    let mut all = Vec::new();
    for v in futures::future::join_all(tasks).await {
        all.extend(v?);
    }
    let cps = all.len() as f64 / t.elapsed().as_secs_f64();
    Ok((all, cps))
}

/// Server memory: with open sessions, and while one call prints a lot.
/// conmon processes on this host now (each libpod exec leaves one behind
/// for a while; the executor needs one per sandbox).
fn conmon_count() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "conmon")
                })
                .count()
        })
        .unwrap_or(0)
}

/// The big-output command: `bytes` of NULs straight from head, which is
/// what carrying output costs; `busy` pipes them through `tr` first.
fn big_command(bytes: u64, busy: bool) -> String {
    if busy {
        format!("head -c {bytes} /dev/zero | tr '\\0' x")
    } else {
        format!("head -c {bytes} /dev/zero")
    }
}

/// Seconds one call running `command` takes through `url`.
async fn command_secs(url: &str, command: &str) -> Result<f64, Error> {
    let client = connect(url).await?;
    call(&client, "true").await?;
    settle().await;
    let t = Instant::now();
    call(&client, command).await?;
    let secs = t.elapsed().as_secs_f64();
    client.cancel().await?;
    Ok(secs)
}

/// Waits (at most 2 s) until the machine is quiet: under 10 % of its CPU
/// busy over 20 ms. Samples of one kind run right after samples of the
/// other, and a libpod exec leaves work behind once it has answered (its
/// conmon exits, Podman's cleanup runs): without this, each sample would
/// pay for the one before it rather than for itself.
async fn settle() {
    fn busy_idle() -> Option<(u64, u64)> {
        let cpu = cpu_ticks()?;
        let idle = cpu.get(3)? + cpu.get(4)?;
        let total: u64 = cpu.iter().take(8).sum();
        Some((total - idle, idle))
    }
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let Some((b0, i0)) = busy_idle() else { return };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Some((b1, i1)) = busy_idle() else { return };
        let (busy, all) = (b1 - b0, (b1 - b0) + (i1 - i0));
        if all > 0 && busy * 10 < all {
            return;
        }
    }
}

async fn memory_phase(args: &Args, server: &ServerProc, r: &mut Report) -> Result<(), Error> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib();
    let mut open = Vec::new();
    for _ in 0..args.open_sessions {
        open.push(connect(&server.url).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    r.open_sessions = args.open_sessions;
    r.rss_open_sessions_kib = server.rss_kib();
    r.rss_per_session_kib =
        (r.rss_open_sessions_kib.saturating_sub(before)) as f64 / args.open_sessions.max(1) as f64;
    for c in open {
        c.cancel().await?;
    }

    if args.big_output > 0 {
        let client = connect(&server.url).await?;
        call(&client, "true").await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        r.big_output_rss_before_kib = server.rss_kib();
        let pid = server.child.id();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(rss_kib(pid));
                    std::thread::sleep(Duration::from_millis(20));
                }
                peak
            })
        };
        let cmd = big_command(args.big_output, false);
        settle().await;
        let t = Instant::now();
        let v = call(&client, &cmd).await;
        r.big_output_secs = t.elapsed().as_secs_f64();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        r.big_output_rss_peak_kib = sampler.join().unwrap_or(0);
        let v = v?;
        r.big_output_bytes = args.big_output;
        r.big_output_truncated = v["truncated"].as_bool().unwrap_or(false);
        r.big_output_len = v["output"].as_str().map(str::len).unwrap_or(0);
        client.cancel().await?;
        r.big_output_silent_secs = command_secs(&server.url, &format!("{cmd} >/dev/null")).await?;
        let busy = big_command(args.big_output, true);
        r.busy_output_secs = command_secs(&server.url, &busy).await?;
        r.busy_output_silent_secs =
            command_secs(&server.url, &format!("{busy} >/dev/null")).await?;
    }
    Ok(())
}

/// The servers under test: the default (the executor), one with a warm
/// pool, and the fallback (one libpod exec per call).
struct Servers {
    server: ServerProc,
    pooled: ServerProc,
    fallback: ServerProc,
}

async fn run_all(
    args: &Args,
    podman: &PodmanClient,
    servers: &Servers,
    raw: &mut RawContainers,
    r: &mut Report,
) -> Result<(), Error> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    r.rss_idle_kib = servers.server.rss_kib();
    latency_phase(args, podman, servers, raw, r).await?;
    r.conmon_before = conmon_count();
    concurrency_phase(args, podman, &servers.server, raw, r).await?;
    r.conmon_after = conmon_count();
    if args.long_calls > 0 {
        let client = connect(&servers.server.url).await?;
        call(&client, &args.command).await?;
        // Let the phases before settle (each exec's conmon lingers for
        // `exit_command_delay`).
        tokio::time::sleep(Duration::from_secs(6)).await;
        r.conmon_long_before = conmon_count();
        let t = Instant::now();
        for _ in 0..args.long_calls {
            call(&client, &args.command).await?;
        }
        r.long_calls_secs = t.elapsed().as_secs_f64();
        r.conmon_long_after = conmon_count();
        r.long_calls = args.long_calls;
        client.cancel().await?;
    }
    memory_phase(args, &servers.server, r).await?;
    if args.big_output > 0 {
        let url = &servers.fallback.url;
        r.fallback_big_output_secs =
            command_secs(url, &big_command(args.big_output, false)).await?;
        r.fallback_busy_output_secs =
            command_secs(url, &big_command(args.big_output, true)).await?;
    }
    Ok(())
}

/// The machine's CPU time counters from /proc/stat's first line, in
/// USER_HZ ticks (100 a second): user nice system idle iowait irq softirq
/// steal ...
fn cpu_ticks() -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    Some(
        stat.lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect(),
    )
}

/// Steal time so far, in seconds.
fn steal_secs() -> f64 {
    cpu_ticks()
        .and_then(|c| c.get(7).copied())
        .map_or(0.0, |v| v as f64 / 100.0)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.3}", a / b)
    } else {
        "-".into()
    }
}

/// One line of the figures table.
fn figure(
    label: impl std::fmt::Display,
    value: impl std::fmt::Display,
    note: impl std::fmt::Display,
) {
    println!("{label:<44} {value:>12} {note:>12}");
}

fn print(r: &Report) {
    println!();
    println!(
        "pod_exec_mcp benchmark: command {:?}, podman {}",
        r.command, r.podman_version
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>8}",
        "latency (ms)", "p50", "p90", "p99", "n"
    );
    let row = |name: &str, s: &Stats| {
        println!(
            "{:<44} {:>9.1} {:>9.1} {:>9.1} {:>8}",
            name, s.p50_ms, s.p90_ms, s.p99_ms, s.n
        )
    };
    row("raw create+start", &r.raw_create_start);
    row("raw exec (create+start+inspect)", &r.raw_exec);
    row("server session setup (init + 1st call)", &r.server_setup);
    row("  ... with POD_EXEC_WARM_POOL=1", &r.server_setup_pooled);
    row("server warm shell_exec (executor)", &r.server_warm);
    row(
        "  ... each call after the machine idled",
        &r.server_warm_idle,
    );
    row("  ... fallback, one exec per call", &r.fallback_warm);
    row("  ... fallback session setup", &r.fallback_setup);
    row(
        "server MCP round trip (tools/list)",
        &r.server_mcp_roundtrip,
    );
    row(
        &format!("raw exec, {} concurrent", r.concurrency),
        &r.raw_concurrent_exec,
    );
    row(
        &format!("server warm, {} concurrent sessions", r.concurrency),
        &r.server_concurrent_warm,
    );
    println!();
    figure("figure", "value", "ratio/target");
    figure(
        "warm p50 (ms; <= 3, <= 0.05 x raw exec)",
        format!("{:.2}", r.server_warm.p50_ms),
        ratio(r.server_warm.p50_ms, r.raw_exec.p50_ms),
    );
    figure(
        "  ... each after the machine idled",
        format!("{:.2}", r.server_warm_idle.p50_ms),
        ratio(r.server_warm_idle.p50_ms, r.raw_exec.p50_ms),
    );
    figure(
        "fallback warm p50 - raw exec p50 (ms)",
        format!("{:+.1}", r.fallback_warm.p50_ms - r.raw_exec.p50_ms),
        ratio(r.fallback_warm.p50_ms, r.raw_exec.p50_ms),
    );
    figure(
        "warm p50 - raw exec p50 (ms)",
        format!("{:+.1}", r.server_warm.p50_ms - r.raw_exec.p50_ms),
        ratio(r.server_warm.p50_ms, r.raw_exec.p50_ms),
    );
    figure(
        "  ... median of paired differences (ms)",
        format!("{:+.1}", r.warm_paired_diff_ms),
        "",
    );
    figure(
        "setup p50 - raw create+start p50 (ms; <= 25)",
        format!("{:+.1}", r.server_setup.p50_ms - r.raw_create_start.p50_ms),
        ratio(r.server_setup.p50_ms, r.raw_create_start.p50_ms),
    );
    figure(
        "  ... with the warm pool",
        format!(
            "{:+.1}",
            r.server_setup_pooled.p50_ms - r.raw_create_start.p50_ms
        ),
        ratio(r.server_setup_pooled.p50_ms, r.raw_create_start.p50_ms),
    );
    figure(
        "  ... median of paired differences (ms)",
        format!("{:+.1}", r.setup_pooled_paired_diff_ms),
        "",
    );
    figure(
        "setup p50 - (create+start + exec) p50 (ms)",
        format!(
            "{:+.1}",
            r.server_setup.p50_ms - r.raw_create_start.p50_ms - r.raw_exec.p50_ms
        ),
        "server's own",
    );
    figure(
        format!(
            "throughput {}x{} calls/s (>= 0.90 of raw)",
            r.concurrency, r.calls_per_session
        ),
        format!(
            "{:.1} / {:.1}",
            r.server_throughput_cps, r.raw_throughput_cps
        ),
        ratio(r.server_throughput_cps, r.raw_throughput_cps),
    );
    figure(
        "conmon processes before / after the phase",
        format!("{} / {}", r.conmon_before, r.conmon_after),
        format!("{} sessions", r.concurrency),
    );
    if r.long_calls > 0 {
        figure(
            format!(
                "conmon before / after {} calls in one sandbox",
                r.long_calls
            ),
            format!("{} / {}", r.conmon_long_before, r.conmon_long_after),
            format!("{:.1} s", r.long_calls_secs),
        );
    }
    if let Some(e) = &r.raw_concurrency_error {
        println!("raw concurrency phase failed: {e}");
    }
    if r.raw_forgotten_inspects > 0 {
        println!(
            "raw execs whose session Podman forgot before the inspect (timed to EOF): {}",
            r.raw_forgotten_inspects
        );
    }
    figure("RSS idle (KiB; <= 15360)", r.rss_idle_kib, "");
    figure(
        format!(
            "RSS per open session, {} open (KiB; <= 256)",
            r.open_sessions
        ),
        format!("{:.1}", r.rss_per_session_kib),
        "",
    );
    if r.big_output_bytes > 0 {
        figure(
            format!(
                "RSS growth printing {} MiB (KiB; <= 8192)",
                r.big_output_bytes >> 20
            ),
            r.big_output_rss_peak_kib
                .saturating_sub(r.big_output_rss_before_kib),
            format!("{:.1} s", r.big_output_secs),
        );
        figure(
            "  ... fallback seconds / executor seconds (>= 3)",
            format!("{:.1} s", r.fallback_big_output_secs),
            ratio(r.fallback_big_output_secs, r.big_output_secs),
        );
        figure(
            "  ... the command alone, >/dev/null (ceiling)",
            format!("{:.1} s", r.big_output_silent_secs),
            ratio(r.fallback_big_output_secs, r.big_output_silent_secs),
        );
        figure(
            "  ... through tr: executor seconds",
            format!("{:.1} s", r.busy_output_secs),
            "",
        );
        figure(
            "  ... through tr: fallback / executor",
            format!("{:.1} s", r.fallback_busy_output_secs),
            ratio(r.fallback_busy_output_secs, r.busy_output_secs),
        );
        figure(
            "  ... through tr: the command alone (ceiling)",
            format!("{:.1} s", r.busy_output_silent_secs),
            ratio(r.fallback_busy_output_secs, r.busy_output_silent_secs),
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = Args::parse();
    if args.smoke {
        args.samples = 3;
        args.sessions = 2;
        args.calls = 3;
        args.open_sessions = 5;
        args.big_output = 16 << 20;
        args.long_calls = 20;
    }
    args.samples = args.samples.max(args.sessions).max(1);
    let podman = PodmanClient::from_env()?;
    let version = podman
        .version()
        .await
        .map_err(|e| format!("{e}\nStart Podman first: eval \"$(tests/podman-env.sh)\""))?;
    let mut r = Report {
        command: args.command.clone(),
        podman_version: version.version,
        concurrency: args.sessions,
        calls_per_session: args.calls,
        ..Default::default()
    };
    if args.only_concurrency > 0 {
        return only_concurrency(&args).await;
    }
    let t = Instant::now();
    let servers = Servers {
        server: ServerProc::start(&args.image, &[])?,
        pooled: ServerProc::start(&args.image, &[("POD_EXEC_WARM_POOL", "1")])?,
        fallback: ServerProc::start(&args.image, &[("POD_EXEC_EXECUTOR", "off")])?,
    };
    let config = Config::try_parse_from(["pod_exec_mcp", "--image", &args.image])?;
    // Adapted to this Podman as the server adapts its own (user
    // namespace, cgroup parent), so the floor's containers sit where the
    // server's do.
    let mut template = SandboxTemplate::from_config(&config);
    template
        .adapt_to(&podman, &podman.info().await?, &Identity::current())
        .await?;
    let mut raw = RawContainers {
        podman: podman.clone(),
        template,
        ids: Vec::new(),
    };
    let steal = steal_secs();
    let result = run_all(&args, &podman, &servers, &mut raw, &mut r).await;
    r.steal_secs = steal_secs() - steal;
    r.raw_forgotten_inspects = RAW_FORGOTTEN.load(std::sync::atomic::Ordering::Relaxed);
    raw.remove_all().await;
    servers.server.stop();
    servers.pooled.stop();
    servers.fallback.stop();
    result?;
    print(&r);
    println!(
        "\nCPU stolen by the hypervisor during the run: {:.1} s",
        r.steal_secs
    );
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_vec_pretty(&r)?)?;
    println!(
        "\nJSON: {}   (whole run {:.0} s)",
        args.json.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--only-concurrency N`: the server's S x M phase, N rounds.
async fn only_concurrency(args: &Args) -> Result<(), Error> {
    let envs: Vec<(&str, &str)> = args
        .server_env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let server = ServerProc::start(&args.image, &envs)?;
    let result = async {
        let clients = warm_sessions(&server.url, args).await?;
        for round in 0..args.only_concurrency {
            settle().await;
            let steal = steal_secs();
            let (all, cps) = drive_sessions(&clients, args).await?;
            let s = stats(&all);
            println!(
                "round {round}: {cps:.0} calls/s  p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1} ms  stolen {:.2} s",
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.max_ms,
                steal_secs() - steal
            );
        }
        for c in clients {
            c.cancel().await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    server.stop();
    result
}
