//! The sandbox handle tools: `sandbox_create`, `sandbox_destroy`,
//! `sandbox_list`. Thin: arguments and results here, handles themselves in
//! `sandbox::handles`.

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::exec::{error_text, structured};
use super::{PodExecServer, caller, tool_error};
use crate::sandbox::handles::validate_name;

/// Arguments of `sandbox_create`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct SandboxCreateArgs {
    /// Your own short label for the sandbox, shown by sandbox_list.
    #[serde(default)]
    pub name: Option<String>,
}

/// Result of `sandbox_create`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SandboxCreateResult {
    /// The handle: pass it as `sandbox` to shell_exec (and to
    /// sandbox_destroy). Keep it; it cannot be listed again.
    pub sandbox: String,
    /// The label given, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Seconds the sandbox may stay unused before it is removed.
    // int64 for JSON Schema validators (Ajv warns about "uint64").
    #[schemars(with = "i64", range(min = 0))]
    pub ttl_seconds: u64,
}

/// Arguments of `sandbox_destroy`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct SandboxDestroyArgs {
    /// The handle sandbox_create returned.
    pub sandbox: String,
}

/// Result of `sandbox_destroy`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SandboxDestroyResult {
    /// True: the sandbox and its files are gone.
    pub destroyed: bool,
}

/// One sandbox in `sandbox_list`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SandboxListEntry {
    /// The label given at creation ("" when none).
    pub name: String,
    /// Seconds since it was created.
    // int64 for JSON Schema validators (Ajv warns about "uint64").
    #[schemars(with = "i64", range(min = 0))]
    pub age_seconds: u64,
    /// Seconds since it was last used.
    // int64 for JSON Schema validators (Ajv warns about "uint64").
    #[schemars(with = "i64", range(min = 0))]
    pub idle_seconds: u64,
    /// Seconds until it is removed unless used.
    // int64 for JSON Schema validators (Ajv warns about "uint64").
    #[schemars(with = "i64", range(min = 0))]
    pub expires_in_seconds: u64,
}

/// Result of `sandbox_list`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SandboxListResult {
    /// Your sandboxes, oldest first.
    pub sandboxes: Vec<SandboxListEntry>,
}

/// Arguments of `sandbox_list` (none).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct SandboxListArgs {}

#[tool_router(router = sandbox_tools_router, vis = "pub(super)")]
impl PodExecServer {
    /// Creates a sandbox and returns its handle.
    #[tool(
        name = "sandbox_create",
        description = "Create a sandboxed Linux container of your own and return its handle \
            (`sandbox`). Pass that handle as `sandbox` to every shell_exec call that should \
            share files and processes; it works with every client and protocol version and \
            survives server restarts. It is removed after `ttl_seconds` unused (then create a \
            new one). `name` is your own label, shown by sandbox_list.",
        output_schema = schema_for_output::<SandboxCreateResult>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn sandbox_create(
        &self,
        Parameters(args): Parameters<SandboxCreateArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let name = match validate_name(args.name.as_deref().unwrap_or("")) {
            Ok(n) => n,
            Err(msg) => return Ok(tool_error(msg)),
        };
        let who = caller(&ctx);
        match self.shared.sandboxes.create_handle(who.name(), &name).await {
            Ok(info) => structured(&SandboxCreateResult {
                sandbox: info.handle,
                name: info.name,
                ttl_seconds: self.shared.config.sandbox_ttl,
            }),
            Err(e) => Ok(tool_error(error_text(&e))),
        }
    }

    /// Removes a sandbox.
    #[tool(
        name = "sandbox_destroy",
        description = "Remove a sandbox made by sandbox_create, with its files and processes. \
            Its handle stops working.",
        output_schema = schema_for_output::<SandboxDestroyResult>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn sandbox_destroy(
        &self,
        Parameters(args): Parameters<SandboxDestroyArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let who = caller(&ctx);
        match self
            .shared
            .sandboxes
            .destroy_handle(who.name(), args.sandbox.trim())
            .await
        {
            Ok(()) => structured(&SandboxDestroyResult { destroyed: true }),
            Err(e) => Ok(tool_error(error_text(&e))),
        }
    }

    /// Lists the caller's sandboxes.
    #[tool(
        name = "sandbox_list",
        description = "List your sandboxes made by sandbox_create: name, age, idle time and \
            seconds until each expires unless used. Handles are not shown again.",
        output_schema = schema_for_output::<SandboxListResult>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn sandbox_list(
        &self,
        Parameters(_args): Parameters<SandboxListArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let who = caller(&ctx);
        match self.shared.sandboxes.list_handles(who.name()).await {
            Ok(list) => structured(&SandboxListResult {
                sandboxes: list
                    .into_iter()
                    .map(|s| SandboxListEntry {
                        name: s.name,
                        age_seconds: s.age_s,
                        idle_seconds: s.idle_s,
                        expires_in_seconds: s.expires_in_s,
                    })
                    .collect(),
            }),
            Err(e) => Ok(tool_error(error_text(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_schemas_use_formats_every_validator_knows() {
        for schema in [
            schema_for_output::<SandboxCreateResult>(),
            schema_for_output::<SandboxDestroyResult>(),
            schema_for_output::<SandboxListResult>(),
        ] {
            let text = serde_json::Value::Object((*schema).clone()).to_string();
            assert!(!text.contains("uint"), "{text}");
        }
    }
}
