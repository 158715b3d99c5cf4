//! Running a command for a tool call: which sandbox the request means (a
//! handle argument, the request's session, or a one-shot sandbox), the
//! checks before it runs, progress, the audit line, and the mapping of the
//! outcome to a tool result. shell_exec and the CLI profile tools share it
//! through [`PodExecServer::exec_in_callers_sandbox`].

use rmcp::model::{CallToolResult, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use tracing::debug;

use super::{PodExecServer, Shared, ShellExecResult, caller, session_id, tool_error};
use crate::audit::{AuditLog, AuditRecord};
use crate::auth::Caller;
use crate::sandbox::spec::MAX_COMMAND_BYTES;
use crate::sandbox::{ExecOptions, ExecOutcome, Progress, SandboxError, SandboxKey};

/// What one tool call runs, and under which rules.
#[derive(Debug, Clone, Copy)]
pub struct SandboxCommand<'a> {
    /// The tool's name, for the audit log (`shell_exec`, `execute_kubectl`).
    pub tool: &'static str,
    /// The command policy's rule key (`shell`, `kubectl`, ...).
    pub policy_key: &'static str,
    /// The command line, run as `/bin/sh -lc <command>`.
    pub command: &'a str,
    /// The `sandbox` argument: a handle from `sandbox_create`, if given.
    pub sandbox: Option<&'a str>,
    /// The `timeout` argument in seconds, if given.
    pub timeout: Option<f64>,
}

/// Said in a one-shot result, so the model knows how to keep state.
pub const ONESHOT_NOTE: &str = "This call ran in a one-shot sandbox, removed after the call \
    (the request had no session and no `sandbox` handle): files and processes are gone. To keep \
    state across calls, call sandbox_create and pass the returned handle as `sandbox` in every \
    shell_exec call.";

impl PodExecServer {
    /// Runs `cmd` with shell_exec's semantics in the caller's sandbox for
    /// this request: the handle in `cmd.sandbox` when given (checked against
    /// the caller), else the request's session's sandbox, else a one-shot
    /// sandbox whose result says so. Validates the command and timeout,
    /// applies the command policy under `cmd.policy_key`, forwards progress,
    /// writes the audit line. Sandbox failures are tool errors
    /// (`isError: true`); `Err` only when the result cannot be encoded.
    ///
    /// # Errors
    /// An internal error encoding the result.
    pub async fn exec_in_callers_sandbox(
        &self,
        ctx: &RequestContext<RoleServer>,
        cmd: SandboxCommand<'_>,
    ) -> Result<CallToolResult, McpError> {
        let call = CallRecord::new(&self.shared, caller(ctx), cmd.tool, cmd.command);
        if let Err(msg) = validate_command(cmd.command).and(validate_timeout(cmd.timeout)) {
            call.finish(None, Finish::Error(&msg)).await;
            return Ok(tool_error(msg));
        }
        // The guardrail; the container is the boundary.
        if let Err(refusal) = self.shared.policy.check(cmd.policy_key, cmd.command) {
            debug!(rule = %refusal.rule, tool = cmd.tool, "refused by the command policy");
            call.finish(None, Finish::Refused(&refusal.rule, &refusal.message))
                .await;
            return Ok(tool_error(refusal.message));
        }
        let result = self
            .run_in_callers_sandbox(ctx, &call, cmd.sandbox, cmd.command, cmd.timeout)
            .await;
        match result {
            Ok((outcome, oneshot)) => {
                let sandbox = outcome.sandbox.clone();
                let mut r = ShellExecResult::from(outcome);
                if oneshot {
                    r.oneshot = true;
                    r.note = Some(ONESHOT_NOTE.to_owned());
                }
                debug!(
                    retval = r.retval,
                    bytes = r.output.len(),
                    tool = cmd.tool,
                    "call done"
                );
                call.finish(Some(&sandbox), Finish::Ran(&r)).await;
                structured(&r)
            }
            Err(e) => Ok(call.failed(&e).await),
        }
    }

    /// Runs `command` (already checked) in the sandbox this request means
    /// (see [`Self::exec_in_callers_sandbox`]), forwarding progress; says
    /// whether that was a one-shot sandbox.
    pub(super) async fn run_in_callers_sandbox(
        &self,
        ctx: &RequestContext<RoleServer>,
        call: &CallRecord<'_>,
        handle: Option<&str>,
        command: &str,
        timeout: Option<f64>,
    ) -> Result<(ExecOutcome, bool), SandboxError> {
        let sandboxes = &self.shared.sandboxes;
        let key = self.request_sandbox(ctx, &call.caller, handle).await?;
        let progress_token = ctx.meta.get_progress_token();
        let (progress_tx, mut progress_rx) = tokio::sync::mpsc::channel::<Progress>(2);
        let opts = ExecOptions {
            timeout: self.shared.config.call_timeout(timeout),
            // notifications/cancelled fires this.
            cancel: ctx.ct.clone(),
            progress: progress_token.is_some().then_some(progress_tx),
        };
        let oneshot = key.is_none();
        let exec = async {
            match &key {
                Some(key) => sandboxes.exec(key, command, opts).await,
                None => sandboxes.exec_oneshot(command, opts).await,
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
        result.map(|outcome| (outcome, oneshot))
    }

    /// The sandbox this request means; `None` for a one-shot one.
    async fn request_sandbox(
        &self,
        ctx: &RequestContext<RoleServer>,
        caller: &Caller,
        handle: Option<&str>,
    ) -> Result<Option<SandboxKey>, SandboxError> {
        // A blank argument is the same as none (some clients send "").
        if let Some(h) = handle.map(str::trim).filter(|h| !h.is_empty()) {
            return self
                .shared
                .sandboxes
                .resolve_handle(caller.name(), h)
                .await
                .map(Some);
        }
        Ok(session_id(ctx)
            .or_else(|| self.session.as_deref().map(str::to_owned))
            .map(SandboxKey::Session))
    }
}

/// How a call ended, for the audit log.
pub(super) enum Finish<'a> {
    /// The command ran to a result.
    Ran(&'a ShellExecResult),
    /// The policy refused it: rule id and message.
    Refused(&'a str, &'a str),
    /// A tool error before or instead of a result.
    Error(&'a str),
}

/// One call being audited: who, what, since when.
pub(super) struct CallRecord<'a> {
    audit: Option<&'a AuditLog>,
    pub(super) caller: Caller,
    tool: &'a str,
    command: &'a str,
    started: std::time::Instant,
}

impl<'a> CallRecord<'a> {
    pub(super) fn new(shared: &'a Shared, caller: Caller, tool: &'a str, command: &'a str) -> Self {
        CallRecord {
            audit: shared.audit.as_ref(),
            caller,
            tool,
            command,
            started: std::time::Instant::now(),
        }
    }

    /// Audits a call the sandbox failed and gives its tool error.
    pub(super) async fn failed(&self, e: &SandboxError) -> CallToolResult {
        let text = error_text(e);
        self.finish(None, Finish::Error(&text)).await;
        tool_error(text)
    }

    /// Appends the call's audit line (when the audit log is on).
    pub(super) async fn finish(&self, sandbox: Option<&str>, how: Finish<'_>) {
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

/// A tool result carrying `value` as structuredContent (and its text copy).
pub(super) fn structured<T: serde::Serialize>(value: &T) -> Result<CallToolResult, McpError> {
    let value =
        serde_json::to_value(value).map_err(|e| McpError::internal_error(e.to_string(), None))?;
    Ok(CallToolResult::structured(value))
}

/// Checks a command before anything runs; the message tells the model what
/// to fix (a tool error, per MCP 2025-11-25 SEP-1303, not a protocol error).
pub(super) fn validate_command(command: &str) -> Result<(), String> {
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

pub(super) fn validate_timeout(t: Option<f64>) -> Result<(), String> {
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

/// What the model is told when a sandbox call failed.
pub(super) fn error_text(e: &SandboxError) -> String {
    match e {
        SandboxError::Create(_) | SandboxError::Exec(_) => {
            format!("{e}. The sandbox service may be overloaded or restarting; retry shortly.")
        }
        _ => e.to_string(),
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
}
