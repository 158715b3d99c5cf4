//! The benchmark program: measures the raw libpod floor with the project's
//! own client (the server comparison arrives with the benchmark issue).
//!
//! `cargo bench --bench bench -- --samples 20`

use std::time::{Duration, Instant};

use clap::Parser;
use pod_exec_mcp::podman::{ContainerSpec, ExecConfig, PodmanClient};

#[derive(Parser, Debug)]
#[command(about = "pod_exec_mcp benchmark: raw libpod latency")]
struct Args {
    /// Samples per operation.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Session image.
    #[arg(
        long,
        env = "POD_EXEC_IMAGE",
        default_value = "localhost/pod_exec_mcp_base:latest"
    )]
    image: String,
    /// Accepted for `cargo bench` compatibility.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Default)]
struct Samples {
    create: Vec<Duration>,
    start: Vec<Duration>,
    exec: Vec<Duration>,
    remove: Vec<Duration>,
}

fn spec(image: &str) -> ContainerSpec {
    let mut s = ContainerSpec {
        image: image.to_owned(),
        command: vec!["sleep".into(), "infinity".into()],
        init: Some(true),
        ..Default::default()
    };
    s.labels
        .insert("pod-exec-mcp.managed".into(), "true".into());
    s.labels.insert("pod-exec-mcp.bench".into(), "raw".into());
    s
}

/// exec create + start + read to EOF + inspect of `true`.
async fn exec_true(client: &PodmanClient, id: &str) -> Result<i64, Box<dyn std::error::Error>> {
    let exec_id = client
        .create_exec(id, &ExecConfig::command(["true"]))
        .await?;
    let mut stream = client.start_exec(&exec_id, false).await?;
    while let Some(chunk) = stream.next_chunk().await {
        chunk?;
    }
    Ok(client.inspect_exec(&exec_id).await?.exit_code)
}

async fn sample(
    client: &PodmanClient,
    image: &str,
    s: &mut Samples,
) -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let id = client.create_container(&spec(image)).await?;
    s.create.push(t.elapsed());
    let result = async {
        let t = Instant::now();
        client.start_container(&id).await?;
        s.start.push(t.elapsed());
        let t = Instant::now();
        let code = exec_true(client, &id).await?;
        s.exec.push(t.elapsed());
        if code != 0 {
            return Err(format!("`true` exited {code}").into());
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    }
    .await;
    let t = Instant::now();
    client.remove_container(&id, true).await?;
    s.remove.push(t.elapsed());
    result
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return f64::NAN;
    }
    let i = ((ms.len() - 1) as f64 * p).round() as usize;
    ms[i]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = PodmanClient::from_env()?;
    client.ping().await?;
    let mut s = Samples::default();
    // One warm-up round so the first sample does not pay for cold caches.
    let mut warm = Samples::default();
    sample(&client, &args.image, &mut warm).await?;
    for _ in 0..args.samples {
        sample(&client, &args.image, &mut s).await?;
    }
    println!("raw libpod latency, {} samples (ms)", args.samples);
    println!("{:<36} {:>8} {:>8} {:>8}", "operation", "p50", "p90", "max");
    for (name, v) in [
        ("container create", &s.create),
        ("container start", &s.start),
        ("exec create+start+inspect `true`", &s.exec),
        ("container remove (force, timeout=0)", &s.remove),
    ] {
        println!(
            "{:<36} {:>8.1} {:>8.1} {:>8.1}",
            name,
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 1.0)
        );
    }
    Ok(())
}
