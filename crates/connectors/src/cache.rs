//! A bounded TTL cache of lookup answers that never serialises lookups: 16 shards, each a
//! mutex held only to read or insert one entry (never across an `.await`), so concurrent
//! lookups of different serials proceed in parallel.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fleetca_ra::DirectoryRecord;

const SHARDS: usize = 16;

struct Entry {
    answer: Option<DirectoryRecord>,
    expires: Instant,
    inserted: Instant,
}

/// Answers (a record, or "unknown") by serial, each valid for `ttl`.
pub(crate) struct AnswerCache {
    ttl: Duration,
    per_shard: usize,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Entry>>>,
}

impl AnswerCache {
    /// `max_entries` is spread over the shards (at least one entry each).
    pub(crate) fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, serial: &str) -> Option<&Mutex<HashMap<String, Entry>>> {
        // The modulo keeps the index in range; `get` keeps clippy's indexing lint satisfied.
        let index = (self.hasher.hash_one(serial) % SHARDS as u64) as usize;
        self.shards.get(index)
    }

    /// The cached answer: `Some(None)` is a cached "unknown", `None` a miss.
    pub(crate) fn get(&self, serial: &str) -> Option<Option<DirectoryRecord>> {
        let shard = self.shard(serial)?;
        let mut map = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        match map.get(serial) {
            Some(entry) if entry.expires > now => Some(entry.answer.clone()),
            Some(_) => {
                map.remove(serial);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, serial: &str, answer: Option<DirectoryRecord>) {
        let Some(shard) = self.shard(serial) else {
            return;
        };
        let mut map = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if map.len() >= self.per_shard && !map.contains_key(serial) {
            map.retain(|_, e| e.expires > now);
            if map.len() >= self.per_shard {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, e)| e.inserted)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(
            serial.to_owned(),
            Entry {
                answer,
                expires: now + self.ttl,
                inserted: now,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_expire_and_size_is_bounded() {
        let cache = AnswerCache::new(Duration::from_millis(50), 32);
        let mut record = DirectoryRecord::new();
        record.insert("status".into(), "active".into());
        cache.insert("a", Some(record.clone()));
        cache.insert("b", None);
        assert_eq!(cache.get("a"), Some(Some(record)));
        assert_eq!(cache.get("b"), Some(None));
        assert_eq!(cache.get("c"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("a"), None);
        for i in 0..1000 {
            cache.insert(&format!("s{i}"), None);
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        assert_eq!(cache.get("s999"), Some(None));
    }
}
