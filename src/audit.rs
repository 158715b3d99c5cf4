//! The operators' audit log (POD_EXEC_AUDIT_LOG): one JSON line per tool
//! call, appended and flushed before the call's result is returned. It is
//! the only place command text is written; the ordinary log never has it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tracing::warn;

/// One tool call, as the audit log records it.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// RFC 3339 UTC time the call ended, milliseconds.
    pub time: String,
    /// The caller's identity (a token's name, or "local").
    pub caller: &'a str,
    /// The sandbox's tag (as in the server log and the container's
    /// `pod-exec-mcp.sandbox` label); absent when no sandbox was involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<&'a str>,
    /// The tool called.
    pub tool: &'a str,
    /// The command as the caller sent it.
    pub command: &'a str,
    /// Exit code, when the command ran to a result.
    pub retval: Option<i64>,
    /// Wall time of the call in milliseconds.
    pub duration_ms: u64,
    /// The policy rule that refused the command, if one did.
    pub refused_by: Option<&'a str>,
    /// True when the call hit its time limit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// The tool error, when the call failed without a result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl AuditRecord<'_> {
    /// The current time in the record's format.
    pub fn now() -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

/// An open audit log. Cheap to clone; writes are serialized.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: Arc<PathBuf>,
    file: Arc<Mutex<tokio::fs::File>>,
}

impl AuditLog {
    /// Opens (creating, mode 0600) `path` for appending.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .await?;
        Ok(AuditLog {
            path: Arc::new(path.to_owned()),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Appends one record and flushes it. A failed write is logged (without
    /// the command) and does not fail the call.
    pub async fn record(&self, rec: &AuditRecord<'_>) {
        let mut line = match serde_json::to_vec(rec) {
            Ok(l) => l,
            Err(e) => {
                warn!("audit record not serializable: {e}");
                return;
            }
        };
        line.push(b'\n');
        let mut file = self.file.lock().await;
        let write = async {
            file.write_all(&line).await?;
            file.flush().await
        };
        match tokio::time::timeout(Duration::from_secs(10), write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(path = %self.path.display(), "audit log write failed: {e}"),
            Err(_) => warn!(path = %self.path.display(), "audit log write timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_one_flushed_json_line_per_record() {
        let dir = std::env::temp_dir().join(format!("pod-exec-audit-{}", crate::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let log = AuditLog::open(&path).await.unwrap();
        for (retval, refused) in [(Some(0), None), (None, Some("shell:mkfs"))] {
            log.record(&AuditRecord {
                time: AuditRecord::now(),
                caller: "alice",
                sandbox: Some("abc123"),
                tool: "shell_exec",
                command: "echo \"hi\"\nnext",
                retval,
                duration_ms: 12,
                refused_by: refused,
                timed_out: false,
                error: None,
            })
            .await;
        }
        // Flushed: readable at once by another reader.
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["caller"], "alice");
        assert_eq!(v["command"], "echo \"hi\"\nnext");
        assert_eq!(v["retval"], 0);
        assert!(v["refused_by"].is_null());
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(v["refused_by"], "shell:mkfs");
        assert!(v["retval"].is_null());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
