//! The processes of a call: who belongs to it (its session, its tagged
//! environment, the descendants seen so far, orphans tied to it by start
//! time), the scanner that keeps that up to date while calls run, and the
//! kill that stops and ends all of them.

use std::collections::{HashMap, HashSet};
use std::ffi::c_int;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::spawn::CALL_ENV;
use super::sys::{self, SIGKILL, SIGSTOP, SIGTERM};
use super::{Agent, RECENT_FOR, lock};

/// How often running calls' descendants are looked up in /proc.
/// The first scan's delay after calls start running again.
const FIRST_SCAN_AFTER: Duration = Duration::from_millis(10);
const SCAN_EVERY: Duration = Duration::from_millis(100);
/// SIGTERM grace before stopping and killing.
const TERM_GRACE: Duration = Duration::from_secs(1);
const TERM_POLL: Duration = Duration::from_millis(50);
const STOP_LIMIT: Duration = Duration::from_secs(2);
const KILL_LIMIT: Duration = Duration::from_secs(5);
/// Linux reports process start times in USER_HZ ticks, 100 on every
/// architecture's ABI.
const TICKS_PER_SEC: f64 = 100.0;
const RETVAL_TERM: i32 = 124;
const RETVAL_KILL: i32 = 137;

/// One entry of /proc.
#[derive(Clone, Copy)]
pub(super) struct Proc {
    pub(super) pid: i32,
    pub(super) ppid: i32,
    pub(super) sid: i32,
    pub(super) state: u8,
    /// Start time in clock ticks since boot: tells a pid's reuse apart.
    pub(super) start: u64,
}

/// Every process in /proc except the agent, pid 1, and zombies (dead
/// already; their parent reaps them).
pub(super) fn scan_procs(self_pid: i32) -> Vec<Proc> {
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

pub(super) fn read_stat(pid: i32) -> Option<Proc> {
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

pub(super) fn has_env(pid: i32, needle: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|e| e.split(|&b| b == 0).any(|kv| kv == needle))
        .unwrap_or(false)
}

/// What belongs to a running call: its session, its tagged processes, and
/// the descendants seen so far (pid → start time), which keeps processes
/// that left the session and cleared their environment attributable.
pub(super) struct Track {
    /// The shell's pid (= its session id); -1, matching nothing, until
    /// the fork.
    pub(super) sid: AtomicI32,
    pub(super) needle: Vec<u8>,
    pub(super) set: Mutex<HashMap<i32, u64>>,
    /// Lower bound of the shell's start (taken before the fork), and the
    /// call's end, in ticks since boot.
    pub(super) start: u64,
    pub(super) end: Mutex<Option<u64>>,
}

impl Track {
    pub(super) fn new(token: &str) -> Self {
        Track {
            sid: AtomicI32::new(-1),
            needle: format!("{CALL_ENV}={token}").into_bytes(),
            set: Mutex::new(HashMap::new()),
            start: now_ticks(false),
            end: Mutex::new(None),
        }
    }

    pub(super) fn set_shell(&self, pid: i32) {
        self.sid.store(pid, Ordering::Relaxed);
        if let Some(p) = read_stat(pid) {
            lock(&self.set).insert(pid, p.start);
        }
    }

    /// Adds what `procs` shows to belong to the call and returns the
    /// call's live processes. `env` also reads each candidate's environ
    /// (costly; done when killing).
    pub(super) fn update(&self, procs: &[Proc], env: bool) -> Vec<Proc> {
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
pub(super) fn now_ticks(up: bool) -> u64 {
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
pub(super) fn adopt_orphans(agent: &Agent, procs: &[Proc]) {
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
pub(super) fn scanner(agent: &Agent) {
    loop {
        let tracks: Vec<Arc<Track>> = {
            let mut t = lock(&agent.tracks);
            if t.is_empty() {
                while t.is_empty() {
                    t = agent.tracks_cv.wait(t).unwrap_or_else(|e| e.into_inner());
                }
                drop(t);
                // A call has just started; most end within milliseconds,
                // and a shell alone is nothing to scan for (an orphan it
                // leaves is still tied to it by start time later).
                std::thread::sleep(FIRST_SCAN_AFTER);
                continue;
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
pub(super) fn scan_for(agent: &Agent, track: &Track) -> Vec<Proc> {
    let procs = scan_procs(agent.pid);
    adopt_orphans(agent, &procs);
    track.update(&procs, true)
}

pub(super) fn signal_all(ps: &[Proc], sig: c_int, self_pid: i32) {
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
pub(super) fn kill_tree(agent: &Agent, track: &Track) -> i32 {
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
    pub(super) fn stat_of_self_parses() {
        let me = std::process::id() as i32;
        let p = read_stat(me).unwrap();
        assert_eq!(p.pid, me);
        assert!(p.ppid > 0 && p.start > 0);
    }
}
