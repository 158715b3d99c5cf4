//! The MCP face of CLI profiles: one `execute_<tool>` and one
//! `describe_<tool>` route per enabled CLI, added to the tool router at
//! start-up, and prompts/list, prompts/get over the templates. Thin: the
//! command line comes from `crate::profiles`, the checks from
//! `crate::policy`, the run from the sandbox manager, exactly as for
//! shell_exec.

use rmcp::handler::server::common::{schema_for_output, schema_for_type};
use rmcp::handler::server::router::tool::{ToolRoute, ToolRouter};
use rmcp::handler::server::tool::{ToolCallContext, parse_json_object};
use rmcp::model::{
    CallToolResult, GetPromptRequestParams, GetPromptResult, ListPromptsResult, Prompt,
    PromptArgument, PromptMessage, Role, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::exec::{CallRecord, Finish, structured, validate_command, validate_timeout};
use super::{PodExecServer, ShellExecResult, caller, tool_error};
use crate::config::Config;
use crate::policy::{Mode, pipeline};
use crate::profiles::{CliTool, Profiles, prompts};

/// Arguments of `execute_<tool>`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ExecuteArgs {
    /// The tool's arguments, e.g. `get pods -o wide` (may start with the
    /// tool's name); in strict mode it may pipe into filters only (grep,
    /// jq, yq, head, tail, sort, uniq, wc, awk, sed, cut, tr, column).
    pub command: String,
    /// Time limit in seconds (default POD_EXEC_TIMEOUT, capped by
    /// POD_EXEC_MAX_TIMEOUT).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// A sandbox handle from sandbox_create: run there (default: this
    /// session's sandbox, or a one-shot one without a session).
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// Arguments of `describe_<tool>`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct DescribeArgs {
    /// The subcommand to describe, e.g. `get` or `rollout restart`
    /// (absent: the tool's general help).
    #[serde(default)]
    pub command: Option<String>,
}

/// Result of `execute_<tool>` and `describe_<tool>`: shell_exec's, plus the
/// command line that ran.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CliResult {
    /// As shell_exec's result.
    #[serde(flatten)]
    pub result: ShellExecResult,
    /// The command line actually run (the tool's name and defaults added).
    pub command: String,
}

/// Adds the routes of every enabled CLI.
pub(super) fn add_routes(
    router: &mut ToolRouter<PodExecServer>,
    profiles: &Profiles,
    config: &Config,
) {
    for tool in profiles.tools() {
        let t = tool.clone();
        let exec = Tool::new(
            format!("execute_{}", t.name),
            format!(
                "Run {} in the caller's sandbox (the `sandbox` handle, else this session's): \
                 `{} <command>`. In strict mode the command \
                 may pipe only into filters (grep, jq, yq, head, tail, sort, uniq, wc, awk, \
                 sed, cut, tr, column); `;`, `&&`, `||`, redirections, backticks and `$(` are \
                 refused. Returns `output`, `retval` (as shell_exec) and `command`, the line \
                 that ran.",
                t.description, t.name
            ),
            schema_for_type::<ExecuteArgs>(),
        )
        .with_raw_output_schema(schema_for_output::<CliResult>())
        .with_annotations(ToolAnnotations::from_raw(
            Some(format!("Run {}", t.name)),
            Some(false),
            Some(!config.read_only),
            Some(false),
            Some(true),
        ));
        router.add_route(ToolRoute::new_dyn(
            exec,
            move |ctx: ToolCallContext<'_, PodExecServer>| {
                let t = t.clone();
                Box::pin(async move {
                    let args: ExecuteArgs =
                        parse_json_object(ctx.arguments.clone().unwrap_or_default())?;
                    execute(ctx.service, &t, args, ctx.request_context)
                        .await
                        .map(Into::into)
                })
            },
        ));
        let t = tool.clone();
        let help = Tool::new(
            format!("describe_{}", t.name),
            format!(
                "Help text of {}: `{} [command] {}` (e.g. command `get`).",
                t.description, t.name, t.help_flag
            ),
            schema_for_type::<DescribeArgs>(),
        )
        .with_raw_output_schema(schema_for_output::<CliResult>())
        .with_annotations(ToolAnnotations::from_raw(
            Some(format!("{} help", t.name)),
            Some(true),
            Some(false),
            Some(true),
            Some(false),
        ));
        router.add_route(ToolRoute::new_dyn(
            help,
            move |ctx: ToolCallContext<'_, PodExecServer>| {
                let t = t.clone();
                Box::pin(async move {
                    let args: DescribeArgs =
                        parse_json_object(ctx.arguments.clone().unwrap_or_default())?;
                    describe(ctx.service, &t, args, ctx.request_context)
                        .await
                        .map(Into::into)
                })
            },
        ));
    }
}

async fn execute(
    server: &PodExecServer,
    tool: &CliTool,
    args: ExecuteArgs,
    ctx: RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let shared = &server.shared;
    let name = format!("execute_{}", tool.name);
    let line = shared.profiles.command_line(tool, &args.command);
    let call = CallRecord::new(shared, caller(&ctx), &name, &line);
    if let Err(msg) = validate_command(&args.command).and(validate_timeout(args.timeout)) {
        call.finish(None, Finish::Error(&msg)).await;
        return Ok(tool_error(msg));
    }
    // Strict mode: only the tool, then filters. Permissive mode hands the
    // line to the shell as it is.
    let shape = if shared.policy.mode() == Mode::Strict {
        pipeline::check(&line).err()
    } else {
        None
    };
    if let Some(refusal) = shape.or_else(|| shared.policy.check(&tool.name, &line).err()) {
        call.finish(None, Finish::Refused(&refusal.rule, &refusal.message))
            .await;
        return Ok(tool_error(refusal.message));
    }
    let sandbox = args.sandbox.as_deref();
    finish_run(
        server,
        tool,
        &call,
        &ctx,
        sandbox,
        line.clone(),
        args.timeout,
    )
    .await
}

async fn describe(
    server: &PodExecServer,
    tool: &CliTool,
    args: DescribeArgs,
    ctx: RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let shared = &server.shared;
    let name = format!("describe_{}", tool.name);
    let sub = args.command.unwrap_or_default();
    let sub = sub.trim();
    let sub = sub
        .strip_prefix(tool.name.as_str())
        .filter(|r| r.is_empty() || r.starts_with([' ', '\t']))
        .unwrap_or(sub);
    let call = CallRecord::new(shared, caller(&ctx), &name, sub);
    // Words only: whatever the mode, describing runs nothing else.
    let words = match pipeline::split(sub) {
        Ok(p) if p.segments.len() == 1 => p.segments.into_iter().next().unwrap_or_default(),
        _ if sub.is_empty() => Vec::new(),
        _ => {
            let msg = format!(
                "`command` for describe_{} is a subcommand such as `get` or `rollout \
                 restart`: plain words, no pipes or shell syntax",
                tool.name
            );
            call.finish(None, Finish::Error(&msg)).await;
            return Ok(tool_error(msg));
        }
    };
    let mut line = tool.name.clone();
    for w in &words {
        line.push(' ');
        line.push_str(&crate::profiles::shell_quote(w));
    }
    line.push(' ');
    line.push_str(&tool.help_flag);
    finish_run(server, tool, &call, &ctx, None, line, None).await
}

/// Runs `line`, audits, and shapes the result (a missing CLI is a tool
/// error naming the image that has it).
async fn finish_run(
    server: &PodExecServer,
    tool: &CliTool,
    call: &CallRecord<'_>,
    ctx: &RequestContext<RoleServer>,
    sandbox: Option<&str>,
    line: String,
    timeout: Option<f64>,
) -> Result<CallToolResult, McpError> {
    let shared = &server.shared;
    match server
        .run_in_callers_sandbox(ctx, call, sandbox, &line, timeout)
        .await
    {
        Ok((outcome, oneshot)) => {
            let sandbox = outcome.sandbox.clone();
            let mut r = ShellExecResult::from(outcome);
            if oneshot {
                r.oneshot = true;
                r.note = Some(super::exec::ONESHOT_NOTE.to_owned());
            }
            call.finish(Some(&sandbox), Finish::Ran(&r)).await;
            if r.retval == 127 && r.output.contains(&format!("{}: not found", tool.name)) {
                return Ok(tool_error(format!(
                    "`{}` is not installed in this sandbox's image ({}); it is provided by {}",
                    tool.name, shared.config.image, tool.image
                )));
            }
            structured(&CliResult {
                result: r,
                command: line,
            })
        }
        Err(e) => Ok(call.failed(&e).await),
    }
}

/// The templates on offer: the sandbox's, and k8s-mcp-server's with the
/// k8s profile.
fn templates(profiles: &Profiles) -> impl Iterator<Item = &'static prompts::Template> {
    let k8s: &[prompts::Template] = if profiles.k8s() { prompts::K8S } else { &[] };
    prompts::SANDBOX.iter().chain(k8s)
}

/// prompts/list.
pub(super) fn list_prompts(profiles: &Profiles) -> ListPromptsResult {
    let list = templates(profiles)
        .map(|t| {
            let args = t
                .args
                .iter()
                .map(|a| {
                    let d = match a.default {
                        Some(d) if !d.is_empty() => format!("{} (default {d})", a.description),
                        _ => a.description.to_owned(),
                    };
                    PromptArgument::new(a.name)
                        .with_description(d)
                        .with_required(a.default.is_none())
                })
                .collect();
            Prompt::new(t.name, Some(t.description), Some(args))
        })
        .collect();
    ListPromptsResult::with_all_items(list)
}

/// prompts/get.
///
/// # Errors
/// An unknown prompt, or a missing required argument (invalid params).
pub(super) fn get_prompt(
    profiles: &Profiles,
    req: &GetPromptRequestParams,
) -> Result<GetPromptResult, McpError> {
    let t = templates(profiles)
        .find(|t| t.name == req.name)
        .ok_or_else(|| {
            McpError::invalid_params(
                format!(
                    "unknown prompt {:?}; prompts/list names the available ones",
                    req.name
                ),
                None,
            )
        })?;
    let arg = |name: &str| {
        let v = req.arguments.as_ref()?.get(name)?;
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let text = prompts::render(t, arg).map_err(|e| McpError::invalid_params(e, None))?;
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(t.description),
    )
}
