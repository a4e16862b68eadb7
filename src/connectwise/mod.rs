//! ConnectWise Manage: the outbound client, its SSRF guard, and a short-lived lookup cache.

pub mod client;
pub mod guard;

pub use client::{ClientSettings, ConnectWiseClient, Credentials, CwError};

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A cached lookup: when it was fetched, and the records.
type Entry = (Instant, Arc<Vec<Value>>);

/// Dropdown results, kept briefly per tenant, credentials and query. Each replica has its own;
/// entries only ever expire, so replicas differ by at most the time to live.
#[derive(Debug)]
pub struct LookupCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

impl LookupCache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Vec<Value>>> {
        let entries = self.entries.lock().expect("lookup cache");
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: String, value: Arc<Vec<Value>>) {
        let mut entries = self.entries.lock().expect("lookup cache");
        if entries.len() >= self.max_entries {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let cache = LookupCache::new(Duration::from_millis(50), 2);
        cache.put("a".into(), Arc::new(vec![Value::from(1)]));
        assert_eq!(cache.get("a").unwrap().len(), 1);
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("a").is_none());
        for key in ["b", "c", "d"] {
            cache.put(key.into(), Arc::new(Vec::new()));
        }
        assert!(cache.entries.lock().unwrap().len() <= 2);
    }
}
