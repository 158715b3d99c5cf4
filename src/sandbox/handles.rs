//! Sandbox handles (the protocol's explicit state handles, SEP-2567): a
//! sandbox a client names by an opaque handle instead of by its session, so
//! that stateless (2026-07-28) clients and clients that open a session per
//! call keep their files. Owns handle minting, the caller binding, the idle
//! TTL, and the state that lets a handle outlive the server process.
//!
//! Where the state lives (so a restarted server, or another replica on the
//! same Podman, can serve a handle):
//! - fixed at create, in the container's labels: the handle's SHA-256 (the
//!   handle itself is never stored), the caller's identity, the model's name
//!   for it, the creation time;
//! - what changes, the last use, as the modification time of a small file
//!   in the sandbox, `/tmp/.pod-exec-mcp-last-use`, written through
//!   Podman's archive endpoint (no exec; it works with a read-only root,
//!   whose /tmp is a tmpfs) at most every [`persist_period`] while the
//!   sandbox is used, and at shutdown. A server that finds a handle
//!   container it does not hold reads that time (HEAD on the archive
//!   endpoint) to judge the TTL.
//!
//! The file is inside the sandbox, so a command can change it: a sandbox
//! may keep itself from expiring while no server holds it (as using it
//! would), never beyond "now" (later times are clamped). Capacity eviction
//! judges by this server's own record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tracing::info;

mod ttl;

pub use ttl::persist_period;

use super::owner::labels as owner_labels;
use super::{Container, SandboxError, SandboxKey, SandboxManager, Slot, SlotState};

/// Label keys of handle containers (besides the ones every sandbox has).
pub mod labels {
    /// SHA-256 (hex) of the handle.
    pub const HANDLE: &str = "pod-exec-mcp.handle";
    /// The caller the handle belongs to (the token's name, or "local").
    pub const CALLER: &str = "pod-exec-mcp.caller";
    /// The model's own name for the sandbox.
    pub const NAME: &str = "pod-exec-mcp.name";
    /// Creation time, Unix seconds.
    pub const CREATED: &str = "pod-exec-mcp.created";
}

/// Every handle starts with this; 32 hex digits (128 random bits) follow.
pub const HANDLE_PREFIX: &str = "sbx_";
/// Longest `name` a sandbox may be given.
pub const MAX_NAME_CHARS: usize = 64;
const LAST_USE_DIR: &str = "/tmp";
const LAST_USE_FILE: &str = ".pod-exec-mcp-last-use";

/// What a handle sandbox is; held by its slot.
#[derive(Debug)]
pub struct HandleMeta {
    digest: String,
    caller: Arc<str>,
    name: String,
    created: u64,
    /// `last_used` as last written to the sandbox (None: never).
    persisted: Mutex<Option<Instant>>,
}

/// A new handle, as `sandbox_create` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleInfo {
    /// The opaque handle to pass back.
    pub handle: String,
    /// The model's name for it ("" when none was given).
    pub name: String,
}

/// One of the caller's sandboxes, as `sandbox_list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleSummary {
    /// The model's name for it.
    pub name: String,
    /// Seconds since it was created.
    pub age_s: u64,
    /// Seconds since it was last used.
    pub idle_s: u64,
    /// Seconds until it expires unless used.
    pub expires_in_s: u64,
}

/// Checks the model's name for a sandbox: short, printable.
///
/// # Errors
/// A message saying what to fix.
pub fn validate_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "`name` is longer than {MAX_NAME_CHARS} characters; use a short label"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("`name` contains control characters; use a short printable label".into());
    }
    Ok(name.to_owned())
}

/// SHA-256 of a well-formed handle; `None` for anything else (which then
/// gets the same "expired or unknown" error as a real handle that expired).
fn digest(handle: &str) -> Option<String> {
    let hex = handle.strip_prefix(HANDLE_PREFIX)?;
    let well_formed = hex.len() == 32
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    well_formed.then(|| hash(handle))
}

fn hash(handle: &str) -> String {
    Sha256::digest(handle.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Slot {
    /// Labels a handle's container is created with.
    pub(super) fn extra_labels(&self) -> Vec<(&'static str, String)> {
        match &self.handle {
            None => Vec::new(),
            Some(h) => vec![
                (labels::HANDLE, h.digest.clone()),
                (labels::CALLER, h.caller.to_string()),
                (labels::NAME, h.name.clone()),
                (labels::CREATED, h.created.to_string()),
            ],
        }
    }
}

impl SandboxManager {
    /// Creates a sandbox for `caller` and returns its new handle. The
    /// container is created now, so its labels hold the handle from the
    /// start.
    ///
    /// # Errors
    /// As creating any sandbox: capacity, Podman, shutting down.
    pub async fn create_handle(
        &self,
        caller: &str,
        name: &str,
    ) -> Result<HandleInfo, SandboxError> {
        let handle = format!("{HANDLE_PREFIX}{}", crate::random_hex(16));
        let digest = hash(&handle);
        let meta = HandleMeta {
            digest: digest.clone(),
            caller: Arc::from(caller),
            name: name.to_owned(),
            created: unix_now(),
            persisted: Mutex::new(None),
        };
        let key = SandboxKey::Handle(digest);
        let slot = Arc::new(Slot::new("handle", self.inner.max_calls, Some(meta)));
        {
            let mut slots = self.slots();
            if slots.shutting_down {
                return Err(SandboxError::ShuttingDown);
            }
            slots.map.insert(key.clone(), slot.clone());
        }
        match self.ensure(&slot).await {
            Ok(_) => {
                self.persist_slot(&slot, true).await;
                info!(sandbox = %slot.tag, "handle sandbox created");
                Ok(HandleInfo {
                    handle,
                    name: name.to_owned(),
                })
            }
            Err(e) => {
                self.slots().map.remove(&key);
                Err(e)
            }
        }
    }

    /// The key of `caller`'s sandbox `handle`, taking over a sandbox this
    /// process does not hold yet (made before a restart, or by another
    /// replica) when its TTL has not run out.
    ///
    /// # Errors
    /// [`SandboxError::Expired`] for an unknown, expired, destroyed or
    /// foreign handle alike; Podman and capacity errors.
    pub async fn resolve_handle(
        &self,
        caller: &str,
        handle: &str,
    ) -> Result<SandboxKey, SandboxError> {
        let Some(digest) = digest(handle) else {
            return Err(SandboxError::Expired);
        };
        let key = SandboxKey::Handle(digest.clone());
        let held = {
            let slots = self.slots();
            if slots.shutting_down {
                return Err(SandboxError::ShuttingDown);
            }
            slots.map.get(&key).cloned()
        };
        if let Some(slot) = held {
            return match &slot.handle {
                Some(h) if &*h.caller == caller => Ok(key),
                _ => Err(SandboxError::Expired),
            };
        }
        self.adopt(caller, digest).await.map(|()| key)
    }

    async fn adopt(&self, caller: &str, digest: String) -> Result<(), SandboxError> {
        let podman = &self.inner.podman;
        let managed = format!("{}=true", owner_labels::MANAGED);
        let kind = format!("{}=handle", owner_labels::KIND);
        let by_handle = format!("{}={digest}", labels::HANDLE);
        let list = podman
            .list_containers(&[managed.as_str(), kind.as_str(), by_handle.as_str()])
            .await
            .map_err(SandboxError::Exec)?;
        let Some(c) = list.into_iter().next() else {
            return Err(SandboxError::Expired);
        };
        let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
        if label(labels::CALLER) != caller {
            return Err(SandboxError::Expired);
        }
        let idle = self.idle_in_sandbox(&c.id).await;
        if idle >= self.inner.sandbox_ttl {
            let _ = self.remove_retrying(&c.id).await;
            info!(container = %c.id, "handle sandbox expired (found after a restart)");
            return Err(SandboxError::Expired);
        }
        if c.state != "running" {
            // Stopped with its Podman (a reboot): its files are still there.
            podman
                .start_container(&c.id)
                .await
                .map_err(SandboxError::Create)?;
        }
        let meta = HandleMeta {
            digest: digest.clone(),
            caller: Arc::from(caller),
            name: label(labels::NAME),
            created: label(labels::CREATED).parse().unwrap_or(0),
            persisted: Mutex::new(None),
        };
        let mut slot = Slot::new("handle", self.inner.max_calls, Some(meta));
        let tag = label(owner_labels::SANDBOX);
        if !tag.is_empty() {
            slot.tag = tag;
        }
        *slot
            .last_used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now()
            .checked_sub(idle)
            .unwrap_or_else(Instant::now);
        let name = c
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| c.id.chars().take(12).collect());
        slot.state = tokio::sync::Mutex::new(SlotState::Ready(Arc::new(Container::new(
            c.id.clone(),
            name,
        ))));
        let slot = Arc::new(slot);
        self.reserve_or_evict(&slot).await?;
        let key = SandboxKey::Handle(digest);
        let mut slots = self.slots();
        if slots.shutting_down {
            self.unreserve_live();
            return Err(SandboxError::ShuttingDown);
        }
        match slots.map.entry(key) {
            // A concurrent call took it over first.
            std::collections::hash_map::Entry::Occupied(_) => self.unreserve_live(),
            std::collections::hash_map::Entry::Vacant(v) => {
                info!(sandbox = %slot.tag, idle_s = idle.as_secs(), "handle sandbox taken over");
                v.insert(slot);
            }
        }
        Ok(())
    }

    /// Removes `caller`'s sandbox `handle`.
    ///
    /// # Errors
    /// As [`SandboxManager::resolve_handle`].
    pub async fn destroy_handle(&self, caller: &str, handle: &str) -> Result<(), SandboxError> {
        let key = self.resolve_handle(caller, handle).await?;
        self.release(&key, "destroyed").await;
        Ok(())
    }

    /// `caller`'s live handle sandboxes, held here or not.
    ///
    /// # Errors
    /// Podman could not list containers.
    pub async fn list_handles(&self, caller: &str) -> Result<Vec<HandleSummary>, SandboxError> {
        let managed = format!("{}=true", owner_labels::MANAGED);
        let kind = format!("{}=handle", owner_labels::KIND);
        let by_caller = format!("{}={caller}", labels::CALLER);
        let list = self
            .inner
            .podman
            .list_containers(&[managed.as_str(), kind.as_str(), by_caller.as_str()])
            .await
            .map_err(SandboxError::Exec)?;
        let held: HashMap<String, Instant> = self
            .slots()
            .map
            .values()
            .filter_map(|s| Some((s.handle.as_ref()?.digest.clone(), s.last_used())))
            .collect();
        let ttl = self.inner.sandbox_ttl;
        let now = unix_now();
        let mut out = Vec::new();
        for c in list {
            // The filter matches by label; check the exact value anyway.
            if c.labels.get(labels::CALLER).map(String::as_str) != Some(caller) {
                continue;
            }
            let digest = c.labels.get(labels::HANDLE).cloned().unwrap_or_default();
            let idle = match held.get(&digest) {
                Some(t) => t.elapsed(),
                None => self.idle_in_sandbox(&c.id).await,
            };
            if idle >= ttl {
                continue;
            }
            let created: u64 = c
                .labels
                .get(labels::CREATED)
                .and_then(|s| s.parse().ok())
                .unwrap_or(now);
            out.push(HandleSummary {
                name: c.labels.get(labels::NAME).cloned().unwrap_or_default(),
                age_s: now.saturating_sub(created),
                idle_s: idle.as_secs(),
                expires_in_s: (ttl - idle).as_secs(),
            });
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.age_s));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::ttl::persist_period;
    use super::*;
    use std::time::Duration;

    #[test]
    fn handles_are_long_random_and_checked() {
        let h = format!("{HANDLE_PREFIX}{}", crate::random_hex(16));
        assert_eq!(h.len(), HANDLE_PREFIX.len() + 32);
        assert_eq!(digest(&h), Some(hash(&h)));
        assert_eq!(hash(&h).len(), 64);
        for bad in [
            "",
            "sbx_",
            "sbx_0123",
            &h.to_uppercase(),
            &format!("{h}0"),
            &h.replacen("sbx_", "sbz_", 1),
            "sbx_0123456789abcdef0123456789abcdeg",
        ] {
            assert_eq!(digest(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_are_short_and_printable() {
        assert_eq!(validate_name("  build box ").as_deref(), Ok("build box"));
        assert!(validate_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(validate_name("a\nb").is_err());
        assert_eq!(validate_name("").as_deref(), Ok(""));
    }

    #[test]
    fn persist_period_is_bounded() {
        assert_eq!(
            persist_period(Duration::from_secs(1800)),
            Duration::from_secs(30)
        );
        assert_eq!(
            persist_period(Duration::from_secs(8)),
            Duration::from_secs(2)
        );
        assert_eq!(
            persist_period(Duration::from_millis(1)),
            Duration::from_millis(200)
        );
    }
}
