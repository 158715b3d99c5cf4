//! Transports that carry MCP to the handler: streamable HTTP today (with
//! its authentication and browser checks); stdio and legacy SSE later.

pub mod http;
