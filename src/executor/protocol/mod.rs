//! Executor wire protocol v1: request lines (server → agent, on the agent's
//! stdin) and binary frames (agent → server, on its stdout), with bounded
//! incremental decoders for both and a small base64 codec.
//!
//! Std only and free of `crate::` paths: this directory is compiled twice,
//! into the library and standalone into the static agent binary. Its
//! rooms: `request.rs` (request lines and their decoder), `frame.rs`
//! (frames and their decoder), `b64.rs` (the command's encoding).
//!
//! # Requests (one ASCII line each, fields separated by one space)
//! - `R <id> <timeout_ms> <max_output> <progress> <token> <command_b64>`
//! - `K <id>` (cancel), `P <id>` (ping)
//!
//! Lines carry no control byte but the final `\n`: Podman's stdin copy
//! watches for detach keys, so the command travels base64-encoded.
//!
//! # Frames
//! Header: `kind: u8`, `id: u32 BE`, `len: u32 BE`, then `len` payload
//! bytes. See [`Frame`] for each kind's payload.

mod b64;
mod frame;
mod request;

pub use b64::{base64_decode, base64_encode};
pub use frame::*;
pub use request::*;

/// Protocol version announced in HELLO.
pub const VERSION: u32 = 1;
/// Bytes in a frame header (kind, id, len).
pub const HEADER_LEN: usize = 9;
/// Hard upper bound on a frame's payload; callers may set a lower one.
pub const MAX_PAYLOAD: u32 = 64 * 1024 * 1024;
/// Longest request line accepted, including its `\n`.
pub const MAX_LINE: usize = 4 * 1024 * 1024;
/// Longest call token (`[0-9a-f]`, at least one).
pub const MAX_TOKEN_LEN: usize = 64;
/// Longest last-line snippet in a PROGRESS frame.
pub const MAX_PROGRESS_LINE: usize = 256;
/// DONE payload bytes before the head: retval, flags, total, head_len.
pub const DONE_FIXED_LEN: usize = 4 + 1 + 8 + 4;

/// Frame kind bytes.
pub const KIND_HELLO: u8 = 1;
/// See [`Frame::Started`].
pub const KIND_STARTED: u8 = 2;
/// See [`Frame::Progress`].
pub const KIND_PROGRESS: u8 = 3;
/// See [`Frame::Done`].
pub const KIND_DONE: u8 = 4;
/// See [`Frame::Error`].
pub const KIND_ERROR: u8 = 5;
/// See [`Frame::Pong`].
pub const KIND_PONG: u8 = 6;

/// DONE flag bits.
pub const FLAG_TIMED_OUT: u8 = 1;
/// The call was cancelled (`K`, or the agent's stdin closed).
pub const FLAG_CANCELLED: u8 = 2;
/// Output bytes were left out between head and tail.
pub const FLAG_TRUNCATED: u8 = 4;
