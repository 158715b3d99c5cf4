//! Starting a call's shell: `/bin/sh -lc command` in its own session, with
//! stdin /dev/null and stdout+stderr on one new pipe, through
//! `posix_spawn` (a vfork: the agent's memory is not copied for a child
//! that execs at once, which a fork of this multi-threaded process would
//! pay for in page-table copies and copy-on-write faults on every call).

use std::ffi::{CString, OsStr, c_char, c_int};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc;

use super::sys::{self, SigSet, SpawnAttr, SpawnFileActions};
use super::{Agent, Ev, lock};

/// Exported to every process of a call, so a kill can find it.
pub(super) const CALL_ENV: &str = "POD_EXEC_CALL";
/// Longest command passed as an argv string: Linux caps one at
/// MAX_ARG_STRLEN (32 pages = 128 KiB, NUL included).
const MAX_ARGV_COMMAND: usize = 128 * 1024 - 1;
/// The fd a long command is read from: dash takes only one digit in a
/// redirection, and the command's first words close it again.
const LONG_COMMAND_FD: c_int = 9;
/// Where a long command's fd is moved first, so that it is none of the
/// fds the child's dup2s write (0, 1, 2, 9).
const SCRATCH_FD_MIN: c_int = 10;

/// What every spawn shares, made once when the agent starts: its own
/// environment (less `CALL_ENV`) and /dev/null.
pub(super) struct SpawnBase {
    env: Vec<CString>,
    devnull: File,
}

impl SpawnBase {
    /// Also marks every fd the agent inherited above 2 close-on-exec:
    /// std opens everything close-on-exec, so from here on no call's
    /// shell gets an fd it was not handed.
    pub(super) fn new() -> Result<Self, String> {
        // SAFETY: plain syscall with integer arguments.
        unsafe {
            sys::syscall(
                sys::SYS_CLOSE_RANGE,
                3 as std::ffi::c_uint,
                std::ffi::c_uint::MAX,
                sys::CLOSE_RANGE_CLOEXEC,
            );
        }
        let devnull = File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
        let env = std::env::vars_os()
            .filter(|(k, _)| k != OsStr::new(CALL_ENV))
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        Ok(SpawnBase { env, devnull })
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
pub(super) fn spawn_shell(
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
        CString::new(format!(". /proc/self/fd/{LONG_COMMAND_FD}"))
    } else {
        CString::new(command)
    }
    .map_err(|_| "command holds a NUL byte".to_owned())?;
    let sh = c"/bin/sh";
    let argv: [*const c_char; 4] = [
        sh.as_ptr(),
        c"-lc".as_ptr(),
        c_arg.as_ptr(),
        std::ptr::null(),
    ];
    let tag = CString::new(format!("{CALL_ENV}={token}")).map_err(|e| e.to_string())?;
    let envp: Vec<*const c_char> = agent
        .spawn
        .env
        .iter()
        .map(|c| c.as_ptr())
        .chain([tag.as_ptr(), std::ptr::null()])
        .collect();
    let (pipe_r, pipe_w) = pipe().map_err(|e| format!("pipe: {e}"))?;

    let mut actions = Actions::new()?;
    actions.dup2(agent.spawn.devnull.as_raw_fd(), 0)?;
    actions.dup2(pipe_w.as_raw_fd(), 1)?;
    actions.dup2(pipe_w.as_raw_fd(), 2)?;
    if let Some(fd) = &script {
        // A dup2 clears close-on-exec on the new fd: only 9 reaches sh.
        actions.dup2(fd.as_raw_fd(), LONG_COMMAND_FD)?;
    }
    let attr = Attr::new()?;

    let mut pid: c_int = 0;
    let rc = {
        // Held across the spawn so the reaper cannot look the pid up
        // before it is registered (a quick shell may be reaped at once).
        let mut reap = lock(&agent.reap);
        // SAFETY: every pointer is valid for the call: argv and envp are
        // NULL-terminated arrays of live C strings, actions and attr are
        // initialised. glibc and musl report a failed exec as the return
        // value; glibc then waits for that one child itself, which at
        // worst makes the reaper's waitpid(-1) miss it (no waiter is
        // registered for it, so nothing waits for that status).
        let rc = unsafe {
            sys::posix_spawn(
                &mut pid,
                sh.as_ptr(),
                &actions.0,
                &attr.0,
                argv.as_ptr(),
                envp.as_ptr(),
            )
        };
        if rc == 0 {
            reap.spawned += 1;
            reap.waiters.insert(pid, tx);
            agent.reap_cv.notify_all();
        }
        rc
    };
    drop(pipe_w);
    drop(script);
    if rc != 0 {
        return Err(format!(
            "exec /bin/sh: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    Ok((pid, File::from(pipe_r)))
}

/// Initialised file actions, destroyed on drop.
struct Actions(SpawnFileActions);

impl Actions {
    fn new() -> Result<Self, String> {
        let mut a = Actions(SpawnFileActions([0; 256]));
        // SAFETY: a writable buffer at least as large as the C type.
        check("posix_spawn_file_actions_init", unsafe {
            sys::posix_spawn_file_actions_init(&mut a.0)
        })?;
        Ok(a)
    }

    fn dup2(&mut self, fd: c_int, to: c_int) -> Result<(), String> {
        // SAFETY: initialised in `new`.
        check("posix_spawn_file_actions_adddup2", unsafe {
            sys::posix_spawn_file_actions_adddup2(&mut self.0, fd, to)
        })
    }
}

impl Drop for Actions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe {
            sys::posix_spawn_file_actions_destroy(&mut self.0);
        }
    }
}

/// Spawn attributes: a new session, an empty signal mask, and SIGPIPE
/// back at its default (Rust ignores it in the agent, an ignored signal
/// stays ignored across exec, and `yes | head` needs it).
struct Attr(SpawnAttr);

impl Attr {
    fn new() -> Result<Self, String> {
        let mut a = Attr(SpawnAttr([0; 512]));
        // SAFETY: a writable buffer at least as large as the C type.
        check("posix_spawnattr_init", unsafe {
            sys::posix_spawnattr_init(&mut a.0)
        })?;
        let mut empty = SigSet([0; 128]);
        let mut pipe = SigSet([0; 128]);
        // SAFETY: initialised attr and sigset buffers of the C types' size.
        unsafe {
            sys::sigemptyset(&mut empty);
            sys::sigemptyset(&mut pipe);
            sys::sigaddset(&mut pipe, sys::SIGPIPE);
            check(
                "posix_spawnattr_setsigmask",
                sys::posix_spawnattr_setsigmask(&mut a.0, &empty),
            )?;
            check(
                "posix_spawnattr_setsigdefault",
                sys::posix_spawnattr_setsigdefault(&mut a.0, &pipe),
            )?;
            check(
                "posix_spawnattr_setflags",
                sys::posix_spawnattr_setflags(
                    &mut a.0,
                    sys::POSIX_SPAWN_SETSID
                        | sys::POSIX_SPAWN_SETSIGMASK
                        | sys::POSIX_SPAWN_SETSIGDEF,
                ),
            )?;
        }
        Ok(a)
    }
}

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe {
            sys::posix_spawnattr_destroy(&mut self.0);
        }
    }
}

/// posix_spawn's functions return the error number instead of setting errno.
fn check(what: &str, rc: c_int) -> Result<(), String> {
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("{what}: {}", std::io::Error::from_raw_os_error(rc)))
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { sys::pipe2(fds.as_mut_ptr(), sys::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh fds we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec fd, numbered 10 or above, holding `exec 9<&-; ` + the
/// command.
fn long_command_fd(command: &[u8]) -> Result<OwnedFd, String> {
    let mut body = format!("exec {LONG_COMMAND_FD}<&-; ").into_bytes();
    body.extend_from_slice(command);
    let name = c"pod-exec-command";
    // SAFETY: name is a valid C string.
    let fd = unsafe { sys::memfd_create(name.as_ptr(), sys::MFD_CLOEXEC) };
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
    // SAFETY: fcntl on an fd we own; the new fd is ours too.
    let moved = unsafe { sys::fcntl(file.as_raw_fd(), sys::F_DUPFD_CLOEXEC, SCRATCH_FD_MIN) };
    if moved < 0 {
        return Err(format!(
            "moving the command's fd: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a fresh fd we own; `file` closes the old one.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}
