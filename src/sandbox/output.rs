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

    /// Renders the output: everything when nothing was dropped, else head,
    /// a marker line, and tail. Cuts never split a UTF-8 character.
    pub fn render(self) -> RenderedOutput {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let omitted = self.total - kept;
        let tail: Vec<u8> = self.tail.into_iter().collect();
        if omitted == 0 {
            let mut all = self.head;
            all.extend_from_slice(&tail);
            return RenderedOutput {
                text: String::from_utf8_lossy(&all).into_owned(),
                truncated: false,
                total_bytes: self.total,
            };
        }
        let head = trim_incomplete_end(&self.head);
        let tail = trim_incomplete_start(&tail);
        let omitted = self.total - (head.len() + tail.len()) as u64;
        let mut text = String::from_utf8_lossy(head).into_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "[... {omitted} bytes of output omitted; {} bytes in all ...]\n",
            self.total
        ));
        text.push_str(&String::from_utf8_lossy(tail));
        RenderedOutput {
            text,
            truncated: true,
            total_bytes: self.total,
        }
    }
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
