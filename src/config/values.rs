//! The configuration's value types (secrets, user namespace modes, bind
//! mounts) and the parsers clap calls for them and for sizes, CPUs,
//! capabilities, volume names and the Podman endpoint.

use std::fmt;

use crate::podman::{Endpoint, EndpointError};

/// A secret from the command line or environment: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

pub(super) fn parse_secret(s: &str) -> Result<Secret, String> {
    Ok(Secret(s.to_owned()))
}

/// The default user namespace: host uids from 1 000 000 000 up, above the
/// ranges `useradd` hands out in /etc/subuid (SUB_UID_MAX 600 100 000), so a
/// sandbox's uids belong to no login user's rootless containers.
pub const DEFAULT_USERNS: &str = "map:1000000000:65536";

/// How sandbox uids and gids map to the host's (rootful Podman only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernsMode {
    /// No user namespace: container root is host root.
    Host,
    /// Podman allocates a distinct range per container (`--userns=auto`).
    Auto,
    /// Container ids 0..size map to host ids host_start..host_start+size.
    Map {
        /// First host id.
        host_start: u32,
        /// Number of ids mapped.
        size: u32,
    },
}

impl UsernsMode {
    /// Parses "host", "auto" or "map:HOST_START:SIZE".
    ///
    /// # Errors
    /// Anything else, a zero start (that would be host root again), a size
    /// under 65536 (uid 65534, nobody, must be mapped), or a range past
    /// u32::MAX.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "host" => return Ok(UsernsMode::Host),
            "auto" => return Ok(UsernsMode::Auto),
            _ => {}
        }
        let bad = || {
            format!(
                "{s:?} is not a user namespace mode: use auto, host or map:HOST_START:SIZE (e.g. {DEFAULT_USERNS})"
            )
        };
        let rest = t.strip_prefix("map:").ok_or_else(bad)?;
        let (start, size) = rest.split_once(':').ok_or_else(bad)?;
        let host_start: u32 = start.trim().parse().map_err(|_| bad())?;
        let size: u32 = size.trim().parse().map_err(|_| bad())?;
        if host_start == 0 {
            return Err(format!(
                "{s:?}: HOST_START 0 would make sandbox root host root; use host for that"
            ));
        }
        if size < 65536 {
            return Err(format!(
                "{s:?}: SIZE must be at least 65536 (images use uids up to 65534)"
            ));
        }
        if host_start.checked_add(size).is_none() {
            return Err(format!("{s:?}: the range ends past the last uid"));
        }
        Ok(UsernsMode::Map { host_start, size })
    }

    /// The mode [`DEFAULT_USERNS`] names.
    pub fn default_map() -> Self {
        // The constant above parses; tested.
        UsernsMode::parse(DEFAULT_USERNS).unwrap_or(UsernsMode::Map {
            host_start: 1_000_000_000,
            size: 65536,
        })
    }
}

/// A host directory bind-mounted into every sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path.
    pub source: String,
    /// Path in the container.
    pub destination: String,
    /// Writable (only when marked `rw`).
    pub writable: bool,
}

impl BindMount {
    /// Parses "SRC:DST", "SRC:DST:ro" or "SRC:DST:rw".
    ///
    /// # Errors
    /// Wrong shape, a relative path, a ".." component, or "/" as the
    /// destination.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let (source, destination, writable) = match parts.as_slice() {
            [src, dst] => (*src, *dst, false),
            [src, dst, "ro"] => (*src, *dst, false),
            [src, dst, "rw"] => (*src, *dst, true),
            _ => {
                return Err(format!(
                    "mount {s:?}: expected SRC:DST or SRC:DST:rw (SRC:DST:ro is the default)"
                ));
            }
        };
        for (what, p) in [("source", source), ("destination", destination)] {
            if !p.starts_with('/') {
                return Err(format!(
                    "mount {s:?}: the {what} {p:?} is not an absolute path"
                ));
            }
            if p.split('/').any(|c| c == "..") {
                return Err(format!("mount {s:?}: the {what} {p:?} contains \"..\""));
            }
        }
        if destination.trim_end_matches('/').is_empty() {
            return Err(format!("mount {s:?}: cannot mount over the container's /"));
        }
        Ok(BindMount {
            source: source.to_owned(),
            destination: destination.to_owned(),
            writable,
        })
    }
}

/// The endpoint a CONTAINER_HOST value names; unset or blank: the default
/// local socket (rootless under XDG_RUNTIME_DIR when that is set).
pub(super) fn endpoint_of(container_host: Option<&str>) -> Result<Endpoint, EndpointError> {
    match container_host.map(str::trim) {
        Some(s) if !s.is_empty() => Endpoint::parse(s),
        _ => Ok(Endpoint::default_local(
            std::env::var_os("XDG_RUNTIME_DIR")
                .as_deref()
                .map(std::path::Path::new),
        )),
    }
}

/// A Podman volume name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, as Podman admits.
pub(super) fn volume_name(s: &str) -> Result<String, String> {
    let ok = s.len() <= 128
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a volume name (letters, digits, '_', '.', '-'; starting with a letter or digit)"
        ))
    }
}

/// A CPU count: finite, 0 (no limit) up to 1024.
pub(super) fn parse_cpus(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && (0.0..=1024.0).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a CPU count (e.g. 1, 0.5, 2; 0 for no limit)"
        )),
    }
}

/// A capability name, normalised to Podman's form without the prefix
/// ("net_raw", "CAP_NET_RAW" -> "NET_RAW").
pub(super) fn parse_cap(s: &str) -> Result<String, String> {
    let t = s.trim().to_ascii_uppercase();
    let t = t.strip_prefix("CAP_").unwrap_or(&t);
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_uppercase() || c == '_') || t == "ALL" {
        return Err(format!(
            "{s:?} is not a capability name (e.g. NET_RAW, SYS_PTRACE)"
        ));
    }
    Ok(t.to_owned())
}

/// Parses "512m", "2g", "1048576", "64k" (powers of 1024).
pub(super) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 512m, 2g, 1048576)"))
}
