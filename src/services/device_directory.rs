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
//! A pull gets the kept entry itself ([`KnownDevice`], shared, not copied) and marks its time
//! on it, so the rate check of the device's next pull sees it before the check-in is written.
//!
//! Only active devices are kept. What one costs: the device row (identity strings, hashes, its
//! own values and fields to reassert) plus the credential's SHA-256 twice (key and reverse
//! index, and its place in the eviction order): about 800 bytes for a device without values of
//! its own (see [`entry_size`]). The whole is bounded by `device_cache_bytes`; past it, the
//! device kept longest ago goes for each one kept (it is read again on its next pull). Each
//! eviction is O(1): a fleet larger than the directory evicts on most misses, under the lock
//! every pull takes, so a pass over all entries there would pause every pull.

use crate::db::changes::{Change, Listener};
use crate::domain::device::Device;
use crate::domain::policy::SettingValue;
use crate::domain::{DeviceId, TenantId};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// An active device as pulls see it: one copy, shared by the directory and the pulls that read
/// it (copying the whole row out for every pull was about a tenth of a `304`'s allocations),
/// with its latest pull on this replica beside it, the one thing a pull changes.
#[derive(Debug)]
pub struct KnownDevice {
    pub device: Device,
    /// Nanoseconds since the epoch of the latest pull known here; `i64::MIN` for none.
    last_pull: AtomicI64,
}

impl KnownDevice {
    pub fn new(device: Device) -> Self {
        let last_pull = device.last_pull_at.map_or(i64::MIN, nanos);
        Self {
            device,
            last_pull: AtomicI64::new(last_pull),
        }
    }

    /// When the device last pulled as far as this replica knows: the stored check-in, or a
    /// later pull served here whose check-in is not written yet.
    pub fn last_pull_at(&self) -> Option<DateTime<Utc>> {
        match self.last_pull.load(Ordering::Relaxed) {
            i64::MIN => None,
            at => Some(DateTime::from_timestamp_nanos(at)),
        }
    }

    /// A pull served at `at`: the pull-rate check of the device's next pull counts from here
    /// (the check-in reaches the database later, in a batch). Never moves back.
    pub fn pulled(&self, at: DateTime<Utc>) {
        self.last_pull.fetch_max(nanos(at), Ordering::Relaxed);
    }

    /// The device row, with the latest pull known here.
    pub fn into_device(self: Arc<Self>) -> Device {
        let last_pull_at = self.last_pull_at();
        let mut device = Arc::try_unwrap(self).map_or_else(|shared| shared.device.clone(), |own| own.device);
        device.last_pull_at = last_pull_at;
        device
    }
}

/// A time as nanoseconds since the epoch, saturating: chrono represents them from 1677 to 2262.
fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN + 1
    } else {
        i64::MAX
    })
}

/// A credential's SHA-256.
pub type Digest = [u8; 32];

/// Hashes a [`Digest`] key by its own first eight bytes. The digest is already a uniform hash,
/// so hashing it again (SipHash over 32 bytes, under the lock every pull takes) buys nothing:
/// the stored keys are digests of credentials the server generated, which no client chooses,
/// and a client's lookup of a digest it crafted only probes among them, so it cannot make any
/// lookup slower than the table's own spread.
#[derive(Default, Clone, Copy)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    /// Takes each write's first eight bytes (the array's length prefix, then the digest),
    /// rotating what came before: the digest's bytes decide where the key goes.
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
    }
}

type DigestMap<V> = HashMap<Digest, V, BuildHasherDefault<DigestHasher>>;

/// What a pull needs of its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullFacts {
    /// Bumped by every policy write: which cached tree is current.
    pub revision: i64,
    pub interval: u32,
}

#[derive(Default)]
struct Inner {
    /// Credential SHA-256 → device. The key is the digest's 32 bytes, in the slot itself (not
    /// its hex form on the heap). The device is behind a pointer: pulls share it, and when the
    /// map grows it moves every slot while holding the lock each pull takes, and a slot of a
    /// key and a pointer moves far faster than one holding a whole `Device`.
    devices: DigestMap<Arc<KnownDevice>>,
    /// Device → its credential's SHA-256 (to drop an entry by device) and its place in `order`.
    credentials: HashMap<DeviceId, (Digest, u64)>,
    tenants: HashMap<TenantId, PullFacts>,
    /// Devices in the order they were kept, oldest first, each with the number of its keeping.
    /// A slot whose number is not its device's current one is stale (the device was dropped by
    /// a change, and maybe kept again since): eviction skips it. Rebuilt when stale slots
    /// outnumber the entries.
    order: VecDeque<(DeviceId, u64)>,
    /// Numbers the keepings.
    kept: u64,
    /// Moves on every change: a read that began before it must not be kept.
    epoch: u64,
    bytes: usize,
}

impl Inner {
    fn forget_device(&mut self, device: DeviceId) {
        if let Some((digest, _)) = self.credentials.remove(&device)
            && let Some(gone) = self.devices.remove(&digest)
        {
            self.bytes -= entry_size(&gone.device);
        }
    }

    fn clear(&mut self) {
        self.devices.clear();
        self.credentials.clear();
        self.tenants.clear();
        self.order.clear();
        self.bytes = 0;
    }

    fn is_current(&self, (device, kept): (DeviceId, u64)) -> bool {
        self.credentials.get(&device).is_some_and(|(_, at)| *at == kept)
    }

    /// Drops the device kept longest ago; false when nothing is left to drop. Each stale slot
    /// is passed over once, so this is O(1) amortised.
    fn evict_oldest(&mut self) -> bool {
        while let Some(slot) = self.order.pop_front() {
            if self.is_current(slot) {
                self.forget_device(slot.0);
                return true;
            }
        }
        false
    }

    /// Drops the stale slots once they outnumber the entries (plus [`ORDER_SLACK`]): the order
    /// stays within about twice the entries, and this pass over it comes only after as many
    /// keeps as there are entries.
    fn compact_order(&mut self) {
        if self.order.len() <= 2 * self.credentials.len() + ORDER_SLACK {
            return;
        }
        let order = std::mem::take(&mut self.order);
        self.order = order.into_iter().filter(|slot| self.is_current(*slot)).collect();
    }
}

/// Stale slots the eviction order may hold beyond twice its entries before it is rebuilt.
const ORDER_SLACK: usize = 1024;

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
    pub fn device(&self, credential_digest: &Digest) -> Option<Arc<KnownDevice>> {
        if !self.tracking() {
            return None;
        }
        self.lock().devices.get(credential_digest).cloned()
    }

    /// Keeps an active device read from the database at `since`.
    pub fn keep_device(&self, credential_digest: &Digest, known: &Arc<KnownDevice>, since: Since) {
        if !self.tracking() {
            return;
        }
        let device = &known.device;
        let size = entry_size(device);
        let mut inner = self.lock();
        if inner.epoch != since.0 || size > self.max_bytes {
            return;
        }
        inner.forget_device(device.id);
        while inner.bytes + size > self.max_bytes && inner.evict_oldest() {}
        inner.bytes += size;
        inner.kept += 1;
        let kept = inner.kept;
        inner.credentials.insert(device.id, (*credential_digest, kept));
        inner.devices.insert(*credential_digest, known.clone());
        inner.order.push_back((device.id, kept));
        inner.compact_order();
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
/// in both maps, the maps' slots and its place in the eviction order.
pub fn entry_size(device: &Device) -> usize {
    const DIGEST: usize = std::mem::size_of::<Digest>();
    const SLOTS: usize = 2 * 48 + 2 * std::mem::size_of::<(DeviceId, u64)>();
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
    // The shared copy: its two counts, the row, the last pull.
    let shared = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<KnownDevice>();
    shared + strings + hashes + values + reassert + 2 * DIGEST + SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PolicyId;
    use crate::domain::device::{Connectivity, DeviceKind, Lifecycle};
    use std::collections::{BTreeMap, BTreeSet};
    use std::hash::BuildHasher;
    use uuid::Uuid;

    fn device() -> Arc<KnownDevice> {
        let now = Utc::now();
        Arc::new(KnownDevice::new(Device {
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
        }))
    }

    fn key(name: &str) -> Digest {
        crate::auth::token::raw_digest(name)
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
        directory.keep_device(&key("k"), &d, directory.since());
        assert!(directory.device(&key("k")).is_none());
        directory.set_tracking(true);
        assert!(directory.device(&key("k")).is_none(), "kept while deaf: dropped");
        directory.keep_device(&key("k"), &d, directory.since());
        assert_eq!(
            directory.device(&key("k")).map(|d| d.device.id),
            Some(d.device.id)
        );
    }

    #[test]
    fn digests_sharing_the_bytes_that_place_them_are_still_told_apart() {
        let directory = tracking(1 << 20);
        let (kept, other) = (device(), device());
        let mut twin = key("k");
        twin[31] ^= 1;
        directory.keep_device(&key("k"), &kept, directory.since());
        assert!(
            directory.device(&twin).is_none(),
            "same first bytes, another credential"
        );
        directory.keep_device(&twin, &other, directory.since());
        let found = |digest: &Digest| directory.device(digest).map(|d| d.device.id);
        assert_eq!(found(&key("k")), Some(kept.device.id));
        assert_eq!(found(&twin), Some(other.device.id));
    }

    #[test]
    fn the_digest_hash_is_taken_from_the_digest() {
        let hash = |digest: &Digest| BuildHasherDefault::<DigestHasher>::default().hash_one(digest);
        let (a, b) = (key("a"), key("b"));
        assert_ne!(hash(&a), hash(&b));
        let mut later = a;
        later[8..].fill(0);
        assert_eq!(hash(&a), hash(&later), "placed by the first eight bytes");
    }

    #[test]
    fn a_change_drops_the_device_and_a_read_that_raced_it_is_not_kept() {
        let directory = tracking(1 << 20);
        let d = device();
        directory.keep_device(&key("k"), &d, directory.since());
        let before = directory.since();
        directory.changed(Change::Device(d.device.id));
        assert!(directory.device(&key("k")).is_none());
        // A read of the database that began before the change lands after it.
        directory.keep_device(&key("k"), &d, before);
        assert!(directory.device(&key("k")).is_none());
        directory.keep_device(&key("k"), &d, directory.since());
        assert!(directory.device(&key("k")).is_some());
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
        directory.keep_device(&key("k"), &d, directory.since());
        directory.set_tracking(false);
        directory.set_tracking(true);
        assert_eq!(directory.tenant(tenant), None);
        assert!(directory.device(&key("k")).is_none());
        assert_eq!(directory.usage(), (0, 0));
    }

    #[test]
    fn memory_stays_under_its_bound_and_a_pull_moves_the_rate_check() {
        let one = entry_size(&device().device);
        assert!(one < 1024, "a plain device costs {one} bytes");
        let directory = tracking(100 * one);
        let mut last = device();
        for i in 0..1000 {
            last = device();
            directory.keep_device(&key(&format!("k{i}")), &last, directory.since());
            let (entries, bytes) = directory.usage();
            assert!(
                bytes <= 100 * one && entries <= 100,
                "{entries} entries, {bytes} bytes"
            );
        }
        // Full, and what is kept is the latest 100: the oldest went, one per newcomer.
        assert_eq!(directory.usage().0, 100);
        assert!(directory.device(&key("k899")).is_none());
        assert!((900..1000).all(|i| directory.device(&key(&format!("k{i}"))).is_some()));
        // A pull marks the shared entry: the next lookup sees it, and an older pull does not
        // move it back.
        let at = Utc::now();
        directory.device(&key("k999")).unwrap().pulled(at);
        directory
            .device(&key("k999"))
            .unwrap()
            .pulled(at - chrono::Duration::seconds(5));
        assert_eq!(directory.device(&key("k999")).unwrap().last_pull_at(), Some(at));
        assert_eq!(
            Arc::clone(&last).into_device().last_pull_at,
            Some(at),
            "the row handed out carries it"
        );
    }

    #[test]
    fn a_device_kept_again_counts_as_new_and_stale_places_do_not_pile_up() {
        let one = entry_size(&device().device);
        let directory = tracking(3 * one);
        let (a, b, c, d) = (device(), device(), device(), device());
        directory.keep_device(&key("a"), &a, directory.since());
        directory.keep_device(&key("b"), &b, directory.since());
        directory.keep_device(&key("c"), &c, directory.since());
        // A change drops `a`; its next pull reads and keeps it again, now the newest.
        directory.changed(Change::Device(a.device.id));
        directory.keep_device(&key("a"), &a, directory.since());
        directory.keep_device(&key("d"), &d, directory.since());
        assert!(directory.device(&key("b")).is_none(), "the oldest went");
        for kept in ["c", "a", "d"] {
            assert!(directory.device(&key(kept)).is_some(), "{kept} stays");
        }
        // A device changed and kept again all day leaves stale places; they stay bounded.
        for _ in 0..10 * ORDER_SLACK {
            directory.changed(Change::Device(c.device.id));
            directory.keep_device(&key("c"), &c, directory.since());
        }
        let order = directory.lock().order.len();
        assert!(order <= 2 * 3 + ORDER_SLACK + 1, "{order} places for 3 devices");
        assert_eq!(directory.usage().0, 3);
    }
}
