//! The embedded executor agent, run locally (it is an ordinary static
//! Linux program; no Podman needed) and driven over its protocol: every
//! wait has a deadline, so a broken agent fails a test instead of hanging.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use pod_exec_mcp::executor::protocol::{self, Frame, FrameDecoder, Request};
use pod_exec_mcp::executor::{AGENT, AGENT_AVAILABLE, AGENT_SHA256_HEX};

/// The agent written once per test process (writing it per test would
/// race other tests' forks into ETXTBSY more often).
fn agent_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if !AGENT_AVAILABLE {
            panic!("build.rs could not build the agent (see the cargo warning)");
        }
        let dir = std::env::temp_dir().join(format!("pod-exec-agent-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pod-exec-executor");
        std::fs::write(&p, AGENT).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    })
}

fn token() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:x}{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Frame>,
    /// Frames received while looking for another.
    stash: Vec<Frame>,
    pid: u32,
}

#[derive(Debug)]
struct Done {
    retval: i32,
    timed_out: bool,
    cancelled: bool,
    truncated: bool,
    total_bytes: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Done {
    fn output(&self) -> String {
        String::from_utf8_lossy(&[&self.head[..], &self.tail[..]].concat()).into_owned()
    }
}

impl Agent {
    fn start() -> Agent {
        let path = agent_path();
        let mut tries = 0;
        let mut child = loop {
            match Command::new(path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
            {
                Ok(c) => break c,
                // Another test thread forked while the file was open for
                // writing; that fd closes at its exec.
                Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("spawning the agent: {e}"),
            }
        };
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut d = FrameDecoder::new();
            let mut buf = vec![0u8; 65536];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                d.push(&buf[..n]);
                loop {
                    match d.next_frame() {
                        Ok(Some(f)) => {
                            if tx.send(f).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => panic!("agent sent a malformed frame: {e}"),
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        let mut a = Agent {
            child,
            stdin,
            rx,
            stash: Vec::new(),
            pid: 0,
        };
        match a.next(Duration::from_secs(5)) {
            Frame::Hello { version, pid } => {
                assert_eq!(version, protocol::VERSION);
                assert_eq!(pid, a.child.id());
                a.pid = pid;
            }
            f => panic!("first frame is not HELLO: {f:?}"),
        }
        a
    }

    fn send(&mut self, bytes: &[u8]) {
        let s = self.stdin.as_mut().expect("stdin open");
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }

    fn run_with(&mut self, id: u32, command: &str, timeout_ms: u64, max: u64, progress: bool) {
        let line = protocol::encode_request(&Request::Run {
            id,
            timeout_ms,
            max_output: max,
            progress,
            token: token(),
            command: command.as_bytes().to_vec(),
        });
        self.send(&line);
    }

    /// Runs a command with generous limits and returns its DONE.
    fn run(&mut self, id: u32, command: &str) -> Done {
        self.run_with(id, command, 10_000, 1 << 20, false);
        self.done(id, Duration::from_secs(10))
    }

    /// The next frame from the agent, within `within`.
    fn next(&mut self, within: Duration) -> Frame {
        if !self.stash.is_empty() {
            return self.stash.remove(0);
        }
        match self.rx.recv_timeout(within) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => panic!("no frame within {within:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("agent's stdout closed"),
        }
    }

    /// The first frame matching `want`, within `within`; others are kept.
    fn take(&mut self, within: Duration, what: &str, want: impl Fn(&Frame) -> bool) -> Frame {
        if let Some(i) = self.stash.iter().position(&want) {
            return self.stash.remove(i);
        }
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(f) if want(&f) => return f,
                Ok(f) => self.stash.push(f),
                Err(e) => panic!("waiting for {what}: {e:?}; got so far: {:?}", self.stash),
            }
        }
    }

    fn started(&mut self, id: u32) -> u32 {
        match self.take(
            Duration::from_secs(5),
            "STARTED",
            |f| matches!(f, Frame::Started { id: i, .. } | Frame::Error { id: i, .. } if *i == id),
        ) {
            Frame::Started { pid, .. } => pid,
            f => panic!("call {id} did not start: {f:?}"),
        }
    }

    fn done(&mut self, id: u32, within: Duration) -> Done {
        let f = self.take(
            within,
            "DONE",
            |f| matches!(f, Frame::Done { id: i, .. } | Frame::Error { id: i, .. } if *i == id),
        );
        match f {
            Frame::Done {
                retval,
                timed_out,
                cancelled,
                truncated,
                total_bytes,
                head,
                tail,
                ..
            } => Done {
                retval,
                timed_out,
                cancelled,
                truncated,
                total_bytes,
                head,
                tail,
            },
            f => panic!("call {id} failed: {f:?}"),
        }
    }

    /// Closes stdin and waits (bounded) for the agent to exit.
    fn close(&mut self, within: Duration) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let until = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < until,
                "agent still running {within:?} after stdin EOF"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGKILLs `pid` if its command line still holds `marker`: pids are
/// reused quickly here (pid_max 32768, fork-heavy tests), and a stale pid
/// may belong to anything by now, another test's server included.
fn kill_if(pid: u32, marker: &str) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains(marker) {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
}

/// Pids whose argv is exactly `argv` (NUL-separated in /proc/N/cmdline).
fn pids_with_cmdline(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .as_deref()
            == Some(&want[..])
            && stat_state(pid).is_some_and(|s| s != 'Z')
        {
            v.push(pid);
        }
    }
    v
}

/// (state, ppid) of a process, if it exists.
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

fn stat_state(pid: u32) -> Option<char> {
    stat(pid).map(|s| s.0)
}

/// Polls `cond` every 50 ms until true or `within` passes.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn agent_binary_is_static_and_its_hash_matches() {
    agent_path();
    assert_eq!(&AGENT[..4], b"\x7fELF");
    use sha2::Digest;
    let h: String = sha2::Sha256::digest(AGENT)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(h, AGENT_SHA256_HEX);
    let out = Command::new("file").arg(agent_path()).output();
    if let Ok(out) = out {
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("static"), "file says: {s}");
    }
    assert!(AGENT.len() < 4 << 20, "agent is {} bytes", AGENT.len());
}

#[test]
fn hello_then_ping_pong() {
    let mut a = Agent::start();
    a.send(b"P 7\n");
    assert_eq!(a.next(Duration::from_secs(5)), Frame::Pong { id: 7 });
}

#[test]
fn dollar_zero_is_bin_sh() {
    let mut a = Agent::start();
    let d = a.run(1, "echo $0");
    assert_eq!(d.output(), "/bin/sh\n");
    assert_eq!(d.retval, 0);
    assert!(!d.timed_out && !d.cancelled && !d.truncated);
}

#[test]
fn missing_command_reads_like_plain_sh() {
    let mut a = Agent::start();
    let d = a.run(1, "xyz-not-a-command");
    assert_eq!(d.output(), "/bin/sh: 1: xyz-not-a-command: not found\n");
    assert_eq!(d.retval, 127);
}

#[test]
fn stdout_and_stderr_share_one_pipe_in_order() {
    let mut a = Agent::start();
    let d = a.run(1, "echo a; echo b >&2; echo c");
    assert_eq!(d.output(), "a\nb\nc\n");
}

#[test]
fn exit_code_and_signal_retvals() {
    let mut a = Agent::start();
    assert_eq!(a.run(1, "exit 3").retval, 3);
    let d = a.run(2, "kill -9 $$");
    assert_eq!(d.retval, 137);
    assert!(!d.timed_out);
}

#[test]
fn call_environment_stdin_and_session() {
    let mut a = Agent::start();
    let line = protocol::encode_request(&Request::Run {
        id: 1,
        timeout_ms: 10_000,
        max_output: 4096,
        progress: false,
        token: "abc123".into(),
        command: b"echo $POD_EXEC_CALL; readlink /proc/self/fd/0; cat; cut -d' ' -f6 /proc/$$/stat; echo $$"
            .to_vec(),
    });
    a.send(&line);
    let d = a.done(1, Duration::from_secs(10));
    let out = d.output();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "abc123");
    assert_eq!(l[1], "/dev/null");
    // Its own session: the shell is the session leader.
    assert_eq!(l[2], l[3], "{out}");
}

#[test]
fn twenty_concurrent_calls_all_answer() {
    let mut a = Agent::start();
    let t = Instant::now();
    for i in 1..=20 {
        a.run_with(i, &format!("sleep 0.3; echo call-{i}"), 10_000, 4096, false);
    }
    for i in 1..=20 {
        let d = a.done(i, Duration::from_secs(10));
        assert_eq!(d.output(), format!("call-{i}\n"));
        assert_eq!(d.retval, 0);
    }
    // Run one after another they would take 6 s.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn a_300_kib_command_runs_exactly() {
    let mut a = Agent::start();
    let mut cmd = String::new();
    let mut want = String::new();
    let mut i = 0;
    while cmd.len() < 300 * 1024 {
        cmd.push_str(&format!(
            "echo 'line {i:06} with a \"quote\" and $ signs'\n"
        ));
        want.push_str(&format!("line {i:06} with a \"quote\" and $ signs\n"));
        i += 1;
    }
    // Semantics of a plain `sh -lc`: $0, no positional parameters, the
    // helper fd closed, `exit` ends the command.
    cmd.push_str(
        "echo \"$0 $#\"; [ -e /proc/self/fd/9 ] && echo fd9-leaked; exit 5\necho not-reached\n",
    );
    want.push_str("/bin/sh 0\n");
    a.run_with(1, &cmd, 20_000, 4 << 20, false);
    let d = a.done(1, Duration::from_secs(20));
    assert_eq!(d.retval, 5);
    assert!(
        d.output() == want,
        "output differs (len {} vs {})",
        d.output().len(),
        want.len()
    );
}

#[test]
fn output_is_bounded_head_and_tail() {
    let mut a = Agent::start();
    a.run_with(1, "yes | head -c 5000000", 20_000, 1000, false);
    let d = a.done(1, Duration::from_secs(20));
    assert_eq!(d.retval, 0);
    assert!(d.truncated);
    assert_eq!(d.total_bytes, 5_000_000);
    assert!(d.head.len() + d.tail.len() <= 1000);
    assert_eq!(d.head.len(), 500);
    assert!(d.head.starts_with(b"y\ny\n"));
    assert!(d.tail.ends_with(b"y\ny\n"));
}

#[test]
fn progress_frames_while_running() {
    let mut a = Agent::start();
    a.run_with(
        1,
        "for i in 1 2 3; do echo $i; sleep 0.4; done",
        10_000,
        4096,
        true,
    );
    let d = a.done(1, Duration::from_secs(10));
    assert_eq!(d.output(), "1\n2\n3\n");
    let progress: Vec<(u64, Vec<u8>)> = std::mem::take(&mut a.stash)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Progress {
                id: 1,
                total_bytes,
                last_line,
            } => Some((total_bytes, last_line)),
            _ => None,
        })
        .collect();
    assert!(!progress.is_empty(), "no PROGRESS frame");
    for (total, line) in &progress {
        assert!(*total > 0 && *total <= 6);
        assert!([&b"1"[..], b"2", b"3"].contains(&&line[..]), "{line:?}");
    }
    // Only when something changed: totals strictly grow.
    assert!(progress.windows(2).all(|w| w[0].0 < w[1].0), "{progress:?}");
}

#[test]
fn timeout_kills_children_setsid_daemons_and_cleared_environments() {
    let mut a = Agent::start();
    let t = Instant::now();
    a.run_with(
        1,
        "echo before; sh -c 'sleep 1000.321 & setsid sleep 1000.321 & \
         setsid env -i sleep 1000.321 & env -i sleep 1000.321'",
        1000,
        4096,
        false,
    );
    let d = a.done(1, Duration::from_secs(10));
    assert!(d.timed_out && !d.cancelled);
    assert!(d.retval == 124 || d.retval == 137, "{}", d.retval);
    assert_eq!(d.output(), "before\n", "partial output kept");
    assert!(t.elapsed() >= Duration::from_millis(1000));
    let gone = eventually(Duration::from_secs(3), || {
        pids_with_cmdline(&["sleep", "1000.321"]).is_empty()
    });
    assert!(
        gone,
        "left behind: {:?}",
        pids_with_cmdline(&["sleep", "1000.321"])
    );
}

#[test]
fn term_ignoring_processes_are_killed() {
    let mut a = Agent::start();
    a.run_with(
        1,
        "trap '' TERM; sh -c \"trap '' TERM; sleep 1000.432\" & sleep 1000.432",
        500,
        4096,
        false,
    );
    let d = a.done(1, Duration::from_secs(15));
    assert!(d.timed_out);
    assert_eq!(d.retval, 137);
    let gone = eventually(Duration::from_secs(3), || {
        pids_with_cmdline(&["sleep", "1000.432"]).is_empty()
    });
    assert!(gone);
}

#[test]
fn cancel_stops_a_call() {
    let mut a = Agent::start();
    a.run_with(1, "echo go; sleep 1000.543", 60_000, 4096, false);
    a.started(1);
    assert!(eventually(Duration::from_secs(3), || {
        !pids_with_cmdline(&["sleep", "1000.543"]).is_empty()
    }));
    let t = Instant::now();
    a.send(b"K 1\n");
    let d = a.done(1, Duration::from_secs(10));
    assert!(d.cancelled && !d.timed_out);
    assert_eq!(d.retval, 124);
    assert_eq!(d.output(), "go\n");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(eventually(Duration::from_secs(3), || {
        pids_with_cmdline(&["sleep", "1000.543"]).is_empty()
    }));
    // K for a call that is over is not an error.
    a.send(b"K 1\nP 2\n");
    assert_eq!(a.next(Duration::from_secs(5)), Frame::Pong { id: 2 });
}

#[test]
fn background_writer_outlives_its_call() {
    let mut a = Agent::start();
    let dir = std::env::temp_dir().join(format!("pod-exec-bg-{}", token()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pid");
    let t = Instant::now();
    let d = a.run(
        1,
        &format!(
            "(while :; do echo x; sleep .05; done) & echo $! > {}; echo started",
            pidfile.display()
        ),
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(d.output().contains("started\n"));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // It prints every 50 ms: a broken pipe would end it well within this.
    std::thread::sleep(Duration::from_secs(1));
    let alive = stat_state(pid).is_some_and(|s| s != 'Z');
    kill_if(pid, "while");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(alive, "the background writer died after its call returned");
    // The agent still serves.
    assert_eq!(a.run(2, "echo ok").output(), "ok\n");
}

#[test]
fn no_zombies_after_200_background_jobs() {
    let mut a = Agent::start();
    let d = a.run(1, "for i in $(seq 200); do (sleep 0.1 &) ; done; wait");
    assert_eq!(d.retval, 0);
    let agent = a.pid;
    let zombies = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|&p| stat(p) == Some(('Z', agent)))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(2), || zombies() == 0),
        "{} zombie children of the agent",
        zombies()
    );
}

#[test]
fn stdin_eof_kills_in_flight_calls_and_exits_zero() {
    let mut a = Agent::start();
    a.run_with(1, "sleep 1000.654", 60_000, 4096, false);
    a.started(1);
    assert!(eventually(Duration::from_secs(3), || {
        !pids_with_cmdline(&["sleep", "1000.654"]).is_empty()
    }));
    let t = Instant::now();
    drop(a.stdin.take());
    let d = a.done(1, Duration::from_secs(5));
    assert!(d.cancelled);
    let status = a.close(Duration::from_secs(3));
    assert_eq!(status.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(pids_with_cmdline(&["sleep", "1000.654"]).is_empty());
}

#[test]
fn malformed_lines_get_errors_and_the_agent_keeps_serving() {
    let mut a = Agent::start();
    let mut long = b"R 9 1000 100 0 ab ".to_vec();
    long.extend(std::iter::repeat_n(b'A', protocol::MAX_LINE));
    long.push(b'\n');
    let cases: [(&[u8], u32); 7] = [
        (b"hello\n", 0),
        (b"\x01\x02\x10\x11\n", 0),
        (b"R x 1 1 0 ab \n", 0),
        (b"R 5 1000 100 0 zz YQ==\n", 5),
        (b"R 6 1000 100 0 ab !!!!\n", 6),
        (b"K\n", 0),
        (&long, 9),
    ];
    for (line, id) in cases {
        a.send(line);
        match a.next(Duration::from_secs(5)) {
            Frame::Error { id: got, message } => {
                assert_eq!(got, id, "{message}");
                assert!(!message.is_empty());
            }
            f => panic!(
                "{:?}: {f:?}",
                String::from_utf8_lossy(&line[..line.len().min(40)])
            ),
        }
    }
    a.send(b"P 7\n");
    assert_eq!(a.next(Duration::from_secs(5)), Frame::Pong { id: 7 });
    assert_eq!(a.run(8, "echo ok").output(), "ok\n");
}

#[test]
fn a_duplicate_call_id_is_refused() {
    let mut a = Agent::start();
    a.run_with(1, "sleep 0.5; echo first", 10_000, 4096, false);
    a.started(1);
    a.run_with(1, "echo second", 10_000, 4096, false);
    match a.take(Duration::from_secs(5), "ERROR", |f| {
        matches!(f, Frame::Error { .. })
    }) {
        Frame::Error { id, .. } => assert_eq!(id, 0),
        f => panic!("{f:?}"),
    }
    assert_eq!(a.done(1, Duration::from_secs(5)).output(), "first\n");
}

#[test]
fn timeout_kills_a_double_forked_daemon_with_a_cleared_environment() {
    // The subshell exits at once, so the daemon is reparented to the agent
    // (its subreaper) before any scan can see its parent: only its start
    // time ties it to this call.
    let mut a = Agent::start();
    a.run_with(
        1,
        "(setsid env -i sleep 1000.765 &); sleep 1000.765",
        1000,
        4096,
        false,
    );
    let d = a.done(1, Duration::from_secs(10));
    assert!(d.timed_out);
    let gone = eventually(Duration::from_secs(3), || {
        pids_with_cmdline(&["sleep", "1000.765"]).is_empty()
    });
    let left = pids_with_cmdline(&["sleep", "1000.765"]);
    for p in &left {
        kill_if(*p, "sleep");
    }
    assert!(gone, "left behind: {left:?}");
}

#[test]
fn a_timeout_spares_other_calls_daemons() {
    let mut a = Agent::start();
    // A finished call's detached daemon, and one of a call running beside
    // the one that times out: neither belongs to the timed-out call.
    a.run(1, "(setsid env -i sleep 1000.877 &); echo one");
    a.run_with(2, "sleep 3", 1000, 4096, false);
    a.started(2);
    a.run(3, "(setsid env -i sleep 1000.878 &); echo three");
    let d = a.done(2, Duration::from_secs(10));
    assert!(d.timed_out);
    std::thread::sleep(Duration::from_millis(200));
    let left: Vec<u32> = ["1000.877", "1000.878"]
        .iter()
        .flat_map(|t| pids_with_cmdline(&["sleep", t]))
        .collect();
    for p in &left {
        kill_if(*p, "sleep");
    }
    assert_eq!(left.len(), 2, "a daemon of another call was killed");
}

#[test]
fn a_background_job_holding_the_pipe_does_not_hold_the_call() {
    let mut a = Agent::start();
    let dir = std::env::temp_dir().join(format!("pod-exec-yes-{}", token()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pid");
    let t = Instant::now();
    // A job that never stops writing: the drain is capped.
    a.run_with(
        1,
        &format!("yes & echo $! > {}; echo fg-done", pidfile.display()),
        10_000,
        1000,
        false,
    );
    let d = a.done(1, Duration::from_secs(5));
    let took = t.elapsed();
    if let Ok(pid) = std::fs::read_to_string(&pidfile)
        && let Ok(pid) = pid.trim().parse()
    {
        kill_if(pid, "yes");
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(d.retval, 0);
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // A job that is quiet: the call ends after a short quiet.
    let t = Instant::now();
    let d = a.run(2, "echo out; (sleep 2; echo late) &");
    assert_eq!(d.output(), "out\n");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

/// `X` (a new connection takes over): the calls in flight are killed,
/// nothing more is sent for them, and their ids are free for the new
/// connection's calls.
#[test]
fn reset_kills_calls_in_flight_and_silences_them() {
    let mut a = Agent::start();
    a.run_with(
        1,
        "echo early; (sleep 1000.617; echo bg) & sleep 1000.618; echo late",
        60_000,
        4096,
        true,
    );
    a.run_with(2, "sleep 1000.619", 60_000, 4096, false);
    a.started(1);
    a.started(2);
    assert!(eventually(Duration::from_secs(3), || {
        ["1000.617", "1000.618", "1000.619"]
            .iter()
            .all(|s| !pids_with_cmdline(&["sleep", s]).is_empty())
    }));
    a.send(b"X\nP 7\n");
    // Whatever the old calls sent came before the PONG; drop it.
    a.take(Duration::from_secs(5), "PONG", |f| {
        matches!(f, Frame::Pong { id: 7 })
    });
    a.stash.clear();
    assert!(
        eventually(Duration::from_secs(5), || {
            ["1000.617", "1000.618", "1000.619"]
                .iter()
                .all(|s| pids_with_cmdline(&["sleep", s]).is_empty())
        }),
        "a reset leaves no process of the old calls"
    );
    // Id 1 again, on the "new connection": its own answer, not the old one's.
    assert_eq!(a.run(1, "echo new").output(), "new\n");
    // That call's own STARTED was put aside while waiting for its DONE.
    a.stash
        .retain(|f| !matches!(f, Frame::Started { id: 1, .. }));
    // Nothing of the old calls arrived after the PONG (their kill ended
    // them a while ago; a DONE would have been sent by now).
    std::thread::sleep(Duration::from_millis(1500));
    a.send(b"P 8\n");
    let f = a.take(Duration::from_secs(5), "PONG", |f| {
        matches!(f, Frame::Pong { id: 8 })
    });
    assert_eq!(f, Frame::Pong { id: 8 });
    assert!(
        a.stash.is_empty() && a.rx.try_recv().is_err(),
        "frames of reset calls reached the new connection: {:?}",
        a.stash
    );
}
