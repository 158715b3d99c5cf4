//! The `pod_exec_mcp` binary.

fn main() {
    eprintln!("pod_exec_mcp: the MCP server is not built yet (see the server issue)");
    std::process::exit(2);
}
