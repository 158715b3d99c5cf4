//! Getting the agent into sandboxes: a named volume holding only the
//! agent, filled once per Podman (through a created, never started helper
//! container and the archive endpoint) and mounted read-only into every
//! sandbox. Nothing is uploaded per sandbox, it works on a read-only root
//! (where an archive upload is refused) and under a user namespace (where
//! Podman 4.3 cannot mount an image volume: "permission denied").

use std::collections::BTreeMap;

use bytes::Bytes;
use tracing::info;

use crate::podman::{ContainerSpec, NamedVolume, PodmanClient, PodmanError};

/// Where the agent's volume is mounted in a sandbox.
pub const MOUNT_DIR: &str = "/.pod-exec-mcp";
/// The agent's path in a sandbox.
pub const AGENT_PATH: &str = "/.pod-exec-mcp/pod-exec-executor";
const FILE_NAME: &str = "pod-exec-executor";
/// Where the helper container sees the volume.
const HELPER_DIR: &str = "/pod-exec-mcp-fill";

/// The volume name for the agent whose SHA-256 is `sha256_hex` (build.rs
/// computes it: [`crate::executor::AGENT_SHA256_HEX`]): named by its hash,
/// so a new server version brings its own and never runs an old agent.
pub fn volume_name(sha256_hex: &str) -> String {
    let short: String = sha256_hex.chars().take(16).collect();
    format!("pod-exec-mcp-executor-{short}")
}

/// The mount every sandbox gets.
pub fn volume(name: &str) -> NamedVolume {
    NamedVolume {
        name: name.to_owned(),
        dest: MOUNT_DIR.to_owned(),
        options: vec!["ro".into()],
    }
}

/// Makes sure this Podman has volume `name` with the whole agent in it
/// (filling it when new, or when an earlier fill was cut short); returns
/// its name. `helper` is a spec for a container that is created, never
/// started, and removed again: it carries the image and labels.
///
/// # Errors
/// Podman failed.
pub async fn ensure_volume(
    podman: &PodmanClient,
    agent: &[u8],
    name: &str,
    mut helper: ContainerSpec,
) -> Result<String, PodmanError> {
    let name = name.to_owned();
    let t = std::time::Instant::now();
    if !podman.volume_exists(&name).await? {
        let mut labels = BTreeMap::new();
        labels.insert("pod-exec-mcp.executor".to_owned(), "true".to_owned());
        match podman.create_volume(&name, &labels).await {
            Ok(()) => {}
            // Another server created it meanwhile.
            Err(e) if podman.volume_exists(&name).await.unwrap_or(false) => {
                tracing::debug!("volume created concurrently: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    // Never started: it only lends its mount to the archive endpoint,
    // which refuses a read-only root.
    helper.command = vec!["true".into()];
    helper.read_only_filesystem = None;
    helper.mounts.clear();
    helper.volumes = vec![NamedVolume {
        name: name.clone(),
        dest: HELPER_DIR.to_owned(),
        options: Vec::new(),
    }];
    let id = podman.create_container(&helper).await?;
    let result: Result<bool, PodmanError> = async {
        let file = format!("{HELPER_DIR}/{FILE_NAME}");
        let have = podman.stat_path(&id, &file).await?;
        if have.is_some_and(|s| s.size == agent.len() as u64) {
            return Ok(false);
        }
        let tar = context_tar(&[(FILE_NAME, agent, 0o755)])
            .map_err(|e| PodmanError::malformed("packing the executor", e.to_string()))?;
        podman.put_archive(&id, HELPER_DIR, tar).await?;
        Ok(true)
    }
    .await;
    let _ = podman.remove_container(&id, true).await;
    if result? {
        info!(volume = %name, ms = t.elapsed().as_millis() as u64, bytes = agent.len(), "filled the executor volume");
    }
    Ok(name)
}

/// A tar of regular files (name, bytes, mode).
fn context_tar(files: &[(&str, &[u8], u32)]) -> std::io::Result<Bytes> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_cksum();
        tar.append_data(&mut header, name, *data)?;
    }
    Ok(Bytes::from(tar.into_inner()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_is_named_by_the_agent_hash() {
        let one = "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed";
        let a = volume_name(one);
        assert_eq!(a, "pod-exec-mcp-executor-7692c3ad3540bb80");
        assert_ne!(a, volume_name(&one.replace('7', "8")));
        assert_eq!(
            volume_name(crate::executor::AGENT_SHA256_HEX).len(),
            "pod-exec-mcp-executor-".len() + 16
        );
    }

    #[test]
    fn context_holds_the_files() {
        let t = context_tar(&[("a", b"xyz", 0o755)]).unwrap();
        let mut ar = tar::Archive::new(&t[..]);
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            names.push((
                e.path().unwrap().display().to_string(),
                e.header().mode().unwrap(),
            ));
        }
        assert_eq!(names, vec![("a".to_owned(), 0o755)]);
    }
}
