//! `SshError`: why a forward could not be set up, one actionable line
//! each, and the reading of ssh's stderr that picks it.

use std::path::PathBuf;

use super::{READY_TIMEOUT, Spec, SshTarget};

/// Why the forward could not be set up; each is one line a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// No ssh client to run.
    #[error(
        "{target}: the ssh client `{program}` was not found (CONTAINER_HOST=ssh:// runs the \
         system's ssh; install openssh-client)"
    )]
    MissingClient {
        /// The endpoint.
        target: SshTarget,
        /// What was looked for.
        program: String,
    },
    /// CONTAINER_SSHKEY names no readable file.
    #[error("{target}: CONTAINER_SSHKEY={}: {source}", key.display())]
    Key {
        /// The endpoint.
        target: SshTarget,
        /// The key file.
        key: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The server refused every key offered.
    #[error(
        "{target}: the ssh server refused the key ({detail}); {}",
        match key { Some(k) => format!("CONTAINER_SSHKEY={} is not authorized for that user", k.display()),
                    None => "set CONTAINER_SSHKEY to a key in the remote user's authorized_keys (no agent or default key was accepted)".to_owned() }
    )]
    KeyRejected {
        /// The endpoint.
        target: SshTarget,
        /// The key offered, if one was given.
        key: Option<PathBuf>,
        /// ssh's line.
        detail: String,
    },
    /// The host key is unknown or has changed.
    #[error(
        "{target}: the host key could not be verified ({detail}); add it to known_hosts \
         (ssh-keyscan{} {} >> ~/.ssh/known_hosts, or POD_EXEC_SSH_KNOWN_HOSTS=FILE) after \
         checking it, or set POD_EXEC_SSH_INSECURE_HOST_KEY=1 to skip the check",
        target.port.map(|p| format!(" -p {p}")).unwrap_or_default(), target.host
    )]
    HostKey {
        /// The endpoint.
        target: SshTarget,
        /// ssh's line.
        detail: String,
    },
    /// Nothing listens for ssh there.
    #[error("{target}: the host refused the ssh connection ({detail})")]
    Refused {
        /// The endpoint.
        target: SshTarget,
        /// ssh's line.
        detail: String,
    },
    /// ssh failed otherwise.
    #[error("{target}: ssh failed: {detail}")]
    Failed {
        /// The endpoint.
        target: SshTarget,
        /// ssh's last line, or its exit status.
        detail: String,
    },
    /// ssh ran but the forward did not come up in time.
    #[error("{target}: the ssh forward was not up within {}s", READY_TIMEOUT.as_secs())]
    Timeout {
        /// The endpoint.
        target: SshTarget,
    },
    /// The private local socket cannot be made.
    #[error("{target}: cannot create the local socket directory {}: {source}", dir.display())]
    LocalDir {
        /// The endpoint.
        target: SshTarget,
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The one line for a failed ssh, from what it printed.
pub(super) fn classify(spec: &Spec, stderr: &str, status: &str) -> SshError {
    let target = spec.target.clone();
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '@'))
        .collect();
    let find = |pat: &str| {
        lines
            .iter()
            .find(|l| l.contains(pat))
            .map(|l| (*l).to_owned())
    };
    if let Some(l) = find("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        return SshError::HostKey { target, detail: l };
    }
    if let Some(l) = find("host key is known").or_else(|| find("Host key verification failed")) {
        return SshError::HostKey { target, detail: l };
    }
    if let Some(l) = find("Permission denied") {
        return SshError::KeyRejected {
            target,
            key: spec.opts.key.clone(),
            detail: l,
        };
    }
    if let Some(l) = find("Connection refused") {
        return SshError::Refused { target, detail: l };
    }
    let detail = lines
        .iter()
        .rev()
        .find(|l| !l.starts_with("Warning:"))
        .or(lines.last())
        .map(|l| (*l).to_owned())
        .unwrap_or_else(|| format!("ssh exited ({status})"));
    SshError::Failed { target, detail }
}

#[cfg(test)]
mod tests {
    use super::super::SshOptions;
    use super::*;

    fn parse(s: &str) -> SshTarget {
        SshTarget::parse(s.strip_prefix("ssh://").unwrap()).unwrap()
    }

    fn spec(key: Option<&str>) -> Spec {
        Spec {
            target: parse("ssh://root@127.0.0.1:2222/run/podman/podman.sock"),
            opts: SshOptions {
                key: key.map(PathBuf::from),
                ..Default::default()
            },
            local: PathBuf::from("/tmp/x.sock"),
        }
    }

    // What OpenSSH 9.2 prints for each failure (recorded here).
    #[test]
    fn classify_ssh_messages() {
        let s = spec(Some("/k"));
        let e = classify(
            &s,
            "root@127.0.0.1: Permission denied (publickey).\r\n",
            "exit status: 255",
        );
        assert!(matches!(e, SshError::KeyRejected { .. }), "{e}");
        assert!(e.to_string().contains("CONTAINER_SSHKEY=/k"), "{e}");
        let e = classify(
            &s,
            "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.\n",
            "exit status: 255",
        );
        assert!(matches!(e, SshError::HostKey { .. }), "{e}");
        assert!(
            e.to_string().contains("ssh-keyscan -p 2222 127.0.0.1"),
            "{e}"
        );
        let e = classify(
            &s,
            "ssh: connect to host 127.0.0.1 port 2222: Connection refused\n",
            "exit status: 255",
        );
        assert!(matches!(e, SshError::Refused { .. }), "{e}");
        let e = classify(&s, "", "exit status: 255");
        assert!(e.to_string().contains("exit status: 255"), "{e}");
        let e = classify(&s, "Warning: x\nssh: Could not resolve hostname h\n", "255");
        assert!(
            e.to_string()
                .ends_with("ssh failed: ssh: Could not resolve hostname h"),
            "{e}"
        );
        let e = classify(
            &spec(None),
            "u@h: Permission denied (publickey).\n",
            "exit status: 255",
        );
        assert!(e.to_string().contains("set CONTAINER_SSHKEY"), "{e}");
        assert_eq!(e.to_string().lines().count(), 1);
    }
}
