//! The MCP face of the server: `PodExecServer` (the `ServerHandler`), its
//! tools, and the mapping from sandbox results and errors to tool results.
//! Builds no HTTP requests and owns no containers.

mod exec;
mod handles;
mod profiles;
pub(crate) mod replies;
pub mod session;

use std::sync::Arc;

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::audit::AuditLog;
use crate::auth::Caller;
use crate::config::Config;
use crate::policy::Policy;
use crate::sandbox::{ExecOutcome, SandboxManager};
pub use exec::{ONESHOT_NOTE, SandboxCommand};

/// The command policy's rule key for shell_exec.
const POLICY_KEY: &str = "shell";

/// Arguments of `shell_exec`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ShellExecArgs {
    /// The shell command line, run as `/bin/sh -lc <command>`.
    pub command: String,
    /// A handle from sandbox_create: run in that sandbox. Without one, the
    /// call runs in this session's sandbox, or (with no session) in a
    /// one-shot sandbox removed after the call.
    #[serde(default)]
    pub sandbox: Option<String>,
    /// Time limit in seconds (default POD_EXEC_TIMEOUT, capped by
    /// POD_EXEC_MAX_TIMEOUT). At the limit every process the call started
    /// is killed and the output so far returns with `timed_out: true`.
    #[serde(default)]
    pub timeout: Option<f64>,
}

/// Result of `shell_exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShellExecResult {
    /// stdout and stderr merged, in the order they were written. Invalid
    /// UTF-8 is replaced. Long output keeps its head and tail around a
    /// marker line.
    pub output: String,
    /// The command's exit code (non-zero is a normal result).
    pub retval: i64,
    /// Present and true when the call hit its time limit and was killed
    /// (`retval` 124, or 137 when SIGKILL was needed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// Present and true when output was left out in the middle.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Bytes printed in all (present when truncated).
    // Published as int64: JSON Schema validators (Ajv in the TypeScript SDK)
    // warn about schemars' "uint64" format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i64>", range(min = 0))]
    pub total_bytes: Option<u64>,
    /// Present and true when the call ran in a one-shot sandbox (no
    /// session, no `sandbox` handle): nothing it left survives.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oneshot: bool,
    /// How to keep state, when `oneshot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl From<ExecOutcome> for ShellExecResult {
    fn from(o: ExecOutcome) -> Self {
        ShellExecResult {
            timed_out: o.timed_out,
            truncated: o.output.truncated,
            total_bytes: o.output.truncated.then_some(o.output.total_bytes),
            output: o.output.text,
            retval: o.retval,
            oneshot: false,
            note: None,
        }
    }
}

/// State shared by every handler instance (one per session, plus
/// throwaways rmcp makes): built once, so the factory is a clone of an Arc.
#[derive(Debug)]
pub struct Shared {
    sandboxes: SandboxManager,
    config: Config,
    policy: Policy,
    audit: Option<AuditLog>,
    tool_router: ToolRouter<PodExecServer>,
    profiles: crate::profiles::Profiles,
}

/// The MCP server handler.
#[derive(Debug, Clone)]
pub struct PodExecServer {
    shared: Arc<Shared>,
    /// The sandbox key of a transport that is one session by itself (stdio,
    /// a legacy SSE stream); HTTP requests carry theirs in a header.
    session: Option<Arc<str>>,
}

impl PodExecServer {
    /// Shared state for all handlers.
    pub fn shared(
        sandboxes: SandboxManager,
        config: Config,
        policy: Policy,
        audit: Option<AuditLog>,
        profiles: crate::profiles::Profiles,
    ) -> Arc<Shared> {
        let mut tool_router = Self::tool_router() + Self::sandbox_tools_router();
        annotate(&mut tool_router, &config);
        // The enabled profiles' execute_/describe_ tools: decided at start-up.
        profiles::add_routes(&mut tool_router, &profiles, &config);
        Arc::new(Shared {
            sandboxes,
            config,
            policy,
            audit,
            tool_router,
            profiles,
        })
    }

    /// A handler: cheap (no I/O, no allocation beyond an Arc clone).
    pub fn new(shared: Arc<Shared>) -> Self {
        PodExecServer {
            shared,
            session: None,
        }
    }

    /// A handler for a transport that is one session by itself: calls
    /// without a handle use the sandbox of `session` (which the transport
    /// opens and releases with [`SandboxManager`]).
    pub fn for_session(shared: Arc<Shared>, session: &str) -> Self {
        PodExecServer {
            shared,
            session: Some(Arc::from(session)),
        }
    }
}

/// The MCP session id of the request, when it came over streamable HTTP
/// with a session.
fn session_id(ctx: &RequestContext<RoleServer>) -> Option<String> {
    ctx.extensions
        .get::<http::request::Parts>()?
        .headers
        .get("mcp-session-id")?
        .to_str()
        .ok()
        .map(str::to_owned)
}

/// Honest hints for clients that auto-approve by them (VS Code, Cursor):
/// shell_exec changes its sandbox (never read-only); it is destructive
/// unless read-only mode leaves it only tmpfs scratch; it is not
/// idempotent; it reaches the open world only when sandboxes have a network.
fn annotate(router: &mut ToolRouter<PodExecServer>, config: &Config) {
    if let Some(route) = router.map.get_mut("shell_exec") {
        route.attr.annotations = Some(ToolAnnotations::from_raw(
            Some("Run a shell command in a sandbox".into()),
            Some(false),
            Some(!config.read_only),
            Some(false),
            Some(config.network != "none"),
        ));
    }
}

/// Who sent the request: the identity the HTTP layer authenticated, or the
/// local identity (no authentication, or a transport without HTTP).
fn caller(ctx: &RequestContext<RoleServer>) -> Caller {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
        .unwrap_or_else(Caller::local)
}

/// A tool error the model sees (isError: true).
fn tool_error(msg: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(msg.into())])
}

#[tool_router]
impl PodExecServer {
    /// Runs a shell command in a sandbox.
    #[tool(
        name = "shell_exec",
        description = "Run a shell command in your own sandboxed Linux container (Debian; \
            /bin/sh -lc <command>, working directory /work, stdin closed). Pass `sandbox` (a \
            handle from sandbox_create) to run in that sandbox: files, installed packages and \
            background processes persist there across calls. Without `sandbox`, a client with a \
            session uses its session's sandbox; a request without a session runs in a one-shot \
            sandbox removed after the call (the result then says `oneshot: true`). `cd` and \
            variables never persist (chain them in one command). Returns `output` (stdout and \
            stderr merged in order; very long output keeps its head and tail) and `retval` (the \
            exit code; non-zero is a normal result).",
        output_schema = schema_for_output::<ShellExecResult>()
    )]
    async fn shell_exec(
        &self,
        Parameters(args): Parameters<ShellExecArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.exec_in_callers_sandbox(
            &ctx,
            SandboxCommand {
                tool: "shell_exec",
                policy_key: POLICY_KEY,
                command: &args.command,
                sandbox: args.sandbox.as_deref(),
                timeout: args.timeout,
            },
        )
        .await
    }
}

#[tool_handler(router = self.shared.tool_router)]
impl ServerHandler for PodExecServer {
    fn get_info(&self) -> ServerConfig {
        let ttl = self.shared.config.sandbox_ttl;
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .build(),
        )
        .with_server_info(Implementation::new(
            "pod_exec_mcp",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(format!(
            "shell_exec runs shell commands in a sandboxed Linux container. To keep files \
                 and processes across calls, call sandbox_create once, keep the returned \
                 `sandbox` handle, and pass it as `sandbox` to every shell_exec call; it works \
                 with every client and protocol version. A sandbox unused for {ttl} seconds is \
                 removed (its handle then gets an \"expired or unknown\" error: create a new \
                 one); sandbox_list shows yours, sandbox_destroy removes one. Without a handle, \
                 a client with a session shares one sandbox per session, and a request without \
                 a session runs in a one-shot sandbox."
        ))
    }

    async fn list_prompts(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, McpError> {
        Ok(profiles::list_prompts(&self.shared.profiles))
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, McpError> {
        profiles::get_prompt(&self.shared.profiles, &request).map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_schema_has_output_and_retval() {
        let schema = serde_json::Value::Object((*schema_for_output::<ShellExecResult>()).clone());
        let required = schema["required"].as_array().expect("required");
        assert!(required.contains(&"output".into()));
        assert!(required.contains(&"retval".into()));
        assert!(!schema.to_string().contains("uint"), "{schema}");
        let r = ShellExecResult {
            output: "x".into(),
            retval: 0,
            timed_out: false,
            truncated: false,
            total_bytes: None,
            oneshot: false,
            note: None,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"output": "x", "retval": 0})
        );
    }
}
