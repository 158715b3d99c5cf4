//! The executor: a small static program (the "agent") that runs inside
//! every sandbox as one long-lived exec and runs calls for the server over
//! a framed protocol on its stdin/stdout; embedded here by build.rs. The
//! protocol module is shared by both sides; the client and the image are
//! the server's side.

pub mod agent;
pub mod client;
pub mod image;
pub mod protocol;

/// The agent binary for this build's target (static, Linux), or empty when
/// build.rs could not build it (see [`AGENT_AVAILABLE`]).
pub const AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pod-exec-executor"));

/// Whether [`AGENT`] holds a usable binary. When false the server must
/// fall back to one exec per call.
pub const AGENT_AVAILABLE: bool = include!(concat!(env!("OUT_DIR"), "/executor_available.rs"));

/// SHA-256 of [`AGENT`], lowercase hex (of the empty string when the agent
/// is unavailable): a tag for an image or file that holds this agent.
pub const AGENT_SHA256_HEX: &str = include!(concat!(env!("OUT_DIR"), "/executor_sha256.rs"));
