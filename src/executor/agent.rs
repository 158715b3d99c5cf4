//! The executor agent: the program that runs inside a sandbox as one
//! long-lived exec, reads requests on stdin and runs each call as
//! `/bin/sh -lc command` in its own session, answering with frames on
//! stdout (see `protocol`).
//!
//! Std only, with raw `extern "C"` declarations for the libc calls std does
//! not wrap: this file is also compiled standalone into a static binary.
//!
//! Threads: the main thread reads stdin; one reaper thread owns every
//! `waitpid` (the agent is a child subreaper, so orphans of all calls come
//! here); one scanner thread tracks each running call's descendants; each
//! call has a thread that waits for its end and one that reads its pipe.

use super::protocol::{self, Frame, Line, LineDecoder, Request};

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{CString, OsStr, c_char, c_int, c_long, c_uint, c_void};
use std::fs::File;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

mod sys {
    use std::ffi::{c_char, c_int, c_long, c_uint, c_void};

    unsafe extern "C" {
        pub fn fork() -> c_int;
        pub fn setsid() -> c_int;
        pub fn prctl(
            option: c_int,
            arg2: c_long,
            arg3: c_long,
            arg4: c_long,
            arg5: c_long,
        ) -> c_int;
        pub fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
        pub fn kill(pid: c_int, sig: c_int) -> c_int;
        pub fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
        pub fn dup2(old: c_int, new: c_int) -> c_int;
        pub fn fcntl(fd: c_int, cmd: c_int, arg: c_int) -> c_int;
        pub fn execve(
            path: *const c_char,
            argv: *const *const c_char,
            envp: *const *const c_char,
        ) -> c_int;
        pub fn write(fd: c_int, buf: *const c_void, n: usize) -> isize;
        pub fn _exit(code: c_int) -> !;
        pub fn signal(sig: c_int, handler: usize) -> usize;
        pub fn syscall(n: c_long, ...) -> c_long;
        pub fn memfd_create(name: *const c_char, flags: c_uint) -> c_int;
        pub fn __errno_location() -> *mut c_int;
        pub fn poll(fds: *mut PollFd, nfds: std::ffi::c_ulong, timeout: c_int) -> c_int;
    }

    #[repr(C)]
    pub struct PollFd {
        pub fd: c_int,
        pub events: std::ffi::c_short,
        pub revents: std::ffi::c_short,
    }
}

const PR_SET_CHILD_SUBREAPER: c_int = 36;
const O_CLOEXEC: c_int = 0o2_000_000;
const F_SETFD: c_int = 2;
const MFD_CLOEXEC: c_uint = 1;
const POLLIN: std::ffi::c_short = 1;
const SIGKILL: c_int = 9;
const SIGPIPE: c_int = 13;
const SIGTERM: c_int = 15;
const SIGSTOP: c_int = 19;
const SIG_DFL: usize = 0;
const SIG_SETMASK: c_long = 2;
const ECHILD: i32 = 10;
const EINTR: i32 = 4;
#[cfg(target_arch = "x86_64")]
const SYS_RT_SIGPROCMASK: c_long = 14;
#[cfg(target_arch = "x86_64")]
const SYS_CLOSE_RANGE: c_long = 436;
// aarch64 and the other newer ports use the generic syscall table.
#[cfg(not(target_arch = "x86_64"))]
const SYS_RT_SIGPROCMASK: c_long = 135;
#[cfg(not(target_arch = "x86_64"))]
const SYS_CLOSE_RANGE: c_long = 436;
const CLOSE_RANGE_CLOEXEC: c_uint = 4;

/// Exported to every process of a call, so a kill can find it.
const CALL_ENV: &str = "POD_EXEC_CALL";
/// Longest command passed as an argv string: Linux caps one at
/// MAX_ARG_STRLEN (32 pages = 128 KiB, NUL included).
const MAX_ARGV_COMMAND: usize = 128 * 1024 - 1;
/// The fd a long command is read from: dash takes only one digit in a
/// redirection, and the command's first words close it again.
const LONG_COMMAND_FD: c_int = 9;

/// Past this much output a call reads in bulk: a larger pipe, and a nap
/// between reads that found it less than half full. Each read of a
/// nearly empty pipe costs the writer a wakeup and the reader a context
/// switch, and both are charged to the sandbox's CPU quota: reading 1 GiB
/// from a 64 KiB pipe as it comes costs more CPU than the command that
/// prints it. Small outputs never nap.
const BULK_AFTER: u64 = 4 << 20;
/// The pipe size asked for in bulk (Linux's default pipe-max-size).
const BULK_PIPE: c_int = 1 << 20;
const BULK_NAP: Duration = Duration::from_millis(1);
const F_SETPIPE_SZ: c_int = 1031;

/// After the shell exits, output still in the pipe is read until this much
/// quiet, at most `DRAIN_MAX`.
const DRAIN_QUIET: Duration = Duration::from_millis(50);
const DRAIN_MAX: Duration = Duration::from_millis(300);
/// How often a running call's reader wakes to see whether a drain began.
const READER_WAKE: Duration = Duration::from_millis(20);
/// Longest wait for a reader to finish its drain (it polls with timeouts,
/// so only a badly starved reader takes long).
const DRAIN_WAIT_LIMIT: Duration = Duration::from_secs(10);
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How often running calls' descendants are looked up in /proc.
const SCAN_EVERY: Duration = Duration::from_millis(100);
/// SIGTERM grace before stopping and killing.
const TERM_GRACE: Duration = Duration::from_secs(1);
const TERM_POLL: Duration = Duration::from_millis(50);
const STOP_LIMIT: Duration = Duration::from_secs(2);
const KILL_LIMIT: Duration = Duration::from_secs(5);
/// How long stdin EOF waits for in-flight calls to be killed and answered.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(15);

/// How long an ended call still counts when attributing orphans; the
/// scanner sees every new process within `SCAN_EVERY` while calls run.
const RECENT_FOR: Duration = Duration::from_secs(10);
/// Linux reports process start times in USER_HZ ticks, 100 on every
/// architecture's ABI.
const TICKS_PER_SEC: f64 = 100.0;

const RETVAL_TERM: i32 = 124;
const RETVAL_KILL: i32 = 137;

/// Mutex poisoning cannot leave our data inconsistent in a way that
/// matters more than stopping would (the standalone build aborts on
/// panic anyway), so a poisoned lock is taken as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
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
        sys::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
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
    });
    let a = agent.clone();
    if spawn_thread("reaper", move || reaper(&a)).is_err() {
        return 1;
    }
    let a = agent.clone();
    if spawn_thread("scanner", move || scanner(&a)).is_err() {
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

fn spawn_thread(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // Small stacks: many calls may run at once in a memory-limited sandbox.
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(256 * 1024)
        .spawn(f)
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
            let spawned = spawn_thread("call", move || {
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
    let (pid, pipe) = match spawn_shell(agent, &call.command, &call.token, tx) {
        Ok(x) => x,
        Err(msg) => {
            untrack(agent, &track);
            return error(msg);
        }
    };
    track.set_shell(pid);
    let started = Instant::now();
    agent.send_call(
        epoch,
        &Frame::Started {
            id,
            pid: pid as u32,
        },
    );

    let output = Arc::new(Output::new(cap));
    let o = output.clone();
    if let Err(e) = spawn_thread("pipe", move || read_pipe(pipe, &o)) {
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
    drain(&output);
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

/// Asks the reader to drain (the shell is gone) and waits until it has:
/// the pipe's EOF, `DRAIN_QUIET` without data, or `DRAIN_MAX`. The reader
/// judges the quiet itself, with poll on the pipe: from here, a reader
/// that is merely slow to be scheduled would look like a quiet pipe and
/// lose the call's last output.
fn drain(output: &Output) {
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

struct OutState {
    buf: OutBuf,
    /// When the call asked for the drain (its shell exited or was killed).
    drain_since: Option<Instant>,
    /// The drain is over: the call may answer.
    drained: bool,
}

struct Output {
    st: Mutex<OutState>,
    cv: Condvar,
    detached: AtomicBool,
}

impl Output {
    fn new(cap: usize) -> Self {
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

    fn set_drained(&self) {
        lock(&self.st).drained = true;
        self.cv.notify_all();
    }
}

/// Whether `fd` is readable (data, EOF or error) within `timeout`;
/// `None` if poll failed (EINTR).
fn poll_in(fd: RawFd, timeout: Duration) -> Option<bool> {
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
fn read_pipe(mut pipe: File, output: &Output) {
    let fd = pipe.as_raw_fd();
    let mut buf = vec![0u8; 64 * 1024];
    let mut drained = false;
    let mut seen = 0u64;
    // The pipe's size once in bulk (0 before).
    let mut bulk = 0usize;
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
        if bulk > 0 && n < bulk / 2 {
            std::thread::sleep(BULK_NAP);
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
struct OutBuf {
    head: Vec<u8>,
    head_cap: usize,
    tail: VecDeque<u8>,
    tail_cap: usize,
    total: u64,
}

impl OutBuf {
    fn new(cap: usize) -> Self {
        OutBuf {
            head: Vec::new(),
            head_cap: cap / 2,
            tail: VecDeque::new(),
            tail_cap: cap - cap / 2,
            total: 0,
        }
    }

    fn push(&mut self, mut data: &[u8]) {
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
    fn last_line(&self, max: usize) -> Vec<u8> {
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

/// Starts `/bin/sh -lc command` in a new session with stdin /dev/null and
/// stdout+stderr on one new pipe; returns the shell's pid and the pipe's
/// read end. The shell's exit status will go to `tx` (via the reaper).
///
/// Commands too long for one argv string (or holding a NUL) are written
/// to a memfd (a deleted file under /tmp if memfd_create is refused) that
/// the child gets as fd 9, and run as `/bin/sh -lc '. /proc/self/fd/9'`
/// with `exec 9<&-; ` put before the command on its first line: `$0` stays
/// `/bin/sh`, positional parameters stay empty, `exit N` works, line
/// numbers are unchanged, and the command's processes do not inherit fd 9.
/// Error messages then carry the file name (`/bin/sh: 1:
/// /proc/self/fd/9: xyz: not found`).
fn spawn_shell(
    agent: &Agent,
    command: &[u8],
    token: &str,
    tx: mpsc::Sender<Ev>,
) -> Result<(i32, File), String> {
    let long = command.len() > MAX_ARGV_COMMAND || command.contains(&0);
    let script: Option<OwnedFd> = if long {
        Some(long_command_fd(command)?)
    } else {
        None
    };
    let c_arg = if long {
        format!(". /proc/self/fd/{LONG_COMMAND_FD}").into_bytes()
    } else {
        command.to_vec()
    };
    let argv_c: Vec<CString> = [b"/bin/sh".to_vec(), b"-lc".to_vec(), c_arg]
        .into_iter()
        .map(CString::new)
        .collect::<Result<_, _>>()
        .map_err(|_| "command holds a NUL byte".to_owned())?;
    let mut envp_c: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k == OsStr::new(CALL_ENV) {
            continue;
        }
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        if let Ok(c) = CString::new(kv) {
            envp_c.push(c);
        }
    }
    envp_c.push(CString::new(format!("{CALL_ENV}={token}")).map_err(|e| e.to_string())?);
    let argv: Vec<*const c_char> = argv_c
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const c_char> = envp_c
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let devnull = File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
    let (pipe_r, pipe_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let script_fd = script.as_ref().map(|f| f.as_raw_fd());

    let pid = {
        // Held across fork so the reaper cannot look the pid up before
        // it is registered (a quick shell may be reaped at once).
        let mut reap = lock(&agent.reap);
        // SAFETY: the child only makes async-signal-safe calls on data
        // prepared above, then execs or exits.
        let pid = unsafe { sys::fork() };
        if pid == 0 {
            // SAFETY: as above; never returns.
            unsafe {
                child(
                    devnull.as_raw_fd(),
                    pipe_w.as_raw_fd(),
                    script_fd,
                    err_w.as_raw_fd(),
                    &argv,
                    &envp,
                )
            }
        }
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        reap.spawned += 1;
        reap.waiters.insert(pid, tx);
        agent.reap_cv.notify_all();
        pid
    };
    drop(pipe_w);
    drop(err_w);
    drop(script);
    // The exec-status pipe closes on a successful exec (close-on-exec) or
    // carries errno if exec failed.
    let mut err_r = File::from(err_r);
    let mut e = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match err_r.read(&mut e[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(x) if x.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if got == 4 {
        let code = i32::from_ne_bytes(e);
        // The child exits 127; the reaper collects it.
        return Err(format!(
            "exec /bin/sh: {}",
            std::io::Error::from_raw_os_error(code)
        ));
    }
    Ok((pid, File::from(pipe_r)))
}

/// In the forked child: set up the session and fds, then exec.
///
/// # Safety
/// Only between fork and exec; touches no lock and allocates nothing.
unsafe fn child(
    devnull: RawFd,
    pipe_w: RawFd,
    script: Option<RawFd>,
    err_w: RawFd,
    argv: &[*const c_char],
    envp: &[*const c_char],
) -> ! {
    // SAFETY: async-signal-safe syscalls only; pointers are valid,
    // NUL-terminated arrays built before fork.
    unsafe {
        sys::setsid();
        // Whatever the agent inherited or opened must not reach the call;
        // ours are close-on-exec already, this catches inherited ones.
        sys::syscall(
            SYS_CLOSE_RANGE,
            3 as c_uint,
            c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        );
        sys::dup2(devnull, 0);
        sys::dup2(pipe_w, 1);
        sys::dup2(pipe_w, 2);
        if let Some(fd) = script {
            if fd == LONG_COMMAND_FD {
                sys::fcntl(fd, F_SETFD, 0);
            } else {
                sys::dup2(fd, LONG_COMMAND_FD);
            }
        }
        // Rust ignores SIGPIPE in the agent; an ignored signal stays
        // ignored across exec, and `yes | head` needs it back.
        sys::signal(SIGPIPE, SIG_DFL);
        let empty: u64 = 0;
        sys::syscall(
            SYS_RT_SIGPROCMASK,
            SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null::<u64>(),
            8 as c_long,
        );
        sys::execve(argv[0], argv.as_ptr(), envp.as_ptr());
        let e: c_int = *sys::__errno_location();
        sys::write(err_w, &e as *const c_int as *const c_void, 4);
        sys::_exit(127)
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { sys::pipe2(fds.as_mut_ptr(), O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh fds we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec fd holding `exec 9<&-; ` + the command.
fn long_command_fd(command: &[u8]) -> Result<OwnedFd, String> {
    let mut body = format!("exec {LONG_COMMAND_FD}<&-; ").into_bytes();
    body.extend_from_slice(command);
    let name = c"pod-exec-command";
    // SAFETY: name is a valid C string.
    let fd = unsafe { sys::memfd_create(name.as_ptr(), MFD_CLOEXEC) };
    let mut file = if fd >= 0 {
        // SAFETY: a fresh fd we own.
        unsafe { File::from_raw_fd(fd) }
    } else {
        // memfd_create can be refused by a seccomp profile: fall back to
        // a file that is unlinked at once (the open fd keeps it readable).
        let dir = std::env::var_os("TMPDIR").unwrap_or_else(|| "/tmp".into());
        let path = std::path::Path::new(&dir).join(format!(
            ".pod-exec-command-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("command too long for argv, and no memfd or temp file: {e}"))?;
        let _ = std::fs::remove_file(&path);
        f
    };
    file.write_all(&body)
        .map_err(|e| format!("writing the command: {e}"))?;
    Ok(OwnedFd::from(file))
}

/// One entry of /proc.
#[derive(Clone, Copy)]
struct Proc {
    pid: i32,
    ppid: i32,
    sid: i32,
    state: u8,
    /// Start time in clock ticks since boot: tells a pid's reuse apart.
    start: u64,
}

/// Every process in /proc except the agent, pid 1, and zombies (dead
/// already; their parent reaps them).
fn scan_procs(self_pid: i32) -> Vec<Proc> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return v;
    };
    for ent in dir.flatten() {
        let name = ent.file_name();
        let Some(pid) = std::str::from_utf8(name.as_bytes())
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid <= 1 || pid == self_pid {
            continue;
        }
        if let Some(p) = read_stat(pid)
            && p.state != b'Z'
            && p.state != b'X'
        {
            v.push(p);
        }
    }
    v
}

fn read_stat(pid: i32) -> Option<Proc> {
    let s = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: fields start after the last ')'.
    let close = s.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(s.get(close + 2..)?).ok()?;
    let f: Vec<&str> = rest.split(' ').collect();
    Some(Proc {
        pid,
        state: *f.first()?.as_bytes().first()?,
        ppid: f.get(1)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn has_env(pid: i32, needle: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|e| e.split(|&b| b == 0).any(|kv| kv == needle))
        .unwrap_or(false)
}

/// What belongs to a running call: its session, its tagged processes, and
/// the descendants seen so far (pid → start time), which keeps processes
/// that left the session and cleared their environment attributable.
struct Track {
    /// The shell's pid (= its session id); -1, matching nothing, until
    /// the fork.
    sid: AtomicI32,
    needle: Vec<u8>,
    set: Mutex<HashMap<i32, u64>>,
    /// Lower bound of the shell's start (taken before the fork), and the
    /// call's end, in ticks since boot.
    start: u64,
    end: Mutex<Option<u64>>,
}

impl Track {
    fn new(token: &str) -> Self {
        Track {
            sid: AtomicI32::new(-1),
            needle: format!("{CALL_ENV}={token}").into_bytes(),
            set: Mutex::new(HashMap::new()),
            start: now_ticks(false),
            end: Mutex::new(None),
        }
    }

    fn set_shell(&self, pid: i32) {
        self.sid.store(pid, Ordering::Relaxed);
        if let Some(p) = read_stat(pid) {
            lock(&self.set).insert(pid, p.start);
        }
    }

    /// Adds what `procs` shows to belong to the call and returns the
    /// call's live processes. `env` also reads each candidate's environ
    /// (costly; done when killing).
    fn update(&self, procs: &[Proc], env: bool) -> Vec<Proc> {
        let sid = self.sid.load(Ordering::Relaxed);
        let mut set = lock(&self.set);
        // Drop the dead, so a reused pid is not taken for ours.
        let live: HashMap<i32, u64> = procs.iter().map(|p| (p.pid, p.start)).collect();
        set.retain(|pid, start| live.get(pid) == Some(start));
        let mut changed = true;
        let mut passes = 0;
        // /proc lists by pid, and pids wrap: repeat until nothing is added.
        while changed && passes < 16 {
            changed = false;
            passes += 1;
            for p in procs {
                if set.contains_key(&p.pid) {
                    continue;
                }
                let ours = p.sid == sid
                    || set.contains_key(&p.ppid)
                    || (env && passes == 1 && has_env(p.pid, &self.needle));
                if ours {
                    set.insert(p.pid, p.start);
                    changed = true;
                }
            }
        }
        procs
            .iter()
            .filter(|p| set.get(&p.pid) == Some(&p.start))
            .copied()
            .collect()
    }
}

/// Ticks since boot now (from /proc/uptime, which has 10 ms steps): an
/// upper bound if `up`, else a lower one. Unreadable: 0 or MAX, the
/// widest window, so orphans are more often ambiguous and left alone.
fn now_ticks(up: bool) -> u64 {
    let secs = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split(' ').next()?.parse::<f64>().ok());
    match (secs, up) {
        (Some(s), true) => (s * TICKS_PER_SEC).ceil() as u64 + 1,
        (Some(s), false) => ((s * TICKS_PER_SEC).floor() as u64).saturating_sub(1),
        (None, true) => u64::MAX,
        (None, false) => 0,
    }
}

/// Gives a running call the orphans only start time can tie to it: a
/// process reparented to the agent (its parent died before any scan saw
/// it, e.g. `(setsid env -i daemon &)`), in no call's set, not a call's
/// shell, and started while that call, and no other, was running (ended
/// calls count for `RECENT_FOR`). Ambiguous orphans are left alone: killing
/// another call's process would be worse than missing one.
fn adopt_orphans(agent: &Agent, procs: &[Proc]) {
    let running: Vec<Arc<Track>> = lock(&agent.tracks).clone();
    if running.is_empty() {
        return;
    }
    let recent: Vec<Arc<Track>> = lock(&agent.recent)
        .iter()
        .filter(|(at, _)| at.elapsed() < RECENT_FOR)
        .map(|(_, t)| t.clone())
        .collect();
    let all: Vec<&Arc<Track>> = running.iter().chain(recent.iter()).collect();
    let live: HashSet<(i32, u64)> = procs.iter().map(|p| (p.pid, p.start)).collect();
    let mut judged = lock(&agent.judged);
    judged.retain(|k| live.contains(k));
    for p in procs.iter().filter(|p| p.ppid == agent.pid) {
        if !judged.insert((p.pid, p.start)) {
            continue;
        }
        // Shells are registered under this lock at fork: a shell in
        // `procs` is in the map by the time the lock is ours.
        if lock(&agent.reap).waiters.contains_key(&p.pid) {
            continue;
        }
        if all.iter().any(|t| lock(&t.set).contains_key(&p.pid)) {
            continue;
        }
        let mut cands = all
            .iter()
            .filter(|t| t.start <= p.start && lock(&t.end).is_none_or(|end| p.start <= end));
        if let (Some(t), None) = (cands.next(), cands.next())
            && running.iter().any(|r| Arc::ptr_eq(r, t))
        {
            lock(&t.set).insert(p.pid, p.start);
        }
    }
}

/// Every `SCAN_EVERY` while calls run, records their new descendants;
/// sleeps while none runs.
fn scanner(agent: &Agent) {
    loop {
        let tracks: Vec<Arc<Track>> = {
            let mut t = lock(&agent.tracks);
            while t.is_empty() {
                t = agent.tracks_cv.wait(t).unwrap_or_else(|e| e.into_inner());
            }
            t.clone()
        };
        let procs = scan_procs(agent.pid);
        adopt_orphans(agent, &procs);
        for t in &tracks {
            t.update(&procs, false);
        }
        drop(tracks);
        std::thread::sleep(SCAN_EVERY);
    }
}

/// The call's live processes now, after adopting orphans and reading
/// environments.
fn scan_for(agent: &Agent, track: &Track) -> Vec<Proc> {
    let procs = scan_procs(agent.pid);
    adopt_orphans(agent, &procs);
    track.update(&procs, true)
}

fn signal_all(ps: &[Proc], sig: c_int, self_pid: i32) {
    for p in ps {
        // Never the agent, init, or a process group (pid ≤ 0).
        if p.pid > 1 && p.pid != self_pid {
            // SAFETY: plain syscall.
            unsafe {
                sys::kill(p.pid, sig);
            }
        }
    }
}

/// Kills everything the call started; returns 124 if SIGTERM sufficed,
/// 137 if SIGKILL was needed.
///
/// SIGTERM to all, re-sent to new ones every 50 ms for a 1 s grace; then
/// SIGSTOP to all until a scan finds none of them running (a stopped
/// process cannot fork, so a fork bomb holds still); then SIGKILL until
/// none is left, for at most 5 s.
fn kill_tree(agent: &Agent, track: &Track) -> i32 {
    let me = agent.pid;
    let t0 = Instant::now();
    let mut termed: HashSet<(i32, u64)> = HashSet::new();
    loop {
        let ours = scan_for(agent, track);
        if ours.is_empty() {
            return RETVAL_TERM;
        }
        let new: Vec<Proc> = ours
            .into_iter()
            .filter(|p| termed.insert((p.pid, p.start)))
            .collect();
        signal_all(&new, SIGTERM, me);
        if t0.elapsed() >= TERM_GRACE {
            break;
        }
        std::thread::sleep(TERM_POLL);
    }
    let stop_until = Instant::now() + STOP_LIMIT;
    loop {
        let ours = scan_for(agent, track);
        if ours.is_empty() {
            // Gone before any SIGKILL: the SIGTERM did it, late.
            return RETVAL_TERM;
        }
        let running: Vec<Proc> = ours
            .into_iter()
            .filter(|p| p.state != b'T' && p.state != b't')
            .collect();
        if running.is_empty() || Instant::now() >= stop_until {
            break;
        }
        signal_all(&running, SIGSTOP, me);
        std::thread::sleep(Duration::from_millis(2));
    }
    let kill_until = Instant::now() + KILL_LIMIT;
    loop {
        let ours = scan_for(agent, track);
        if ours.is_empty() || Instant::now() >= kill_until {
            return RETVAL_KILL;
        }
        signal_all(&ours, SIGKILL, me);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbuf_keeps_head_and_tail() {
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
    fn last_line_is_cut_on_a_character() {
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

    #[test]
    fn retval_of_a_signalled_shell() {
        assert_eq!(shell_retval(3 << 8), 3);
        assert_eq!(shell_retval(9), 137);
        assert_eq!(shell_retval(15), 143);
    }

    #[test]
    fn stat_of_self_parses() {
        let me = std::process::id() as i32;
        let p = read_stat(me).unwrap();
        assert_eq!(p.pid, me);
        assert!(p.ppid > 0 && p.start > 0);
    }
}
