//! Transports that carry MCP to the handler: streamable HTTP (with its
//! authentication and browser checks), stdio, and the legacy HTTP+SSE
//! transport behind the same gate as HTTP.

pub mod http;
pub mod sse;
pub mod stdio;
