//! Word-level lexing: quotes, backslashes, `$'…'`, `${…}`, and the
//! command substitutions (`$( )`, backticks) found inside words.

use super::{MAX_DEPTH, Parser, Script, Word, is_meta, parse};

impl Parser<'_> {
    /// One word, up to an unquoted metacharacter, with quoting removed and
    /// substitutions lexed into `out` (their raw text stays in the word).
    pub(super) fn word(&mut self, out: &mut Script) -> Word {
        let mut buf = Vec::new();
        let mut quoted = false;
        while let Some(c) = self.peek() {
            match c {
                b'(' if buf.last() == Some(&b'=') => {
                    // `arr=(a b)`: an array assignment, not a subshell.
                    self.raw_balanced(&mut buf, b'(', b')');
                }
                c if is_meta(c) => break,
                b'\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'\n') => self.pos += 1,
                        Some(d) => {
                            buf.push(d);
                            self.pos += 1;
                            quoted = true;
                        }
                        None => {}
                    }
                }
                b'\'' => {
                    quoted = true;
                    self.pos += 1;
                    while let Some(d) = self.peek() {
                        self.pos += 1;
                        if d == b'\'' {
                            break;
                        }
                        buf.push(d);
                    }
                }
                b'"' => {
                    quoted = true;
                    self.pos += 1;
                    self.dquote(&mut buf, out, true);
                }
                b'`' => self.backtick(&mut buf, out),
                b'$' => quoted |= self.dollar(&mut buf, out, false),
                _ => {
                    buf.push(c);
                    self.pos += 1;
                }
            }
        }
        Word {
            text: String::from_utf8_lossy(&buf).into_owned(),
            quoted,
        }
    }

    /// The inside of `"…"` (or of an expanding here-document when
    /// `closing` is false): `\` escapes only `"\$` and backtick.
    pub(super) fn dquote(&mut self, buf: &mut Vec<u8>, out: &mut Script, closing: bool) {
        while let Some(c) = self.peek() {
            match c {
                b'"' if closing => {
                    self.pos += 1;
                    return;
                }
                b'\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some(d @ (b'"' | b'\\' | b'$' | b'`')) => {
                            buf.push(d);
                            self.pos += 1;
                        }
                        Some(b'\n') => self.pos += 1,
                        Some(_) => buf.push(b'\\'),
                        None => {}
                    }
                }
                b'`' => self.backtick(buf, out),
                b'$' => {
                    self.dollar(buf, out, true);
                }
                _ => {
                    buf.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// At `$`. Returns whether it began quoting (`$'…'`, `$"…"`).
    fn dollar(&mut self, buf: &mut Vec<u8>, out: &mut Script, in_dquote: bool) -> bool {
        let start = self.pos;
        match self.peek_at(1) {
            Some(b'(') => {
                self.pos += 2;
                self.subst(out);
                buf.extend_from_slice(&self.s[start..self.pos]);
                false
            }
            Some(b'{') => {
                self.pos += 1;
                buf.push(b'$');
                self.raw_balanced(buf, b'{', b'}');
                false
            }
            Some(b'\'') if !in_dquote => {
                self.pos += 2;
                self.ansi_c(buf);
                true
            }
            Some(b'"') if !in_dquote => {
                // `$"…"` (locale translation) reads like `"…"`.
                self.pos += 1;
                false
            }
            _ => {
                buf.push(b'$');
                self.pos += 1;
                false
            }
        }
    }

    /// The commands of a `$(`/`<(`, already past the `(`, through its `)`.
    pub(super) fn subst(&mut self, out: &mut Script) {
        if self.depth + 1 > MAX_DEPTH {
            out.too_deep = true;
            let mut junk = Vec::new();
            self.pos -= 1; // back onto the `(`
            self.raw_balanced(&mut junk, b'(', b')');
            return;
        }
        self.depth += 1;
        self.list(out, true);
        self.depth -= 1;
    }

    /// Copies text through the bracket matching the `open` at `pos`
    /// (counting nesting, ignoring quotes), or to the end.
    fn raw_balanced(&mut self, buf: &mut Vec<u8>, open: u8, close: u8) {
        let mut level = 0usize;
        while let Some(c) = self.peek() {
            buf.push(c);
            self.pos += 1;
            if c == open {
                level += 1;
            } else if c == close {
                level = level.saturating_sub(1);
                if level == 0 {
                    return;
                }
            }
        }
    }

    /// At a backtick: the text up to the next unescaped one is lexed again
    /// as a script one level down.
    fn backtick(&mut self, buf: &mut Vec<u8>, out: &mut Script) {
        let start = self.pos;
        self.pos += 1;
        let mut inner = Vec::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'`' => break,
                b'\\' => match self.peek() {
                    Some(d @ (b'`' | b'\\' | b'$')) => {
                        inner.push(d);
                        self.pos += 1;
                    }
                    _ => inner.push(b'\\'),
                },
                _ => inner.push(c),
            }
        }
        buf.extend_from_slice(&self.s[start..self.pos]);
        if self.depth + 1 > MAX_DEPTH {
            out.too_deep = true;
            return;
        }
        let sub = parse(&String::from_utf8_lossy(&inner), self.depth + 1);
        out.commands.extend(sub.commands);
        out.too_deep |= sub.too_deep;
    }

    /// The inside of `$'…'`, decoding the escapes that could spell a
    /// program name (`$'\x72m'` is `rm`).
    fn ansi_c(&mut self, buf: &mut Vec<u8>) {
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'\'' => return,
                b'\\' => {
                    let Some(e) = self.peek() else { return };
                    self.pos += 1;
                    match e {
                        b'n' => buf.push(b'\n'),
                        b't' => buf.push(b'\t'),
                        b'r' => buf.push(b'\r'),
                        b'a' => buf.push(7),
                        b'b' => buf.push(8),
                        b'e' | b'E' => buf.push(27),
                        b'f' => buf.push(12),
                        b'v' => buf.push(11),
                        b'x' => self.push_code(buf, 16, 2),
                        b'u' => self.push_code(buf, 16, 4),
                        b'U' => self.push_code(buf, 16, 8),
                        b'0'..=b'7' => {
                            self.pos -= 1;
                            self.push_code(buf, 8, 3);
                        }
                        other => buf.push(other),
                    }
                }
                _ => buf.push(c),
            }
        }
    }

    fn push_code(&mut self, buf: &mut Vec<u8>, radix: u32, max_digits: usize) {
        let mut v: u32 = 0;
        let mut n = 0;
        while n < max_digits {
            match self.peek().and_then(|c| (c as char).to_digit(radix)) {
                Some(d) => {
                    v = v.saturating_mul(radix).saturating_add(d);
                    self.pos += 1;
                    n += 1;
                }
                None => break,
            }
        }
        if n == 0 {
            return;
        }
        if radix == 16 && max_digits > 2 {
            let ch = char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut tmp = [0u8; 4];
            buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
        } else {
            // `\xHH` and octal give one byte (bash does the same).
            buf.push((v & 0xff) as u8);
        }
    }
}
