//! pod_exec_mcp: an MCP server that gives AI agents sandboxed shells, one
//! Podman container per session, over the libpod REST API.
//!
//! # Layout
//! - [`podman`]: the typed libpod client (no sessions, no MCP): endpoint
//!   parsing, containers, exec with its stream decoder, images.

#![warn(missing_docs, missing_debug_implementations)]

pub mod podman;
