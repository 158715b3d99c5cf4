//! Frames (agent → server): encoding, and the bounded incremental decoder
//! the server reads the agent's stdout with.

use std::fmt;

use super::*;

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
}
