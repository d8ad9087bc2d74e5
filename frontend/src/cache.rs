//! The product cache: a bounded LRU of ready-to-send reply bodies, kept coherent with
//! the catalog by versioned invalidations.
//!
//! Coherence rule: the catalog gives every toy a version that grows with each stock
//! change, in lookups and in the invalidations it pushes. An invalidation removes the
//! entry and remembers the version it announced; a fill whose version is older than
//! the newest one announced for that toy is not stored. So a lookup that read the
//! catalog before a change but finishes after its invalidation cannot leave the old
//! quantity behind. The front-end applies the same rule with the version its own
//! order produced, so the ordering client never reads the pre-order quantity.
//!
//! One std `Mutex` guards the LRU and the announced versions; it is held for a few
//! map operations and never across `.await`.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use axum::body::Bytes;
use lru::LruCache;
use serde::Serialize;

/// The cache; disabled, it stores nothing and counts every lookup as a miss.
pub struct Cache {
    enabled: bool,
    capacity: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
}

struct Inner {
    /// Lower-cased name → (version, reply body).
    entries: LruCache<String, (u64, Bytes)>,
    /// Lower-cased name → newest version announced by an invalidation or by one of our
    /// own orders. One entry per real toy at most: only the catalog (with the cluster
    /// token) and acknowledged orders announce, and both name existing toys.
    announced: HashMap<String, u64>,
}

/// The cache figures shown by `GET /health`.
#[derive(Debug, Clone, Serialize)]
pub struct CacheStats {
    pub enabled: bool,
    pub capacity: usize,
    pub size: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub invalidations: u64,
}

impl Cache {
    pub fn new(enabled: bool, capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Cache {
            enabled,
            capacity: cap.get(),
            inner: Mutex::new(Inner {
                entries: LruCache::new(cap),
                announced: HashMap::new(),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached reply body for `key`, marking it most recently used.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let found = if self.enabled {
            self.lock().entries.get(key).map(|(_, body)| body.clone())
        } else {
            None
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores a body read from the catalog at `version`, unless a newer version of the
    /// toy has been announced meanwhile. Returns whether it was stored.
    pub fn fill(&self, key: &str, version: u64, body: Bytes) -> bool {
        if !self.enabled {
            return false;
        }
        let mut inner = self.lock();
        if inner.announced.get(key).is_some_and(|&v| v > version) {
            return false;
        }
        if inner.entries.peek(key).is_some_and(|(v, _)| *v > version) {
            return false;
        }
        if let Some((evicted, _)) = inner.entries.push(key.to_string(), (version, body)) {
            if evicted != key {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    /// Drops `key` without recording a version (e.g. after an order whose outcome is
    /// unknown). Unlike [`Cache::invalidate`] this never grows the cache's memory, so
    /// it is safe with names a client made up.
    pub fn forget(&self, key: &str) {
        self.lock().entries.pop(key);
    }

    /// Drops `key` and remembers that `version` exists, so older fills are refused.
    pub fn invalidate(&self, key: &str, version: u64) {
        let mut inner = self.lock();
        inner.entries.pop(key);
        let newest = inner.announced.entry(key.to_string()).or_insert(0);
        *newest = (*newest).max(version);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> CacheStats {
        let size = self.lock().entries.len();
        CacheStats {
            enabled: self.enabled,
            capacity: self.capacity,
            size,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn repeated_lookups_hit() {
        let cache = Cache::new(true, 2);
        assert!(cache.get("tux").is_none());
        assert!(cache.fill("tux", 1, body("t1")));
        assert_eq!(cache.get("tux"), Some(body("t1")));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.size), (1, 1, 1));
    }

    #[test]
    fn the_least_recently_used_toy_is_evicted() {
        let cache = Cache::new(true, 2);
        cache.fill("a", 1, body("a"));
        cache.fill("b", 1, body("b"));
        cache.get("a");
        cache.fill("c", 1, body("c"));
        assert!(cache.get("b").is_none());
        assert!(cache.get("a").is_some());
        assert!(cache.get("c").is_some());
        let s = cache.stats();
        assert_eq!((s.size, s.evictions), (2, 1));
    }

    #[test]
    fn a_fill_older_than_an_invalidation_is_refused() {
        let cache = Cache::new(true, 2);
        cache.fill("tux", 5, body("old"));
        cache.invalidate("tux", 6);
        assert!(cache.get("tux").is_none());
        assert!(!cache.fill("tux", 5, body("old")));
        assert!(cache.get("tux").is_none());
        assert!(cache.fill("tux", 6, body("new")));
        assert_eq!(cache.get("tux"), Some(body("new")));
    }

    #[test]
    fn a_newer_entry_is_not_replaced_by_an_older_fill() {
        let cache = Cache::new(true, 2);
        cache.fill("tux", 7, body("new"));
        assert!(!cache.fill("tux", 6, body("old")));
        assert_eq!(cache.get("tux"), Some(body("new")));
    }

    #[test]
    fn a_disabled_cache_stores_nothing_and_counts_misses() {
        let cache = Cache::new(false, 2);
        assert!(!cache.fill("tux", 1, body("t")));
        assert!(cache.get("tux").is_none());
        let s = cache.stats();
        assert_eq!((s.enabled, s.misses, s.size), (false, 1, 0));
    }
}
