//! A small time-limited cache bounded in bytes (ConnectWise lookups, effective device configs): each entry is charged its estimated size, an
//! entry larger than the per-entry bound is not kept, and when the total would pass its bound
//! the least recently used entries are evicted one by one, so one tenant's burst never empties
//! every other tenant's entries. Each replica has its own; entries expire after the time to
//! live, so replicas differ by at most that.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What an entry costs beyond its key and value: the map slot, the recency index, the clock.
const ENTRY_OVERHEAD: usize = 128;

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
struct Inner<V> {
    entries: HashMap<String, Slot<V>>,
    /// Last use → key; the first is the least recently used.
    recency: BTreeMap<u64, String>,
    clock: u64,
    bytes: usize,
}

impl<V> Inner<V> {
    fn remove(&mut self, key: &str) {
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
pub struct BoundedCache<V> {
    bounds: Bounds,
    inner: Mutex<Inner<V>>,
}

impl<V: Clone> BoundedCache<V> {
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

    pub fn get(&self, key: &str) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    /// Keeps `value`, which costs about `size` bytes; false when it is too large to keep.
    pub fn put(&self, key: String, value: V, size: usize) -> bool {
        self.put_at(key, value, size, Instant::now())
    }

    fn get_at(&self, key: &str, now: Instant) -> Option<V> {
        let mut inner = self.inner.lock().expect("cache lock");
        let slot = inner.entries.get(key)?;
        if now.saturating_duration_since(slot.stored) >= self.bounds.ttl {
            inner.remove(key);
            return None;
        }
        let previous = slot.used;
        let used = inner.tick();
        inner.recency.remove(&previous);
        inner.recency.insert(used, key.to_owned());
        let slot = inner.entries.get_mut(key).expect("present above");
        slot.used = used;
        Some(slot.value.clone())
    }

    fn put_at(&self, key: String, value: V, size: usize, now: Instant) -> bool {
        let size = size
            .saturating_add(key.len().saturating_mul(2))
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

    fn cache(ttl_secs: u64, max_bytes: usize, max_entry_bytes: usize) -> BoundedCache<u32> {
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
