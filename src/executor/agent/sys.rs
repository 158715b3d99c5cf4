//! The libc calls and constants the agent needs that std does not wrap,
//! declared by hand: the agent is built standalone with `rustc` alone, so
//! it has no `libc` crate. Linux values, the same in glibc and musl.

use std::ffi::{c_char, c_int, c_long, c_short, c_uint, c_ulong};

unsafe extern "C" {
    pub fn prctl(option: c_int, arg2: c_long, arg3: c_long, arg4: c_long, arg5: c_long) -> c_int;
    pub fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    pub fn kill(pid: c_int, sig: c_int) -> c_int;
    pub fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
    pub fn fcntl(fd: c_int, cmd: c_int, arg: c_int) -> c_int;
    pub fn syscall(n: c_long, ...) -> c_long;
    pub fn memfd_create(name: *const c_char, flags: c_uint) -> c_int;
    pub fn poll(fds: *mut PollFd, nfds: c_ulong, timeout: c_int) -> c_int;

    pub fn posix_spawn(
        pid: *mut c_int,
        path: *const c_char,
        file_actions: *const SpawnFileActions,
        attr: *const SpawnAttr,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) -> c_int;
    pub fn posix_spawnattr_init(attr: *mut SpawnAttr) -> c_int;
    pub fn posix_spawnattr_destroy(attr: *mut SpawnAttr) -> c_int;
    pub fn posix_spawnattr_setflags(attr: *mut SpawnAttr, flags: c_short) -> c_int;
    pub fn posix_spawnattr_setsigmask(attr: *mut SpawnAttr, mask: *const SigSet) -> c_int;
    pub fn posix_spawnattr_setsigdefault(attr: *mut SpawnAttr, set: *const SigSet) -> c_int;
    pub fn posix_spawn_file_actions_init(fa: *mut SpawnFileActions) -> c_int;
    pub fn posix_spawn_file_actions_destroy(fa: *mut SpawnFileActions) -> c_int;
    pub fn posix_spawn_file_actions_adddup2(
        fa: *mut SpawnFileActions,
        fd: c_int,
        newfd: c_int,
    ) -> c_int;
    pub fn sigemptyset(set: *mut SigSet) -> c_int;
    pub fn sigaddset(set: *mut SigSet, sig: c_int) -> c_int;
}

#[repr(C)]
pub struct PollFd {
    pub fd: c_int,
    pub events: c_short,
    pub revents: c_short,
}

/// `posix_spawnattr_t`, opaque: 336 bytes in glibc and musl on 64-bit
/// targets; room to spare, initialised only by `posix_spawnattr_init`.
#[repr(C, align(16))]
pub struct SpawnAttr(pub [u8; 512]);

/// `posix_spawn_file_actions_t`, opaque: 80 bytes in glibc and musl.
#[repr(C, align(16))]
pub struct SpawnFileActions(pub [u8; 256]);

/// `sigset_t`: 128 bytes in glibc and musl.
#[repr(C, align(8))]
pub struct SigSet(pub [u8; 128]);

pub const PR_SET_CHILD_SUBREAPER: c_int = 36;
pub const O_CLOEXEC: c_int = 0o2_000_000;
pub const F_DUPFD_CLOEXEC: c_int = 1030;
pub const F_SETPIPE_SZ: c_int = 1031;
pub const MFD_CLOEXEC: c_uint = 1;
pub const POLLIN: c_short = 1;
pub const SIGKILL: c_int = 9;
pub const SIGPIPE: c_int = 13;
pub const SIGTERM: c_int = 15;
pub const SIGSTOP: c_int = 19;
pub const ECHILD: i32 = 10;
pub const EINTR: i32 = 4;
pub const POSIX_SPAWN_SETSIGDEF: c_short = 0x04;
pub const POSIX_SPAWN_SETSIGMASK: c_short = 0x08;
/// glibc 2.26+ (the agent links its libc statically, so the build
/// machine's counts), and current musl.
pub const POSIX_SPAWN_SETSID: c_short = 0x80;
pub const SYS_CLOSE_RANGE: c_long = 436;
pub const CLOSE_RANGE_CLOEXEC: c_uint = 4;

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
