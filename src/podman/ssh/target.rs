//! `SshTarget`: an `ssh://[user@]host[:port]/path` address, parsed and
//! checked so that nothing in it can reach ssh as an option.

use std::fmt;

/// `ssh://[user@]host[:port]/path/to/podman.sock`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Remote user; ssh's default (config, then the local user) if absent.
    pub user: Option<String>,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port; ssh's default (config, then 22) if absent.
    pub port: Option<u16>,
    /// The Podman socket on the remote host (absolute).
    pub path: String,
}

impl SshTarget {
    /// Parses what follows `ssh://`; `Err` is the reason, for one line.
    pub(in crate::podman) fn parse(rest: &str) -> Result<Self, &'static str> {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.len() < 2 {
            return Err("the remote socket's path is missing");
        }
        if path.contains(':') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the socket path may not contain ':', spaces or control characters");
        }
        if path.contains('?') || path.contains('#') {
            return Err("query parameters are not supported");
        }
        let (user, hostport) = match authority.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if let Some(u) = user {
            let ok = !u.is_empty()
                && !u.starts_with('-')
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return Err("bad user name");
            }
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err("bad IPv6 address");
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("bad port")?),
            };
            (h, port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let host_ok = !host.is_empty()
            && !host.starts_with('-')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
        if !host_ok {
            return Err("bad host");
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 => Some(n),
                _ => return Err("bad port"),
            },
        };
        Ok(SshTarget {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// `user@host:port`, for messages.
    fn destination(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        if self.host.contains(':') {
            s.push_str(&format!("[{}]", self.host));
        } else {
            s.push_str(&self.host);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ssh://{}{}", self.destination(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SshTarget, &'static str> {
        SshTarget::parse(s.strip_prefix("ssh://").unwrap())
    }

    #[test]
    fn forms_podman_accepts() {
        let t = parse("ssh://core@host.example:2222/run/podman/podman.sock").unwrap();
        assert_eq!(t.user.as_deref(), Some("core"));
        assert_eq!(t.host, "host.example");
        assert_eq!(t.port, Some(2222));
        assert_eq!(t.path, "/run/podman/podman.sock");
        let t = parse("ssh://h/run/user/1000/podman/podman.sock").unwrap();
        assert_eq!((t.user, t.port), (None, None));
        let t = parse("ssh://root@[::1]:22/p.sock").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.to_string(), "ssh://root@[::1]:22/p.sock");
    }

    #[test]
    fn bad_forms_say_why() {
        for (s, why) in [
            ("ssh://core@host", "path"),
            ("ssh://core@host/", "path"),
            ("ssh://-oProxyCommand=x/p", "host"),
            ("ssh://-l@h/p", "user"),
            ("ssh://u@h:0/p", "port"),
            ("ssh://u@h:x/p", "port"),
            ("ssh://u@[::1/p", "'['"),
            ("ssh://u@h/a:b", "':'"),
            ("ssh://u@h/a b", "':'"),
            ("ssh://u@h/p?secure=true", "query"),
            ("ssh://@h/p", "user"),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
