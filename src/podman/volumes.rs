//! Named volumes and file transfer into containers: volume exists/create,
//! `PUT /containers/{id}/archive` (a tar extracted at a path) and
//! `HEAD /containers/{id}/archive` (stat of a path).

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::{PodmanClient, PodmanError, api, encode, json_body};

/// What `HEAD /containers/{id}/archive?path=P` says of a path.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PathStat {
    /// Base name.
    #[serde(default)]
    pub name: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Unix mode bits (Go's `os.FileMode`).
    #[serde(default)]
    pub mode: u64,
    /// Modification time, RFC 3339 (empty when Podman sent none).
    #[serde(default)]
    pub mtime: String,
}

impl PodmanClient {
    /// `GET /volumes/{name}/exists`.
    ///
    /// # Errors
    /// As Podman reports them.
    pub async fn volume_exists(&self, name: &str) -> Result<bool, PodmanError> {
        let path = api(&format!("/volumes/{}/exists", encode(name)));
        match self.call(Method::GET, &path, None).await {
            Ok(_) => Ok(true),
            Err(PodmanError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `POST /volumes/create` with labels.
    ///
    /// # Errors
    /// As Podman reports them (one that exists already is an error:
    /// Podman answers 500 "volume already exists").
    pub async fn create_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), PodmanError> {
        let path = api("/volumes/create");
        let body = json_body(&path, &serde_json::json!({ "Name": name, "Label": labels }))?;
        self.call(Method::POST, &path, Some(body)).await.map(|_| ())
    }

    /// `DELETE /volumes/{name}?force=true` (containers using it go too).
    ///
    /// # Errors
    /// [`PodmanError::NotFound`] when there is no such volume.
    pub async fn remove_volume(&self, name: &str) -> Result<(), PodmanError> {
        let path = api(&format!("/volumes/{}?force=true", encode(name)));
        self.call(Method::DELETE, &path, None).await.map(|_| ())
    }

    /// `PUT /containers/{id}/archive?path=DIR`: extracts `tar` at `dir`.
    /// Works on a created, not yet started container (Podman mounts it).
    ///
    /// # Errors
    /// [`PodmanError::NotFound`] for a missing container or directory;
    /// 403 for a read-only root.
    pub async fn put_archive(&self, id: &str, dir: &str, tar: Bytes) -> Result<(), PodmanError> {
        let path = api(&format!(
            "/containers/{}/archive?path={}",
            encode(id),
            encode(dir)
        ));
        self.call(Method::PUT, &path, Some(("application/x-tar", tar)))
            .await
            .map(|_| ())
    }

    /// `HEAD /containers/{id}/archive?path=P`: the path's stat, `None` when
    /// it does not exist.
    ///
    /// # Errors
    /// A missing container, or a stat header that does not decode.
    pub async fn stat_path(&self, id: &str, file: &str) -> Result<Option<PathStat>, PodmanError> {
        let path = api(&format!(
            "/containers/{}/archive?path={}",
            encode(id),
            encode(file)
        ));
        let resp = self.send(Method::HEAD, &path, None).await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => {
                return Err(PodmanError::from_reply("HEAD", &path, s.as_u16(), b""));
            }
        }
        let header = resp
            .headers()
            .get("x-docker-container-path-stat")
            .map(|v| v.as_bytes().to_vec())
            .ok_or_else(|| PodmanError::malformed(&path, "no X-Docker-Container-Path-Stat"))?;
        let json = base64::engine::general_purpose::STANDARD
            .decode(header)
            .map_err(|e| PodmanError::malformed(&path, format!("stat header: {e}")))?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| PodmanError::malformed(&path, format!("stat header: {e}")))
    }
}
