//! The resident executor: a small static agent that runs inside every
//! sandbox as one long-lived exec and runs calls for the server, many at
//! once, over one connection. Its protocol is shared by both sides.

pub mod client;
pub mod image;
pub mod protocol;

// TEMPORARY until the agent build lands.
/// The agent binary.
pub const AGENT: &[u8] = b"";
/// Whether this build carries the agent.
pub const AGENT_AVAILABLE: bool = false;
