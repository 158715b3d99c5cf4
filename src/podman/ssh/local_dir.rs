//! The forward's private local directory: where it goes (XDG_RUNTIME_DIR,
//! else the temp dir), its name, its creation (0700), and the removal of
//! those that servers which are gone left behind. The directory itself is
//! removed by the forward's Drop.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

/// The local socket's name inside the directory.
const SOCKET_NAME: &str = "podman.sock";
/// sockaddr_un's path limit, less the terminating NUL.
const SUN_PATH_MAX: usize = 107;

/// A new directory for this process's forward (stale ones removed first);
/// returns it and the socket path in it, or the directory and why it could
/// not be made.
pub(super) async fn create() -> Result<(PathBuf, PathBuf), (PathBuf, std::io::Error)> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    remove_stale(&base);
    let dir = base.join(format!(
        "{DIR_PREFIX}{}-{}",
        std::process::id(),
        crate::random_hex(4)
    ));
    let local = dir.join(SOCKET_NAME);
    if local.as_os_str().len() > SUN_PATH_MAX {
        let why = std::io::Error::other("the socket path is too long for a unix socket");
        return Err((dir, why));
    }
    let mut builder = tokio::fs::DirBuilder::new();
    builder.mode(0o700);
    match builder.create(&dir).await {
        Ok(()) => Ok((dir, local)),
        Err(e) => Err((dir, e)),
    }
}

/// Forward directories are `pod-exec-ssh-<pid>-<8 hex digits>`.
const DIR_PREFIX: &str = "pod-exec-ssh-";

/// Removes the forward directories that servers which are gone left in
/// `base`: a SIGKILLed server runs no Drop (its ssh dies with it, by
/// PDEATHSIG, but the directory stays). Taken only when it is this user's,
/// its pid is not running, and nothing answers on its socket — pids are
/// per namespace, and a server in another one could share the directory.
fn remove_stale(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(dir_pid) else {
            continue;
        };
        let path = e.path();
        let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if !ours
            || Path::new(&format!("/proc/{pid}")).exists()
            || std::os::unix::net::UnixStream::connect(path.join(SOCKET_NAME)).is_ok()
        {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            // Debug: a start-up failure prints exactly one line.
            Ok(()) => {
                debug!(dir = %path.display(), "removed the ssh forward directory of a server that is gone")
            }
            Err(err) => {
                warn!(dir = %path.display(), "could not remove a stale ssh forward directory: {err}")
            }
        }
    }
}

/// The pid in a forward directory's name.
fn dir_pid(name: &str) -> Option<u32> {
    let (pid, hex) = name.strip_prefix(DIR_PREFIX)?.split_once('-')?;
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_directory_names() {
        assert_eq!(dir_pid("pod-exec-ssh-1234-0123abcd"), Some(1234));
        for bad in [
            "pod-exec-ssh-1234-0123abc",
            "pod-exec-ssh-1234-0123abcz",
            "pod-exec-ssh-x-0123abcd",
            "pod-exec-ssh-0-0123abcd",
            "pod-exec-ssh--0123abcd",
            "other-1234-0123abcd",
        ] {
            assert_eq!(dir_pid(bad), None, "{bad}");
        }
    }

    /// Only a gone server's directory goes: not a running pid's, not one
    /// whose socket answers (a server in another pid namespace), not a
    /// symlink, not another name.
    #[test]
    fn stale_forward_directories_are_removed() {
        let base = tempfile::tempdir().expect("tempdir");
        // A pid that has just exited (reuse within the test is unlikely).
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let dead = child.id();
        child.wait().expect("wait");
        let mk = |name: String| {
            let d = base.path().join(name);
            std::fs::create_dir(&d).expect("mkdir");
            std::fs::write(d.join(SOCKET_NAME), "").expect("file");
            d
        };
        let gone = mk(format!("pod-exec-ssh-{dead}-0123abcd"));
        let alive = mk(format!("pod-exec-ssh-{}-0123abcd", std::process::id()));
        let other = mk(format!("unrelated-{dead}-0123abcd"));
        let answering = base.path().join(format!("pod-exec-ssh-{dead}-4567abcd"));
        std::fs::create_dir(&answering).expect("mkdir");
        let _listener =
            std::os::unix::net::UnixListener::bind(answering.join(SOCKET_NAME)).expect("bind");
        let target = tempfile::tempdir().expect("tempdir");
        let link = base.path().join(format!("pod-exec-ssh-{dead}-89abcdef"));
        std::os::unix::fs::symlink(target.path(), &link).expect("symlink");

        remove_stale(base.path());
        assert!(!gone.exists());
        for kept in [&alive, &other, &answering, &link] {
            assert!(kept.exists(), "{} removed", kept.display());
        }
        assert!(target.path().exists());
    }
}
