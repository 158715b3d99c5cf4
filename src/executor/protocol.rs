//! Executor wire protocol v1: request lines (server → agent, on the agent's
//! stdin) and binary frames (agent → server, on its stdout), with bounded
//! incremental decoders for both and a small base64 codec.
//!
//! Std only and free of `crate::` paths: this file is compiled twice, into
//! the library and standalone into the static agent binary.
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

use std::fmt;

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

/// A request from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Run `command` as `/bin/sh -lc command`.
    Run {
        /// Call id, unique per connection.
        id: u32,
        /// The agent's own deadline for the call.
        timeout_ms: u64,
        /// Output bytes kept (head `max_output/2`, tail the rest).
        max_output: u64,
        /// Whether to send PROGRESS frames.
        progress: bool,
        /// Exported as `POD_EXEC_CALL=<token>`; 1–64 chars `[0-9a-f]`.
        token: String,
        /// The command's bytes (UTF-8 from the server).
        command: Vec<u8>,
    },
    /// Kill call `id`'s processes; it ends `cancelled`.
    Kill {
        /// Call id.
        id: u32,
    },
    /// Answer PONG with the same id.
    Ping {
        /// Echoed id.
        id: u32,
    },
    /// A new connection takes over (`X`): every call in flight is killed
    /// as a cancel would, and nothing more is sent for it. The server's
    /// call ids restart with each connection, and the calls of a lost one
    /// were already failed: their processes must not live on (a retry
    /// would run them twice) and their frames must not reach the new one.
    Reset,
}

/// Encodes a request as its line, `\n` included.
pub fn encode_request(req: &Request) -> Vec<u8> {
    let s = match req {
        Request::Run {
            id,
            timeout_ms,
            max_output,
            progress,
            token,
            command,
        } => format!(
            "R {id} {timeout_ms} {max_output} {} {token} {}\n",
            u8::from(*progress),
            base64_encode(command)
        ),
        Request::Kill { id } => format!("K {id}\n"),
        Request::Ping { id } => format!("P {id}\n"),
        Request::Reset => "X\n".to_owned(),
    };
    s.into_bytes()
}

/// Parses one request line (a trailing `\n` is allowed, nothing else).
///
/// # Errors
/// `(id, message)`: `id` is the call id of a malformed `R` line whose id
/// could be read, so the server can fail that call; `None` otherwise. A
/// malformed `K`/`P` never names its id: an ERROR for id N means "call N
/// gets no DONE", which would be false for a running call.
pub fn parse_request(line: &[u8]) -> Result<Request, (Option<u32>, String)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut fields = line.split(|&b| b == b' ');
    let verb = fields.next().unwrap_or_default();
    let fields: Vec<&[u8]> = fields.collect();
    match verb {
        b"R" => {
            let id = fields.first().and_then(|f| parse_u32(f));
            let Some(id) = id else {
                return Err((None, "R: bad or missing id".into()));
            };
            let bad = |what: &str| Err((Some(id), format!("R {id}: {what}")));
            if fields.len() != 6 {
                return bad(&format!("want 6 fields, got {}", fields.len()));
            }
            let Some(timeout_ms) = parse_u64(fields[1]) else {
                return bad("bad timeout_ms");
            };
            let Some(max_output) = parse_u64(fields[2]) else {
                return bad("bad max_output");
            };
            let progress = match fields[3] {
                b"0" => false,
                b"1" => true,
                _ => return bad("progress must be 0 or 1"),
            };
            let t = fields[4];
            if t.is_empty()
                || t.len() > MAX_TOKEN_LEN
                || !t.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return bad("token must be 1-64 chars [0-9a-f]");
            }
            // Checked above: ASCII hex digits only.
            let token: String = t.iter().map(|&b| b as char).collect();
            let command = match base64_decode(fields[5]) {
                Ok(c) => c,
                Err(e) => return bad(&format!("command: {e}")),
            };
            Ok(Request::Run {
                id,
                timeout_ms,
                max_output,
                progress,
                token,
                command,
            })
        }
        b"K" | b"P" => {
            let v = if verb == b"K" { "K" } else { "P" };
            let id = match fields.as_slice() {
                [f] => parse_u32(f),
                _ => None,
            };
            match (id, verb) {
                (Some(id), b"K") => Ok(Request::Kill { id }),
                (Some(id), _) => Ok(Request::Ping { id }),
                (None, _) => Err((None, format!("{v}: want exactly one id"))),
            }
        }
        b"X" if fields.is_empty() => Ok(Request::Reset),
        b"X" => Err((None, "X: takes no fields".into())),
        _ => Err((None, format!("unknown request {:?}", printable(verb, 16)))),
    }
}

/// The call id of an `R` line, read from its start only: for lines too
/// long to parse (see [`LineDecoder`]).
pub fn request_run_id(prefix: &[u8]) -> Option<u32> {
    let rest = prefix.strip_prefix(b"R ")?;
    let end = rest.iter().position(|&b| b == b' ')?;
    parse_u32(&rest[..end])
}

/// Decimal digits only (`str::parse` would also take a leading `+`).
fn parse_u64(f: &[u8]) -> Option<u64> {
    if f.is_empty() || f.len() > 20 || !f.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(f).ok()?.parse().ok()
}

fn parse_u32(f: &[u8]) -> Option<u32> {
    parse_u64(f).and_then(|v| u32::try_from(v).ok())
}

/// A short, escaped rendering of outside bytes for error messages.
fn printable(b: &[u8], max: usize) -> String {
    let mut s: String = b
        .iter()
        .take(max)
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect();
    if b.len() > max {
        s.push_str("...");
    }
    s
}

/// One item from [`LineDecoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its `\n`.
    Full(Vec<u8>),
    /// A line longer than the limit, discarded; `prefix` is its start (up
    /// to 64 bytes), enough for [`request_run_id`].
    TooLong {
        /// The line's first bytes.
        prefix: Vec<u8>,
    },
}

/// Splits a byte stream into lines of at most `max` bytes (`\n` included),
/// never holding more than `max` bytes however long a line is.
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for `\n`.
    scanned: usize,
    max: usize,
    /// Inside an over-long line: its prefix, while the rest is dropped.
    skipping: Option<Vec<u8>>,
}

const LINE_PREFIX: usize = 64;

impl LineDecoder {
    /// A decoder for lines up to `max` bytes (including `\n`).
    pub fn new(max: usize) -> Self {
        LineDecoder {
            buf: Vec::new(),
            scanned: 0,
            max: max.max(1),
            skipping: None,
        }
    }

    /// Splits `data` into lines, appending them to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Line>) {
        while !data.is_empty() {
            if let Some(prefix) = &mut self.skipping {
                match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        out.push(Line::TooLong {
                            prefix: std::mem::take(prefix),
                        });
                        self.skipping = None;
                        data = &data[i + 1..];
                    }
                    None => return,
                }
                continue;
            }
            // Take no more than fits, so memory stays within `max`.
            let room = self.max - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            let mut start = 0;
            while let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + i;
                out.push(Line::Full(self.buf[start..end].to_vec()));
                start = end + 1;
                self.scanned = start;
            }
            self.buf.drain(..start);
            self.scanned = self.buf.len();
            if self.buf.len() >= self.max {
                // A full buffer with no `\n`: the line is too long.
                let prefix = self.buf[..LINE_PREFIX.min(self.buf.len())].to_vec();
                self.buf.clear();
                self.scanned = 0;
                self.skipping = Some(prefix);
            }
        }
    }

    /// Bytes of an unfinished line (at EOF: a line without `\n`).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// A frame from the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Sent once at start, id 0. Payload: `version: u32`, `pid: u32`.
    Hello {
        /// Protocol version ([`VERSION`]).
        version: u32,
        /// The agent's pid (in its pid namespace).
        pid: u32,
    },
    /// The call's shell runs, and has for a few milliseconds (a call
    /// that ends sooner sends DONE alone). Payload: `pid: u32`.
    Started {
        /// Call id.
        id: u32,
        /// The shell's pid.
        pid: u32,
    },
    /// Output so far. Payload: `total_bytes: u64`, then the last line.
    Progress {
        /// Call id.
        id: u32,
        /// Output bytes so far.
        total_bytes: u64,
        /// Latest output line, ≤ [`MAX_PROGRESS_LINE`] bytes, no newline.
        last_line: Vec<u8>,
    },
    /// The call ended. Payload: `retval: i32`, `flags: u8`,
    /// `total_bytes: u64`, `head_len: u32`, head bytes, tail bytes.
    Done {
        /// Call id.
        id: u32,
        /// Exit code; 128+N for signal N; 124/137 when stopped.
        retval: i32,
        /// Stopped at its deadline.
        timed_out: bool,
        /// Stopped by `K` or stdin EOF.
        cancelled: bool,
        /// Bytes were left out between head and tail.
        truncated: bool,
        /// Output bytes in all.
        total_bytes: u64,
        /// First kept output bytes.
        head: Vec<u8>,
        /// Last kept output bytes.
        tail: Vec<u8>,
    },
    /// The call could not start (no DONE follows), or a protocol error
    /// (id 0). Payload: UTF-8 message.
    Error {
        /// Call id, or 0.
        id: u32,
        /// What went wrong (decoded lossily).
        message: String,
    },
    /// Answer to a ping; empty payload.
    Pong {
        /// The ping's id.
        id: u32,
    },
}

/// Encodes a frame, header included. Payloads are expected to fit
/// [`MAX_PAYLOAD`] (the agent bounds what it sends).
pub fn encode_frame(frame: &Frame) -> Vec<u8> {
    let (kind, id, payload_len) = match frame {
        Frame::Hello { .. } => (KIND_HELLO, 0, 8),
        Frame::Started { id, .. } => (KIND_STARTED, *id, 4),
        Frame::Progress { id, last_line, .. } => (KIND_PROGRESS, *id, 8 + last_line.len()),
        Frame::Done { id, head, tail, .. } => {
            (KIND_DONE, *id, DONE_FIXED_LEN + head.len() + tail.len())
        }
        Frame::Error { id, message } => (KIND_ERROR, *id, message.len()),
        Frame::Pong { id } => (KIND_PONG, *id, 0),
    };
    let mut v = Vec::with_capacity(HEADER_LEN + payload_len);
    v.push(kind);
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&(payload_len as u32).to_be_bytes());
    match frame {
        Frame::Hello { version, pid } => {
            v.extend_from_slice(&version.to_be_bytes());
            v.extend_from_slice(&pid.to_be_bytes());
        }
        Frame::Started { pid, .. } => v.extend_from_slice(&pid.to_be_bytes()),
        Frame::Progress {
            total_bytes,
            last_line,
            ..
        } => {
            v.extend_from_slice(&total_bytes.to_be_bytes());
            v.extend_from_slice(last_line);
        }
        Frame::Done {
            retval,
            timed_out,
            cancelled,
            truncated,
            total_bytes,
            head,
            tail,
            ..
        } => {
            let flag = |on: bool, bit: u8| if on { bit } else { 0 };
            let flags = flag(*timed_out, FLAG_TIMED_OUT)
                | flag(*cancelled, FLAG_CANCELLED)
                | flag(*truncated, FLAG_TRUNCATED);
            v.extend_from_slice(&retval.to_be_bytes());
            v.push(flags);
            v.extend_from_slice(&total_bytes.to_be_bytes());
            v.extend_from_slice(&(head.len() as u32).to_be_bytes());
            v.extend_from_slice(head);
            v.extend_from_slice(tail);
        }
        Frame::Error { message, .. } => v.extend_from_slice(message.as_bytes()),
        Frame::Pong { .. } => {}
    }
    v
}

/// Why a frame stream is malformed. After one, the decoder keeps
/// returning it: the stream has lost its framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A kind byte this version does not know.
    UnknownKind(u8),
    /// A header announced more than the decoder's limit.
    TooLong {
        /// Announced payload length.
        len: u32,
        /// The decoder's limit.
        max: u32,
    },
    /// A known kind with a payload of the wrong shape.
    BadPayload {
        /// The frame's kind.
        kind: u8,
        /// What is wrong.
        reason: &'static str,
    },
    /// The stream ended inside a frame (from [`FrameDecoder::finish`]).
    Truncated {
        /// Bytes of the unfinished frame.
        buffered: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            DecodeError::TooLong { len, max } => {
                write!(f, "frame payload of {len} bytes exceeds the limit of {max}")
            }
            DecodeError::BadPayload { kind, reason } => {
                write!(f, "malformed frame of kind {kind}: {reason}")
            }
            DecodeError::Truncated { buffered } => {
                write!(f, "stream ended inside a frame ({buffered} bytes buffered)")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Incremental frame decoder: [`push`](Self::push) bytes as they arrive,
/// then call [`next_frame`](Self::next_frame) until `Ok(None)`. Never
/// panics; never buffers more than one frame of `max_payload` plus what
/// was pushed at once.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    max_payload: u32,
    failed: Option<DecodeError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder with the [`MAX_PAYLOAD`] limit.
    pub fn new() -> Self {
        Self::with_max_payload(MAX_PAYLOAD)
    }

    /// A decoder refusing payloads over `max` (capped at [`MAX_PAYLOAD`]).
    pub fn with_max_payload(max: u32) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            pos: 0,
            max_payload: max.min(MAX_PAYLOAD),
            failed: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        // Reclaim consumed space before growing, so a long stream of small
        // frames does not keep its history.
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes pushed but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// A malformed or over-long frame; the same error on every later call.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let avail = &self.buf[self.pos..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = avail[0];
        let id = be_u32(&avail[1..5]);
        let len = be_u32(&avail[5..9]);
        // Check the header before waiting for (or reserving) the payload.
        let res = if !(KIND_HELLO..=KIND_PONG).contains(&kind) {
            Err(DecodeError::UnknownKind(kind))
        } else if len > self.max_payload {
            Err(DecodeError::TooLong {
                len,
                max: self.max_payload,
            })
        } else if avail.len() - HEADER_LEN < len as usize {
            return Ok(None);
        } else {
            let p = &avail[HEADER_LEN..HEADER_LEN + len as usize];
            parse_frame(kind, id, p)
        };
        match res {
            Ok(f) => {
                self.pos += HEADER_LEN + len as usize;
                Ok(Some(f))
            }
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Call at EOF.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if part of a frame is buffered.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.buffered() {
            0 => Ok(()),
            n => Err(DecodeError::Truncated { buffered: n }),
        }
    }
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn parse_frame(kind: u8, id: u32, p: &[u8]) -> Result<Frame, DecodeError> {
    let bad = |reason| Err(DecodeError::BadPayload { kind, reason });
    match kind {
        KIND_HELLO => {
            if p.len() != 8 {
                return bad("HELLO payload must be 8 bytes");
            }
            Ok(Frame::Hello {
                version: be_u32(&p[..4]),
                pid: be_u32(&p[4..]),
            })
        }
        KIND_STARTED => {
            if p.len() != 4 {
                return bad("STARTED payload must be 4 bytes");
            }
            Ok(Frame::Started { id, pid: be_u32(p) })
        }
        KIND_PROGRESS => {
            if p.len() < 8 || p.len() > 8 + MAX_PROGRESS_LINE {
                return bad("PROGRESS payload must be 8 to 264 bytes");
            }
            Ok(Frame::Progress {
                id,
                total_bytes: be_u64(p),
                last_line: p[8..].to_vec(),
            })
        }
        KIND_DONE => {
            if p.len() < DONE_FIXED_LEN {
                return bad("DONE payload shorter than 17 bytes");
            }
            let retval = be_u32(&p[..4]) as i32;
            let flags = p[4];
            let total_bytes = be_u64(&p[5..13]);
            let head_len = be_u32(&p[13..17]) as usize;
            let rest = &p[DONE_FIXED_LEN..];
            if head_len > rest.len() {
                return bad("DONE head_len exceeds the payload");
            }
            if ((rest.len()) as u64) > total_bytes {
                return bad("DONE keeps more bytes than total_bytes");
            }
            // Unknown flag bits are ignored: room for later versions.
            Ok(Frame::Done {
                id,
                retval,
                timed_out: flags & FLAG_TIMED_OUT != 0,
                cancelled: flags & FLAG_CANCELLED != 0,
                truncated: flags & FLAG_TRUNCATED != 0,
                total_bytes,
                head: rest[..head_len].to_vec(),
                tail: rest[head_len..].to_vec(),
            })
        }
        KIND_ERROR => Ok(Frame::Error {
            id,
            message: String::from_utf8_lossy(p).into_owned(),
        }),
        KIND_PONG => {
            if !p.is_empty() {
                return bad("PONG payload must be empty");
            }
            Ok(Frame::Pong { id })
        }
        _ => Err(DecodeError::UnknownKind(kind)),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        let idx = |shift: u32| B64[((n >> shift) & 63) as usize] as char;
        s.push(idx(18));
        s.push(idx(12));
        s.push(if c.len() > 1 { idx(6) } else { '=' });
        s.push(if c.len() > 2 { idx(0) } else { '=' });
    }
    s
}

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decodes standard padded base64 (no whitespace, length a multiple of 4).
///
/// # Errors
/// A message naming the first problem.
pub fn base64_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(4) {
        return Err(format!("base64 length {} is not a multiple of 4", s.len()));
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let last = s.len() / 4;
    for (i, q) in s.chunks(4).enumerate() {
        let pad = match (q[2], q[3]) {
            (b'=', b'=') => 2,
            (_, b'=') => 1,
            (b'=', _) => return Err("base64: '=' before a data character".into()),
            _ => 0,
        };
        if pad > 0 && i + 1 != last {
            return Err("base64: padding before the end".into());
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            let v = b64_value(c).ok_or_else(|| format!("base64: bad character {c:#04x}"))?;
            n = (n << 6) | v;
        }
        n <<= 6 * pad as u32;
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Vec<Frame> {
        vec![
            Frame::Hello {
                version: VERSION,
                pid: 42,
            },
            Frame::Started { id: 7, pid: 1234 },
            Frame::Progress {
                id: 7,
                total_bytes: 1 << 40,
                last_line: b"line".to_vec(),
            },
            Frame::Progress {
                id: 8,
                total_bytes: 0,
                last_line: vec![],
            },
            Frame::Done {
                id: 7,
                retval: -1,
                timed_out: true,
                cancelled: false,
                truncated: true,
                total_bytes: 100,
                head: b"head".to_vec(),
                tail: b"tail\x00\xff".to_vec(),
            },
            Frame::Done {
                id: u32::MAX,
                retval: 0,
                timed_out: false,
                cancelled: true,
                truncated: false,
                total_bytes: 0,
                head: vec![],
                tail: vec![],
            },
            Frame::Error {
                id: 0,
                message: "bad line é".into(),
            },
            Frame::Pong { id: 9 },
        ]
    }

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<Frame>, DecodeError> {
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(f) = d.next_frame()? {
                out.push(f);
            }
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn frames_round_trip_at_every_split_point() {
        let frames = fixtures();
        let bytes: Vec<u8> = frames.iter().flat_map(encode_frame).collect();
        for i in 0..=bytes.len() {
            let got = decode_all(&[&bytes[..i], &bytes[i..]]).unwrap();
            assert_eq!(got, frames, "split at {i}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_all(&singles).unwrap(), frames);
    }

    #[test]
    fn eof_mid_frame_is_an_error() {
        let b = encode_frame(&Frame::Started { id: 1, pid: 2 });
        for i in 1..b.len() {
            let mut d = FrameDecoder::new();
            d.push(&b[..i]);
            assert_eq!(d.next_frame(), Ok(None));
            assert_eq!(d.finish(), Err(DecodeError::Truncated { buffered: i }));
        }
    }

    #[test]
    fn over_long_frame_is_refused_from_its_header() {
        let mut d = FrameDecoder::with_max_payload(100);
        let mut h = vec![KIND_DONE, 0, 0, 0, 1];
        h.extend_from_slice(&101u32.to_be_bytes());
        d.push(&h);
        let e = d.next_frame().unwrap_err();
        assert_eq!(e, DecodeError::TooLong { len: 101, max: 100 });
        // Sticky: the stream has lost its framing.
        d.push(&encode_frame(&Frame::Pong { id: 1 }));
        assert_eq!(d.next_frame(), Err(e));

        let mut d = FrameDecoder::with_max_payload(u32::MAX);
        let mut h = vec![KIND_ERROR, 0, 0, 0, 0];
        h.extend_from_slice(&u32::MAX.to_be_bytes());
        d.push(&h);
        assert!(matches!(
            d.next_frame(),
            Err(DecodeError::TooLong {
                max: MAX_PAYLOAD,
                ..
            })
        ));
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let cases: Vec<Vec<u8>> = vec![
            vec![0, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![7, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![KIND_HELLO, 0, 0, 0, 0, 0, 0, 0, 1, 5],
            vec![KIND_PONG, 0, 0, 0, 0, 0, 0, 0, 1, 5],
            vec![KIND_STARTED, 0, 0, 0, 1, 0, 0, 0, 0],
            {
                // head_len past the end
                let mut v = vec![KIND_DONE, 0, 0, 0, 1, 0, 0, 0, 17];
                v.extend_from_slice(&[0; 13]);
                v.extend_from_slice(&1u32.to_be_bytes());
                v
            },
            {
                // keeps more than total
                let mut v = vec![KIND_DONE, 0, 0, 0, 1, 0, 0, 0, 18];
                v.extend_from_slice(&[0; 13]);
                v.extend_from_slice(&0u32.to_be_bytes());
                v.push(b'x');
                v
            },
            {
                let mut v = vec![KIND_PROGRESS, 0, 0, 0, 1];
                v.extend_from_slice(&(8 + 257u32).to_be_bytes());
                v.extend_from_slice(&[b'a'; 265]);
                v
            },
        ];
        for c in cases {
            assert!(decode_all(&[&c]).is_err(), "{c:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed pseudo-random stream (xorshift): no panic, and either
        // frames or an error, every split.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..(round % 64) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            // Bias towards plausible headers now and then.
            if round % 3 == 0 && !bytes.is_empty() {
                bytes[0] = (round % 8) as u8;
            }
            let mut d = FrameDecoder::with_max_payload(32);
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_frame() {}
            let _ = parse_request(&bytes);
            let _ = base64_decode(&bytes);
            let mut l = LineDecoder::new(16);
            l.push(&bytes, &mut Vec::new());
        }
    }

    #[test]
    fn requests_round_trip() {
        let reqs = vec![
            Request::Run {
                id: 1,
                timeout_ms: 300_000,
                max_output: 1 << 20,
                progress: true,
                token: "0123456789abcdef".into(),
                command: b"echo $0; printf '\\0\\n'".to_vec(),
            },
            Request::Run {
                id: u32::MAX,
                timeout_ms: u64::MAX,
                max_output: 0,
                progress: false,
                token: "a".repeat(64),
                command: vec![],
            },
            Request::Kill { id: 5 },
            Request::Ping { id: 0 },
            Request::Reset,
        ];
        for r in reqs {
            let line = encode_request(&r);
            assert_eq!(line.last(), Some(&b'\n'));
            assert!(
                line[..line.len() - 1]
                    .iter()
                    .all(|&b| (0x20..0x7f).contains(&b)),
                "only printable ASCII on the wire"
            );
            assert_eq!(parse_request(&line), Ok(r.clone()));
            assert_eq!(parse_request(&line[..line.len() - 1]), Ok(r));
        }
    }

    #[test]
    fn malformed_requests_name_their_id_only_for_run() {
        let err = |l: &[u8]| parse_request(l).unwrap_err().0;
        assert_eq!(err(b""), None);
        assert_eq!(err(b"X 1"), None);
        assert_eq!(err(b"R"), None);
        assert_eq!(err(b"R x 1 1 0 ab "), None);
        assert_eq!(err(b"R +1 1 1 0 ab "), None);
        assert_eq!(err(b"R 4294967296 1 1 0 ab "), None);
        assert_eq!(err(b"R 3 1 1 0 ab"), Some(3));
        assert_eq!(err(b"R 3 1 1 2 ab "), Some(3));
        assert_eq!(err(b"R 3 -1 1 0 ab "), Some(3));
        assert_eq!(err(b"R 3 1 1 0 AB "), Some(3));
        assert_eq!(err(b"R 3 1 1 0  "), Some(3));
        assert_eq!(
            err(&[b"R 3 1 1 0 ".as_slice(), &[b'a'; 65], b" "].concat()),
            Some(3)
        );
        assert_eq!(err(b"R 3 1 1 0 ab abc"), Some(3));
        assert_eq!(err(b"R 3 1 1 0 ab YQ==  "), Some(3));
        assert_eq!(err(b"R 3 1 1 0 ab YQ==\r"), Some(3));
        assert_eq!(err(b"K"), None);
        assert_eq!(err(b"K 1 2"), None);
        assert_eq!(err(b"P  1"), None);
        assert_eq!(err(b"P 1\n\n"), None);
        assert!(parse_request(b"R 3 1 1 0 ab \n").is_ok());
    }

    #[test]
    fn run_id_from_a_prefix() {
        assert_eq!(request_run_id(b"R 12 1000"), Some(12));
        assert_eq!(request_run_id(b"R 12"), None);
        assert_eq!(request_run_id(b"K 12 "), None);
    }

    #[test]
    fn lines_at_every_split_point() {
        let input = b"P 1\nK 2\n\nR 3 1 1 0 a YQ==\n";
        let want = vec![
            Line::Full(b"P 1".to_vec()),
            Line::Full(b"K 2".to_vec()),
            Line::Full(vec![]),
            Line::Full(b"R 3 1 1 0 a YQ==".to_vec()),
        ];
        for i in 0..=input.len() {
            let mut d = LineDecoder::new(64);
            let mut out = Vec::new();
            d.push(&input[..i], &mut out);
            d.push(&input[i..], &mut out);
            assert_eq!(out, want, "split at {i}");
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn over_long_lines_are_skipped_with_their_prefix() {
        let mut long = b"R 9 1000 10 0 ab ".to_vec();
        long.extend_from_slice(&[b'Q'; 200]);
        long.push(b'\n');
        let input = [long.as_slice(), b"P 1\n"].concat();
        for step in [1, 7, 50, input.len()] {
            let mut d = LineDecoder::new(100);
            let mut out = Vec::new();
            for c in input.chunks(step) {
                d.push(c, &mut out);
                assert!(d.buf.len() <= 100);
            }
            assert_eq!(out.len(), 2, "step {step}");
            match &out[0] {
                Line::TooLong { prefix } => assert_eq!(request_run_id(prefix), Some(9)),
                l => panic!("{l:?}"),
            }
            assert_eq!(out[1], Line::Full(b"P 1".to_vec()));
        }
        // A line of exactly the limit (with its `\n`) is accepted.
        let mut d = LineDecoder::new(5);
        let mut out = Vec::new();
        d.push(b"P 12\nP 123\n", &mut out);
        assert_eq!(out[0], Line::Full(b"P 12".to_vec()));
        assert!(matches!(out[1], Line::TooLong { .. }));
    }

    #[test]
    fn base64_matches_known_vectors() {
        let v: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"\xff\xfe\x00", "//4A"),
        ];
        for (raw, enc) in v {
            assert_eq!(base64_encode(raw), enc);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), raw);
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(base64_encode(&all).as_bytes()).unwrap(), all);
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9v\n", "Zm 9", "=Zm9", "Zm=v"] {
            assert!(base64_decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
