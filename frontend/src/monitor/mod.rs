//! The cluster monitor behind the dashboard: what the whole store looks like now, and
//! what changed.
//!
//! One [`Monitor`] per front-end, polled by one task ([`crate::dashboard`]) every
//! [`POLL`], however many people watch: it asks each replica (through the leader
//! watcher's status poll), the catalog and the other front-ends for their health
//! (with short timeouts, concurrently, so a stalled peer delays nothing but its own
//! row) and reads its own cache's view and journal. Request rates and latencies come
//! from each front-end's [`Served`] totals (this one's read from the metrics cells
//! that every request already updates, so the store's hot paths pay nothing for
//! them); the charts show their sum, the store's whole traffic. Comparing each poll
//! with the previous one yields the event feed: leader changes, replicas and
//! front-ends going down, coming back and catching up, the catalog going down and
//! back, restocks, and cache evictions and invalidations.
//!
//! Everything kept is bounded: [`HISTORY`] rate samples, [`FEED`] events, and cache
//! events younger than [`FLASH`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::CatalogClient;
use common::config::Replicas;
use common::domain::{Epoch, ReplicaId};
use common::wire::{
    CacheEvent, CacheEventKind, CacheStats, CacheView, CatalogHealth, CatalogProduct,
    FrontendHealth, ReplicaStatus, Replication, Served,
};

use crate::cache::Cache;
use crate::fleet::{self, Fleet};
use crate::leader::{best_leader, Leaders};

/// How often the cluster is looked at.
pub const POLL: Duration = Duration::from_millis(500);
/// Rate samples kept: one minute of polls.
pub const HISTORY: usize = 120;
/// Events kept in each feed (the cluster's and the cache's).
pub const FEED: usize = 100;
/// How long an evicted or invalidated cache entry stays highlighted.
pub const FLASH: Duration = Duration::from_secs(2);
/// Longest wait for the catalog in a poll (under [`POLL`], so polls never pile up
/// behind a stalled catalog; replicas get the leader watcher's status timeout).
const PEER_TIMEOUT: Duration = Duration::from_millis(400);
/// At most this many cache events of one kind get a feed line each per poll; more
/// are summed up in one line.
const CACHE_LINES: usize = 3;

/// One replica as the last poll saw it.
#[derive(Debug, Clone)]
pub struct ReplicaRow {
    pub id: ReplicaId,
    /// `None`: it did not answer.
    pub status: Option<ReplicaStatus>,
    /// Orders it lacks that the leader holds (`None` without a leader to compare to).
    pub behind: Option<u64>,
}

/// The catalog as the last poll saw it.
#[derive(Debug, Clone, Default)]
pub struct CatalogState {
    pub up: bool,
    /// Every toy, from the newest successful poll (kept while the catalog is down).
    pub products: Vec<CatalogProduct>,
    pub health: Option<CatalogHealth>,
    /// A replicated catalog's replicas, in configuration order: each one's health,
    /// `None` while it does not answer (empty for the single catalog).
    pub replicas: Vec<Option<CatalogHealth>>,
}

/// One front-end as the last poll saw it.
#[derive(Debug, Clone)]
pub struct FrontendRow {
    pub name: String,
    /// The one this dashboard is served by.
    pub this: bool,
    /// Where the others are reached.
    pub url: Option<String>,
    /// `None`: it did not answer.
    pub health: Option<FrontendHealth>,
    /// Its traffic since the previous poll.
    pub rates: Sample,
}

/// Rates and mean latencies over one poll interval; `None` where nothing was measured
/// (metrics off, or no request of that kind).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub lookups_per_s: Option<f64>,
    pub orders_per_s: Option<f64>,
    pub lookup_ms: Option<f64>,
    pub order_ms: Option<f64>,
}

/// One line of the event feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    /// When it was seen, in seconds since the Unix epoch.
    pub at_unix_s: u64,
    pub kind: FeedKind,
    pub text: String,
}

/// What a feed line is about (for its colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    Leader,
    Down,
    Up,
    CaughtUp,
    Restock,
    Evicted,
    Invalidated,
    Expired,
}

/// Everything the dashboard shows, as of one poll.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub mode: Replication,
    /// The leader as this front-end knows it: id and epoch (term in Raft mode).
    pub leader: Option<(ReplicaId, Epoch)>,
    pub replicas: Vec<ReplicaRow>,
    pub catalog: CatalogState,
    /// Every front-end of the cluster, this one included, in the cluster's order.
    pub frontends: Vec<FrontendRow>,
    pub cache: CacheView,
    pub cache_stats: CacheStats,
    /// Cache events younger than [`FLASH`], oldest first, with their age.
    pub flashes: Vec<(CacheEvent, Duration)>,
    /// The last minute of samples (every front-end's traffic summed), oldest first.
    pub history: Vec<Sample>,
    /// The cluster's events (leaders, replicas, catalog, restocks), newest first.
    pub feed: Vec<FeedItem>,
    /// The cache's evictions, invalidations and expiries, newest first. Apart, so
    /// that a busy cache does not push the cluster's events out of sight.
    pub cache_feed: Vec<FeedItem>,
}

/// Polls the cluster and remembers enough to tell what changed.
pub struct Monitor {
    mode: Replication,
    replicas: Replicas,
    catalog: CatalogClient,
    /// The leader watcher's view, and its concurrent status poll of the replicas.
    leaders: Arc<Leaders>,
    cache: Arc<Cache>,
    /// Every front-end, and this one's name.
    fleet: Fleet,
    name: String,
    /// The previous poll, to compare with.
    last: Option<Snapshot>,
    /// Replicas that came back (or were not ready) and have not yet caught up.
    catching_up: HashSet<ReplicaId>,
    /// The cache journal's next sequence number, as of the previous poll.
    cache_next: u64,
    /// Cache evictions and invalidations of the last [`FLASH`], oldest first.
    recent: VecDeque<CacheEvent>,
    /// Each front-end's totals at the previous poll, in the fleet's order.
    served: Option<(Instant, Vec<Option<Served>>)>,
    history: VecDeque<Sample>,
    feed: VecDeque<FeedItem>,
    cache_feed: VecDeque<FeedItem>,
}

impl Monitor {
    pub fn new(
        mode: Replication,
        replicas: Replicas,
        catalog: CatalogClient,
        leaders: Arc<Leaders>,
        cache: Arc<Cache>,
        fleet: Fleet,
        name: String,
    ) -> Self {
        Monitor {
            mode,
            replicas,
            catalog,
            leaders,
            cache,
            fleet,
            name,
            last: None,
            catching_up: HashSet::new(),
            cache_next: 0,
            recent: VecDeque::new(),
            served: None,
            history: VecDeque::with_capacity(HISTORY),
            feed: VecDeque::with_capacity(FEED),
            cache_feed: VecDeque::with_capacity(FEED),
        }
    }

    /// Looks at the cluster once and returns what it saw, events included.
    pub async fn poll(&mut self) -> Snapshot {
        // The same poll the leader watcher makes (its status timeout for each).
        let mine = fleet::health(&self.name, &self.leaders, &self.cache);
        let (statuses, catalog, frontends) = tokio::join!(
            self.leaders.statuses(|_| false),
            self.poll_catalog(),
            self.fleet.poll(mine, PEER_TIMEOUT)
        );
        let at_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let leader = self.leaders.current().map(|l| (l.id, l.epoch));
        let replicas = rows(&self.replicas, statuses);
        let cache = self.cache.view(self.cache_next);
        let cache_stats = self.cache.stats();
        let (frontends, sample) = self.frontend_rows(frontends);

        let mut snapshot = Snapshot {
            mode: self.mode,
            leader,
            replicas,
            catalog,
            frontends,
            cache,
            cache_stats,
            flashes: Vec::new(),
            history: Vec::new(),
            feed: Vec::new(),
            cache_feed: Vec::new(),
        };
        let events = match &self.last {
            Some(last) => changes(last, &snapshot, &mut self.catching_up),
            // The first poll: who leads is news, nothing else is.
            None => leader_line(snapshot.leader).into_iter().collect(),
        };
        push(&mut self.feed, at_unix_s, events);
        push(
            &mut self.cache_feed,
            at_unix_s,
            cache_lines(&snapshot.cache.events),
        );
        self.remember_cache_events(&snapshot.cache);
        self.cache_next = snapshot.cache.next;
        // The journal's part of the view is reported as events; keep the snapshot small.
        snapshot.cache.events.clear();

        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(sample);

        let now_ms = u64::try_from(self.cache_clock_ms()).unwrap_or(u64::MAX);
        snapshot.flashes = self
            .recent
            .iter()
            .map(|e| {
                (
                    e.clone(),
                    Duration::from_millis(now_ms.saturating_sub(e.at_ms)),
                )
            })
            .collect();
        snapshot.history = self.history.iter().copied().collect();
        snapshot.feed = self.feed.iter().cloned().collect();
        snapshot.cache_feed = self.cache_feed.iter().cloned().collect();
        self.last = Some(snapshot.clone());
        snapshot
    }

    /// The catalog's toys and health (and each replica's, if replicated); its toys
    /// from the last poll if it is down.
    async fn poll_catalog(&self) -> CatalogState {
        let products = tokio::time::timeout(PEER_TIMEOUT, self.catalog.products());
        let urls = self.catalog.replicas();
        let each = futures_util::future::join_all(
            urls.iter()
                .filter(|_| urls.len() > 1)
                .map(|url| self.catalog.health_of(url, PEER_TIMEOUT)),
        );
        let (products, health, each) =
            tokio::join!(products, self.catalog.health_within(PEER_TIMEOUT), each);
        let replicas = each.into_iter().map(Result::ok).collect();
        match products {
            Ok(Ok(products)) => CatalogState {
                up: true,
                products,
                health: health.ok(),
                replicas,
            },
            _ => CatalogState {
                up: false,
                products: self
                    .last
                    .as_ref()
                    .map(|s| s.catalog.products.clone())
                    .unwrap_or_default(),
                health: None,
                replicas,
            },
        }
    }

    /// Each front-end's row, with its lookups and orders per second and their mean
    /// latency since the last poll, and the sum of them all.
    fn frontend_rows(
        &mut self,
        healths: Vec<Option<FrontendHealth>>,
    ) -> (Vec<FrontendRow>, Sample) {
        let now = Instant::now();
        let served: Vec<Option<Served>> = healths
            .iter()
            .map(|h| h.as_ref().and_then(|h| h.served))
            .collect();
        let (rates, sum) = match &self.served {
            Some((then, before)) => rates(before, &served, now.duration_since(*then).as_secs_f64()),
            None => (vec![Sample::default(); served.len()], Sample::default()),
        };
        self.served = Some((now, served));
        let rows = self
            .fleet
            .members()
            .iter()
            .zip(healths)
            .zip(rates)
            .map(|((member, health), rates)| FrontendRow {
                name: member.name.clone(),
                this: member.is_this(),
                url: member
                    .url()
                    .map(|u| u.as_str().trim_end_matches('/').to_string()),
                health,
                rates,
            })
            .collect();
        (rows, sum)
    }

    /// Keeps the evictions, invalidations and expiries of the last [`FLASH`].
    fn remember_cache_events(&mut self, view: &CacheView) {
        self.recent.extend(
            view.events
                .iter()
                .filter(|e| e.kind != CacheEventKind::Filled)
                .cloned(),
        );
        let now_ms = u64::try_from(self.cache_clock_ms()).unwrap_or(u64::MAX);
        let flash_ms = FLASH.as_millis() as u64;
        while self
            .recent
            .front()
            .is_some_and(|e| now_ms.saturating_sub(e.at_ms) > flash_ms)
        {
            self.recent.pop_front();
        }
    }

    /// Milliseconds on the cache journal's clock (which started with the cache).
    fn cache_clock_ms(&self) -> u128 {
        self.cache.clock().as_millis()
    }
}

/// Adds `events` to the front of `feed`, dropping its oldest beyond [`FEED`].
fn push(feed: &mut VecDeque<FeedItem>, at_unix_s: u64, events: Vec<(FeedKind, String)>) {
    for (kind, text) in events {
        if feed.len() == FEED {
            feed.pop_back();
        }
        feed.push_front(FeedItem {
            at_unix_s,
            kind,
            text,
        });
    }
}

/// The replicas' rows, in id order, each with how far it is behind the leader (the
/// ready replica that says it leads, at the highest epoch).
fn rows(replicas: &Replicas, statuses: Vec<(ReplicaId, ReplicaStatus)>) -> Vec<ReplicaRow> {
    let leader_orders = best_leader(&statuses).map(|(_, s)| s.orders);
    let mut statuses: HashMap<ReplicaId, ReplicaStatus> = statuses.into_iter().collect();
    let mut ids: Vec<ReplicaId> = replicas.0.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.into_iter()
        .map(|id| {
            let status = statuses.remove(&id);
            let behind = match (&status, leader_orders) {
                (Some(s), Some(lead)) => Some(lead.saturating_sub(s.orders)),
                _ => None,
            };
            ReplicaRow { id, status, behind }
        })
        .collect()
}

/// Each front-end's rates between two readings of their totals `secs` apart (a
/// front-end that did not answer either time, or restarted in between, has none),
/// and all of them summed (`None` where no front-end measured anything).
fn rates(before: &[Option<Served>], after: &[Option<Served>], secs: f64) -> (Vec<Sample>, Sample) {
    let mut sum = [(0u64, 0u64); 2];
    let mut measured = false;
    let each = after
        .iter()
        .enumerate()
        .map(|(i, after)| {
            let (Some(a), Some(b)) = (*after, before.get(i).copied().flatten()) else {
                return Sample::default();
            };
            if a.lookups < b.lookups || a.orders < b.orders {
                return Sample::default(); // restarted: its counters began again
            }
            measured = true;
            let kinds = [
                (
                    a.lookups - b.lookups,
                    a.lookup_us.saturating_sub(b.lookup_us),
                ),
                (a.orders - b.orders, a.order_us.saturating_sub(b.order_us)),
            ];
            for (total, (count, us)) in sum.iter_mut().zip(kinds) {
                total.0 += count;
                total.1 += us;
            }
            sample(kinds, secs)
        })
        .collect();
    let total = if measured {
        sample(sum, secs)
    } else {
        Sample::default()
    };
    (each, total)
}

/// Lookups and orders per second and their mean milliseconds, from how many of each
/// were answered in `secs` and the microseconds they took.
fn sample([lookups, orders]: [(u64, u64); 2], secs: f64) -> Sample {
    let per_s = |count: u64| (secs > 0.0).then(|| count as f64 / secs);
    let mean_ms = |(count, us): (u64, u64)| (count > 0).then(|| us as f64 / 1000.0 / count as f64);
    Sample {
        lookups_per_s: per_s(lookups.0),
        orders_per_s: per_s(orders.0),
        lookup_ms: mean_ms(lookups),
        order_ms: mean_ms(orders),
    }
}

fn leader_line(leader: Option<(ReplicaId, Epoch)>) -> Option<(FeedKind, String)> {
    let (id, epoch) = leader?;
    Some((FeedKind::Leader, format!("order{id} leads (epoch {epoch})")))
}

/// The cluster events between two polls. `catching_up` carries the replicas that
/// came back behind across polls, until they have caught up.
fn changes(
    last: &Snapshot,
    now: &Snapshot,
    catching_up: &mut HashSet<ReplicaId>,
) -> Vec<(FeedKind, String)> {
    let mut out = Vec::new();
    if now.leader != last.leader {
        match leader_line(now.leader) {
            Some(line) => out.push(line),
            None => out.push((FeedKind::Down, "no leader".into())),
        }
    }
    for row in &now.replicas {
        let before = last.replicas.iter().find(|r| r.id == row.id);
        let was_up = before.is_some_and(|r| r.status.is_some());
        let id = row.id;
        match &row.status {
            None => {
                catching_up.remove(&id);
                if was_up {
                    out.push((FeedKind::Down, format!("order{id} is down")));
                }
            }
            Some(status) => {
                let behind = row.behind.unwrap_or(0);
                if !was_up && status.ready && behind == 0 {
                    // It caught up before the first look (a restart waits for that).
                    out.push((
                        FeedKind::Up,
                        format!("order{id} is up and caught up ({} orders)", status.orders),
                    ));
                    continue;
                }
                if !was_up {
                    out.push((
                        FeedKind::Up,
                        format!("order{id} is up, {behind} orders behind"),
                    ));
                }
                // Armed when it comes back or stops being ready (syncing); a ready
                // replica a few orders behind is only seeing orders in flight.
                if !was_up || !status.ready {
                    catching_up.insert(id);
                }
                if status.ready && behind == 0 && catching_up.remove(&id) {
                    out.push((
                        FeedKind::CaughtUp,
                        format!("order{id} caught up ({} orders)", status.orders),
                    ));
                }
            }
        }
    }
    if now.frontends.len() > 1 {
        for row in &now.frontends {
            let was_up = last
                .frontends
                .iter()
                .find(|r| r.name == row.name)
                .is_some_and(|r| r.health.is_some());
            match (was_up, row.health.is_some()) {
                (true, false) => out.push((FeedKind::Down, format!("{} is down", row.name))),
                (false, true) => out.push((FeedKind::Up, format!("{} is up", row.name))),
                _ => {}
            }
        }
    }
    if now.catalog.up != last.catalog.up {
        out.push(if now.catalog.up {
            (FeedKind::Up, "catalog is up".into())
        } else {
            (FeedKind::Down, "catalog is down".into())
        });
    }
    if now.catalog.up && last.catalog.up {
        for toy in &now.catalog.products {
            let before = last.catalog.products.iter().find(|p| p.name == toy.name);
            // Only a restock raises a toy's stock.
            if let Some(before) = before.filter(|b| b.quantity < toy.quantity) {
                out.push((
                    FeedKind::Restock,
                    format!(
                        "{} restocked: {} → {}",
                        toy.name, before.quantity, toy.quantity
                    ),
                ));
            }
        }
    }
    out
}

/// Feed lines for the cache journal's new events: each eviction, invalidation and
/// expiry, or one summary line per kind when there are many.
fn cache_lines(events: &[CacheEvent]) -> Vec<(FeedKind, String)> {
    let kinds = [
        (CacheEventKind::Evicted, FeedKind::Evicted, "evicted"),
        (
            CacheEventKind::Invalidated,
            FeedKind::Invalidated,
            "invalidated",
        ),
        (
            CacheEventKind::Expired,
            FeedKind::Expired,
            "dropped (lease ran out)",
        ),
    ];
    let mut out = Vec::new();
    for (kind, feed, verb) in kinds {
        let names: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.name.as_str())
            .collect();
        if names.len() <= CACHE_LINES {
            out.extend(names.iter().map(|n| (feed, format!("cache: {n} {verb}"))));
        } else {
            let mut distinct: Vec<&str> = names.clone();
            distinct.sort_unstable();
            distinct.dedup();
            out.push((
                feed,
                format!(
                    "cache: {} entries {verb} ({})",
                    names.len(),
                    distinct.join(", ")
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
