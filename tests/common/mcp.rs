//! An rmcp client for tests: session or stateless, calls and their results.

use std::time::Duration;

use pod_exec_mcp::mcp::ShellExecResult;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    ProtocolVersion,
};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};

pub type Client = RunningService<RoleClient, ClientConfig>;

/// A session client (protocol 2025-11-25: `initialize`, a session id).
pub async fn connect(url: &str) -> Client {
    connect_transport(StreamableHttpClientTransport::from_uri(url.to_owned())).await
}

/// A session client that sends `Authorization: Bearer <token>`.
pub async fn connect_with_token(url: &str, token: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token);
    connect_transport(StreamableHttpClientTransport::from_config(config)).await
}

async fn connect_transport(transport: StreamableHttpClientTransport<reqwest::Client>) -> Client {
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("pod-exec-mcp-tests", "0"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25);
    info.serve(transport).await.expect("initialize a session")
}

pub async fn call(client: &Client, command: &str) -> CallToolResult {
    call_args(client, serde_json::json!({ "command": command })).await
}

/// shell_exec with arbitrary arguments.
pub async fn call_args(client: &Client, args: serde_json::Value) -> CallToolResult {
    let command = args["command"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(80)
        .collect::<String>();
    let args = args.as_object().cloned().unwrap_or_default();
    client
        .call_tool(CallToolRequestParams::new("shell_exec").with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("call shell_exec {command:?}: {e}"))
}

/// Calls tool `name` with `args`; panics if the request itself fails.
pub async fn tool(c: &Client, name: &str, args: serde_json::Value) -> CallToolResult {
    c.call_tool(
        CallToolRequestParams::new(name.to_owned())
            .with_arguments(args.as_object().cloned().unwrap_or_default()),
    )
    .await
    .unwrap_or_else(|e| panic!("call {name}: {e}"))
}

/// A profile tool's call that ran: (output, retval, command line).
pub async fn ran(c: &Client, name: &str, command: &str) -> (String, i64, String) {
    let r = tool(c, name, serde_json::json!({ "command": command })).await;
    assert_ne!(r.is_error, Some(true), "{name} {command:?}: {r:?}");
    let v = r.structured_content.expect("structuredContent");
    (
        v["output"].as_str().unwrap_or_default().to_owned(),
        v["retval"].as_i64().expect("retval"),
        v["command"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A successful call's structured result (and its text copy agrees).
pub async fn run(client: &Client, command: &str) -> ShellExecResult {
    let r = call(client, command).await;
    assert_ne!(r.is_error, Some(true), "{command:?} failed: {r:?}");
    let value = r.structured_content.clone().expect("structuredContent");
    let parsed: ShellExecResult = serde_json::from_value(value.clone()).expect("schema");
    let text = r
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("text content");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).ok(),
        Some(value)
    );
    parsed
}

pub fn error_text(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected a tool error: {r:?}");
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// POSTs one JSON-RPC request as a stateless (2026-07-28) client does: no
/// `initialize`, no session; version and capabilities ride in `_meta`.
/// (rmcp's client still performs `initialize` by default, so this is
/// written by hand.) Returns the raw HTTP reply.
pub async fn stateless_call(url: &str, command: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {
            "name": "shell_exec",
            "arguments": {"command": command},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
            }
        }
    })
    .to_string();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n\
         Mcp-Method: tools/call\r\nMcp-Name: shell_exec\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut reply))
        .await
        .expect("reply in time")
        .expect("read");
    String::from_utf8_lossy(&reply).into_owned()
}
