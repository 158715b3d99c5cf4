//! Container calls: create (SpecGenerator), start, inspect, list, remove.

use std::collections::BTreeMap;

use http::Method;
use serde::{Deserialize, Serialize};

use super::{PodmanClient, PodmanError, api, encode, json_body};

/// The subset of libpod's SpecGenerator a sandbox needs. Unset fields are
/// left out, so Podman's defaults apply.
///
/// Podman silently ignores unknown fields: tests check that each setting
/// took effect by inspecting the container.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ContainerSpec {
    /// Container name; unique per Podman.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Image reference.
    pub image: String,
    /// Command (the image's CMD when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Entrypoint override.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Keep the main process's stdin open (for attaching to it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<bool>,
    /// Run an init (catatonit) as PID 1 that reaps zombies and forwards signals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Environment.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    /// User (name or uid[:gid]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Supplementary groups of the process (`--group-add`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Hostname.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Parent cgroup (a path for cgroupfs, a slice for systemd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    /// cgroup limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<ResourceLimits>,
    /// Capabilities to drop ("ALL" drops all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Capabilities to add.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Set no_new_privs for every process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
    /// Mount the root filesystem read-only (add tmpfs mounts for scratch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_filesystem: Option<bool>,
    /// Network namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<Namespace>,
    /// User namespace: "private" with `idmappings`, "auto", "host".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns: Option<Namespace>,
    /// uid/gid maps of the user namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idmappings: Option<IdMappings>,
    /// Namespaced kernel parameters (`net.*`, `kernel.shm*`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    /// POSIX rlimits of the container's processes.
    #[serde(rename = "r_limits", skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
    /// Named volumes mounted into the container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<NamedVolume>,
    /// Extra mounts (bind, tmpfs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Seconds to wait after SIGTERM on stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// Remove the container when it exits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove: Option<bool>,
}

/// OCI `LinuxResources`, the parts a sandbox limits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResourceLimits {
    /// Memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryLimit>,
    /// Process count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<PidsLimit>,
    /// CPU quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuLimit>,
}

/// Memory limit in bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryLimit {
    /// Bytes.
    pub limit: i64,
}

/// Maximum number of processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PidsLimit {
    /// Processes.
    pub limit: i64,
}

/// CFS quota: `quota` µs of CPU time per `period` µs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuLimit {
    /// µs per period.
    pub quota: i64,
    /// Period in µs.
    pub period: u64,
}

/// A namespace mode, e.g. `{"nsmode": "none"}` for no network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Namespace {
    /// "none", "bridge", "host", "private", "slirp4netns", ...
    pub nsmode: String,
}

/// containers/storage `IDMappingOptions` (its Go field names: the struct
/// has no JSON tags).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IdMappings {
    /// uid ranges.
    #[serde(rename = "UIDMap", skip_serializing_if = "Vec::is_empty", default)]
    pub uid_map: Vec<IdMap>,
    /// gid ranges.
    #[serde(rename = "GIDMap", skip_serializing_if = "Vec::is_empty", default)]
    pub gid_map: Vec<IdMap>,
    /// Let Podman pick a free range for this container (`--userns=auto`);
    /// `userns` must then say "auto" too.
    #[serde(
        rename = "AutoUserNs",
        skip_serializing_if = "std::ops::Not::not",
        default
    )]
    pub auto_userns: bool,
    /// Options of the automatic range.
    #[serde(
        rename = "AutoUserNsOpts",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub auto_userns_opts: Option<AutoUserNsOpts>,
}

/// One range of an id map.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdMap {
    /// First id inside.
    pub container_id: u32,
    /// First id on the host.
    pub host_id: u32,
    /// Number of ids.
    pub size: u32,
}

/// containers/storage `AutoUserNsOptions`, the part a sandbox sets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AutoUserNsOpts {
    /// Exact size of the range (0: Podman's heuristics).
    #[serde(rename = "Size")]
    pub size: u32,
}

/// A POSIX rlimit as SpecGenerator takes it: Podman prefixes the type
/// with `RLIMIT_` itself (4.3.1 pkg/specgen/generate/oci.go).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rlimit {
    /// "nofile", "nproc", ... ("RLIMIT_NOFILE" would become
    /// RLIMIT_RLIMIT_NOFILE, which runc rejects).
    #[serde(rename = "type")]
    pub kind: String,
    /// Hard limit.
    pub hard: u64,
    /// Soft limit.
    pub soft: u64,
}

/// An OCI mount.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    /// Path in the container.
    pub destination: String,
    /// "tmpfs" or "bind".
    #[serde(rename = "type")]
    pub kind: String,
    /// Source ("tmpfs" for tmpfs).
    pub source: String,
    /// Options ("rw", "size=64m", "mode=1777", ...).
    #[serde(default)]
    pub options: Vec<String>,
}

/// A named volume mount (SpecGenerator `volumes`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NamedVolume {
    /// The volume's name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Path in the container.
    #[serde(rename = "Dest")]
    pub dest: String,
    /// Mount options, e.g. "ro".
    #[serde(rename = "Options", default)]
    pub options: Vec<String>,
}

impl Mount {
    /// A bind mount of host `source` at `destination`, read-only unless
    /// `writable`.
    pub fn bind(source: &str, destination: &str, writable: bool) -> Self {
        Mount {
            destination: destination.to_owned(),
            kind: "bind".to_owned(),
            source: source.to_owned(),
            options: vec![
                "rbind".to_owned(),
                if writable { "rw" } else { "ro" }.to_owned(),
            ],
        }
    }

    /// A tmpfs at `destination` with the given options.
    pub fn tmpfs(destination: &str, options: &[&str]) -> Self {
        Mount {
            destination: destination.to_owned(),
            kind: "tmpfs".to_owned(),
            source: "tmpfs".to_owned(),
            options: options.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct CreateReply {
    #[serde(rename = "Id")]
    id: String,
}

/// What `GET /containers/{id}/json` says (the parts this server reads).
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerInspect {
    /// Full id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// Runtime state.
    #[serde(rename = "State")]
    pub state: ContainerState,
    /// Config, kept as JSON: tests check that spec fields took effect.
    #[serde(rename = "Config", default)]
    pub config: serde_json::Value,
    /// HostConfig, kept as JSON for the same reason.
    #[serde(rename = "HostConfig", default)]
    pub host_config: serde_json::Value,
    /// Every other top-level field (`EffectiveCaps`, `Mounts`, ...), as JSON.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ContainerInspect {
    /// `Config.Labels`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config
            .get("Labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default()
    }

    /// `Config.Hostname`.
    pub fn hostname(&self) -> Option<&str> {
        self.config.get("Hostname").and_then(|h| h.as_str())
    }
}

/// `State` of an inspected container.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerState {
    /// "created", "running", "exited", ...
    #[serde(rename = "Status", default)]
    pub status: String,
    /// Whether it is running.
    #[serde(rename = "Running", default)]
    pub running: bool,
    /// Host PID of the container's first process (0 when not running).
    #[serde(rename = "Pid", default)]
    pub pid: i64,
    /// Exit code of the last run.
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerSummary {
    /// Full id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Names.
    #[serde(rename = "Names", default)]
    pub names: Vec<String>,
    /// Labels (null in the reply becomes empty).
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// "running", "exited", ...
    #[serde(rename = "State", default)]
    pub state: String,
    /// Image reference.
    #[serde(rename = "Image", default)]
    pub image: String,
}

/// One entry of the `DELETE /containers/{id}` reply.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoveReport {
    /// Id removed.
    #[serde(rename = "Id", default)]
    pub id: String,
    /// Per-container error text, if any.
    #[serde(rename = "Err", default)]
    pub err: Option<String>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl PodmanClient {
    /// `POST /containers/create`; returns the new container's id.
    ///
    /// # Errors
    /// [`PodmanError::NotFound`] for a missing image, [`PodmanError::Conflict`]
    /// for a name in use, others as Podman reports them.
    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<String, PodmanError> {
        let path = api("/containers/create");
        let body = json_body(&path, spec)?;
        let reply: CreateReply = self.call_json(Method::POST, &path, Some(body)).await?;
        Ok(reply.id)
    }

    /// `POST /containers/{id}/start`; starting a running container is fine.
    ///
    /// # Errors
    /// [`PodmanError::NotFound`] when it does not exist.
    pub async fn start_container(&self, id: &str) -> Result<(), PodmanError> {
        let path = api(&format!("/containers/{}/start", encode(id)));
        self.call(Method::POST, &path, None).await.map(|_| ())
    }

    /// `POST /containers/{id}/kill?signal=SIG`: sends a signal to the
    /// container's main process (e.g. "TERM").
    ///
    /// # Errors
    /// [`PodmanError::NotFound`] when it does not exist,
    /// [`PodmanError::Conflict`] when it is not running.
    pub async fn kill_container(&self, id: &str, signal: &str) -> Result<(), PodmanError> {
        let path = api(&format!(
            "/containers/{}/kill?signal={}",
            encode(id),
            encode(signal)
        ));
        self.call(Method::POST, &path, None).await.map(|_| ())
    }

    /// `GET /containers/{id}/json`.
    ///
    /// # Errors
    /// [`PodmanError::NotFound`] when it does not exist.
    pub async fn inspect_container(&self, id: &str) -> Result<ContainerInspect, PodmanError> {
        let path = api(&format!("/containers/{}/json", encode(id)));
        self.call_json(Method::GET, &path, None).await
    }

    /// `GET /containers/{id}/logs?stdout=true&stderr=true` of a container
    /// without a TTY: stdout and stderr, each in order, as text (invalid
    /// UTF-8 replaced). The body is bounded like every reply.
    ///
    /// # Errors
    /// [`PodmanError::NotFound`] when it does not exist;
    /// [`PodmanError::Malformed`] when the stream does not decode.
    pub async fn container_logs(&self, id: &str) -> Result<(String, String), PodmanError> {
        let path = api(&format!(
            "/containers/{}/logs?stdout=true&stderr=true",
            encode(id)
        ));
        let (_, body) = self.call(Method::GET, &path, None).await?;
        let frames = super::attach::decode_all(super::attach::Framing::Multiplexed, [&body[..]])
            .map_err(|e| PodmanError::malformed(&path, e.to_string()))?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        for (kind, data) in frames {
            match kind {
                super::StreamKind::Stdout => out.extend_from_slice(&data),
                _ => err.extend_from_slice(&data),
            }
        }
        Ok((
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        ))
    }

    /// `GET /containers/json?all=true` filtered by labels (`"k=v"` or `"k"`),
    /// all of which must match.
    ///
    /// # Errors
    /// As Podman reports them.
    pub async fn list_containers(
        &self,
        label_filters: &[&str],
    ) -> Result<Vec<ContainerSummary>, PodmanError> {
        let filters = serde_json::json!({ "label": label_filters }).to_string();
        let path = api(&format!(
            "/containers/json?all=true&filters={}",
            encode(&filters)
        ));
        let list: Option<Vec<ContainerSummary>> = self.call_json(Method::GET, &path, None).await?;
        Ok(list.unwrap_or_default())
    }

    /// `DELETE /containers/{id}?force=true&timeout=0`: kills and removes at
    /// once. With `ignore_missing`, a container that is already gone is a
    /// success (an empty report).
    ///
    /// # Errors
    /// [`PodmanError::NotFound`] (unless `ignore_missing`), or a report that
    /// carries an error.
    pub async fn remove_container(
        &self,
        id: &str,
        ignore_missing: bool,
    ) -> Result<Vec<RemoveReport>, PodmanError> {
        let path = api(&format!(
            "/containers/{}?force=true&timeout=0&ignore={ignore_missing}",
            encode(id)
        ));
        let reports: Option<Vec<RemoveReport>> =
            self.call_json(Method::DELETE, &path, None).await?;
        let reports = reports.unwrap_or_default();
        if let Some(err) = reports
            .iter()
            .filter_map(|r| r.err.as_deref())
            .find(|e| !e.is_empty())
        {
            return Err(PodmanError::Api(super::ApiError {
                status: 200,
                cause: "remove failed".to_owned(),
                message: err.to_owned(),
                response: None,
            }));
        }
        Ok(reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_serializes_only_set_fields() {
        let spec = ContainerSpec {
            image: "img".into(),
            init: Some(true),
            netns: Some(Namespace {
                nsmode: "none".into(),
            }),
            mounts: vec![Mount::tmpfs("/tmp", &["rw", "size=64m"])],
            resource_limits: Some(ResourceLimits {
                memory: Some(MemoryLimit { limit: 1 << 20 }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "image": "img",
                "init": true,
                "netns": {"nsmode": "none"},
                "mounts": [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "size=64m"]}],
                "resource_limits": {"memory": {"limit": 1048576}}
            })
        );
    }
}
