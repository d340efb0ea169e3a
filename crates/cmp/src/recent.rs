//! The transactionIDs of signed requests this node answered lately: a replay to the same
//! node is refused before any work. The store's recording commit is what refuses every
//! replay that would obtain something (a transactionID is recorded once, with the
//! certificate or on its own); this set only spares the pipeline, and a database read per
//! request, for the replays a node sees itself.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

/// How many transactionIDs a node remembers (the oldest is forgotten first): about 3 MB.
const REMEMBERED: usize = 32_768;

/// A bounded set of transactionIDs, oldest forgotten first.
#[derive(Debug, Default)]
pub(crate) struct RecentTransactions {
    inner: Mutex<Remembered>,
}

/// The IDs, and the order they came in.
#[derive(Debug, Default)]
struct Remembered {
    ids: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl RecentTransactions {
    /// Remembers `id`; false if it was remembered already.
    pub(crate) fn first_sight(&self, id: &[u8]) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Remembered { ids, order } = &mut *guard;
        if ids.contains(id) {
            return false;
        }
        if order.len() >= REMEMBERED {
            if let Some(oldest) = order.pop_front() {
                ids.remove(&oldest);
            }
        }
        ids.insert(id.to_vec());
        order.push_back(id.to_vec());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once_until_it_is_forgotten() {
        let recent = RecentTransactions::default();
        assert!(recent.first_sight(b"a"));
        assert!(!recent.first_sight(b"a"));
        for i in 0..REMEMBERED {
            assert!(recent.first_sight(format!("id-{i}").as_bytes()));
        }
        // "a" was the oldest: forgotten (the store's commit still refuses its replay).
        assert!(recent.first_sight(b"a"));
        assert!(!recent.first_sight(format!("id-{}", REMEMBERED - 1).as_bytes()));
    }
}
