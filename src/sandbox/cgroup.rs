//! Where sandboxes' cgroups go (`POD_EXEC_CGROUP_PARENT`): which share of
//! a contended host CPU they compete for.
//!
//! The CPU scheduler weighs sibling cgroups, and the tasks beside them, one
//! share each. Under a rootful Podman with the cgroupfs manager, Podman's
//! default parent is `/libpod_parent`, one group at the top of the
//! hierarchy: every sandbox together then weighs as much as any one process
//! of the host (the server, each Podman thread, each conmon). At 50 busy
//! sessions on two cores that one share is what the calls wait on, unfairly:
//! measured with `cargo bench --bench bench -- --only-concurrency 5
//! --sessions 50`, p99 152–259 ms in 10 rounds under `/libpod_parent`,
//! 79–135 ms in 15 rounds with each sandbox at the top (`/`).
//! So `auto` puts each sandbox's cgroup at the top there, where it weighs
//! like one process; each keeps its own CPU quota, memory and pids limits.
//! Under systemd, Podman's `machine.slice` is already one slice among
//! `system.slice` and `user.slice`, and rootless Podman does not choose:
//! `auto` leaves Podman's default.

use crate::podman::HostInfo;

/// The setting as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupParent {
    /// Each sandbox at the top of the hierarchy on rootful cgroupfs
    /// Podman; Podman's default elsewhere.
    Auto,
    /// Podman's default (`/libpod_parent`, `machine.slice`, ...).
    Podman,
    /// This parent: an absolute path for cgroupfs, a `*.slice` for systemd.
    Path(String),
}

impl CgroupParent {
    /// Parses `auto`, `podman`, an absolute cgroup path or a systemd slice.
    ///
    /// # Errors
    /// Anything else: empty, relative, with `..`, whitespace or control
    /// characters, or longer than 1,024 bytes.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "auto" => return Ok(CgroupParent::Auto),
            "podman" => return Ok(CgroupParent::Podman),
            _ => {}
        }
        let bad = |why: &str| {
            format!(
                "{s:?} is not a cgroup parent ({why}): use auto, podman, an absolute \
                 cgroupfs path such as /pod_exec_mcp, or a systemd slice such as machine.slice"
            )
        };
        if t.is_empty() {
            return Err(bad("empty"));
        }
        if t.len() > 1024 {
            return Err(bad("too long"));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("whitespace or control characters"));
        }
        if t.split('/').any(|part| part == "..") {
            return Err(bad("a `..` component"));
        }
        let slice = !t.contains('/') && t.ends_with(".slice") && t.len() > ".slice".len();
        if !t.starts_with('/') && !slice {
            return Err(bad("neither an absolute path nor a slice"));
        }
        Ok(CgroupParent::Path(t.to_owned()))
    }

    /// The parent to put in each sandbox's spec (`None`: Podman's
    /// default), for the Podman described by `host`.
    ///
    /// # Errors
    /// A path that this Podman's cgroup manager does not take: systemd
    /// takes slices only, cgroupfs absolute paths only.
    pub fn resolve(&self, host: &HostInfo) -> Result<Option<String>, String> {
        match self {
            CgroupParent::Auto => {
                Ok((!host.rootless && host.cgroup_manager == "cgroupfs").then(|| "/".to_owned()))
            }
            CgroupParent::Podman => Ok(None),
            CgroupParent::Path(p) => {
                let slice = !p.starts_with('/');
                match host.cgroup_manager.as_str() {
                    "systemd" if !slice => Err(format!(
                        "POD_EXEC_CGROUP_PARENT={p}: this Podman's cgroup manager is systemd, \
                         which takes a slice name (such as machine.slice), not a path"
                    )),
                    "cgroupfs" if slice => Err(format!(
                        "POD_EXEC_CGROUP_PARENT={p}: this Podman's cgroup manager is cgroupfs, \
                         which takes an absolute path (such as /pod_exec_mcp), not a slice"
                    )),
                    _ => Ok(Some(p.clone())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(rootless: bool, manager: &str) -> HostInfo {
        HostInfo {
            rootless,
            cgroup_manager: manager.into(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_the_forms() {
        assert_eq!(CgroupParent::parse(" Auto "), Ok(CgroupParent::Auto));
        assert_eq!(CgroupParent::parse("podman"), Ok(CgroupParent::Podman));
        assert_eq!(
            CgroupParent::parse("/pod_exec_mcp"),
            Ok(CgroupParent::Path("/pod_exec_mcp".into()))
        );
        assert_eq!(CgroupParent::parse("/"), Ok(CgroupParent::Path("/".into())));
        assert_eq!(
            CgroupParent::parse("pod-exec.slice"),
            Ok(CgroupParent::Path("pod-exec.slice".into()))
        );
        for bad in [
            "",
            "  ",
            "relative/path",
            "machine",
            ".slice",
            "a/b.slice",
            "/a/../b",
            "/a b",
            "/a\u{7}",
            &format!("/{}", "x".repeat(1100)),
        ] {
            let e = CgroupParent::parse(bad).expect_err(bad);
            assert!(e.contains("not a cgroup parent"), "{e}");
        }
    }

    #[test]
    fn auto_lifts_sandboxes_only_on_rootful_cgroupfs() {
        let auto = CgroupParent::Auto;
        assert_eq!(auto.resolve(&host(false, "cgroupfs")), Ok(Some("/".into())));
        assert_eq!(auto.resolve(&host(false, "systemd")), Ok(None));
        assert_eq!(auto.resolve(&host(true, "cgroupfs")), Ok(None));
        assert_eq!(auto.resolve(&host(true, "systemd")), Ok(None));
        // An older Podman that does not say: leave its default.
        assert_eq!(auto.resolve(&host(false, "")), Ok(None));
        assert_eq!(
            CgroupParent::Podman.resolve(&host(false, "cgroupfs")),
            Ok(None)
        );
    }

    #[test]
    fn a_path_must_suit_the_manager() {
        let path = CgroupParent::Path("/pod_exec_mcp".into());
        let slice = CgroupParent::Path("pod-exec.slice".into());
        assert_eq!(
            path.resolve(&host(false, "cgroupfs")),
            Ok(Some("/pod_exec_mcp".into()))
        );
        assert_eq!(
            slice.resolve(&host(true, "systemd")),
            Ok(Some("pod-exec.slice".into()))
        );
        let e = path.resolve(&host(false, "systemd")).unwrap_err();
        assert!(e.contains("takes a slice name"), "{e}");
        let e = slice.resolve(&host(false, "cgroupfs")).unwrap_err();
        assert!(e.contains("takes an absolute path"), "{e}");
    }
}
