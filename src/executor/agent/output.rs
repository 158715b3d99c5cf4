//! A call's output: the pipe reader that keeps head and tail within the
//! call's cap (bulk reads past a few MiB), the short drain after the shell
//! exits, and the reading-and-discarding that lets a finished call's
//! background jobs keep writing.

use std::collections::VecDeque;
use std::ffi::c_int;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use super::sys::{self, F_SETPIPE_SZ, POLLIN};

/// Past this much output a call reads in bulk: a larger pipe, and a nap
/// after a read that found it less than half full. Each read of a nearly
/// empty pipe costs the writer a wakeup and the reader a context switch,
/// and both are charged to the sandbox's CPU quota: reading 1 GiB from a
/// 64 KiB pipe as it comes costs more CPU than the command that prints it.
/// The nap is learnt from what the writer did during the last one (half a
/// pipe's worth of its time, at most `BULK_NAP`): a fixed nap would leave a
/// fast writer blocked on a full pipe for most of it. Small outputs never
/// nap.
const BULK_AFTER: u64 = 4 << 20;
/// The pipe size asked for in bulk (Linux's default pipe-max-size).
const BULK_PIPE: c_int = 1 << 20;
const BULK_NAP: Duration = Duration::from_millis(1);
const BULK_NAP_MIN: Duration = Duration::from_micros(20);
/// After the shell exits, output still in the pipe is read until this much
/// quiet, at most `DRAIN_MAX`.
const DRAIN_QUIET: Duration = Duration::from_millis(50);
const DRAIN_MAX: Duration = Duration::from_millis(300);
/// How often a running call's reader wakes to see whether a drain began.
const READER_WAKE: Duration = Duration::from_millis(20);
/// Longest wait for a reader to finish its drain (it polls with timeouts,
/// so only a badly starved reader takes long).
const DRAIN_WAIT_LIMIT: Duration = Duration::from_secs(10);

/// Asks the reader to drain (the shell is gone) and waits until it has:
/// the pipe's EOF, `DRAIN_QUIET` without data, or `DRAIN_MAX`. The reader
/// judges the quiet itself, with poll on the pipe: from here, a reader
/// that is merely slow to be scheduled would look like a quiet pipe and
/// lose the call's last output.
pub(super) fn drain(output: &Output) {
    let mut st = lock(&output.st);
    st.drain_since = Some(Instant::now());
    // A reader starved for this long is a sick sandbox: answer anyway.
    let until = Instant::now() + DRAIN_WAIT_LIMIT;
    while !st.drained {
        let now = Instant::now();
        if now >= until {
            return;
        }
        st = output
            .cv
            .wait_timeout(st, until - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

pub(super) struct OutState {
    pub(super) buf: OutBuf,
    /// When the call asked for the drain (its shell exited or was killed).
    pub(super) drain_since: Option<Instant>,
    /// The drain is over: the call may answer.
    pub(super) drained: bool,
}

pub(super) struct Output {
    pub(super) st: Mutex<OutState>,
    pub(super) cv: Condvar,
    pub(super) detached: AtomicBool,
}

impl Output {
    pub(super) fn new(cap: usize) -> Self {
        Output {
            st: Mutex::new(OutState {
                buf: OutBuf::new(cap),
                drain_since: None,
                drained: false,
            }),
            cv: Condvar::new(),
            detached: AtomicBool::new(false),
        }
    }

    pub(super) fn set_drained(&self) {
        lock(&self.st).drained = true;
        self.cv.notify_all();
    }
}

/// Whether `fd` is readable (data, EOF or error) within `timeout`;
/// `None` if poll failed (EINTR).
pub(super) fn poll_in(fd: RawFd, timeout: Duration) -> Option<bool> {
    let mut p = sys::PollFd {
        fd,
        events: POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as c_int;
    // SAFETY: one valid pollfd.
    match unsafe { sys::poll(&mut p, 1, ms) } {
        r if r < 0 => None,
        r => Some(r > 0),
    }
}

/// Reads the call's pipe until EOF: into the buffer while the call runs,
/// then into nothing, so background jobs can keep writing. Until the drain
/// is over it polls, to notice the drain request and to time the quiet.
pub(super) fn read_pipe(mut pipe: File, output: &Output) {
    let fd = pipe.as_raw_fd();
    let mut buf = vec![0u8; 64 * 1024];
    let mut drained = false;
    let mut seen = 0u64;
    // The pipe's size once in bulk (0 before).
    let mut bulk = 0usize;
    // The nap in bulk, learnt from the writer's pace, and whether the read
    // just made came after one.
    let mut nap = BULK_NAP;
    let mut napped = false;
    loop {
        let mut since = None;
        if !drained {
            since = lock(&output.st).drain_since;
            let timeout = match since {
                None => READER_WAKE,
                Some(s) => DRAIN_MAX.saturating_sub(s.elapsed()).min(DRAIN_QUIET),
            };
            match poll_in(fd, timeout) {
                None => continue,
                Some(true) => {}
                Some(false) => {
                    // Quiet for DRAIN_QUIET, or at DRAIN_MAX with nothing
                    // buffered.
                    if since.is_some() {
                        drained = true;
                        output.set_drained();
                    }
                    continue;
                }
            }
        }
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if !output.detached.load(Ordering::Relaxed) {
            lock(&output.st).buf.push(&buf[..n]);
        }
        seen += n as u64;
        if bulk == 0 && seen >= BULK_AFTER {
            // SAFETY: fcntl on our own pipe fd; failure (the user's pipe
            // quota) leaves the size it had.
            let size = unsafe { sys::fcntl(fd, F_SETPIPE_SZ, BULK_PIPE) };
            bulk = usize::try_from(size).unwrap_or(64 * 1024).max(64 * 1024);
            buf.resize(bulk, 0);
        }
        if bulk > 0 {
            if napped {
                // What the writer did while we slept sets the next nap.
                let next = if n >= bulk {
                    // It filled the pipe (and then waited): nap less.
                    nap.as_secs_f64() / 2.0
                } else {
                    // Time for it to fill half the pipe at this pace.
                    nap.as_secs_f64() * (bulk / 2) as f64 / n.max(1) as f64
                };
                nap = Duration::from_secs_f64(
                    next.clamp(BULK_NAP_MIN.as_secs_f64(), BULK_NAP.as_secs_f64()),
                );
            }
            napped = n < bulk / 2;
            if napped {
                std::thread::sleep(nap);
            }
        }
        // Past DRAIN_MAX, one read has taken what a default pipe buffer
        // holds: a job that never stops writing does not hold the call.
        if !drained && since.is_some_and(|s| s.elapsed() >= DRAIN_MAX) {
            drained = true;
            output.set_drained();
        }
    }
    output.set_drained();
}

/// A call's output, bounded: the first `cap/2` bytes and the last
/// `cap - cap/2` (as the server's `OutputBuffer`), and the total.
pub(super) struct OutBuf {
    pub(super) head: Vec<u8>,
    pub(super) head_cap: usize,
    pub(super) tail: VecDeque<u8>,
    pub(super) tail_cap: usize,
    pub(super) total: u64,
}

impl OutBuf {
    pub(super) fn new(cap: usize) -> Self {
        OutBuf {
            head: Vec::new(),
            head_cap: cap / 2,
            tail: VecDeque::new(),
            tail_cap: cap - cap / 2,
            total: 0,
        }
    }

    pub(super) fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.head.len() < self.head_cap {
            let take = (self.head_cap - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + data.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.tail.extend(data);
    }

    /// The latest line (without its newline), at most `max` bytes, cut
    /// before a UTF-8 character rather than through it.
    pub(super) fn last_line(&self, max: usize) -> Vec<u8> {
        // Look at the last 4 KiB kept: enough for a progress snippet.
        let window: Vec<u8> = if self.tail.is_empty() {
            let s = self.head.len().saturating_sub(4096);
            self.head[s..].to_vec()
        } else {
            let s = self.tail.len().saturating_sub(4096);
            self.tail.iter().skip(s).copied().collect()
        };
        let mut end = window.len();
        while end > 0 && matches!(window[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        let start = window[..end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let mut line = &window[start..end];
        if line.len() > max {
            let mut cut = max;
            // Back up over continuation bytes to a character start.
            while cut > 0 && (line[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            line = &line[..cut];
        }
        line.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn outbuf_keeps_head_and_tail() {
        let mut b = OutBuf::new(10);
        for c in b'a'..=b'z' {
            b.push(&[c]);
        }
        assert_eq!(b.head, b"abcde");
        assert_eq!(b.tail.iter().copied().collect::<Vec<_>>(), b"vwxyz");
        assert_eq!(b.total, 26);
        let mut b = OutBuf::new(0);
        b.push(b"abc");
        assert_eq!((b.head.len(), b.tail.len(), b.total), (0, 0, 3));
    }

    #[test]
    pub(super) fn last_line_is_cut_on_a_character() {
        let mut b = OutBuf::new(10_000);
        b.push(b"one\ntwo\r\n\n");
        assert_eq!(b.last_line(256), b"two");
        let mut b = OutBuf::new(10_000);
        b.push("x\n".as_bytes());
        b.push("é".repeat(200).as_bytes());
        let l = b.last_line(255);
        assert_eq!(l.len(), 254);
        assert!(std::str::from_utf8(&l).is_ok());
    }
}
