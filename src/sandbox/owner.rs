//! Who owns a managed container: this server instance's identity, written
//! into labels, and the liveness check that lets a new instance remove what
//! a crashed or SIGKILLed predecessor left behind.
//!
//! The owner label is `<boot id>/<pid namespace>/<pid>/<process start time>`.
//! An instance on the same kernel and in the same PID namespace can tell
//! for sure whether that process still runs (a PID reused by another
//! process has another start time). Containers owned from elsewhere (another
//! machine, another server container) are left alone: liveness there cannot
//! be checked.

/// Label keys.
pub mod labels {
    /// Every container this server manages: `true`.
    pub const MANAGED: &str = "pod-exec-mcp.managed";
    /// Random id of the server instance that created it.
    pub const INSTANCE: &str = "pod-exec-mcp.instance";
    /// The owning process (see the module docs).
    pub const OWNER: &str = "pod-exec-mcp.owner";
    /// A random tag of the session or handle; logs use the same tag. Never
    /// the session id itself, which is a bearer secret.
    pub const SANDBOX: &str = "pod-exec-mcp.sandbox";
    /// "session", "handle" or "oneshot".
    pub const KIND: &str = "pod-exec-mcp.kind";
}

/// This process's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Random per process start.
    pub instance: String,
    /// Owner label value; `None` off Linux or without /proc.
    pub owner: Option<String>,
}

impl Identity {
    /// The identity of the running process (reads /proc once).
    pub fn current() -> Self {
        Identity {
            instance: crate::random_hex(16),
            owner: owner_of(std::process::id()),
        }
    }
}

/// What a liveness check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The owner process still runs.
    Alive,
    /// The owner process is gone.
    Dead,
    /// Cannot tell from here (another machine or PID namespace, or an
    /// unparseable label).
    Unknown,
}

/// Checks the owner label `label` from where `me` (our own owner label)
/// stands.
pub fn liveness(label: &str, me: Option<&str>) -> Liveness {
    let Some(me) = me else {
        return Liveness::Unknown;
    };
    let (Some(theirs), Some(mine)) = (parse(label), parse(me)) else {
        return Liveness::Unknown;
    };
    if theirs.boot != mine.boot || theirs.pidns != mine.pidns {
        return Liveness::Unknown;
    }
    match start_time(theirs.pid) {
        Some(t) if t == theirs.start => Liveness::Alive,
        _ => Liveness::Dead,
    }
}

struct Owner<'a> {
    boot: &'a str,
    pidns: &'a str,
    pid: u32,
    start: u64,
}

fn parse(label: &str) -> Option<Owner<'_>> {
    let mut it = label.split('/');
    let o = Owner {
        boot: it.next().filter(|s| !s.is_empty())?,
        pidns: it.next().filter(|s| !s.is_empty())?,
        pid: it.next()?.parse().ok()?,
        start: it.next()?.parse().ok()?,
    };
    it.next().is_none().then_some(o)
}

fn owner_of(pid: u32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    // "pid:[4026531836]" -> "4026531836"
    let ns = ns.to_string_lossy();
    let ns: String = ns.chars().filter(char::is_ascii_digit).collect();
    let start = start_time(pid)?;
    Some(format!("{}/{ns}/{pid}/{start}", boot.trim()))
}

/// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parens: split after
    // its closing paren.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_well_formed() {
        let me = Identity::current();
        let owner = me.owner.expect("this test runs on Linux with /proc");
        assert_eq!(owner.split('/').count(), 4);
        assert_eq!(liveness(&owner, Some(&owner)), Liveness::Alive);
        assert_eq!(me.instance.len(), 32);
    }

    #[test]
    fn exited_process_is_dead() {
        let me = Identity::current().owner.expect("linux");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let owner = owner_of(child.id());
        child.wait().expect("wait");
        let owner = owner.expect("child stat readable before it was reaped");
        assert_eq!(liveness(&owner, Some(&me)), Liveness::Dead);
    }

    #[test]
    fn reused_pid_with_other_start_time_is_dead() {
        let me = Identity::current().owner.expect("linux");
        let mut parts: Vec<String> = me.split('/').map(str::to_owned).collect();
        parts[3] = "1".into(); // our pid, another start time
        assert_eq!(liveness(&parts.join("/"), Some(&me)), Liveness::Dead);
    }

    #[test]
    fn foreign_or_garbage_is_unknown() {
        let me = Identity::current().owner.expect("linux");
        let mut parts: Vec<&str> = me.split('/').collect();
        parts[1] = "1";
        assert_eq!(liveness(&parts.join("/"), Some(&me)), Liveness::Unknown);
        for bad in ["", "x", "a/b/c", "a/b/notapid/1", "a/b/1/2/3"] {
            assert_eq!(liveness(bad, Some(&me)), Liveness::Unknown, "{bad}");
        }
        assert_eq!(liveness(&me, None), Liveness::Unknown);
    }
}
