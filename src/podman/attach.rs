//! The exec/attach stream decoder: pure, incremental, no I/O.
//!
//! With `Tty=false` libpod multiplexes stdout and stderr into frames of an
//! 8-byte header `[stream, 0, 0, 0, len: u32 BE]` and `len` payload bytes.
//! Frames (and headers) split at arbitrary read boundaries, so the decoder
//! keeps a partial header across calls. Payload bytes are handed out as soon
//! as they arrive — a chunk may be part of a frame — so memory stays bounded
//! by the read size whatever a header claims. With `Tty=true` there are no
//! headers: bytes pass through as stdout.

use bytes::Bytes;

/// Which stream a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Standard output (also stream 0 and all Tty output).
    Stdout,
    /// Standard error; Podman's own exec errors arrive here as "Error: ...".
    Stderr,
}

/// A piece of exec output, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecChunk {
    /// The stream it came from.
    pub stream: StreamKind,
    /// The bytes (never empty).
    pub data: Bytes,
}

/// How the stream is framed: decided from the exec's own Tty flag, never
/// from Content-Type (libpod 4.x says `raw-stream` even when multiplexed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Tty=false`: 8-byte headers.
    Multiplexed,
    /// `Tty=true`: raw bytes.
    Raw,
}

/// Largest payload length a header may claim. Podman writes at most 8 KiB
/// per frame and Docker 32 KiB; anything near this is a desynchronised or
/// corrupt stream, not data.
pub const MAX_FRAME_LEN: u32 = 1 << 20;

/// A corrupt or truncated stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A header whose stream byte or padding is not valid.
    #[error("bad frame header {header:02x?} at byte {offset}")]
    BadHeader {
        /// The 8 header bytes.
        header: [u8; 8],
        /// Stream offset of the header's first byte.
        offset: u64,
    },
    /// A header claiming more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame header at byte {offset} claims {len} bytes (limit {MAX_FRAME_LEN})")]
    TooLong {
        /// Claimed length.
        len: u32,
        /// Stream offset of the header's first byte.
        offset: u64,
    },
    /// The stream ended inside a header or payload.
    #[error("stream ended mid-frame at byte {offset} ({missing} bytes missing)")]
    Truncated {
        /// Stream offset of the end.
        offset: u64,
        /// Bytes still expected.
        missing: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Collecting a header; `have` bytes of it are in `header`.
    Header { have: usize },
    /// Passing through `remaining` payload bytes of `kind`.
    Payload { kind: StreamKind, remaining: u32 },
    /// A previous call returned an error; the stream is unusable.
    Failed,
}

/// Incremental decoder. Feed it every buffer in order with [`decode`],
/// then call [`finish`] at EOF.
///
/// [`decode`]: FrameDecoder::decode
/// [`finish`]: FrameDecoder::finish
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    framing: Framing,
    state: State,
    header: [u8; 8],
    /// Bytes consumed so far, for error messages.
    offset: u64,
}

impl FrameDecoder {
    /// A decoder for a stream framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        FrameDecoder {
            framing,
            state: State::Header { have: 0 },
            header: [0; 8],
            offset: 0,
        }
    }

    /// Takes bytes from the front of `input` and returns the next chunk, or
    /// `Ok(None)` once `input` is used up without completing one (feed more).
    /// Call repeatedly until it returns `Ok(None)`. Payload is split off
    /// `input` without copying.
    ///
    /// # Errors
    /// A header with a bad stream byte, non-zero padding or an absurd length.
    /// After an error every later call fails the same way.
    pub fn decode(&mut self, input: &mut Bytes) -> Result<Option<ExecChunk>, FrameError> {
        if self.framing == Framing::Raw {
            if input.is_empty() {
                return Ok(None);
            }
            let data = input.split_to(input.len());
            self.offset += data.len() as u64;
            return Ok(Some(ExecChunk {
                stream: StreamKind::Stdout,
                data,
            }));
        }
        loop {
            match self.state {
                State::Failed => return Err(self.failed_error()),
                State::Header { have } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (8 - have).min(input.len());
                    self.header[have..have + take].copy_from_slice(&input[..take]);
                    let _ = input.split_to(take);
                    self.offset += take as u64;
                    if have + take < 8 {
                        self.state = State::Header { have: have + take };
                        return Ok(None);
                    }
                    self.state = self.parse_header()?;
                }
                State::Payload { kind, remaining } => {
                    if remaining == 0 {
                        // Empty frames carry nothing; skip them.
                        self.state = State::Header { have: 0 };
                        continue;
                    }
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (remaining as usize).min(input.len());
                    let data = input.split_to(take);
                    self.offset += take as u64;
                    // `take <= remaining`, which is a u32.
                    let left = remaining - take as u32;
                    self.state = if left == 0 {
                        State::Header { have: 0 }
                    } else {
                        State::Payload {
                            kind,
                            remaining: left,
                        }
                    };
                    return Ok(Some(ExecChunk { stream: kind, data }));
                }
            }
        }
    }

    /// Checks that the stream may end here (EOF between frames).
    ///
    /// # Errors
    /// [`FrameError::Truncated`] when EOF falls inside a header or payload.
    pub fn finish(&self) -> Result<(), FrameError> {
        let missing = match self.state {
            State::Header { have: 0 } => return Ok(()),
            State::Header { have } => (8 - have) as u64,
            State::Payload { remaining: 0, .. } => return Ok(()),
            State::Payload { remaining, .. } => u64::from(remaining),
            State::Failed => return Err(self.failed_error()),
        };
        Err(FrameError::Truncated {
            offset: self.offset,
            missing,
        })
    }

    fn parse_header(&mut self) -> Result<State, FrameError> {
        let h = self.header;
        let offset = self.offset - 8;
        let kind = match h[0] {
            // Stream 0 (stdin) is echoed as output by some engines.
            0 | 1 => StreamKind::Stdout,
            2 => StreamKind::Stderr,
            _ => {
                self.state = State::Failed;
                return Err(FrameError::BadHeader { header: h, offset });
            }
        };
        if h[1..4] != [0, 0, 0] {
            self.state = State::Failed;
            return Err(FrameError::BadHeader { header: h, offset });
        }
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        if len > MAX_FRAME_LEN {
            self.state = State::Failed;
            return Err(FrameError::TooLong { len, offset });
        }
        Ok(State::Payload {
            kind,
            remaining: len,
        })
    }

    fn failed_error(&self) -> FrameError {
        let h = self.header;
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let offset = self.offset.saturating_sub(8);
        if len > MAX_FRAME_LEN && h[0] <= 2 && h[1..4] == [0, 0, 0] {
            FrameError::TooLong { len, offset }
        } else {
            FrameError::BadHeader { header: h, offset }
        }
    }
}

/// Encodes one multiplexed frame (for tests and fixtures).
pub fn encode_frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    // Callers pass test payloads far below 4 GiB.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes a whole buffer fed in the given pieces, merging adjacent chunks
/// of one stream. A test helper, also used by the fixture tests.
pub fn decode_all<'a>(
    framing: Framing,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<(StreamKind, Vec<u8>)>, FrameError> {
    let mut dec = FrameDecoder::new(framing);
    let mut out: Vec<(StreamKind, Vec<u8>)> = Vec::new();
    for piece in pieces {
        let mut input = Bytes::copy_from_slice(piece);
        while let Some(chunk) = dec.decode(&mut input)? {
            match out.last_mut() {
                Some((k, v)) if *k == chunk.stream => v.extend_from_slice(&chunk.data),
                _ => out.push((chunk.stream, chunk.data.to_vec())),
            }
        }
    }
    dec.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut s = encode_frame(1, b"hello\n");
        s.extend(encode_frame(2, b"oops\n"));
        s.extend(encode_frame(1, b""));
        s.extend(encode_frame(1, b"world\n"));
        s
    }

    fn expected() -> Vec<(StreamKind, Vec<u8>)> {
        vec![
            (StreamKind::Stdout, b"hello\n".to_vec()),
            (StreamKind::Stderr, b"oops\n".to_vec()),
            (StreamKind::Stdout, b"world\n".to_vec()),
        ]
    }

    #[test]
    fn whole_buffer() {
        assert_eq!(
            decode_all(Framing::Multiplexed, [&sample()[..]]).unwrap(),
            expected()
        );
    }

    #[test]
    fn byte_by_byte() {
        let s = sample();
        assert_eq!(
            decode_all(Framing::Multiplexed, s.chunks(1)).unwrap(),
            expected()
        );
    }

    #[test]
    fn every_two_part_split() {
        let s = sample();
        for cut in 0..=s.len() {
            let (a, b) = s.split_at(cut);
            assert_eq!(
                decode_all(Framing::Multiplexed, [a, b]).unwrap(),
                expected(),
                "split at {cut}"
            );
        }
    }

    #[test]
    fn header_split_across_reads_keeps_payload_order() {
        let s = sample();
        // Cut inside the second header (bytes 14..22).
        let pieces = [&s[..17], &s[17..19], &s[19..]];
        assert_eq!(
            decode_all(Framing::Multiplexed, pieces).unwrap(),
            expected()
        );
    }

    #[test]
    fn unknown_stream_byte_is_an_error() {
        let mut s = encode_frame(1, b"ok");
        s.extend(encode_frame(7, b"bad"));
        let err = decode_all(Framing::Multiplexed, [&s[..]]).unwrap_err();
        assert!(
            matches!(err, FrameError::BadHeader { offset: 10, .. }),
            "{err}"
        );
    }

    #[test]
    fn nonzero_padding_is_an_error() {
        let s = [1u8, 0, 1, 0, 0, 0, 0, 1, b'x'];
        assert!(matches!(
            decode_all(Framing::Multiplexed, [&s[..]]),
            Err(FrameError::BadHeader { .. })
        ));
    }

    #[test]
    fn four_gib_length_is_rejected_without_allocating() {
        let s = [1u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, b'x', b'y'];
        let mut dec = FrameDecoder::new(Framing::Multiplexed);
        let mut input = Bytes::copy_from_slice(&s);
        let err = dec.decode(&mut input).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLong {
                len: u32::MAX,
                offset: 0
            }
        );
        // And it stays failed instead of reinterpreting payload as headers.
        assert!(dec.decode(&mut input).is_err());
        assert!(dec.finish().is_err());
    }

    #[test]
    fn eof_mid_payload_is_truncated() {
        let s = encode_frame(1, b"abcdef");
        let err = decode_all(Framing::Multiplexed, [&s[..10]]).unwrap_err();
        assert_eq!(
            err,
            FrameError::Truncated {
                offset: 10,
                missing: 4
            }
        );
    }

    #[test]
    fn eof_mid_header_is_truncated() {
        let err = decode_all(Framing::Multiplexed, [&[1u8, 0, 0][..]]).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { missing: 5, .. }));
    }

    #[test]
    fn empty_stream_is_fine() {
        assert!(
            decode_all(Framing::Multiplexed, std::iter::empty())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn raw_mode_passes_bytes_through() {
        let s = sample();
        let out = decode_all(Framing::Raw, s.chunks(3)).unwrap();
        assert_eq!(out, vec![(StreamKind::Stdout, s)]);
    }

    #[test]
    fn stream_zero_is_stdout() {
        let s = encode_frame(0, b"in");
        assert_eq!(
            decode_all(Framing::Multiplexed, [&s[..]]).unwrap(),
            vec![(StreamKind::Stdout, b"in".to_vec())]
        );
    }

    fn merge(frames: &[(u8, Vec<u8>)]) -> Vec<(StreamKind, Vec<u8>)> {
        let mut out: Vec<(StreamKind, Vec<u8>)> = Vec::new();
        for (s, p) in frames {
            if p.is_empty() {
                continue;
            }
            let k = if *s == 2 {
                StreamKind::Stderr
            } else {
                StreamKind::Stdout
            };
            match out.last_mut() {
                Some((lk, v)) if *lk == k => v.extend_from_slice(p),
                _ => out.push((k, p.clone())),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn random_frames_random_splits(
            frames in prop::collection::vec((0u8..=2, prop::collection::vec(any::<u8>(), 0..300)), 0..40),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
        ) {
            let encoded: Vec<u8> = frames.iter().flat_map(|(s, p)| encode_frame(*s, p)).collect();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(encoded.len() + 1)).collect();
            points.push(0);
            points.push(encoded.len());
            points.sort_unstable();
            let pieces: Vec<&[u8]> = points.windows(2).map(|w| &encoded[w[0]..w[1]]).collect();
            prop_assert_eq!(decode_all(Framing::Multiplexed, pieces).unwrap(), merge(&frames));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2000), step in 1usize..64) {
            let _ = decode_all(Framing::Multiplexed, data.chunks(step));
        }
    }
}
