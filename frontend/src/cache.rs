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
//! Lease: pushes can be lost (the front-end was unreachable, a push was refused), so
//! entries are only trusted while the front-end keeps hearing from the catalog. Every
//! successful poll of the catalog's versions ([`crate::lease`]) renews the lease until
//! *the poll's send time* + the lease length, and drops every entry older than the
//! version it read. Once the lease runs out the cache empties itself and stores
//! nothing until the next successful poll. Since a poll sent after a change reflects
//! it, no entry is served stale for longer than the lease, however slow or broken the
//! network is.
//!
//! Journal: every fill, eviction, invalidation and lease expiry is recorded, with a
//! sequence number and a time, in a bounded journal (the newest [`JOURNAL`] events),
//! so that `GET /cache` can show cache replacement as it happens. Only changes are
//! recorded, never hits, so lookups served from the cache cost nothing more.
//!
//! One std `Mutex` guards the LRU, the announced versions, the lease and the journal;
//! it is held for a few map operations and never across `.await`.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::body::Bytes;
use common::domain::Version;
use common::wire::{CacheEvent, CacheEventKind, CacheStats, CacheView, CachedToy};
use lru::LruCache;

/// The cache; disabled, it stores nothing and counts every lookup as a miss.
pub struct Cache {
    enabled: bool,
    capacity: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
    /// Times the lease ran out and the cache was emptied.
    lease_expiries: AtomicU64,
    /// The journal's clock starts here.
    started: Instant,
}

/// Events kept in the journal.
pub const JOURNAL: usize = 1024;

struct Inner {
    /// Entries may be served until then; `None` until the first successful poll.
    lease_until: Option<Instant>,
    /// Lower-cased name → (version, reply body).
    entries: LruCache<String, (Version, Bytes)>,
    /// Lower-cased name → newest version announced by an invalidation or by one of our
    /// own orders. One entry per real toy at most: only the catalog (with the cluster
    /// token) and acknowledged orders announce, and both name existing toys.
    announced: HashMap<String, Version>,
    /// The newest [`JOURNAL`] events, oldest first.
    journal: VecDeque<CacheEvent>,
    /// Sequence number of the next event.
    next_seq: u64,
}

impl Inner {
    fn record(&mut self, started: Instant, kind: CacheEventKind, key: &str) {
        if self.journal.len() == JOURNAL {
            self.journal.pop_front();
        }
        self.journal.push_back(CacheEvent {
            seq: self.next_seq,
            at_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            kind,
            name: key.to_string(),
        });
        self.next_seq += 1;
    }

    /// Drops `key`, journaling why if it was there.
    fn drop_entry(&mut self, started: Instant, key: &str, kind: CacheEventKind) -> bool {
        let dropped = self.entries.pop(key).is_some();
        if dropped {
            self.record(started, kind, key);
        }
        dropped
    }
}

impl Cache {
    pub fn new(enabled: bool, capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Cache {
            enabled,
            capacity: cap.get(),
            inner: Mutex::new(Inner {
                lease_until: None,
                entries: LruCache::new(cap),
                announced: HashMap::new(),
                journal: VecDeque::with_capacity(JOURNAL),
                next_seq: 0,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            lease_expiries: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lock, with the entries dropped if the lease has run out.
    fn leased(&self) -> (std::sync::MutexGuard<'_, Inner>, bool) {
        let mut inner = self.lock();
        let leased = inner.lease_until.is_some_and(|t| Instant::now() < t);
        if !leased && !inner.entries.is_empty() {
            let keys: Vec<String> = inner.entries.iter().map(|(k, _)| k.clone()).collect();
            for key in keys {
                inner.record(self.started, CacheEventKind::Expired, &key);
            }
            inner.entries.clear();
            self.lease_expiries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("cache lease ran out: the catalog has not been heard from");
        }
        (inner, leased)
    }

    /// The cached version and reply body for `key`, marking it most recently used.
    pub fn get(&self, key: &str) -> Option<(Version, Bytes)> {
        let found = if self.enabled {
            let (mut inner, leased) = self.leased();
            leased.then(|| inner.entries.get(key).cloned()).flatten()
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
    /// toy has been announced meanwhile or the lease has run out. Returns whether it
    /// was stored.
    pub fn fill(&self, key: &str, version: Version, body: Bytes) -> bool {
        if !self.enabled {
            return false;
        }
        let (mut inner, leased) = self.leased();
        if !leased {
            return false;
        }
        if inner.announced.get(key).is_some_and(|&v| v > version) {
            return false;
        }
        if inner.entries.peek(key).is_some_and(|(v, _)| *v > version) {
            return false;
        }
        if let Some((evicted, _)) = inner.entries.push(key.to_string(), (version, body)) {
            if evicted != key {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                inner.record(self.started, CacheEventKind::Evicted, &evicted);
            }
        }
        inner.record(self.started, CacheEventKind::Filled, key);
        true
    }

    /// Drops `key` without recording a version (e.g. after an order whose outcome is
    /// unknown). Unlike [`Cache::invalidate`] this never grows the cache's memory, so
    /// it is safe with names a client made up.
    pub fn forget(&self, key: &str) {
        self.lock()
            .drop_entry(self.started, key, CacheEventKind::Invalidated);
    }

    /// Drops `key` and remembers that `version` exists, so older fills are refused.
    pub fn invalidate(&self, key: &str, version: Version) {
        let mut inner = self.lock();
        inner.drop_entry(self.started, key, CacheEventKind::Invalidated);
        announce(&mut inner.announced, key, version);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies a poll of the catalog sent at `sent`: every toy's current `version`
    /// (lower-cased names). Drops entries older than what the poll read, and extends
    /// the lease to `until` (computed from the send time by the caller).
    pub fn renew<'a>(
        &self,
        versions: impl IntoIterator<Item = (&'a str, Version)>,
        until: Instant,
    ) {
        let mut inner = self.lock();
        for (key, version) in versions {
            if inner.entries.peek(key).is_some_and(|(v, _)| *v < version) {
                inner.drop_entry(self.started, key, CacheEventKind::Invalidated);
                self.invalidations.fetch_add(1, Ordering::Relaxed);
            }
            announce(&mut inner.announced, key, version);
        }
        if inner.lease_until.is_none_or(|t| t < until) {
            inner.lease_until = Some(until);
        }
    }

    /// Whether the catalog has been heard from within the lease (whether or not the
    /// cache itself is enabled).
    pub fn catalog_heard(&self) -> bool {
        self.lock().lease_until.is_some_and(|t| Instant::now() < t)
    }

    /// Time on the journal's clock (`at_ms` of an event made now).
    pub fn clock(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The entries, most recently used first (without marking any used), and the
    /// journal's events numbered `after` and up.
    pub fn view(&self, after: u64) -> CacheView {
        let (inner, _) = self.leased();
        CacheView {
            enabled: self.enabled,
            capacity: self.capacity,
            entries: inner
                .entries
                .iter()
                .map(|(name, (version, _))| CachedToy {
                    name: name.clone(),
                    version: *version,
                })
                .collect(),
            events: inner
                .journal
                .iter()
                .filter(|e| e.seq >= after)
                .cloned()
                .collect(),
            next: inner.next_seq,
        }
    }

    pub fn stats(&self) -> CacheStats {
        let (inner, leased) = self.leased();
        let size = inner.entries.len();
        drop(inner);
        CacheStats {
            enabled: self.enabled,
            capacity: self.capacity,
            size,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            leased,
            lease_expiries: self.lease_expiries.load(Ordering::Relaxed),
        }
    }
}

/// Records that `version` of `key` exists (the newest one wins).
fn announce(announced: &mut HashMap<String, Version>, key: &str, version: Version) {
    match announced.get_mut(key) {
        Some(v) => *v = (*v).max(version),
        None => {
            announced.insert(key.to_string(), version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    /// A cache whose lease runs for a minute.
    fn leased(enabled: bool, capacity: usize) -> Cache {
        let cache = Cache::new(enabled, capacity);
        cache.renew([], Instant::now() + std::time::Duration::from_secs(60));
        cache
    }

    #[test]
    fn repeated_lookups_hit() {
        let cache = leased(true, 2);
        assert!(cache.get("tux").is_none());
        assert!(cache.fill("tux", Version(1), body("t1")));
        assert_eq!(cache.get("tux"), Some((Version(1), body("t1"))));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.size), (1, 1, 1));
    }

    #[test]
    fn the_least_recently_used_toy_is_evicted() {
        let cache = leased(true, 2);
        cache.fill("a", Version(1), body("a"));
        cache.fill("b", Version(1), body("b"));
        cache.get("a");
        cache.fill("c", Version(1), body("c"));
        assert!(cache.get("b").is_none());
        assert!(cache.get("a").is_some());
        assert!(cache.get("c").is_some());
        let s = cache.stats();
        assert_eq!((s.size, s.evictions), (2, 1));
    }

    #[test]
    fn the_journal_tells_fills_evictions_and_invalidations_in_order() {
        use CacheEventKind::*;
        let cache = leased(true, 2);
        cache.fill("a", Version(1), body("a"));
        cache.fill("b", Version(1), body("b"));
        cache.get("a");
        cache.fill("c", Version(1), body("c"));
        cache.invalidate("a", Version(2));
        cache.invalidate("zzz", Version(1)); // not cached: nothing happened to an entry
        let view = cache.view(0);
        let told: Vec<(CacheEventKind, &str)> = view
            .events
            .iter()
            .map(|e| (e.kind, e.name.as_str()))
            .collect();
        assert_eq!(
            told,
            [
                (Filled, "a"),
                (Filled, "b"),
                (Evicted, "b"),
                (Filled, "c"),
                (Invalidated, "a")
            ]
        );
        let names: Vec<&str> = view.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["c"]);
        assert_eq!(view.next, 5);
        assert_eq!(cache.view(4).events.len(), 1);
    }

    #[test]
    fn the_journal_keeps_the_newest_events() {
        let cache = leased(true, 1);
        for i in 0..(JOURNAL as u64 + 10) {
            cache.fill(&format!("t{i}"), Version(1), body("x"));
        }
        let view = cache.view(0);
        assert_eq!(view.events.len(), JOURNAL);
        assert_eq!(view.events.last().map(|e| e.seq), Some(view.next - 1));
    }

    #[test]
    fn a_fill_older_than_an_invalidation_is_refused() {
        let cache = leased(true, 2);
        cache.fill("tux", Version(5), body("old"));
        cache.invalidate("tux", Version(6));
        assert!(cache.get("tux").is_none());
        assert!(!cache.fill("tux", Version(5), body("old")));
        assert!(cache.get("tux").is_none());
        assert!(cache.fill("tux", Version(6), body("new")));
        assert_eq!(cache.get("tux").map(|(_, b)| b), Some(body("new")));
    }

    #[test]
    fn a_newer_entry_is_not_replaced_by_an_older_fill() {
        let cache = leased(true, 2);
        cache.fill("tux", Version(7), body("new"));
        assert!(!cache.fill("tux", Version(6), body("old")));
        assert_eq!(cache.get("tux").map(|(_, b)| b), Some(body("new")));
    }

    #[test]
    fn a_disabled_cache_stores_nothing_and_counts_misses() {
        let cache = leased(false, 2);
        assert!(!cache.fill("tux", Version(1), body("t")));
        assert!(cache.get("tux").is_none());
        let s = cache.stats();
        assert_eq!((s.enabled, s.misses, s.size), (false, 1, 0));
    }

    #[test]
    fn nothing_is_served_or_stored_without_a_lease() {
        let cache = Cache::new(true, 2);
        assert!(!cache.fill("tux", Version(1), body("t")));
        assert!(!cache.stats().leased);

        cache.renew([], Instant::now() + std::time::Duration::from_millis(30));
        assert!(cache.fill("tux", Version(1), body("t")));
        assert_eq!(cache.get("tux").map(|(_, b)| b), Some(body("t")));
        std::thread::sleep(std::time::Duration::from_millis(40));
        assert!(cache.get("tux").is_none(), "served after the lease ran out");
        let s = cache.stats();
        assert_eq!((s.size, s.leased, s.lease_expiries), (0, false, 1));
    }

    #[test]
    fn a_poll_drops_entries_older_than_it_read_and_refuses_older_fills() {
        let cache = leased(true, 3);
        cache.fill("tux", Version(4), body("old"));
        cache.fill("fox", Version(2), body("fox"));
        let until = Instant::now() + std::time::Duration::from_secs(60);
        cache.renew([("tux", Version(5)), ("fox", Version(2))], until);
        assert!(cache.get("tux").is_none());
        assert_eq!(cache.get("fox").map(|(_, b)| b), Some(body("fox")));
        assert!(!cache.fill("tux", Version(4), body("old")));
        assert!(cache.fill("tux", Version(5), body("new")));
    }
}
