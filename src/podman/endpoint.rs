//! `Endpoint`: where the Podman API is, parsed from CONTAINER_HOST.

use std::fmt;
use std::path::{Path, PathBuf};

use super::ssh::SshTarget;

/// A Podman API address this client can dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:///path/to/podman.sock`
    Unix(PathBuf),
    /// `tcp://host:port`, plain HTTP.
    Tcp {
        /// `host:port`
        authority: String,
    },
    /// `ssh://[user@]host[:port]/path/to/podman.sock`: reached through a
    /// forward by the system's ssh client (see `ssh.rs`).
    Ssh(SshTarget),
}

/// CONTAINER_HOST names something this client cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// A malformed `ssh://` address.
    #[error(
        "CONTAINER_HOST={0:?}: {1}; expected ssh://user@host[:port]/path/to/podman.sock \
         (e.g. ssh://core@host:22/run/podman/podman.sock)"
    )]
    Ssh(String, &'static str),
    /// A form that is not unix:// or tcp://.
    #[error(
        "CONTAINER_HOST={0:?} is not a Podman API address; use unix:///path/to/podman.sock, \
         tcp://host:port or ssh://user@host[:port]/path/to/podman.sock"
    )]
    Unsupported(String),
    /// A unix:// address whose path is not absolute.
    #[error(
        "CONTAINER_HOST={0:?}: a unix:// socket path must be absolute (unix:///run/podman/podman.sock)"
    )]
    RelativePath(String),
    /// A tcp:// address without host:port.
    #[error("CONTAINER_HOST={0:?}: tcp:// needs host:port (tcp://127.0.0.1:8888)")]
    BadTcp(String),
}

impl Endpoint {
    /// Parses a CONTAINER_HOST value.
    ///
    /// # Errors
    /// Anything but `unix:///abs/path`, `tcp://host:port` or
    /// `ssh://[user@]host[:port]/abs/path`.
    pub fn parse(s: &str) -> Result<Self, EndpointError> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(EndpointError::RelativePath(s.to_owned()));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("tcp://") {
            let authority = rest.trim_end_matches('/');
            let ok = match authority.rsplit_once(':') {
                Some((host, port)) => {
                    !host.is_empty()
                        && !authority.contains('/')
                        && !authority.contains('@')
                        && port.parse::<u16>().is_ok_and(|p| p != 0)
                }
                None => false,
            };
            if !ok || authority.parse::<http::uri::Authority>().is_err() {
                return Err(EndpointError::BadTcp(s.to_owned()));
            }
            return Ok(Endpoint::Tcp {
                authority: authority.to_owned(),
            });
        }
        if let Some(rest) = s.strip_prefix("ssh://") {
            return SshTarget::parse(rest)
                .map(Endpoint::Ssh)
                .map_err(|why| EndpointError::Ssh(s.to_owned(), why));
        }
        Err(EndpointError::Unsupported(s.to_owned()))
    }

    /// CONTAINER_HOST when set and non-empty, else the default local socket.
    ///
    /// # Errors
    /// CONTAINER_HOST is set to a form [`Endpoint::parse`] rejects.
    pub fn from_env() -> Result<Self, EndpointError> {
        match std::env::var("CONTAINER_HOST") {
            Ok(v) if !v.trim().is_empty() => Self::parse(&v),
            _ => Ok(Self::default_local(
                std::env::var_os("XDG_RUNTIME_DIR")
                    .as_deref()
                    .map(Path::new),
            )),
        }
    }

    /// The rootless socket `$XDG_RUNTIME_DIR/podman/podman.sock` if it
    /// exists, else the rootful `/run/podman/podman.sock`.
    pub fn default_local(xdg_runtime_dir: Option<&Path>) -> Self {
        if let Some(dir) = xdg_runtime_dir {
            let p = dir.join("podman/podman.sock");
            if p.exists() {
                return Endpoint::Unix(p);
            }
        }
        Endpoint::Unix(PathBuf::from("/run/podman/podman.sock"))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp { authority } => write!(f, "tcp://{authority}"),
            Endpoint::Ssh(target) => target.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_absolute() {
        assert_eq!(
            Endpoint::parse("unix:///run/podman/podman.sock").unwrap(),
            Endpoint::Unix("/run/podman/podman.sock".into())
        );
    }

    #[test]
    fn unix_relative_rejected() {
        assert!(matches!(
            Endpoint::parse("unix://run/podman.sock"),
            Err(EndpointError::RelativePath(_))
        ));
    }

    #[test]
    fn tcp_forms() {
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:8888").unwrap(),
            Endpoint::Tcp {
                authority: "127.0.0.1:8888".into()
            }
        );
        assert_eq!(
            Endpoint::parse("tcp://[::1]:8888/").unwrap(),
            Endpoint::Tcp {
                authority: "[::1]:8888".into()
            }
        );
        for bad in [
            "tcp://host",
            "tcp://:80",
            "tcp://h:0",
            "tcp://h:99999",
            "tcp://u@h:1",
            "tcp://h:1/x",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(EndpointError::BadTcp(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ssh_parsed_others_rejected_with_guidance() {
        assert!(matches!(
            Endpoint::parse("ssh://core@host:22/run/podman/podman.sock"),
            Ok(Endpoint::Ssh(_))
        ));
        let e = Endpoint::parse("ssh://core@host").unwrap_err();
        assert!(e.to_string().contains("path is missing"), "{e}");
        let e = Endpoint::parse("http://localhost:8080").unwrap_err();
        assert!(matches!(e, EndpointError::Unsupported(_)));
        assert!(e.to_string().contains("unix:///"));
    }

    #[test]
    fn default_prefers_existing_rootless_socket() {
        let dir = std::env::temp_dir().join(format!("pem-ep-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("podman")).unwrap();
        assert_eq!(
            Endpoint::default_local(Some(&dir)),
            Endpoint::Unix("/run/podman/podman.sock".into())
        );
        std::fs::write(dir.join("podman/podman.sock"), b"").unwrap();
        assert_eq!(
            Endpoint::default_local(Some(&dir)),
            Endpoint::Unix(dir.join("podman/podman.sock"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            Endpoint::default_local(None),
            Endpoint::Unix("/run/podman/podman.sock".into())
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["unix:///a/b.sock", "tcp://h:1", "ssh://u@h:2/a.sock"] {
            assert_eq!(Endpoint::parse(s).unwrap().to_string(), s);
        }
    }
}
