//! What a pull needs before it can answer, kept in memory: the device behind a credential and
//! its tenant's policy revision and pull interval. With the effective configs (`effective`), a
//! steady-state pull reads nothing from the database.
//!
//! Kept current by the changes every write announces (`db::changes`): a change drops the
//! device's entry (or the tenant's facts), and the next pull reads them again. A lookup that
//! read the database while a change landed does not keep what it read (the epoch moved), so a
//! stale row never outlives the change that made it stale. While this process cannot hear
//! changes (not yet listening, or the listener lost its connection), nothing is served from
//! here.
//!
//! Only active devices are kept. What one costs: the device row (identity strings, hashes, its
//! own values and fields to reassert) plus the credential's SHA-256 twice (key and reverse
//! index): about 800 bytes for a device without values of its own (see [`entry_size`]). The
//! whole is bounded by `device_cache_bytes`; past it, an eighth of the entries are dropped at
//! random in one pass (they are read again on their next pull).

use crate::db::changes::{Change, Listener};
use crate::domain::device::Device;
use crate::domain::policy::SettingValue;
use crate::domain::{DeviceId, TenantId};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a pull needs of its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullFacts {
    /// Bumped by every policy write: which cached tree is current.
    pub revision: i64,
    pub interval: u32,
}

#[derive(Default)]
struct Inner {
    /// Credential SHA-256 (hex) → device. Boxed: when the map grows it moves every slot while
    /// holding the lock each pull takes, and a slot of a key and a pointer (32 bytes) moves far
    /// faster than one holding a whole `Device` (hundreds of bytes).
    devices: HashMap<String, Box<Device>>,
    /// Device → its credential's SHA-256, to drop an entry by device.
    credentials: HashMap<DeviceId, String>,
    tenants: HashMap<TenantId, PullFacts>,
    /// Moves on every change: a read that began before it must not be kept.
    epoch: u64,
    bytes: usize,
}

impl Inner {
    fn forget_device(&mut self, device: DeviceId) {
        if let Some(digest) = self.credentials.remove(&device)
            && let Some(gone) = self.devices.remove(&digest)
        {
            self.bytes -= entry_size(&gone);
        }
    }

    fn clear(&mut self) {
        self.devices.clear();
        self.credentials.clear();
        self.tenants.clear();
        self.bytes = 0;
    }

    /// Drops about an eighth of the devices, in one pass.
    fn shed(&mut self) {
        let mut seen = 0u64;
        let mut freed = 0;
        self.devices.retain(|_, device| {
            seen += 1;
            let keep = !seen.is_multiple_of(8);
            if !keep {
                freed += entry_size(device);
            }
            keep
        });
        self.bytes -= freed;
        let devices = &self.devices;
        self.credentials.retain(|_, digest| devices.contains_key(digest));
    }
}

/// One process's directory; see the module documentation.
pub struct DeviceDirectory {
    inner: Mutex<Inner>,
    max_bytes: usize,
    tracking: AtomicBool,
}

/// A read of the database may be kept only if nothing changed since this point.
#[derive(Debug, Clone, Copy)]
pub struct Since(u64);

impl DeviceDirectory {
    /// Off until a listener says it hears every change (`set_tracking(true)`).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_bytes,
            tracking: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether changes are heard, so devices are kept and served from here.
    pub fn tracking(&self) -> bool {
        self.tracking.load(Ordering::Acquire)
    }

    /// Taken before reading the database for something to [`keep_device`](Self::keep_device)
    /// or [`keep_tenant`](Self::keep_tenant).
    pub fn since(&self) -> Since {
        Since(self.lock().epoch)
    }

    /// The active device holding the credential with this SHA-256, if known.
    pub fn device(&self, credential_digest: &str) -> Option<Device> {
        if !self.tracking() {
            return None;
        }
        self.lock()
            .devices
            .get(credential_digest)
            .map(|device| (**device).clone())
    }

    /// Keeps an active device read from the database at `since`.
    pub fn keep_device(&self, credential_digest: &str, device: &Device, since: Since) {
        if !self.tracking() {
            return;
        }
        let size = entry_size(device);
        let mut inner = self.lock();
        if inner.epoch != since.0 || size > self.max_bytes {
            return;
        }
        inner.forget_device(device.id);
        while inner.bytes + size > self.max_bytes && !inner.devices.is_empty() {
            inner.shed();
        }
        inner.bytes += size;
        inner.credentials.insert(device.id, credential_digest.to_owned());
        inner
            .devices
            .insert(credential_digest.to_owned(), Box::new(device.clone()));
    }

    /// A pull of `device` at `at`: the pull-rate check of its next pull counts from here (the
    /// check-in reaches the database later, in a batch).
    pub fn pulled(&self, device: DeviceId, at: DateTime<Utc>) {
        let mut inner = self.lock();
        let Inner {
            devices, credentials, ..
        } = &mut *inner;
        if let Some(entry) = credentials.get(&device).and_then(|d| devices.get_mut(d)) {
            entry.last_pull_at = entry.last_pull_at.max(Some(at));
        }
    }

    pub fn tenant(&self, tenant: TenantId) -> Option<PullFacts> {
        if !self.tracking() {
            return None;
        }
        self.lock().tenants.get(&tenant).copied()
    }

    /// Keeps a tenant's facts read from the database at `since`.
    pub fn keep_tenant(&self, tenant: TenantId, facts: PullFacts, since: Since) {
        if !self.tracking() {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch == since.0 {
            inner.tenants.insert(tenant, facts);
        }
    }

    /// Devices kept and their estimated bytes.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.devices.len(), inner.bytes)
    }
}

impl Listener for DeviceDirectory {
    fn changed(&self, change: Change) {
        let mut inner = self.lock();
        inner.epoch += 1;
        match change {
            Change::Device(device) => inner.forget_device(device),
            Change::Tenant(tenant) => {
                inner.tenants.remove(&tenant);
            }
        }
    }

    fn set_tracking(&self, tracking: bool) {
        if !tracking {
            let mut inner = self.lock();
            inner.epoch += 1;
            inner.clear();
        }
        self.tracking.store(tracking, Ordering::Release);
    }
}

/// What keeping `device` costs, estimated: the row with its strings, the credential's SHA-256
/// in both maps, and the maps' slots.
pub fn entry_size(device: &Device) -> usize {
    const DIGEST: usize = 64;
    const SLOTS: usize = 2 * 48;
    let strings = [
        &device.hardware_id,
        &device.hostname,
        &device.software_version,
        &device.fingerprint_key,
    ]
    .iter()
    .map(|s| s.len())
    .sum::<usize>();
    let hashes = [
        &device.served_hash,
        &device.applied_hash,
        &device.failed_hash,
        &device.last_report_digest,
        &device.audited_key,
    ]
    .iter()
    .map(|h| h.as_ref().map_or(0, String::len))
    .sum::<usize>();
    let values = device
        .device_values
        .iter()
        .map(|(path, value)| {
            64 + path.len()
                + match value {
                    SettingValue::Plain(v) => v.to_string().len(),
                    SettingValue::Secret(handle) => {
                        64 + handle.sealed.kid.len()
                            + handle.sealed.nonce.len()
                            + handle.sealed.ciphertext.len()
                    }
                }
        })
        .sum::<usize>();
    let reassert = device.reassert.iter().map(|p| 48 + p.len()).sum::<usize>();
    std::mem::size_of::<Device>() + strings + hashes + values + reassert + 2 * DIGEST + SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PolicyId;
    use crate::domain::device::{Connectivity, DeviceKind, Lifecycle};
    use std::collections::{BTreeMap, BTreeSet};
    use uuid::Uuid;

    fn device() -> Device {
        let now = Utc::now();
        Device {
            id: DeviceId(Uuid::new_v4()),
            tenant_id: TenantId(Uuid::nil()),
            kind: DeviceKind::Appliance,
            hardware_id: "SN-1".into(),
            hostname: "bdr-01".into(),
            software_version: "12.4.1".into(),
            policy_id: PolicyId(Uuid::nil()),
            fingerprint_key: "a".repeat(44),
            device_values: BTreeMap::new(),
            reassert: BTreeSet::new(),
            version: 1,
            lifecycle: Lifecycle::Active,
            registered_at: now,
            credential_rotated_at: now,
            last_seen_at: None,
            last_pull_at: None,
            next_pull_after: None,
            served_hash: Some("b".repeat(64)),
            applied_hash: Some("b".repeat(64)),
            applied_at: None,
            failed_hash: None,
            last_report_digest: None,
            audited_key: Some("c".repeat(64)),
            recorded_connectivity: Connectivity::Online,
        }
    }

    fn tracking(max_bytes: usize) -> DeviceDirectory {
        let directory = DeviceDirectory::new(max_bytes);
        directory.set_tracking(true);
        directory
    }

    #[test]
    fn nothing_is_served_or_kept_until_changes_are_heard() {
        let directory = DeviceDirectory::new(1 << 20);
        let d = device();
        directory.keep_device("k", &d, directory.since());
        assert!(directory.device("k").is_none());
        directory.set_tracking(true);
        assert!(directory.device("k").is_none(), "kept while deaf: dropped");
        directory.keep_device("k", &d, directory.since());
        assert_eq!(directory.device("k").map(|d| d.id), Some(d.id));
    }

    #[test]
    fn a_change_drops_the_device_and_a_read_that_raced_it_is_not_kept() {
        let directory = tracking(1 << 20);
        let d = device();
        directory.keep_device("k", &d, directory.since());
        let before = directory.since();
        directory.changed(Change::Device(d.id));
        assert!(directory.device("k").is_none());
        // A read of the database that began before the change lands after it.
        directory.keep_device("k", &d, before);
        assert!(directory.device("k").is_none());
        directory.keep_device("k", &d, directory.since());
        assert!(directory.device("k").is_some());
    }

    #[test]
    fn tenant_facts_follow_their_changes_and_losing_track_clears_everything() {
        let directory = tracking(1 << 20);
        let tenant = TenantId(Uuid::new_v4());
        let facts = PullFacts {
            revision: 3,
            interval: 60,
        };
        directory.keep_tenant(tenant, facts, directory.since());
        assert_eq!(directory.tenant(tenant), Some(facts));
        directory.changed(Change::Tenant(tenant));
        assert_eq!(directory.tenant(tenant), None);
        directory.keep_tenant(tenant, facts, directory.since());
        let d = device();
        directory.keep_device("k", &d, directory.since());
        directory.set_tracking(false);
        directory.set_tracking(true);
        assert_eq!(directory.tenant(tenant), None);
        assert!(directory.device("k").is_none());
        assert_eq!(directory.usage(), (0, 0));
    }

    #[test]
    fn memory_stays_under_its_bound_and_a_pull_moves_the_rate_check() {
        let one = entry_size(&device());
        assert!(one < 1024, "a plain device costs {one} bytes");
        let directory = tracking(100 * one);
        let mut last = device();
        for i in 0..1000 {
            last = device();
            directory.keep_device(&format!("k{i}"), &last, directory.since());
            let (entries, bytes) = directory.usage();
            assert!(
                bytes <= 100 * one && entries <= 100,
                "{entries} entries, {bytes} bytes"
            );
        }
        assert!(
            directory.usage().0 >= 50,
            "shedding drops an eighth, not everything"
        );
        let at = Utc::now();
        directory.pulled(last.id, at);
        assert_eq!(directory.device("k999").unwrap().last_pull_at, Some(at));
    }
}
