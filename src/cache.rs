//! A small time-limited cache bounded in bytes (ConnectWise lookups, effective device configs):
//! each entry is charged its estimated size, an entry larger than the per-entry bound is not
//! kept, and when the total would pass its bound the least recently used entries are evicted
//! one by one, so one tenant's burst never empties every other tenant's entries. (Recency is
//! kept loosely: a hit on an entry already in the newer half of the order does not move it, so
//! the one evicted is always from the older half.) Each replica has its own; entries expire
//! after the time to live, so replicas differ by at most that.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What an entry costs beyond its value and what its key holds on the heap: the map slot, the
/// recency index, the clock, the key itself.
const ENTRY_OVERHEAD: usize = 128;

/// A cache key. Typed keys (ids and numbers) hold nothing on the heap: a lookup with one
/// neither formats nor allocates, which a lookup on every device pull should not.
pub trait Key: Hash + Eq + Clone {
    /// The bytes the key holds on the heap (it is stored twice: map and recency index).
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl Key for String {
    fn heap_bytes(&self) -> usize {
        self.len()
    }
}

/// Bounds of a [`BoundedCache`].
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub ttl: Duration,
    /// All entries together, in estimated bytes.
    pub max_bytes: usize,
    /// One entry, in estimated bytes; larger values are served but not kept.
    pub max_entry_bytes: usize,
}

#[derive(Debug)]
struct Slot<V> {
    stored: Instant,
    used: u64,
    size: usize,
    value: V,
}

#[derive(Debug)]
struct Inner<K, V> {
    entries: HashMap<K, Slot<V>>,
    /// Last use → key; the first is the least recently used.
    recency: BTreeMap<u64, K>,
    clock: u64,
    bytes: usize,
}

impl<K: Key, V> Inner<K, V> {
    fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        if let Some(slot) = self.entries.remove(key) {
            self.recency.remove(&slot.used);
            self.bytes -= slot.size;
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

#[derive(Debug)]
pub struct BoundedCache<K, V> {
    bounds: Bounds,
    inner: Mutex<Inner<K, V>>,
}

impl<K: Key, V: Clone> BoundedCache<K, V> {
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                recency: BTreeMap::new(),
                clock: 0,
                bytes: 0,
            }),
        }
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.get_at(key, Instant::now())
    }

    /// Keeps `value`, which costs about `size` bytes; false when it is too large to keep.
    pub fn put(&self, key: K, value: V, size: usize) -> bool {
        self.put_at(key, value, size, Instant::now())
    }

    fn get_at<Q: Hash + Eq + ?Sized>(&self, key: &Q, now: Instant) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let mut inner = self.inner.lock().expect("cache lock");
        let slot = inner.entries.get(key)?;
        if now.saturating_duration_since(slot.stored) >= self.bounds.ttl {
            inner.remove(key);
            return None;
        }
        let previous = slot.used;
        // An entry used within the newer half of the order stays where it is: at most half
        // the entries are newer, so it cannot go before the older half does, and a hot entry
        // (a policy's config, hit by every pull of its devices) does not move on every hit.
        let newer = inner.clock - previous;
        if newer > (inner.entries.len() / 2) as u64 {
            let used = inner.tick();
            // The key moves within the recency index: no copy of it is made.
            let owned = inner
                .recency
                .remove(&previous)
                .expect("every entry is in the recency index");
            inner.recency.insert(used, owned);
            inner.entries.get_mut(key).expect("present above").used = used;
        }
        let slot = inner.entries.get(key).expect("present above");
        Some(slot.value.clone())
    }

    fn put_at(&self, key: K, value: V, size: usize, now: Instant) -> bool {
        let size = size
            .saturating_add(key.heap_bytes().saturating_mul(2))
            .saturating_add(ENTRY_OVERHEAD);
        let mut inner = self.inner.lock().expect("cache lock");
        inner.remove(&key);
        if size > self.bounds.max_entry_bytes || size > self.bounds.max_bytes {
            return false;
        }
        while inner.bytes + size > self.bounds.max_bytes {
            let Some((_, oldest)) = inner.recency.pop_first() else {
                break;
            };
            if let Some(slot) = inner.entries.remove(&oldest) {
                inner.bytes -= slot.size;
            }
        }
        let used = inner.tick();
        inner.recency.insert(used, key.clone());
        inner.bytes += size;
        inner.entries.insert(
            key,
            Slot {
                stored: now,
                used,
                size,
                value,
            },
        );
        true
    }

    /// Entries and their estimated bytes.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock().expect("cache lock");
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KB: usize = 1024;

    fn cache(ttl_secs: u64, max_bytes: usize, max_entry_bytes: usize) -> BoundedCache<String, u32> {
        BoundedCache::new(Bounds {
            ttl: Duration::from_secs(ttl_secs),
            max_bytes,
            max_entry_bytes,
        })
    }

    #[test]
    fn entries_expire_after_the_time_to_live() {
        let cache = cache(60, 64 * KB, 16 * KB);
        let start = Instant::now();
        assert!(cache.put_at("a".into(), 1, 100, start));
        assert_eq!(cache.get_at("a", start + Duration::from_secs(59)), Some(1));
        assert_eq!(cache.get_at("a", start + Duration::from_secs(60)), None);
        assert_eq!(
            cache.usage(),
            (0, 0),
            "the expired entry is gone, its bytes given back"
        );
    }

    #[test]
    fn the_least_recently_used_entry_goes_first_and_only_as_many_as_needed() {
        // Each entry costs 1 KiB + its key + overhead; four fit, a fifth evicts one.
        let cache = cache(60, 4 * (KB + 2 + ENTRY_OVERHEAD), 16 * KB);
        let now = Instant::now();
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(cache.put_at((*key).into(), i as u32, KB, now));
        }
        assert_eq!(cache.get_at("a", now), Some(0), "a is now the most recently used");
        assert!(cache.put_at("e".into(), 4, KB, now));
        assert_eq!(cache.get_at("b", now), None, "b was the least recently used");
        for key in ["a", "c", "d", "e"] {
            assert!(cache.get_at(key, now).is_some(), "{key} stays");
        }
        assert_eq!(cache.usage().0, 4);
        assert!(cache.usage().1 <= 4 * (KB + 2 + ENTRY_OVERHEAD));
    }

    #[test]
    fn an_entry_used_in_the_older_half_moves_up_and_one_in_the_newer_half_is_not_evicted() {
        // Eight entries of 1 KiB and a two-letter key fill it; a ninth evicts one.
        let cache = cache(60, 8 * (KB + 4 + ENTRY_OVERHEAD), 16 * KB);
        let now = Instant::now();
        let keys = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"];
        for (i, key) in keys.iter().enumerate() {
            assert!(cache.put_at((*key).into(), i as u32, KB, now));
        }
        // k0 is the oldest; a hit moves it up. k6 is in the newer half: hits leave it in place.
        assert_eq!(cache.get_at("k0", now), Some(0));
        for _ in 0..100 {
            assert_eq!(cache.get_at("k6", now), Some(6));
        }
        assert!(cache.put_at("k8".into(), 8, KB, now));
        assert_eq!(cache.get_at("k1", now), None, "k1 was the least recently used");
        for key in ["k0", "k2", "k3", "k4", "k5", "k6", "k7", "k8"] {
            assert!(cache.get_at(key, now).is_some(), "{key} stays");
        }
    }

    #[test]
    fn an_entry_larger_than_its_bound_is_not_kept_and_evicts_nothing() {
        let cache = cache(60, 64 * KB, 4 * KB);
        let now = Instant::now();
        assert!(cache.put_at("small".into(), 1, KB, now));
        assert!(!cache.put_at("huge".into(), 2, 5 * KB, now));
        assert_eq!(cache.get_at("huge", now), None);
        assert_eq!(cache.get_at("small", now), Some(1));
    }

    #[test]
    fn replacing_an_entry_charges_it_once() {
        let cache = cache(60, 64 * KB, 16 * KB);
        let now = Instant::now();
        for value in 0..10 {
            assert!(cache.put_at("k".into(), value, KB, now));
        }
        assert_eq!(cache.usage(), (1, KB + 2 + ENTRY_OVERHEAD));
        assert_eq!(cache.get_at("k", now), Some(9));
    }

    #[test]
    fn the_total_stays_under_its_bound_under_many_writers() {
        let cache = cache(60, 32 * KB, 8 * KB);
        let now = Instant::now();
        for i in 0..10_000u32 {
            cache.put_at(format!("tenant-{}|{i}", i % 7), i, (i as usize % 4) * KB, now);
            assert!(cache.usage().1 <= 32 * KB);
        }
    }
}
