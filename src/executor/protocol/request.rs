//! Request lines (server → agent): encoding, parsing, and the bounded line
//! splitter the agent reads its stdin with.

use super::*;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
