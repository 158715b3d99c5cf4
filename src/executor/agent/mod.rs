//! The executor agent: the program that runs inside a sandbox as one
//! long-lived exec, reads requests on stdin and runs each call as
//! `/bin/sh -lc command` in its own session, answering with frames on
//! stdout (see `protocol`).
//!
//! Std only, with raw `extern "C"` declarations for the libc calls std does
//! not wrap (`sys`): these files are also compiled standalone into a
//! static binary.
//!
//! Threads: the main thread reads stdin; one reaper thread owns every
//! `waitpid` (the agent is a child subreaper, so orphans of all calls come
//! here); one scanner thread tracks each running call's descendants
//! (`procs`); each call has a worker that waits for its end and one that
//! reads its pipe (`output`), both from a pool (`pool`).

mod output;
mod pool;
mod procs;
mod spawn;
mod sys;

use super::protocol::{self, Frame, Line, LineDecoder, Request};

use std::collections::{HashMap, HashSet};
use std::ffi::c_int;
use std::fs::File;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use output::{OutBuf, Output};
use procs::{Track, kill_tree, now_ticks};
use spawn::SpawnBase;
use sys::{ECHILD, EINTR, errno};

const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// A call still running after this gets a STARTED frame.
const STARTED_AFTER: Duration = Duration::from_millis(10);
/// How long stdin EOF waits for in-flight calls to be killed and answered.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(15);
/// How long an ended call still counts when attributing orphans; the
/// scanner sees every new process within `procs::SCAN_EVERY` while calls
/// run.
const RECENT_FOR: Duration = Duration::from_secs(10);

/// Mutex poisoning cannot leave our data inconsistent in a way that
/// matters more than stopping would (the standalone build aborts on
/// panic anyway), so a poisoned lock is taken as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Ev {
    /// The shell was reaped with this wait status.
    Exited(c_int),
    /// `K`, or stdin EOF.
    Cancel,
}

/// Wakes the reaper when a child exists again, so it blocks instead of
/// spinning on ECHILD; and maps call shells' pids to their call.
#[derive(Default)]
struct ReapState {
    spawned: u64,
    waiters: HashMap<i32, mpsc::Sender<Ev>>,
}

/// The agent's stdout, and the connection epoch it belongs to: a call's
/// frames are written only while the epoch it started in is current.
struct Out {
    file: File,
    epoch: u32,
}

struct Agent {
    out: Mutex<Out>,
    pid: i32,
    reap: Mutex<ReapState>,
    reap_cv: Condvar,
    /// In-flight calls by (epoch, id), for `K`, `X` and stdin EOF.
    calls: Mutex<HashMap<(u32, u32), mpsc::Sender<Ev>>>,
    calls_cv: Condvar,
    /// Running calls' descendant sets, updated by the scanner thread.
    tracks: Mutex<Vec<Arc<Track>>>,
    tracks_cv: Condvar,
    /// Calls that ended lately, with when: an orphan started while one of
    /// them ran is not adopted by another call (see `adopt_orphans`).
    recent: Mutex<Vec<(Instant, Arc<Track>)>>,
    /// Orphans (pid, start) already judged, so each is judged once, when
    /// first seen reparented to the agent.
    judged: Mutex<HashSet<(i32, u64)>>,
    spawn: SpawnBase,
}

impl Agent {
    /// Writes one frame whole. A failed write means the server is gone;
    /// stdin EOF follows and ends the agent.
    fn send(&self, f: &Frame) {
        let bytes = protocol::encode_frame(f);
        let _ = lock(&self.out).file.write_all(&bytes);
    }

    /// Writes a frame of a call that started in `epoch`, unless a newer
    /// connection has taken over since (checked under the same lock as
    /// the write, so nothing of an old call follows the reset's PONG).
    fn send_call(&self, epoch: u32, f: &Frame) {
        let bytes = protocol::encode_frame(f);
        let mut out = lock(&self.out);
        if out.epoch == epoch {
            let _ = out.file.write_all(&bytes);
        }
    }

    fn epoch(&self) -> u32 {
        lock(&self.out).epoch
    }

    fn error(&self, id: u32, message: String) {
        self.send(&Frame::Error { id, message });
    }
}

/// Runs the agent until stdin closes; returns the exit code. It takes
/// over fds 0 and 1 and makes the process a child subreaper: for the agent
/// binary only, never the server's process.
pub fn main() -> i32 {
    // SAFETY: plain syscalls with integer arguments.
    unsafe {
        sys::prctl(sys::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let spawn = match SpawnBase::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pod-exec-executor: {e}");
            return 1;
        }
    };
    // fds 0 and 1 must stay open for the agent's life: if either were
    // closed, a later open() could take its number and a child's dup2 onto
    // it would then keep the close-on-exec flag.
    // SAFETY: fds 0 and 1 are open (the exec's stdin and stdout) and owned
    // by nothing else in this process.
    let mut stdin = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
    // The agent lives in an Arc held by threads that never end, so this
    // File is never dropped either.
    let out = unsafe { File::from_raw_fd(1) };
    let agent = Arc::new(Agent {
        out: Mutex::new(Out {
            file: out,
            epoch: 0,
        }),
        pid: std::process::id() as i32,
        reap: Mutex::new(ReapState::default()),
        reap_cv: Condvar::new(),
        calls: Mutex::new(HashMap::new()),
        calls_cv: Condvar::new(),
        tracks: Mutex::new(Vec::new()),
        tracks_cv: Condvar::new(),
        recent: Mutex::new(Vec::new()),
        judged: Mutex::new(HashSet::new()),
        spawn,
    });
    let a = agent.clone();
    if pool::spawn("reaper", move || reaper(&a)).is_err() {
        return 1;
    }
    let a = agent.clone();
    if pool::spawn("scanner", move || procs::scanner(&a)).is_err() {
        return 1;
    }
    agent.send(&Frame::Hello {
        version: protocol::VERSION,
        pid: agent.pid as u32,
    });

    let mut lines = LineDecoder::new(protocol::MAX_LINE);
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        lines.push(&buf[..n], &mut got);
        for line in got.drain(..) {
            handle_line(&agent, line);
        }
    }
    if lines.pending() > 0 {
        agent.error(0, "stdin ended inside a line".into());
    }
    shutdown(&agent);
    0
}

fn handle_line(agent: &Arc<Agent>, line: Line) {
    let line = match line {
        Line::Full(l) => l,
        Line::TooLong { prefix } => {
            let id = protocol::request_run_id(&prefix).unwrap_or(0);
            agent.error(
                id,
                format!("request line longer than {} bytes", protocol::MAX_LINE),
            );
            return;
        }
    };
    match protocol::parse_request(&line) {
        Err((id, msg)) => agent.error(id.unwrap_or(0), msg),
        Ok(Request::Ping { id }) => agent.send(&Frame::Pong { id }),
        Ok(Request::Kill { id }) => {
            // A call that already answered is not an error: K races DONE.
            if let Some(tx) = lock(&agent.calls).get(&(agent.epoch(), id)) {
                let _ = tx.send(Ev::Cancel);
            }
        }
        Ok(Request::Reset) => {
            {
                let mut out = lock(&agent.out);
                out.epoch = out.epoch.wrapping_add(1);
            }
            // Every call in flight is of an older epoch now.
            for tx in lock(&agent.calls).values() {
                let _ = tx.send(Ev::Cancel);
            }
        }
        Ok(Request::Run {
            id,
            timeout_ms,
            max_output,
            progress,
            token,
            command,
        }) => {
            let (tx, rx) = mpsc::channel();
            // Only this thread changes the epoch: it holds for the call.
            let epoch = agent.epoch();
            {
                let mut calls = lock(&agent.calls);
                if calls.contains_key(&(epoch, id)) {
                    // Id 0: an ERROR for this id would claim the running
                    // call gets no DONE.
                    drop(calls);
                    agent.error(0, format!("R {id}: id already in flight"));
                    return;
                }
                calls.insert((epoch, id), tx.clone());
            }
            let call = Call {
                id,
                epoch,
                timeout_ms,
                max_output,
                progress,
                token,
                command,
            };
            let a = agent.clone();
            let spawned = pool::run(move || {
                run_call(&a, call, tx, rx);
                finish_call(&a, epoch, id);
            });
            if let Err(e) = spawned {
                finish_call(agent, epoch, id);
                agent.error(id, format!("cannot start a thread for the call: {e}"));
            }
        }
    }
}

fn finish_call(agent: &Agent, epoch: u32, id: u32) {
    lock(&agent.calls).remove(&(epoch, id));
    agent.calls_cv.notify_all();
}

/// Stdin closed: cancel every call in flight and wait (bounded) for their
/// answers. Background jobs of finished calls are left alone.
fn shutdown(agent: &Agent) {
    let until = Instant::now() + SHUTDOWN_LIMIT;
    let mut calls = lock(&agent.calls);
    for tx in calls.values() {
        let _ = tx.send(Ev::Cancel);
    }
    while !calls.is_empty() {
        let now = Instant::now();
        if now >= until {
            return;
        }
        calls = agent
            .calls_cv
            .wait_timeout(calls, until - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// The only `waitpid` in the agent: reaps call shells (their status goes
/// to the call) and every orphan that was reparented to this subreaper.
fn reaper(agent: &Agent) {
    loop {
        let seen = lock(&agent.reap).spawned;
        let mut status: c_int = 0;
        // SAFETY: status is a valid out pointer.
        let pid = unsafe { sys::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            if let Some(tx) = lock(&agent.reap).waiters.remove(&pid) {
                let _ = tx.send(Ev::Exited(status));
            }
            continue;
        }
        match errno() {
            EINTR => {}
            ECHILD => {
                // No child at all (so no descendant either, or it would
                // have been reparented here): sleep until a fork.
                let mut st = lock(&agent.reap);
                while st.spawned == seen {
                    st = agent.reap_cv.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

struct Call {
    id: u32,
    /// The connection epoch it started in (see [`Request::Reset`]).
    epoch: u32,
    timeout_ms: u64,
    max_output: u64,
    progress: bool,
    token: String,
    command: Vec<u8>,
}

enum End {
    Exited(c_int),
    TimedOut,
    Cancelled,
}

fn run_call(agent: &Arc<Agent>, call: Call, tx: mpsc::Sender<Ev>, rx: mpsc::Receiver<Ev>) {
    let (id, epoch) = (call.id, call.epoch);
    let error = |message: String| agent.send_call(epoch, &Frame::Error { id, message });
    // Keep a DONE frame decodable whatever the server asked for.
    let cap = call
        .max_output
        .min(u64::from(protocol::MAX_PAYLOAD) - protocol::DONE_FIXED_LEN as u64)
        as usize;
    // Registered before the fork: an orphan of this call may be judged
    // (see `adopt_orphans`) before `spawn_shell` returns, and must then
    // see this call as a candidate.
    let track = Arc::new(Track::new(&call.token));
    lock(&agent.tracks).push(track.clone());
    agent.tracks_cv.notify_all();
    let (pid, pipe) = match spawn::spawn_shell(agent, &call.command, &call.token, tx) {
        Ok(x) => x,
        Err(msg) => {
            untrack(agent, &track);
            return error(msg);
        }
    };
    track.set_shell(pid);
    let started = Instant::now();
    // STARTED waits until the call has run for `STARTED_AFTER`: a quick
    // call answers with DONE alone, one frame through conmon and Podman
    // instead of two.
    let mut started_due = Some(started + STARTED_AFTER);

    let output = Arc::new(Output::new(cap));
    let o = output.clone();
    if let Err(e) = pool::run(move || output::read_pipe(pipe, &o)) {
        // No reader: nothing would drain the pipe, so stop the call now.
        // The shell's exit status still reaches `rx` and is dropped.
        kill_tree(agent, &track);
        untrack(agent, &track);
        return error(format!("cannot start the output reader: {e}"));
    }

    let deadline = started.checked_add(Duration::from_millis(call.timeout_ms));
    let mut next_progress = started + PROGRESS_EVERY;
    let mut sent_total = 0u64;
    let end = loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break End::TimedOut;
        }
        if started_due.is_some_and(|d| now >= d) {
            started_due = None;
            agent.send_call(
                epoch,
                &Frame::Started {
                    id,
                    pid: pid as u32,
                },
            );
        }
        if call.progress && now >= next_progress {
            let (total, line) = {
                let st = lock(&output.st);
                (st.buf.total, st.buf.last_line(protocol::MAX_PROGRESS_LINE))
            };
            if total != sent_total {
                sent_total = total;
                agent.send_call(
                    epoch,
                    &Frame::Progress {
                        id,
                        total_bytes: total,
                        last_line: line,
                    },
                );
            }
            while next_progress <= now {
                next_progress += PROGRESS_EVERY;
            }
        }
        let mut wake = deadline.unwrap_or(now + Duration::from_secs(3600));
        if call.progress {
            wake = wake.min(next_progress);
        }
        if let Some(d) = started_due {
            wake = wake.min(d);
        }
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(Ev::Exited(status)) => break End::Exited(status),
            Ok(Ev::Cancel) => break End::Cancelled,
            // `tx` lives in the reaper's map or `calls`: a timeout is the
            // only way here, and the loop head sorts out which.
            Err(_) => {}
        }
    };

    let (retval, timed_out, cancelled) = match end {
        End::Exited(status) => (shell_retval(status), false, false),
        End::TimedOut | End::Cancelled => {
            let retval = kill_tree(agent, &track);
            (
                retval,
                matches!(end, End::TimedOut),
                matches!(end, End::Cancelled),
            )
        }
    };
    untrack(agent, &track);
    output::drain(&output);
    // From here on the reader discards: background jobs keep their pipe.
    output.detached.store(true, Ordering::Relaxed);
    let buf = std::mem::replace(&mut lock(&output.st).buf, OutBuf::new(0));
    let truncated = buf.total > (buf.head.len() + buf.tail.len()) as u64;
    agent.send_call(
        epoch,
        &Frame::Done {
            id,
            retval,
            timed_out,
            cancelled,
            truncated,
            total_bytes: buf.total,
            head: buf.head,
            tail: buf.tail.into(),
        },
    );
}

fn untrack(agent: &Agent, track: &Arc<Track>) {
    lock(&agent.tracks).retain(|t| !Arc::ptr_eq(t, track));
    *lock(&track.end) = Some(now_ticks(true));
    let mut recent = lock(&agent.recent);
    recent.retain(|(at, _)| at.elapsed() < RECENT_FOR);
    recent.push((Instant::now(), track.clone()));
}

/// As a shell reports it: the exit code, or 128 + the signal.
fn shell_retval(status: c_int) -> i32 {
    let sig = status & 0x7f;
    if sig == 0 {
        (status >> 8) & 0xff
    } else {
        128 + sig
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn retval_of_a_signalled_shell() {
        assert_eq!(shell_retval(3 << 8), 3);
        assert_eq!(shell_retval(9), 137);
        assert_eq!(shell_retval(15), 143);
    }
}
