//! The MCP face of the server: `PodExecServer` (the `ServerHandler`), its
//! tools, and the mapping from sandbox results and errors to tool results.
//! Builds no HTTP requests and owns no containers.

mod profiles;
pub mod session;

use std::sync::Arc;

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities,
    ServerConfig, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::audit::{AuditLog, AuditRecord};
use crate::auth::Caller;
use crate::config::Config;
use crate::policy::Policy;

/// The command policy's rule key for shell_exec.
const POLICY_KEY: &str = "shell";
use crate::sandbox::spec::MAX_COMMAND_BYTES;
use crate::sandbox::{
    ExecOptions, ExecOutcome, Progress, SandboxError, SandboxKey, SandboxManager,
};

/// Arguments of `shell_exec`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ShellExecArgs {
    /// The shell command line, run as `/bin/sh -lc <command>` in this
    /// session's container.
    pub command: String,
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
}

impl From<ExecOutcome> for ShellExecResult {
    fn from(o: ExecOutcome) -> Self {
        ShellExecResult {
            timed_out: o.timed_out,
            truncated: o.output.truncated,
            total_bytes: o.output.truncated.then_some(o.output.total_bytes),
            output: o.output.text,
            retval: o.retval,
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
        let mut tool_router = Self::tool_router();
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
        PodExecServer { shared }
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

/// Checks a command before anything runs; the message tells the model what
/// to fix (a tool error, per MCP 2025-11-25 SEP-1303, not a protocol error).
fn validate_command(command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err("`command` is empty: pass the shell command line to run".into());
    }
    if command.len() > MAX_COMMAND_BYTES {
        return Err(format!(
            "`command` is {} bytes; the limit is {MAX_COMMAND_BYTES}. Write long scripts to a \
             file in several smaller calls, then run the file",
            command.len()
        ));
    }
    if command.contains('\0') {
        return Err(
            "`command` contains a NUL byte, which no shell command can carry; remove it".into(),
        );
    }
    Ok(())
}

#[tool_router]
impl PodExecServer {
    /// Runs a shell command in this session's sandbox.
    #[tool(
        name = "shell_exec",
        description = "Run a shell command in this session's own Linux container (Debian; \
            /bin/sh -lc <command>, working directory /work, stdin closed). Files, installed \
            packages and background state persist across calls in the same session; `cd` and \
            variables do not (chain them in one command). Returns `output` (stdout and stderr \
            merged in order; very long output keeps its head and tail) and `retval` (the exit \
            code; non-zero is a normal result).",
        output_schema = schema_for_output::<ShellExecResult>()
    )]
    async fn shell_exec(
        &self,
        Parameters(args): Parameters<ShellExecArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let call = CallRecord::new(&self.shared, caller(&ctx), "shell_exec", &args.command);
        if let Err(msg) = validate_command(&args.command).and(validate_timeout(args.timeout)) {
            call.finish(None, Finish::Error(&msg)).await;
            return Ok(tool_error(msg));
        }
        // The guardrail; the container is the boundary.
        if let Err(refusal) = self.shared.policy.check(POLICY_KEY, &args.command) {
            debug!(rule = %refusal.rule, "shell_exec refused by the command policy");
            call.finish(None, Finish::Refused(&refusal.rule, &refusal.message))
                .await;
            return Ok(tool_error(refusal.message));
        }
        let sandboxes = &self.shared.sandboxes;
        let progress_token = ctx.meta.get_progress_token();
        let (progress_tx, mut progress_rx) = tokio::sync::mpsc::channel::<Progress>(2);
        let opts = ExecOptions {
            timeout: self.shared.config.call_timeout(args.timeout),
            // notifications/cancelled fires this.
            cancel: ctx.ct.clone(),
            progress: progress_token.is_some().then_some(progress_tx),
        };
        let exec = async {
            match session_id(&ctx) {
                Some(id) => {
                    sandboxes
                        .exec(&SandboxKey::Session(id), &args.command, opts)
                        .await
                }
                // No session (stateless protocol or a transport without
                // one): a sandbox for this call alone.
                None => sandboxes.exec_oneshot(&args.command, opts).await,
            }
        };
        // Forward progress until the call ends (its sender drops with it).
        let forward = async {
            while let Some(p) = progress_rx.recv().await {
                if let Some(token) = &progress_token {
                    let note =
                        ProgressNotificationParam::new(token.clone(), p.elapsed.as_secs_f64())
                            .with_message(progress_message(&p));
                    let _ = ctx.peer.notify_progress(note).await;
                }
            }
        };
        let (result, ()) = tokio::join!(exec, forward);
        match result {
            Ok(outcome) => {
                let sandbox = outcome.sandbox.clone();
                let r = ShellExecResult::from(outcome);
                debug!(retval = r.retval, bytes = r.output.len(), "shell_exec done");
                call.finish(Some(&sandbox), Finish::Ran(&r)).await;
                let value = serde_json::to_value(&r)
                    .map_err(|e| McpError::internal_error(e.to_string(), None))?;
                Ok(CallToolResult::structured(value))
            }
            Err(e) => {
                let text = error_text(&e);
                call.finish(None, Finish::Error(&text)).await;
                Ok(tool_error(text))
            }
        }
    }
}

/// How a call ended, for the audit log.
enum Finish<'a> {
    /// The command ran to a result.
    Ran(&'a ShellExecResult),
    /// The policy refused it: rule id and message.
    Refused(&'a str, &'a str),
    /// A tool error before or instead of a result.
    Error(&'a str),
}

/// One call being audited: who, what, since when.
struct CallRecord<'a> {
    audit: Option<&'a AuditLog>,
    caller: Caller,
    tool: &'a str,
    command: &'a str,
    started: std::time::Instant,
}

impl<'a> CallRecord<'a> {
    fn new(shared: &'a Shared, caller: Caller, tool: &'a str, command: &'a str) -> Self {
        CallRecord {
            audit: shared.audit.as_ref(),
            caller,
            tool,
            command,
            started: std::time::Instant::now(),
        }
    }

    /// Appends the call's audit line (when the audit log is on).
    async fn finish(&self, sandbox: Option<&str>, how: Finish<'_>) {
        let Some(audit) = self.audit else { return };
        let (retval, timed_out, refused_by, error) = match how {
            Finish::Ran(r) => (Some(r.retval), r.timed_out, None, None),
            Finish::Refused(rule, msg) => (None, false, Some(rule), Some(msg)),
            Finish::Error(e) => (None, false, None, Some(e)),
        };
        audit
            .record(&AuditRecord {
                time: AuditRecord::now(),
                caller: self.caller.name(),
                sandbox,
                tool: self.tool,
                command: self.command,
                retval,
                duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                refused_by,
                timed_out,
                error,
            })
            .await;
    }
}

fn validate_timeout(t: Option<f64>) -> Result<(), String> {
    match t {
        Some(t) if !(t.is_finite() && t > 0.0) => Err(format!(
            "`timeout` must be a positive number of seconds, not {t}"
        )),
        _ => Ok(()),
    }
}

/// "12 s, 3456 bytes: <last line>"
fn progress_message(p: &Progress) -> String {
    format!(
        "{} s, {} bytes: {}",
        p.elapsed.as_secs(),
        p.bytes,
        p.last_line
    )
}

fn error_text(e: &SandboxError) -> String {
    match e {
        SandboxError::Create(_) | SandboxError::Exec(_) => {
            format!("{e}. The sandbox service may be overloaded or restarting; retry shortly.")
        }
        _ => e.to_string(),
    }
}

#[tool_handler(router = self.shared.tool_router)]
impl ServerHandler for PodExecServer {
    fn get_info(&self) -> ServerConfig {
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
        .with_instructions(
            "Each session has its own sandboxed Linux container. Use shell_exec to run \
                 shell commands in it; files persist for the session's lifetime.",
        )
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
    fn validation_messages() {
        assert!(validate_command("echo hi").is_ok());
        assert!(validate_command("   \n").unwrap_err().contains("empty"));
        assert!(validate_command("a\0b").unwrap_err().contains("NUL"));
        assert!(
            validate_command(&"x".repeat(MAX_COMMAND_BYTES + 1))
                .unwrap_err()
                .contains("limit")
        );
        assert!(validate_timeout(Some(0.0)).is_err());
        assert!(validate_timeout(Some(f64::NAN)).is_err());
        assert!(validate_timeout(Some(0.5)).is_ok());
    }

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
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"output": "x", "retval": 0})
        );
    }
}
