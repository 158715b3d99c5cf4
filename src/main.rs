//! The `pod_exec_mcp` binary: parse config, log to stderr, serve until a
//! signal, exit non-zero with one clear line when start-up fails.
//! `pod_exec_mcp build-image ...` (or the binary run as `pod_exec_mcp_build`)
//! builds the session image instead.

use std::process::ExitCode;

use clap::Parser;
use pod_exec_mcp::config::Config;
use pod_exec_mcp::server::{Server, shutdown_signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name() == Some("pod_exec_mcp_build".as_ref()) {
        return pod_exec_mcp::build_image::cli(std::env::args_os()).await;
    }
    if std::env::args_os().nth(1).as_deref() == Some("build-image".as_ref()) {
        return pod_exec_mcp::build_image::cli(std::env::args_os().skip(1)).await;
    }
    let config = Config::parse();
    // Over stdio, stdout is the protocol's: everything else goes to stderr.
    // rmcp logs session ids (bearer secrets) and every message at INFO:
    // keep it to warnings unless RUST_LOG asks for more.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pod_exec_mcp: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.cancel();
    });
    let stdio = server.local_addr().is_err();
    server.run(shutdown).await;
    if stdio {
        // tokio's stdin reader is a blocking thread that a runtime shutdown
        // would wait on (until the client writes another line): leave now,
        // the sandboxes are already gone.
        std::process::exit(0);
    }
    ExitCode::SUCCESS
}
