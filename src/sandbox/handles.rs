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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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

/// How often a used handle sandbox's last use is written down: often enough
/// that a restart or another replica never misjudges it by more than a
/// quarter of the TTL (and at most 30 s).
pub fn persist_period(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_millis(200), Duration::from_secs(30))
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

    /// Writes down handle sandboxes' last use and removes those unused for
    /// the TTL — held here or not (made before a restart, or by another
    /// replica, or whose server is gone) — every [`persist_period`] until
    /// `stop`.
    pub async fn expire_handles_every(self, stop: CancellationToken) {
        let period = persist_period(self.inner.sandbox_ttl);
        // Unheld containers: when to look at each again (its last use plus
        // the TTL), so each costs one HEAD per TTL rather than per tick.
        let mut next_look: HashMap<String, SystemTime> = HashMap::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            self.expire_handles(&mut next_look).await;
        }
    }

    async fn expire_handles(&self, next_look: &mut HashMap<String, SystemTime>) {
        let ttl = self.inner.sandbox_ttl;
        let held: Vec<(SandboxKey, Arc<Slot>)> = self
            .slots()
            .map
            .iter()
            .filter(|(_, s)| s.handle.is_some())
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        let mut held_digests = HashSet::new();
        for (key, slot) in held {
            if let Some(h) = &slot.handle {
                held_digests.insert(h.digest.clone());
            }
            if slot.unused(self.inner.max_calls) && slot.last_used().elapsed() >= ttl {
                info!(sandbox = %slot.tag, ttl_s = ttl.as_secs(), "handle sandbox expired");
                self.release(&key, "expired").await;
            } else {
                self.persist_slot(&slot, false).await;
            }
        }
        let managed = format!("{}=true", owner_labels::MANAGED);
        let kind = format!("{}=handle", owner_labels::KIND);
        let Ok(list) = self
            .inner
            .podman
            .list_containers(&[managed.as_str(), kind.as_str()])
            .await
        else {
            return;
        };
        let now = SystemTime::now();
        let ids: HashSet<&str> = list.iter().map(|c| c.id.as_str()).collect();
        next_look.retain(|id, _| ids.contains(id.as_str()));
        for c in &list {
            let digest = c.labels.get(labels::HANDLE).map(String::as_str);
            if digest.is_some_and(|d| held_digests.contains(d)) {
                next_look.remove(&c.id);
                continue;
            }
            if next_look.get(&c.id).is_some_and(|t| *t > now) {
                continue;
            }
            let idle = match self.read_last_use(&c.id).await {
                Ok(Some(t)) => now.duration_since(t).unwrap_or_default(),
                // No record (removed by a command, or a create in flight
                // elsewhere): counts as used now, so it gets a full TTL.
                Ok(None) => {
                    let _ = self.write_last_use(&c.id, now).await;
                    Duration::ZERO
                }
                Err(_) => continue,
            };
            if idle >= ttl {
                match self.remove_retrying(&c.id).await {
                    Ok(()) => {
                        info!(container = %c.id, idle_s = idle.as_secs(), "handle sandbox expired (not held by this server)")
                    }
                    Err(e) => {
                        warn!(container = %c.id, "could not remove an expired handle sandbox: {e}")
                    }
                }
                next_look.remove(&c.id);
            } else {
                next_look.insert(c.id.clone(), now + (ttl - idle));
            }
        }
    }

    /// Writes a handle slot's last use into its sandbox when it changed
    /// since the last write (or always, with `force`); a call in flight
    /// counts as a use now.
    pub(super) async fn persist_slot(&self, slot: &Slot, force: bool) {
        let Some(h) = &slot.handle else { return };
        let busy = !slot.unused(self.inner.max_calls);
        let last = slot.last_used();
        let persisted = *h
            .persisted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !force && !busy && persisted == Some(last) {
            return;
        }
        let id = match slot.state.try_lock() {
            Ok(state) => match &*state {
                SlotState::Ready(c) => c.id.clone(),
                _ => return,
            },
            // Being created or removed right now.
            Err(_) => return,
        };
        let at = if busy {
            SystemTime::now()
        } else {
            SystemTime::now()
                .checked_sub(last.elapsed())
                .unwrap_or(UNIX_EPOCH)
        };
        match self.write_last_use(&id, at).await {
            Ok(()) => {
                *h.persisted
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(last);
            }
            Err(e) => warn!(sandbox = %slot.tag, "could not record the sandbox's last use: {e}"),
        }
    }

    /// How long the sandbox `id` has been unused by its own record; a
    /// missing or unreadable record counts as "just used" (a restart must
    /// never cost a client its files early).
    async fn idle_in_sandbox(&self, id: &str) -> Duration {
        match self.read_last_use(id).await {
            Ok(Some(t)) => SystemTime::now().duration_since(t).unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }

    async fn read_last_use(
        &self,
        id: &str,
    ) -> Result<Option<SystemTime>, crate::podman::PodmanError> {
        let path = format!("{LAST_USE_DIR}/{LAST_USE_FILE}");
        let Some(stat) = self.inner.podman.stat_path(id, &path).await? else {
            return Ok(None);
        };
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(&stat.mtime) else {
            return Ok(None);
        };
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        // A time in the future (set by a command) counts as now.
        Ok(Some(
            (UNIX_EPOCH + Duration::from_secs(secs)).min(SystemTime::now()),
        ))
    }

    async fn write_last_use(
        &self,
        id: &str,
        at: SystemTime,
    ) -> Result<(), crate::podman::PodmanError> {
        let secs = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let body = format!("{secs}\n");
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(secs);
        header.set_entry_type(tar::EntryType::Regular);
        let mut builder = tar::Builder::new(Vec::new());
        // Building into memory cannot fail but for a bad path, and this
        // one is a constant.
        builder
            .append_data(&mut header, LAST_USE_FILE, body.as_bytes())
            .map_err(|e| crate::podman::PodmanError::malformed(LAST_USE_FILE, e.to_string()))?;
        let tar = builder
            .into_inner()
            .map_err(|e| crate::podman::PodmanError::malformed(LAST_USE_FILE, e.to_string()))?;
        self.inner
            .podman
            .put_archive(id, LAST_USE_DIR, bytes::Bytes::from(tar))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
