//! What confines a sandbox beyond its image: capabilities, user namespace,
//! CPU and open-file limits, read-only root, bind mounts, the user
//! commands run as. Turns the validated configuration into spec fields.

use tracing::{info, warn};

use crate::config::{BindMount, Config, UsernsMode};
use crate::podman::{
    AutoUserNsOpts, ContainerSpec, CpuLimit, HostInfo, IdMap, IdMappings, Mount, Namespace, Rlimit,
};

/// Capabilities a sandbox keeps; every other one is dropped (`cap_drop:
/// ["ALL"]`). Root in a sandbox is for installing packages and owning files,
/// not for the kernel:
///
/// - `CHOWN`: dpkg/apt-get and `chown` give files to other users.
/// - `DAC_OVERRIDE`: root reads and writes files whatever their mode (apt's
///   `_apt`-owned `partial/` directories, files a tool made 0600).
/// - `FOWNER`: chmod, utime and xattrs on files root does not own (tar and
///   dpkg restoring modes and mtimes).
/// - `FSETID`: keeps set-group-id bits when root writes or chowns files a
///   package installs with them.
/// - `SETUID`, `SETGID`: apt-get drops to `_apt` for downloads; `su`,
///   `runuser`, `setpriv` switch users.
/// - `KILL`: root signals other users' processes (`kill` of a daemon a
///   package started as its own user).
/// - `NET_BIND_SERVICE`: a test server on a port below 1024, inside the
///   sandbox's own network namespace.
///
/// Dropped from Podman's default set: `NET_RAW` (raw and packet sockets,
/// spoofing on the bridge; root's `ping` still works through ICMP datagram
/// sockets, see [`PING_GROUP_RANGE`]),
/// `MKNOD` (device nodes), `SYS_CHROOT`, `AUDIT_WRITE`, `SETFCAP` (file
/// capabilities) and `SETPCAP` (changing capability sets). Add one back
/// with POD_EXEC_CAP_ADD.
pub const BASE_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "SETUID",
    "SETGID",
    "KILL",
    "NET_BIND_SERVICE",
];

/// Groups allowed ICMP datagram ("ping") sockets, which need no
/// capability: gid 0, as Podman's CLI sets by default (the API does not).
/// A wider range would have to name only gids mapped into the sandbox's
/// user namespace, or the container fails to start.
pub const PING_GROUP_RANGE: &str = "0 0";

/// CFS period for the CPU limit (µs): Podman's own `--cpus` uses 100 ms.
const CPU_PERIOD_US: u64 = 100_000;
/// The kernel's smallest CFS quota (µs).
const CPU_MIN_QUOTA_US: i64 = 1_000;
/// Size of a `--userns=auto` range: every id an image uses (nobody is
/// 65534).
const AUTO_USERNS_SIZE: u32 = 65_536;

/// The confinement part of a sandbox template.
#[derive(Debug, Clone, PartialEq)]
pub struct Hardening {
    cap_add: Vec<String>,
    cpus: f64,
    nofile: u64,
    /// The pids limit, reused as RLIMIT_NPROC.
    pids: u64,
    /// `None`: no mapping is added (rootless Podman, or `host`).
    userns: Option<UsernsMode>,
    read_only_root: bool,
    read_only_mode: bool,
    mounts: Vec<BindMount>,
    user: Option<String>,
}

impl Hardening {
    /// From the validated configuration.
    pub fn from_config(c: &Config) -> Self {
        let mut cap_add: Vec<String> = BASE_CAPS.iter().map(|s| (*s).to_owned()).collect();
        for cap in &c.cap_add {
            if !cap_add.contains(cap) {
                cap_add.push(cap.clone());
            }
        }
        Hardening {
            cap_add,
            cpus: c.cpus,
            nofile: c.nofile,
            pids: u64::from(c.pids_limit),
            userns: (c.userns != UsernsMode::Host).then_some(c.userns),
            read_only_root: c.read_only_root,
            read_only_mode: false,
            mounts: c.mounts.clone(),
            user: c.user.clone().filter(|u| !u.trim().is_empty()),
        }
    }

    /// Forces a read-only root, read-only bind mounts and tmpfs scratch
    /// only (/tmp, /work), whatever the configuration says.
    pub fn set_read_only_mode(&mut self, on: bool) {
        self.read_only_mode = on;
    }

    /// Whether read-only mode is on.
    pub fn read_only_mode(&self) -> bool {
        self.read_only_mode
    }

    /// The user namespace mode in effect (`None`: no mapping added).
    pub fn userns(&self) -> Option<UsernsMode> {
        self.userns
    }

    /// Replaces the user namespace mode (e.g. the fallback when `auto` is
    /// not available).
    pub fn set_userns(&mut self, mode: Option<UsernsMode>) {
        self.userns = mode.filter(|m| *m != UsernsMode::Host);
    }

    /// Adjusts to how Podman runs: under rootless Podman every container is
    /// user-namespaced already (its root is the unprivileged user), and an
    /// extra mapping would need subordinate ids of that user: none is added.
    pub fn adapt_to(&mut self, host: &HostInfo) {
        if host.rootless {
            if self.userns.is_some() {
                info!(
                    "rootless Podman: sandboxes are user-namespaced already; no uid mapping added"
                );
            }
            self.userns = None;
            if host.cgroup_version == "v1" {
                // Podman accepts the limits and drops them (the container's
                // Memory and PidsLimit read 0); what bounds processes then
                // is RLIMIT_NPROC, counted for that user over all its
                // sandboxes together.
                warn!(
                    "rootless Podman on cgroups v1: the memory, pids and CPU limits are not enforced (Podman drops them); use cgroups v2 or rootful Podman for them"
                );
            }
        } else if self.userns.is_none() {
            warn!(
                "POD_EXEC_USERNS=host under rootful Podman: a sandbox's root is the host's root (confined by capabilities, seccomp and namespaces only)"
            );
        }
    }

    /// Sets the confinement fields of `spec`.
    pub fn apply(&self, spec: &mut ContainerSpec) {
        spec.no_new_privileges = Some(true);
        spec.cap_drop = vec!["ALL".into()];
        spec.cap_add = self.cap_add.clone();
        spec.sysctl
            .insert("net.ipv4.ping_group_range".into(), PING_GROUP_RANGE.into());
        match self.userns {
            None | Some(UsernsMode::Host) => {}
            Some(UsernsMode::Map { host_start, size }) => {
                let range = vec![IdMap {
                    container_id: 0,
                    host_id: host_start,
                    size,
                }];
                spec.userns = Some(Namespace {
                    nsmode: "private".into(),
                });
                spec.idmappings = Some(IdMappings {
                    uid_map: range.clone(),
                    gid_map: range,
                    ..Default::default()
                });
            }
            Some(UsernsMode::Auto) => {
                spec.userns = Some(Namespace {
                    nsmode: "auto".into(),
                });
                spec.idmappings = Some(IdMappings {
                    auto_userns: true,
                    auto_userns_opts: Some(AutoUserNsOpts {
                        size: AUTO_USERNS_SIZE,
                    }),
                    ..Default::default()
                });
            }
        }
        if self.cpus > 0.0 {
            let quota = (self.cpus * CPU_PERIOD_US as f64).round() as i64;
            let limits = spec.resource_limits.get_or_insert_with(Default::default);
            limits.cpu = Some(CpuLimit {
                quota: quota.max(CPU_MIN_QUOTA_US),
                period: CPU_PERIOD_US,
            });
        }
        if self.nofile > 0 {
            spec.rlimits.push(Rlimit {
                kind: "nofile".into(),
                hard: self.nofile,
                soft: self.nofile,
            });
            // Once r_limits is set, Podman no longer applies containers.conf's
            // default_ulimits and asks for nproc 1048576, above the hard limit
            // of many hosts ("error setting rlimit type 6"). The pids limit
            // bounds processes anyway; RLIMIT_NPROC is counted per user
            // namespace, and host root (userns host) is exempt from it.
            if self.pids > 0 {
                spec.rlimits.push(Rlimit {
                    kind: "nproc".into(),
                    hard: self.pids,
                    soft: self.pids,
                });
            }
        }
        let read_only = self.read_only_root || self.read_only_mode;
        if read_only {
            spec.read_only_filesystem = Some(true);
            spec.mounts.push(Mount::tmpfs(
                "/tmp",
                &["rw", "nosuid", "nodev", "mode=1777"],
            ));
        }
        // /work must be writable for whoever runs the commands: on a
        // read-only root, or for a non-root user (the image's /work belongs
        // to root), it is a tmpfs anyone may write. Its pages count against
        // the memory limit.
        if read_only || self.user.is_some() {
            spec.mounts.push(Mount::tmpfs(
                "/work",
                &["rw", "nosuid", "nodev", "mode=1777"],
            ));
        }
        for m in &self.mounts {
            let writable = m.writable && !self.read_only_mode;
            spec.mounts
                .push(Mount::bind(&m.source, &m.destination, writable));
        }
        if let Some(user) = &self.user {
            spec.user = Some(user.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn spec_for(args: &[&str]) -> ContainerSpec {
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        let c = Config::try_parse_from(argv).unwrap();
        let mut spec = ContainerSpec::default();
        Hardening::from_config(&c).apply(&mut spec);
        spec
    }

    #[test]
    fn defaults_drop_caps_map_root_and_limit_cpu_and_files() {
        let s = spec_for(&[]);
        assert_eq!(s.no_new_privileges, Some(true));
        assert_eq!(s.cap_drop, ["ALL"]);
        assert_eq!(s.cap_add, BASE_CAPS);
        assert!(!s.cap_add.iter().any(|c| c == "NET_RAW" || c == "MKNOD"));
        assert_eq!(s.userns.unwrap().nsmode, "private");
        let m = s.idmappings.unwrap();
        let want = vec![IdMap {
            container_id: 0,
            host_id: 1_000_000_000,
            size: 65536,
        }];
        assert_eq!(m.uid_map, want);
        assert_eq!(m.gid_map, want);
        let cpu = s.resource_limits.unwrap().cpu.unwrap();
        assert_eq!((cpu.quota, cpu.period), (100_000, 100_000));
        assert_eq!(
            s.rlimits,
            [
                Rlimit {
                    kind: "nofile".into(),
                    hard: 4096,
                    soft: 4096
                },
                Rlimit {
                    kind: "nproc".into(),
                    hard: 1024,
                    soft: 1024
                }
            ]
        );
        assert_eq!(s.read_only_filesystem, None);
        assert!(s.mounts.is_empty());
        assert_eq!(s.user, None);
    }

    #[test]
    fn serialized_names_are_podmans() {
        let s = spec_for(&["--userns", "auto", "--cpus", "0.5"]);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["userns"]["nsmode"], "auto");
        assert_eq!(v["idmappings"]["AutoUserNs"], true);
        assert_eq!(v["idmappings"]["AutoUserNsOpts"]["Size"], 65536);
        assert_eq!(v["resource_limits"]["cpu"]["quota"], 50_000);
        assert_eq!(v["r_limits"][0]["type"], "nofile");
        let v = serde_json::to_value(spec_for(&[])).unwrap();
        assert_eq!(
            v["idmappings"],
            serde_json::json!({
                "UIDMap": [{"container_id": 0, "host_id": 1_000_000_000u32, "size": 65536}],
                "GIDMap": [{"container_id": 0, "host_id": 1_000_000_000u32, "size": 65536}],
            })
        );
    }

    #[test]
    fn zero_means_no_limit_and_host_means_no_mapping() {
        let s = spec_for(&["--cpus", "0", "--nofile", "0", "--userns", "host"]);
        assert!(s.resource_limits.is_none());
        assert!(s.rlimits.is_empty());
        assert!(s.userns.is_none() && s.idmappings.is_none());
        let s = spec_for(&["--cpus", "0.001"]);
        assert_eq!(s.resource_limits.unwrap().cpu.unwrap().quota, 1_000);
    }

    #[test]
    fn rootless_podman_gets_no_mapping() {
        let c = Config::try_parse_from(["x"]).unwrap();
        let mut h = Hardening::from_config(&c);
        h.adapt_to(&HostInfo {
            rootless: true,
            ..Default::default()
        });
        let mut s = ContainerSpec::default();
        h.apply(&mut s);
        assert!(s.userns.is_none() && s.idmappings.is_none());
        let mut h = Hardening::from_config(&c);
        h.adapt_to(&HostInfo::default());
        assert_eq!(h.userns(), Some(UsernsMode::default_map()));
    }

    #[test]
    fn extra_caps_are_added_once() {
        let s = spec_for(&["--cap-add", "NET_RAW,chown"]);
        assert_eq!(s.cap_add.len(), BASE_CAPS.len() + 1);
        assert_eq!(s.cap_add.last().map(String::as_str), Some("NET_RAW"));
    }

    #[test]
    fn read_only_root_user_and_mounts() {
        let s = spec_for(&[
            "--read-only-root",
            "--mount",
            "/srv/a:/a",
            "--mount",
            "/srv/b:/b:rw",
            "--user",
            "1000:1000",
        ]);
        assert_eq!(s.read_only_filesystem, Some(true));
        let dests: Vec<_> = s.mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(dests, ["/tmp", "/work", "/a", "/b"]);
        assert_eq!(s.mounts[2].options, ["rbind", "ro"]);
        assert_eq!(s.mounts[3].options, ["rbind", "rw"]);
        assert_eq!(s.user.as_deref(), Some("1000:1000"));
        // A user alone gets a writable /work but keeps a writable root.
        let s = spec_for(&["--user", "nobody"]);
        assert_eq!(s.read_only_filesystem, None);
        assert_eq!(s.mounts.len(), 1);
        assert_eq!(s.mounts[0].destination, "/work");
    }

    #[test]
    fn read_only_mode_forces_everything_read_only() {
        let c = Config::try_parse_from(["x", "--mount", "/srv/b:/b:rw"]).unwrap();
        let mut h = Hardening::from_config(&c);
        h.set_read_only_mode(true);
        assert!(h.read_only_mode());
        let mut s = ContainerSpec::default();
        h.apply(&mut s);
        assert_eq!(s.read_only_filesystem, Some(true));
        let kinds: Vec<_> = s
            .mounts
            .iter()
            .map(|m| (m.destination.as_str(), m.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [("/tmp", "tmpfs"), ("/work", "tmpfs"), ("/b", "bind")]
        );
        assert_eq!(s.mounts[2].options, ["rbind", "ro"]);
    }
}
