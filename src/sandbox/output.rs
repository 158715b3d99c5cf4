//! `OutputBuffer`: a call's merged output, bounded: keeps the head and the
//! tail and counts what fell out between them.

use std::collections::VecDeque;

/// Collects output up to `cap` bytes: the first `cap/2` and the last
/// `cap - cap/2`. Memory never exceeds `cap` bytes, however much is pushed.
#[derive(Debug)]
pub struct OutputBuffer {
    head: Vec<u8>,
    head_cap: usize,
    tail: VecDeque<u8>,
    tail_cap: usize,
    total: u64,
}

/// The rendered output of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedOutput {
    /// Text (invalid UTF-8 replaced), with a marker line where bytes were
    /// left out.
    pub text: String,
    /// Whether bytes were left out.
    pub truncated: bool,
    /// Bytes the command printed in all.
    pub total_bytes: u64,
}

impl OutputBuffer {
    /// A buffer keeping at most `cap` bytes (at least 2).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(2);
        let head_cap = cap / 2;
        OutputBuffer {
            head: Vec::new(),
            head_cap,
            tail: VecDeque::new(),
            tail_cap: cap - head_cap,
            total: 0,
        }
    }

    /// Appends bytes in arrival order.
    pub fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.head.len() < self.head_cap {
            let take = (self.head_cap - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        if data.is_empty() {
            return;
        }
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail
                .extend(data[data.len() - self.tail_cap..].iter().copied());
            return;
        }
        let overflow = (self.tail.len() + data.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.tail.extend(data.iter().copied());
    }

    /// Bytes pushed so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The last line of output seen so far (for progress messages), lossy.
    pub fn last_line(&self, max_chars: usize) -> String {
        let bytes: Vec<u8> = if self.tail.is_empty() {
            self.head.clone()
        } else {
            self.tail.iter().copied().collect()
        };
        let text = String::from_utf8_lossy(&bytes);
        let line = text
            .trim_end_matches(['\n', '\r'])
            .rsplit('\n')
            .next()
            .unwrap_or("");
        line.chars().take(max_chars).collect()
    }

    /// Renders the output: see [`render_parts`].
    pub fn render(self) -> RenderedOutput {
        let tail: Vec<u8> = self.tail.into_iter().collect();
        render_parts(&self.head, &tail, self.total)
    }
}

/// What the rendered output may cost once encoded in a tool result: it is
/// sent twice (`structuredContent` and the text copy, where every escape
/// is escaped again), and the official Python SDK refuses a server-sent
/// event over 1 MiB.
pub const ENCODED_BUDGET: usize = 768 * 1024;

/// Renders `head` and `tail`, the kept ends of `total` bytes of output:
/// everything when nothing was dropped, else head, a marker line, and tail.
/// Cuts never split a UTF-8 character; invalid UTF-8 and control
/// characters other than newline, tab and carriage return become U+FFFD
/// (a NUL would cost 6 bytes in JSON and 7 in the text copy); and when the
/// result would cost more than [`ENCODED_BUDGET`] encoded, head and tail
/// are cut further.
pub fn render_parts(head: &[u8], tail: &[u8], total: u64) -> RenderedOutput {
    let kept = (head.len() + tail.len()) as u64;
    if kept >= total {
        let mut all = head.to_vec();
        all.extend_from_slice(tail);
        let text = visible(&String::from_utf8_lossy(&all));
        if encoded_cost(&text) <= ENCODED_BUDGET {
            return RenderedOutput {
                text,
                truncated: false,
                total_bytes: total,
            };
        }
    }
    let head = visible(&String::from_utf8_lossy(trim_incomplete_end(head)));
    let tail = visible(&String::from_utf8_lossy(trim_incomplete_start(tail)));
    // Half the budget each, less room for the marker.
    let half = ENCODED_BUDGET / 2 - 256;
    let head = prefix_within(&head, half);
    let tail = suffix_within(&tail, half);
    let omitted = total.saturating_sub((head.len() + tail.len()) as u64);
    let mut text = head.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "[... {omitted} bytes of output omitted; {total} bytes in all ...]\n"
    ));
    text.push_str(tail);
    RenderedOutput {
        text,
        truncated: true,
        total_bytes: total,
    }
}

/// Replaces control characters a terminal would not show as text.
fn visible(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\t' | '\r') {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// Bytes `c` costs in a tool result: once JSON-escaped in
/// `structuredContent`, and in the text copy, the JSON of that escaped again.
fn char_cost(c: char) -> usize {
    match c {
        '"' | '\\' => 2 + 4,
        '\n' | '\r' | '\t' => 2 + 3,
        c => 2 * c.len_utf8(),
    }
}

fn encoded_cost(s: &str) -> usize {
    s.chars().map(char_cost).sum()
}

/// The longest prefix of `s` costing at most `budget`.
fn prefix_within(s: &str, budget: usize) -> &str {
    let mut cost = 0;
    for (i, c) in s.char_indices() {
        cost += char_cost(c);
        if cost > budget {
            return &s[..i];
        }
    }
    s
}

/// The longest suffix of `s` costing at most `budget`.
fn suffix_within(s: &str, budget: usize) -> &str {
    let mut cost = 0;
    for (i, c) in s.char_indices().rev() {
        cost += char_cost(c);
        if cost > budget {
            return &s[i + c.len_utf8()..];
        }
    }
    s
}

/// Drops a multi-byte character cut off at the end.
fn trim_incomplete_end(b: &[u8]) -> &[u8] {
    // A UTF-8 character is at most 4 bytes: look at the last 3 for a lead
    // byte whose sequence runs past the end.
    for back in 1..=3.min(b.len()) {
        let i = b.len() - back;
        let lead = b[i];
        let need = match lead {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            0x80..=0xBF => continue,
            _ => return b,
        };
        return if need > back { &b[..i] } else { b };
    }
    b
}

/// Drops continuation bytes of a character cut off at the start.
fn trim_incomplete_start(b: &[u8]) -> &[u8] {
    let skip = b
        .iter()
        .take(3)
        .take_while(|&&c| (0x80..=0xBF).contains(&c))
        .count();
    &b[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_output_is_whole() {
        let mut b = OutputBuffer::new(10);
        b.push(b"abc");
        b.push(b"defghij");
        let r = b.render();
        assert_eq!(r.text, "abcdefghij");
        assert!(!r.truncated);
        assert_eq!(r.total_bytes, 10);
    }

    #[test]
    fn long_output_keeps_head_and_tail() {
        let mut b = OutputBuffer::new(10);
        for c in b'a'..=b'z' {
            b.push(&[c]);
        }
        let r = b.render();
        assert!(r.truncated);
        assert_eq!(
            r.text,
            "abcde\n[... 16 bytes of output omitted; 26 bytes in all ...]\nvwxyz"
        );
    }

    #[test]
    fn cut_never_splits_a_character() {
        let mut b = OutputBuffer::new(8);
        b.push("ééééééééé".as_bytes()); // 18 bytes
        let r = b.render();
        assert!(!r.text.contains('\u{FFFD}'), "{}", r.text);
        assert!(r.text.starts_with("éé\n"), "{}", r.text);
        assert!(r.text.ends_with("éé"), "{}", r.text);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut b = OutputBuffer::new(100);
        b.push(&[b'a', 0xff, b'b']);
        assert_eq!(b.render().text, "a\u{FFFD}b");
    }

    #[test]
    fn control_characters_are_replaced() {
        let mut b = OutputBuffer::new(100);
        b.push(b"a\0b\x1b[1mc\td\r\n");
        assert_eq!(b.render().text, "a\u{FFFD}b\u{FFFD}[1mc\td\r\n");
    }

    #[test]
    fn encoded_cost_stays_within_the_budget() {
        // 1 MiB kept of quotes: 6 MiB once encoded twice, far over.
        let quotes = vec![b'"'; 1 << 20];
        let r = render_parts(&quotes, &quotes, 3 << 20);
        assert!(r.truncated);
        assert!(
            encoded_cost(&r.text) <= ENCODED_BUDGET,
            "{}",
            encoded_cost(&r.text)
        );
        assert!(
            r.text
                .contains("bytes of output omitted; 3145728 bytes in all")
        );
        // Nothing dropped but too costly: cut and marked.
        let zeros = vec![0u8; 500_000];
        let r = render_parts(&zeros, &[], 500_000);
        assert!(r.truncated && encoded_cost(&r.text) <= ENCODED_BUDGET);
        // Within budget: untouched.
        let r = render_parts(b"ok\n", b"", 3);
        assert_eq!(r.text, "ok\n");
        assert!(!r.truncated);
        // The real encoding agrees with the estimate.
        let v = serde_json::json!({"output": r.text});
        let once = v.to_string();
        let twice = serde_json::Value::String(once.clone()).to_string();
        assert!(once.len() + twice.len() <= 2 * encoded_cost(&r.text) + 64);
    }

    proptest! {
        #[test]
        fn estimate_bounds_the_real_encoding(s in ".{0,200}") {
            let text = visible(&s);
            let once = serde_json::Value::String(text.clone()).to_string();
            let twice = serde_json::Value::String(once.clone()).to_string();
            prop_assert!(once.len() + twice.len() <= encoded_cost(&text) + 8);
        }
    }

    #[test]
    fn last_line() {
        let mut b = OutputBuffer::new(100);
        b.push(b"one\ntwo\nthree\n");
        assert_eq!(b.last_line(80), "three");
    }

    proptest! {
        #[test]
        fn bounded_and_faithful(pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 0..40), cap in 2usize..64) {
            let mut b = OutputBuffer::new(cap);
            let mut all = Vec::new();
            for p in &pieces {
                b.push(p);
                all.extend_from_slice(p);
                prop_assert!(b.head.len() + b.tail.len() <= cap);
            }
            let head: Vec<u8> = b.head.clone();
            let tail: Vec<u8> = b.tail.iter().copied().collect();
            prop_assert_eq!(b.total(), all.len() as u64);
            prop_assert_eq!(&head[..], &all[..head.len()]);
            prop_assert_eq!(&tail[..], &all[all.len() - tail.len()..]);
            if all.len() <= cap {
                prop_assert_eq!(head.len() + tail.len(), all.len());
            }
        }
    }
}
