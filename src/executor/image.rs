//! Getting the agent into sandboxes: a tiny `FROM scratch` image holding
//! only the agent, built once per Podman through the API and mounted
//! read-only (an image volume) into every sandbox — nothing is uploaded per
//! sandbox, and it works on a read-only root, where an archive upload is
//! refused.

use std::collections::BTreeMap;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::podman::{BuildOptions, ImageVolume, PodmanClient, PodmanError};

/// Where the agent's image is mounted in a sandbox.
pub const MOUNT_DIR: &str = "/.pod-exec-mcp";
/// The agent's path in a sandbox.
pub const AGENT_PATH: &str = "/.pod-exec-mcp/pod-exec-executor";
const FILE_NAME: &str = "pod-exec-executor";

/// The image name for this agent build: tagged with its hash, so a new
/// server version brings its own image and never runs an old agent.
pub fn image_ref(agent: &[u8]) -> String {
    let hash = Sha256::digest(agent);
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("localhost/pod-exec-mcp-executor:{hex}")
}

/// The image volume every sandbox gets.
pub fn volume(image: &str) -> ImageVolume {
    ImageVolume {
        source: image.to_owned(),
        destination: MOUNT_DIR.to_owned(),
        rw: false,
    }
}

/// Makes sure the agent's image exists in this Podman, building it when
/// missing; returns its name.
///
/// # Errors
/// Podman failed to check or build it.
pub async fn ensure_image(podman: &PodmanClient, agent: &[u8]) -> Result<String, PodmanError> {
    let image = image_ref(agent);
    if podman.image_exists(&image).await? {
        return Ok(image);
    }
    let t = std::time::Instant::now();
    let containerfile = format!("FROM scratch\nCOPY {FILE_NAME} {AGENT_PATH}\n");
    let context = context_tar(&[
        ("Containerfile", containerfile.as_bytes(), 0o644),
        (FILE_NAME, agent, 0o755),
    ])
    .map_err(|e| PodmanError::malformed("building the executor image context", e.to_string()))?;
    let mut labels = BTreeMap::new();
    labels.insert("pod-exec-mcp.executor".to_owned(), "true".to_owned());
    podman
        .build_image(
            context,
            &BuildOptions {
                tag: image.clone(),
                dockerfile: "Containerfile".into(),
                build_args: BTreeMap::new(),
                labels,
            },
        )
        .await?;
    info!(%image, ms = t.elapsed().as_millis() as u64, bytes = agent.len(), "built the executor image");
    Ok(image)
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
    fn image_is_named_by_the_agent_hash() {
        let a = image_ref(b"one");
        assert!(a.starts_with("localhost/pod-exec-mcp-executor:"));
        assert_eq!(a.len(), "localhost/pod-exec-mcp-executor:".len() + 16);
        assert_ne!(a, image_ref(b"two"));
        assert_eq!(a, image_ref(b"one"));
    }

    #[test]
    fn context_holds_the_files() {
        let t = context_tar(&[("a", b"xyz", 0o755)]).unwrap();
        let mut ar = tar::Archive::new(&t[..]);
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            names.push((e.path().unwrap().display().to_string(), e.header().mode().unwrap()));
        }
        assert_eq!(names, vec![("a".to_owned(), 0o755)]);
    }
}
