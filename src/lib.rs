//! pod_exec_mcp: an MCP server that gives AI agents sandboxed shells, one
//! Podman container per session, over the libpod REST API.
//!
//! # Layout
//! - [`config`]: the only reader of flags and environment.
//! - [`podman`]: the typed libpod client (no sessions, no MCP): endpoint
//!   parsing, containers, exec with its stream decoder, images.
//! - [`executor`]: the in-sandbox agent (embedded static binary) and its
//!   wire protocol, shared with the server side.
//! - [`sandbox`]: `SandboxManager`, the sole owner of container lifetimes,
//!   keyed by session, handle or one call; handles and their TTL; capacity
//!   eviction; bounded output; owner labels.
//! - [`mcp`]: the `ServerHandler` and its tools (shell_exec, the sandbox
//!   handle tools, and `exec_in_callers_sandbox` for tools that run a
//!   command); the session manager that ties session end and idle expiry to
//!   sandbox release and owes clients their replies.
//! - [`policy`]: the command policy (strict/permissive, built-in rules,
//!   YAML rule file, read-only); pure, checked before a command runs.
//! - [`profiles`]: CLI profiles (built-in `k8s`, user YAML) that become
//!   execute_/describe_ tools; Kubernetes defaults; prompt templates.
//! - [`server`]: start-up checks and shutdown.
//! - [`transport`]: streamable HTTP with its authentication gate; stdio; the
//!   legacy HTTP+SSE transport behind the same gate.
//! - [`auth`]: bearer tokens and caller identities.
//! - [`audit`]: the operators' JSON-lines audit log.
//! - [`build_image`]: `pod_exec_mcp build-image`, the session image built
//!   through the API from the embedded Containerfile.

#![warn(missing_docs, missing_debug_implementations)]

pub mod audit;
pub mod auth;
pub mod build_image;
pub mod config;
pub mod executor;
pub mod mcp;
pub mod podman;
pub mod policy;
pub mod profiles;
pub mod sandbox;
pub mod server;
pub mod transport;

/// `2 * bytes` random hex digits from the OS generator (via UUID v4; at
/// most 16 bytes' worth are random per UUID, so longer ids join several).
pub fn random_hex(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes * 2);
    while s.len() < bytes * 2 {
        // A v4 UUID has 122 random bits; its simple form is 32 hex digits,
        // two of them (version and variant) partly fixed. Skip those two.
        let u = uuid::Uuid::new_v4().simple().to_string();
        let (a, b) = (&u[..12], &u[13..16]);
        let c = &u[17..];
        s.push_str(a);
        s.push_str(b);
        s.push_str(c);
    }
    s.truncate(bytes * 2);
    s
}
