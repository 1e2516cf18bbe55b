//! A least-recently-used map bounded in bytes: prepared contents and styles (decoded, resized,
//! encoded by the model) keyed by what they were made from, so moving a slider reruns only the
//! network's last part.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// LRU entries of an estimated size each, at most `capacity` bytes in all (one entry larger
/// than that is still kept, alone, until the next insert).
#[derive(Debug)]
pub struct ByteLru<K, V> {
    capacity: usize,
    used: usize,
    clock: u64,
    entries: HashMap<K, (Arc<V>, usize, u64)>,
}

impl<K: Eq + Hash + Clone, V> ByteLru<K, V> {
    /// An empty cache of `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        ByteLru {
            capacity,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// The value of `key`, marked as used now.
    pub fn get(&mut self, key: &K) -> Option<Arc<V>> {
        self.clock += 1;
        let now = self.clock;
        self.entries.get_mut(key).map(|(v, _, used)| {
            *used = now;
            Arc::clone(v)
        })
    }

    /// Inserts `value` of `bytes` under `key`, evicting the least recently used entries until
    /// the total fits.
    pub fn insert(&mut self, key: K, value: Arc<V>, bytes: usize) {
        self.clock += 1;
        if let Some((_, old, _)) = self.entries.insert(key, (value, bytes, self.clock)) {
            self.used -= old;
        }
        self.used += bytes;
        while self.used > self.capacity && self.entries.len() > 1 {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, b, _)) = self.entries.remove(&oldest) {
                self.used -= b;
            }
        }
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_to_fit_the_bytes() {
        let mut c = ByteLru::new(100);
        c.insert("a", Arc::new(1), 40);
        c.insert("b", Arc::new(2), 40);
        assert_eq!(c.get(&"a").as_deref(), Some(&1)); // a is now newer than b
        c.insert("c", Arc::new(3), 40);
        assert!(c.get(&"b").is_none(), "b was the least recently used");
        assert!(c.get(&"a").is_some() && c.get(&"c").is_some());
        assert_eq!((c.len(), c.used()), (2, 80));
        // Replacing a key counts its bytes once.
        c.insert("a", Arc::new(4), 10);
        assert_eq!((c.len(), c.used()), (2, 50));
        // One entry larger than the capacity stays alone.
        c.insert("big", Arc::new(5), 500);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&"big").as_deref(), Some(&5));
    }
}
