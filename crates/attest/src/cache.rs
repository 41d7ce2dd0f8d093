//! [`TtlLru`]: a size-bounded map whose entries expire, used for hardware verification verdicts
//! keyed by `SHA-256(quote)`.
//!
//! Cocoon caches DCAP results in a 10 000-entry LRU with no expiry, so a collateral or TCB change is
//! never re-checked while a certificate lives (cocoon-notes §11). Here every entry carries its own
//! deadline (the caller bounds it by collateral and certificate expiry), and an expired entry is a
//! miss. Eviction when full drops the least recently used entry with an O(n) scan: inserts only
//! happen after a full DCAP verification, which costs far more than scanning 10 000 entries.
//! No I/O, no policy: callers still run their policy checks on every hit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

/// Cocoon's attestation cache size.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// A thread-safe LRU of at most `capacity` entries, each valid until its own deadline.
#[derive(Debug)]
pub struct TtlLru<V> {
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

#[derive(Debug)]
struct Inner<V> {
    map: HashMap<[u8; 32], Entry<V>>,
    tick: u64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    expires: SystemTime,
    used: u64,
}

impl<V: Clone> TtlLru<V> {
    /// An empty cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                tick: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        // A panic while holding the lock cannot leave the map inconsistent (single operations).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value for `key` if present and `now` is before its deadline.
    pub fn get(&self, key: &[u8; 32], now: SystemTime) -> Option<V> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        match inner.map.get_mut(key) {
            Some(e) if now < e.expires => {
                e.used = tick;
                Some(e.value.clone())
            }
            Some(_) => {
                inner.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` until `expires`, evicting the least recently used entry when full.
    pub fn insert(&self, key: [u8; 32], value: V, expires: SystemTime) {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if !inner.map.contains_key(&key) && inner.map.len() >= self.capacity {
            let oldest = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                inner.map.remove(&k);
            }
        }
        inner.map.insert(
            key,
            Entry {
                value,
                expires,
                used: tick,
            },
        );
    }

    /// Number of entries (expired ones included until touched).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.lock().map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn entries_expire_at_their_deadline() {
        let c = TtlLru::new(4);
        c.insert([1; 32], "a", t(100));
        assert_eq!(c.get(&[1; 32], t(99)), Some("a"));
        assert_eq!(c.get(&[1; 32], t(100)), None);
        assert!(c.is_empty(), "expired entry is dropped on access");
    }

    #[test]
    fn size_is_bounded_and_lru_is_evicted() {
        let c = TtlLru::new(2);
        c.insert([1; 32], 1, t(100));
        c.insert([2; 32], 2, t(100));
        assert_eq!(c.get(&[1; 32], t(0)), Some(1)); // 2 is now least recently used
        c.insert([3; 32], 3, t(100));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&[2; 32], t(0)), None);
        assert_eq!(c.get(&[1; 32], t(0)), Some(1));
        assert_eq!(c.get(&[3; 32], t(0)), Some(3));
    }

    #[test]
    fn replacing_a_key_does_not_evict() {
        let c = TtlLru::new(2);
        c.insert([1; 32], 1, t(100));
        c.insert([2; 32], 2, t(100));
        c.insert([2; 32], 22, t(100));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&[1; 32], t(0)), Some(1));
        assert_eq!(c.get(&[2; 32], t(0)), Some(22));
    }
}
