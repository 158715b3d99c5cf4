//! `pod_exec_mcp_build`: the command name for `pod_exec_mcp build-image`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    pod_exec_mcp::build_image::cli(std::env::args_os()).await
}
