//! A replica's shared state and every rule that changes its history or leadership:
//! leader notices, replication from the leader, and catch-up from peers.
//!
//! One async lock (`log`) serialises every change to the history, the epoch and the
//! role, whoever makes it (the leader's writer task, a replication batch, a catch-up,
//! a leader notice). Readers (`/health`, `GET /orders`, catch-up pages served to
//! peers) read sled and a small snapshot without it.
//!
//! The rules (see docs/DESIGN.md for why they keep every acknowledged order):
//! - Validate, then change: a leader notice or batch naming a replica outside the
//!   configuration, an epoch more than [`MAX_EPOCH_STEP`] ahead, or entries that cannot
//!   be a leader's history is refused before anything is stored or adopted.
//! - Every order carries the epoch of the leader that wrote it; a replica refuses
//!   leadership and replication messages from an epoch older than its own.
//! - A follower appends a batch only if it holds the entry just before it (`prev`);
//!   otherwise the leader's history wins: the follower syncs from the leader. Where an
//!   entry conflicts with what it holds, or it holds older-epoch orders beyond the
//!   leader's newest one, it drops its divergent tail.
//! - A replica made leader first syncs from the most up-to-date reachable peer
//!   (highest epoch of its newest order, then most orders), then accepts writes; if
//!   that fails, it refuses to lead.
//! - The commit index is the newest order durable on the leader and every follower it
//!   waits for (followers learn it from the leader); only orders up to it are read.
//! - A replica that starts syncs from the leader if a peer says it leads, otherwise
//!   from the most up-to-date peer; then it reports itself ready and takes from the
//!   leader, once more, what it refused while catching up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::client::{OrderClient, PeerError};
use common::wire::{
    LeaderNotice, OrderRecord, Persisted, ReplicaStatus, Replicate, Replication, Role,
};
use reqwest::Url;
use tokio::sync::{watch, MutexGuard, Notify};

use crate::config::Timeouts;
use crate::error::OrderError;
use crate::store::Store;

/// Orders per catch-up page.
const PAGE: u64 = 500;

/// Furthest a leadership epoch may jump ahead of the one a replica holds. Real
/// selections move it by a few; a message that jumps further is refused, so that no
/// peer can push an epoch to the end of its range and wedge the cluster.
pub const MAX_EPOCH_STEP: u64 = 1 << 20;

/// Most orders in one replication batch a follower accepts.
pub const MAX_BATCH_ENTRIES: usize = 4096;

/// Longest name or idempotency key in a stored order, in bytes (the front-end's 128
/// characters, at up to four bytes each).
pub const MAX_TEXT: usize = 512;

/// Who leads, as this replica knows it. Changed only while the log lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub role: Role,
    pub epoch: u64,
    pub leader: Option<u32>,
    /// Caught up with its peers; a leader is ready once its promotion sync is done.
    pub ready: bool,
}

impl Leadership {
    /// True when this replica may accept client writes.
    pub fn accepts_writes(&self) -> bool {
        self.role == Role::Leader && self.ready
    }
}

/// Handle to the replica. Cheap to clone.
#[derive(Clone)]
pub struct Replica {
    inner: Arc<Inner>,
}

struct Inner {
    id: u32,
    store: Store,
    /// Serialises every change of history, epoch and role; held across `.await`
    /// (catch-up and replication are network calls), hence tokio's mutex.
    log: tokio::sync::Mutex<()>,
    /// Snapshot for readers; a std mutex because it is never held across `.await`.
    leadership: Mutex<Leadership>,
    /// Every other replica.
    peers: Vec<(u32, Url)>,
    client: OrderClient,
    timeouts: Timeouts,
    /// Newest order known durable on this replica's leader and every follower the
    /// leader waits for; reads above it are not answered. A watch so that a read can
    /// wait for it to move.
    commit: watch::Sender<Option<u64>>,
    /// As leader: followers that missed a deadline; batches do not wait for them until
    /// a heartbeat finds them synced back. A std mutex: held only to read or edit.
    lagging: Mutex<BTreeSet<u32>>,
    /// As leader: the newest order each follower reported holding, for its lag.
    reported: Mutex<BTreeMap<u32, Option<u64>>>,
    /// Wakes the heartbeat task at once (after a promotion).
    beat_now: Notify,
}

/// Proof that the caller holds the log lock.
pub type LogGuard<'a> = MutexGuard<'a, ()>;

fn peer_error(e: PeerError) -> OrderError {
    OrderError::Peer(e)
}

/// How up to date a history is: epoch of its newest order, then its length.
fn freshness(last_epoch: Option<u64>, last_order: Option<u64>) -> (u64, u64) {
    (
        last_epoch.unwrap_or(0),
        last_order.map_or(0, |n| n.saturating_add(1)),
    )
}

impl Replica {
    pub fn new(
        id: u32,
        store: Store,
        peers: Vec<(u32, Url)>,
        client: OrderClient,
        timeouts: Timeouts,
    ) -> Result<Self, OrderError> {
        let (epoch, leader) = store.epoch()?;
        // A leader remembered for an id that is no longer configured is forgotten.
        let leader = leader.filter(|l| *l == id || peers.iter().any(|(p, _)| p == l));
        Ok(Replica {
            inner: Arc::new(Inner {
                id,
                store,
                log: tokio::sync::Mutex::new(()),
                leadership: Mutex::new(Leadership {
                    role: Role::Follower,
                    epoch,
                    leader,
                    ready: false,
                }),
                peers,
                client,
                timeouts,
                commit: watch::Sender::new(None),
                lagging: Mutex::new(BTreeSet::new()),
                reported: Mutex::new(BTreeMap::new()),
                beat_now: Notify::new(),
            }),
        })
    }

    pub fn timeouts(&self) -> Timeouts {
        self.inner.timeouts
    }

    /// The commit index (see `Inner::commit`).
    pub fn commit(&self) -> Option<u64> {
        *self.inner.commit.borrow()
    }

    /// Raises the commit index to `upto` (never lowers it).
    pub fn advance_commit(&self, upto: Option<u64>) {
        self.inner.commit.send_if_modified(|c| {
            if upto > *c {
                *c = upto;
                true
            } else {
                false
            }
        });
    }

    /// After history was dropped: the commit index cannot point past what is held.
    fn clamp_commit(&self, last: Option<u64>) {
        self.inner.commit.send_if_modified(|c| {
            if *c > last {
                *c = last;
                true
            } else {
                false
            }
        });
    }

    /// Waits up to the read wait for order `n` to be committed; returns whether it is.
    pub async fn committed(&self, n: u64) -> bool {
        let mut rx = self.inner.commit.subscribe();
        let waited = tokio::time::timeout(
            self.inner.timeouts.read_wait,
            rx.wait_for(|c| c.is_some_and(|c| c >= n)),
        )
        .await;
        matches!(waited, Ok(Ok(_)))
    }

    /// Followers the leader is not waiting for.
    pub fn lagging(&self) -> BTreeSet<u32> {
        self.inner
            .lagging
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks follower `id` lagging (true) or synced back (false); returns whether that
    /// changed anything.
    pub fn set_lagging(&self, id: u32, lagging: bool) -> bool {
        let mut set = self.inner.lagging.lock().unwrap_or_else(|p| p.into_inner());
        let changed = if lagging {
            set.insert(id)
        } else {
            set.remove(&id)
        };
        metrics::gauge!("follower_lagging", "follower" => id.to_string()).set(if lagging {
            1.0
        } else {
            0.0
        });
        if changed {
            if lagging {
                tracing::warn!(
                    peer = id,
                    "follower lagging: not waiting for it until it syncs back"
                );
            } else {
                tracing::info!(peer = id, "follower synced back");
            }
        }
        changed
    }

    /// As leader: notes the newest order of each follower in `heard` (those that just
    /// answered), and sets `follower_lag_orders{follower}` to how many orders each
    /// follower it has heard from is behind `end`, this replica's newest order. A
    /// follower that does not answer keeps the position it last reported, so its lag
    /// grows as the leader writes.
    pub fn record_lag(&self, end: Option<u64>, heard: &[(u32, Option<u64>)]) {
        let count = |last: Option<u64>| last.map_or(0, |n| n.saturating_add(1));
        let mut reported = self
            .inner
            .reported
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        reported.extend(heard.iter().copied());
        for (follower, last) in reported.iter() {
            let behind = count(end).saturating_sub(count(*last));
            metrics::gauge!("follower_lag_orders", "follower" => follower.to_string())
                .set(behind as f64);
        }
    }

    /// No longer leading: the followers' positions are not ours to report any more, so
    /// their lag gauges go to 0 (once) rather than keep the values of our time as leader.
    fn forget_lag(&self) {
        let mut reported = self
            .inner
            .reported
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for follower in std::mem::take(&mut *reported).into_keys() {
            metrics::gauge!("follower_lag_orders", "follower" => follower.to_string()).set(0.0);
        }
    }

    /// Resolves when a heartbeat should go out at once.
    pub async fn beat_requested(&self) {
        self.inner.beat_now.notified().await
    }

    /// Checks a leadership claim from a peer before anything is changed: the leader
    /// must be a configured replica, and the epoch must not jump absurdly far.
    pub fn check_claim(&self, leader: u32, epoch: u64) -> Result<(), OrderError> {
        if leader != self.inner.id && self.peer_url(leader).is_none() {
            return Err(OrderError::BadRequest(format!(
                "replica {leader} is not in this cluster's configuration"
            )));
        }
        let mine = self.leadership().epoch;
        if epoch > mine.saturating_add(MAX_EPOCH_STEP) {
            return Err(OrderError::BadRequest(format!(
                "epoch {epoch} is absurdly far ahead of this replica's {mine}"
            )));
        }
        Ok(())
    }

    pub fn id(&self) -> u32 {
        self.inner.id
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn client(&self) -> &OrderClient {
        &self.inner.client
    }

    pub fn peers(&self) -> &[(u32, Url)] {
        &self.inner.peers
    }

    /// Takes the log lock (see the module docs).
    pub async fn lock_log(&self) -> LogGuard<'_> {
        self.inner.log.lock().await
    }

    pub fn leadership(&self) -> Leadership {
        *self
            .inner
            .leadership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn set_leadership(&self, _log: &LogGuard<'_>, value: Leadership) {
        *self
            .inner
            .leadership
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = value;
    }

    /// What `GET /health` reports.
    pub fn status(&self) -> Result<ReplicaStatus, OrderError> {
        let l = self.leadership();
        if l.role != Role::Leader {
            self.forget_lag();
        }
        let last = self.inner.store.last()?;
        Ok(ReplicaStatus {
            id: self.inner.id,
            mode: Replication::PrimaryBackup,
            role: l.role,
            ready: l.ready,
            epoch: l.epoch,
            leader: l.leader,
            last_order: last.as_ref().map(|r| r.number),
            last_epoch: last.as_ref().map(|r| r.epoch),
            orders: self.inner.store.count(),
            digest: self.inner.store.digest(),
            commit: self.commit(),
            lagging: if l.role == Role::Leader {
                self.lagging().into_iter().collect()
            } else {
                Vec::new()
            },
            term: None,
            commit_index: None,
            applied_index: None,
        })
    }

    fn peer_url(&self, id: u32) -> Option<&Url> {
        self.inner
            .peers
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, u)| u)
    }

    /// Accepts `epoch` as the newest one, durably, or refuses an older one.
    async fn adopt_epoch(
        &self,
        log: &LogGuard<'_>,
        epoch: u64,
        leader: u32,
    ) -> Result<Leadership, OrderError> {
        // Two leaders claiming one epoch: only the first one counts.
        self.check_epoch(epoch, leader)?;
        let current = self.leadership();
        if epoch > current.epoch || current.leader.is_none() {
            self.inner.store.set_epoch(epoch, leader)?;
            self.inner.store.flush().await?;
        }
        // A new epoch or a new leader resets the role; the notice handler then
        // promotes this replica if it is the one named.
        let unchanged = epoch == current.epoch && current.leader == Some(leader);
        let updated = if unchanged {
            current
        } else {
            Leadership {
                role: Role::Follower,
                epoch,
                leader: Some(leader),
                ready: current.ready,
            }
        };
        self.set_leadership(log, updated);
        Ok(updated)
    }

    /// Handles a leader notice from the front-end.
    pub async fn on_notice(&self, notice: LeaderNotice) -> Result<ReplicaStatus, OrderError> {
        self.check_claim(notice.leader_id, notice.epoch)?;
        let log = self.lock_log().await;
        let before = self.leadership();
        let now = self
            .adopt_epoch(&log, notice.epoch, notice.leader_id)
            .await?;
        if notice.leader_id == self.inner.id {
            if !now.accepts_writes() {
                let silent = match self.promotion_sync(&log).await {
                    Ok(silent) => silent,
                    Err(e) => {
                        tracing::warn!(error = %e, "refusing leadership");
                        return Err(e);
                    }
                };
                // A new term starts out waiting for every follower that answered the
                // promotion, and with the commit index where the last leader's heartbeat
                // left it: what this replica holds beyond it is committed once its first
                // heartbeat round is done.
                if !silent.is_empty() {
                    tracing::warn!(?silent, "peers did not answer the promotion: lagging");
                }
                *self.inner.lagging.lock().unwrap_or_else(|p| p.into_inner()) = silent;
                self.set_leadership(
                    &log,
                    Leadership {
                        role: Role::Leader,
                        ready: true,
                        ..now
                    },
                );
                self.inner.beat_now.notify_one();
                tracing::info!(epoch = notice.epoch, "now the leader");
            }
        } else {
            if before.leader != Some(notice.leader_id) || before.epoch != notice.epoch {
                tracing::info!(leader = notice.leader_id, epoch = notice.epoch, "following");
            }
            if let Some(url) = self.peer_url(notice.leader_id).cloned() {
                if let Err(e) = self.sync_from(&log, &url).await {
                    tracing::warn!(error = %e, "could not sync from the new leader");
                }
            }
            self.set_leadership(&log, Leadership { ready: true, ..now });
        }
        drop(log);
        self.status()
    }

    /// Checks a replication batch completely before anything is changed: a known
    /// leader other than this replica, a sane epoch, and entries that could be a
    /// leader's history (consecutive numbers after `prev`, no epoch newer than the
    /// batch's, names and keys of sane size, positive quantities).
    fn check_batch(&self, batch: &Replicate) -> Result<(), OrderError> {
        if batch.leader_id == self.inner.id {
            return Err(OrderError::BadRequest(
                "a replica cannot replicate to itself".into(),
            ));
        }
        self.check_claim(batch.leader_id, batch.epoch)?;
        if batch.entries.len() > MAX_BATCH_ENTRIES {
            return Err(OrderError::BadRequest(format!(
                "a batch holds at most {MAX_BATCH_ENTRIES} orders"
            )));
        }
        let first = batch
            .prev
            .as_ref()
            .map_or(Some(0), |p| p.number.checked_add(1));
        let well_formed = batch
            .entries
            .first()
            .is_none_or(|e| Some(e.number) == first)
            && consecutive(&batch.entries)
            && batch.prev.as_ref().is_none_or(|p| p.epoch <= batch.epoch)
            && batch.entries.iter().all(|e| {
                e.epoch <= batch.epoch
                    && e.quantity > 0
                    && (1..=MAX_TEXT).contains(&e.name.len())
                    && (1..=MAX_TEXT).contains(&e.key.len())
            });
        if !well_formed {
            return Err(OrderError::BadRequest(
                "malformed batch: entries must follow prev, one number apart, with no \
                 epoch newer than the batch's"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Handles a replication batch (or an empty heartbeat) from the leader. Validates
    /// it, then applies it if it follows this replica's history; otherwise, once the
    /// leader has confirmed its claim, syncs from it. The leader's epoch is adopted
    /// only when the batch is taken, so a refused message changes nothing.
    pub async fn on_replicate(&self, batch: Replicate) -> Result<Persisted, OrderError> {
        self.check_batch(&batch)?;
        // A replica still catching up answers at once (the leader skips it) rather than
        // making the leader wait for its lock; its catch-up brings it up to date.
        let current = self.leadership();
        if !current.ready {
            return Err(OrderError::NotReady);
        }
        // Refuse a deposed leader at once too, without waiting for the lock: its writer
        // may be waiting on ours while we (as new leader) wait on it.
        if batch.epoch < current.epoch {
            return Err(OrderError::StaleEpoch {
                mine: current.epoch,
                theirs: batch.epoch,
            });
        }
        let log = self.lock_log().await;
        self.check_epoch(batch.epoch, batch.leader_id)?;
        let store = &self.inner.store;
        let follows = match &batch.prev {
            None => true,
            Some(prev) => store.holds(prev)?,
        };
        // The newest order of the leader's history this replica now holds as well.
        let end;
        if follows {
            self.adopt_epoch(&log, batch.epoch, batch.leader_id).await?;
            let change = store.append(&batch.entries)?;
            let mut dropped = change.removed.len();
            // Orders beyond the leader's newest one that a previous leader wrote (an
            // older epoch) are not in the leader's history: drop them, so that even an
            // empty heartbeat repairs an ex-leader's tail. (Orders of the leader's own
            // epoch beyond it cannot exist: it sends its batches in order.)
            end = batch
                .entries
                .last()
                .map(|e| e.number)
                .or(batch.prev.as_ref().map(|p| p.number));
            if store
                .last()?
                .is_some_and(|r| Some(r.number) > end && r.epoch < batch.epoch)
            {
                dropped += store.truncate_after(end)?.len();
            }
            if dropped > 0 {
                tracing::warn!(dropped, "dropped a tail the leader does not have");
            }
            store.flush().await?;
            log_replicated(&batch);
        } else {
            let url = self
                .peer_url(batch.leader_id)
                .cloned()
                .ok_or_else(|| OrderError::BadRequest("unknown leader".into()))?;
            // Take nothing from a claimed leader before it confirms the claim itself.
            let claim = self
                .inner
                .client
                .status_within(&url, self.inner.timeouts.status)
                .await
                .map_err(peer_error)?;
            if claim.role != Role::Leader || claim.epoch != batch.epoch {
                return Err(OrderError::Unconfirmed(format!(
                    "replica {} does not confirm leading epoch {}",
                    batch.leader_id, batch.epoch
                )));
            }
            self.adopt_epoch(&log, batch.epoch, batch.leader_id).await?;
            tracing::info!(
                leader = batch.leader_id,
                "batch does not follow my history; syncing"
            );
            self.sync_from(&log, &url).await?;
            end = store.last()?.map(|r| r.number);
        }
        self.clamp_commit(store.last()?.map(|r| r.number));
        self.advance_commit(batch.commit.min(end));
        Ok(Persisted {
            last_order: store.last()?.map(|r| r.number),
        })
    }

    /// Refuses a claim from an older epoch, or a second leader for the same epoch.
    fn check_epoch(&self, epoch: u64, leader: u32) -> Result<(), OrderError> {
        let current = self.leadership();
        let second_leader = epoch == current.epoch && current.leader.is_some_and(|l| l != leader);
        if epoch < current.epoch || second_leader {
            return Err(OrderError::StaleEpoch {
                mine: current.epoch,
                theirs: epoch,
            });
        }
        Ok(())
    }

    /// Steps down after a follower refused this leader's epoch.
    pub fn step_down(&self, log: &LogGuard<'_>) {
        let current = self.leadership();
        self.set_leadership(
            log,
            Leadership {
                role: Role::Follower,
                leader: None,
                ..current
            },
        );
        tracing::warn!(epoch = current.epoch, "a newer leader exists; stepped down");
    }

    /// Statuses of every peer that answers within `timeout`.
    async fn peer_statuses(&self, timeout: Duration) -> Vec<(Url, ReplicaStatus)> {
        let mut set = tokio::task::JoinSet::new();
        for (_, url) in &self.inner.peers {
            let client = self.inner.client.clone();
            let url = url.clone();
            set.spawn(async move { client.status_within(&url, timeout).await.map(|s| (url, s)) });
        }
        let mut out = Vec::new();
        while let Some(done) = set.join_next().await {
            if let Ok(Ok(status)) = done {
                out.push(status);
            }
        }
        out
    }

    /// Before leading: take the history of the most up-to-date reachable peer if it is
    /// ahead of ours. Fails (and this replica must not lead) when such a peer exists
    /// but its history could not be taken.
    /// Returns the peers that did not answer: the new leader starts out not waiting
    /// for them (they are lagging until a heartbeat finds them back), so a peer that
    /// stalled or was cut off costs the promotion's status timeout, not a replication
    /// timeout on top of it.
    async fn promotion_sync(&self, log: &LogGuard<'_>) -> Result<BTreeSet<u32>, OrderError> {
        let last = self.inner.store.last()?;
        let mine = freshness(
            last.as_ref().map(|r| r.epoch),
            last.as_ref().map(|r| r.number),
        );
        let statuses = self.peer_statuses(self.inner.timeouts.status).await;
        let silent: BTreeSet<u32> = self
            .inner
            .peers
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| statuses.iter().all(|(_, s)| s.id != *id))
            .collect();
        let Some(best) = statuses
            .iter()
            .map(|(_, s)| freshness(s.last_epoch, s.last_order))
            .max()
            .filter(|best| *best > mine)
        else {
            return Ok(silent);
        };
        for (url, status) in statuses
            .iter()
            .filter(|(_, s)| freshness(s.last_epoch, s.last_order) == best)
        {
            match self.sync_from(log, url).await {
                Ok(()) => {
                    tracing::info!(
                        peer = status.id,
                        "took the newer history of a peer before leading"
                    );
                    return Ok(silent);
                }
                Err(e) => tracing::warn!(peer = status.id, error = %e, "sync from peer failed"),
            }
        }
        Err(OrderError::CannotLead(
            "a peer holds a newer history that could not be taken".into(),
        ))
    }

    /// Catch-up at start: sync from the leader (or the most up-to-date peer), then
    /// report ready. Retries a few times if the source fails midway.
    pub async fn catch_up(&self) {
        for attempt in 0..5 {
            let log = self.lock_log().await;
            if self.leadership().ready {
                return; // a leader notice got here first and synced us
            }
            let statuses = self.peer_statuses(self.inner.timeouts.status).await;
            let mine = match self.inner.store.last() {
                Ok(last) => freshness(
                    last.as_ref().map(|r| r.epoch),
                    last.as_ref().map(|r| r.number),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read own history");
                    break;
                }
            };
            let leader = statuses
                .iter()
                .filter(|(_, s)| s.role == Role::Leader && s.ready)
                .max_by_key(|(_, s)| s.epoch);
            let source = match leader {
                Some((url, s)) => {
                    let adopted = match self.check_claim(s.id, s.epoch) {
                        Ok(()) => self.adopt_epoch(&log, s.epoch, s.id).await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    match adopted {
                        Ok(()) => Some((url.clone(), s.id)),
                        Err(e) => {
                            tracing::warn!(peer = s.id, error = %e, "peer's leadership claim refused");
                            None
                        }
                    }
                }
                None => statuses
                    .iter()
                    .filter(|(_, s)| freshness(s.last_epoch, s.last_order) > mine)
                    .max_by_key(|(_, s)| freshness(s.last_epoch, s.last_order))
                    .map(|(url, s)| (url.clone(), s.id)),
            };
            let Some((url, peer)) = source else { break };
            match self.sync_from(&log, &url).await {
                Ok(()) => {
                    tracing::info!(peer, "caught up");
                    break;
                }
                Err(e) => {
                    tracing::warn!(peer, attempt, error = %e, "catch-up failed; retrying");
                    drop(log);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        // Batches the leader sent while we caught up were refused (421) and skipped. Under
        // the lock, become ready — later batches wait for the lock — and take once more
        // whatever the leader stored in between.
        let log = self.lock_log().await;
        let current = self.leadership();
        self.set_leadership(
            &log,
            Leadership {
                ready: true,
                ..current
            },
        );
        if let Some(url) = current
            .leader
            .filter(|l| *l != self.inner.id)
            .and_then(|l| self.peer_url(l).cloned())
        {
            if let Err(e) = self.sync_from(&log, &url).await {
                tracing::warn!(error = %e, "final sync from the leader failed");
            }
        }
        tracing::info!(orders = self.inner.store.count(), "ready");
    }

    /// Makes this replica's history equal to `peer`'s: finds the newest order both hold
    /// identically (walking back page by page), takes every order after it from the
    /// peer, and drops whatever it holds beyond the peer's history.
    pub async fn sync_from(&self, _log: &LogGuard<'_>, peer: &Url) -> Result<(), OrderError> {
        let store = &self.inner.store;
        let client = &self.inner.client;

        let mut common: Option<u64> = None;
        if let Some(last) = store.last()? {
            let mut end = last.number;
            let mut size = 16;
            loop {
                let start = end.saturating_sub(size - 1);
                let page = client
                    .log_page(peer, start, end - start + 1)
                    .await
                    .map_err(peer_error)?;
                let theirs: HashMap<u64, &OrderRecord> =
                    page.entries.iter().map(|r| (r.number, r)).collect();
                for n in (start..=end).rev() {
                    let (Some(t), Some(m)) = (theirs.get(&n), store.order(n)?) else {
                        continue;
                    };
                    if m.same_write(t) {
                        common = Some(n);
                        break;
                    }
                }
                if common.is_some() || start == 0 {
                    break;
                }
                end = start - 1;
                size = (size * 4).min(PAGE);
            }
        }

        let mut from = common.map_or(0, |c| c.saturating_add(1));
        let mut taken = 0usize;
        let mut dropped = 0usize;
        loop {
            let page = client
                .log_page(peer, from, PAGE)
                .await
                .map_err(peer_error)?;
            let Some(last) = page.entries.last() else {
                break;
            };
            if page.entries[0].number != from || !consecutive(&page.entries) {
                return Err(peer_error(PeerError::Status {
                    status: reqwest::StatusCode::BAD_GATEWAY,
                    message: format!("peer history has a gap after order {from}"),
                }));
            }
            let next = last.number.saturating_add(1);
            let change = store.append(&page.entries)?;
            taken += change.written;
            dropped += change.removed.len();
            from = next;
        }
        dropped += store.truncate_after(from.checked_sub(1))?.len();
        store.flush().await?;
        self.clamp_commit(store.last()?.map(|r| r.number));
        if taken > 0 || dropped > 0 {
            tracing::info!(taken, dropped, "synced history from {peer}");
        }
        Ok(())
    }
}

/// True when the records' numbers follow each other without gaps.
fn consecutive(entries: &[OrderRecord]) -> bool {
    entries
        .windows(2)
        .all(|w| w[0].number.checked_add(1) == Some(w[1].number))
}

/// One line per order a leader's batch brought, under its request's id (see
/// `common::trace`).
fn log_replicated(batch: &Replicate) {
    let ids = batch
        .request_ids
        .iter()
        .map(Option::as_ref)
        .chain(std::iter::repeat(None));
    for (order, id) in batch.entries.iter().zip(ids) {
        tracing::info!(
            order = order.number,
            toy = %order.name,
            request_id = id.map(tracing::field::display),
            "order replicated"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use common::client::ClusterClient;
    use common::wire::LogPos;

    fn rec(number: u64, epoch: u64) -> OrderRecord {
        OrderRecord {
            number,
            name: "Tux".into(),
            quantity: 1,
            key: format!("k{number}-{epoch}"),
            epoch,
            time: 1,
        }
    }

    /// A replica with no peers, caught up (so ready), holding `orders`.
    async fn replica(orders: &[OrderRecord]) -> (tempfile::TempDir, Replica) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.append(orders).expect("append");
        let client = OrderClient::new(ClusterClient::new("t", Default::default()).expect("client"));
        // Replicas 2 and 3 are the leaders the tests' batches name; nothing listens at
        // their address (port 9, discard), so contacting them fails at once.
        let nowhere = Url::parse("http://127.0.0.1:9").expect("url");
        let peers = vec![(2, nowhere.clone()), (3, nowhere)];
        let replica = Replica::new(1, store, peers, client, Timeouts::default()).expect("replica");
        replica.catch_up().await;
        (dir, replica)
    }

    fn heartbeat(epoch: u64, prev: Option<&OrderRecord>) -> Replicate {
        Replicate {
            leader_id: 2,
            epoch,
            prev: prev.map(LogPos::from),
            entries: Vec::new(),
            commit: None,
            request_ids: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_heartbeat_drops_an_older_leaders_tail() {
        let (_dir, replica) = replica(&[rec(0, 1), rec(1, 1), rec(2, 1)]).await;
        replica
            .on_replicate(heartbeat(2, Some(&rec(0, 1))))
            .await
            .expect("heartbeat");
        assert_eq!(replica.store().count(), 1);
        assert_eq!(replica.store().last().expect("read"), Some(rec(0, 1)));
    }

    #[tokio::test]
    async fn a_heartbeat_keeps_what_the_leader_has() {
        let (_dir, replica) = replica(&[rec(0, 1), rec(1, 2)]).await;
        replica
            .on_replicate(heartbeat(2, Some(&rec(1, 2))))
            .await
            .expect("heartbeat");
        assert_eq!(replica.store().count(), 2);
    }

    #[tokio::test]
    async fn a_deposed_leaders_batch_is_refused_and_changes_nothing() {
        let (_dir, replica) = replica(&[rec(0, 1)]).await;
        replica
            .on_replicate(heartbeat(3, Some(&rec(0, 1))))
            .await
            .expect("newer leader");
        let stale = Replicate {
            leader_id: 3,
            epoch: 2,
            prev: Some(LogPos::from(&rec(0, 1))),
            entries: vec![rec(1, 2)],
            commit: None,
            request_ids: Vec::new(),
        };
        assert!(matches!(
            replica.on_replicate(stale).await,
            Err(OrderError::StaleEpoch { mine: 3, theirs: 2 })
        ));
        assert_eq!(replica.store().count(), 1);
        assert_eq!(replica.leadership().epoch, 3);
    }

    #[tokio::test]
    async fn a_batch_that_follows_is_appended() {
        let (_dir, replica) = replica(&[rec(0, 1)]).await;
        let batch = Replicate {
            leader_id: 2,
            epoch: 1,
            prev: Some(LogPos::from(&rec(0, 1))),
            entries: vec![rec(1, 1), rec(2, 1)],
            commit: None,
            request_ids: Vec::new(),
        };
        let persisted = replica.on_replicate(batch).await.expect("append");
        assert_eq!(persisted.last_order, Some(2));
        assert_eq!(replica.store().count(), 3);
    }

    #[tokio::test]
    async fn a_notice_naming_an_unknown_replica_or_an_absurd_epoch_changes_nothing() {
        let (_dir, replica) = replica(&[rec(0, 1)]).await;
        let before = replica.leadership();
        for notice in [
            LeaderNotice {
                leader_id: 9,
                epoch: 2,
            },
            LeaderNotice {
                leader_id: 2,
                epoch: u64::MAX,
            },
            LeaderNotice {
                leader_id: 2,
                epoch: MAX_EPOCH_STEP + 1,
            },
        ] {
            assert!(matches!(
                replica.on_notice(notice).await,
                Err(OrderError::BadRequest(_))
            ));
        }
        assert_eq!(replica.leadership(), before);
        assert_eq!(replica.store().epoch().expect("epoch"), (0, None));
    }

    #[tokio::test]
    async fn a_batch_from_an_unreachable_leader_that_does_not_follow_changes_nothing() {
        let (_dir, replica) = replica(&[rec(0, 1)]).await;
        let before = replica.leadership();
        let batch = Replicate {
            leader_id: 2,
            epoch: 5,
            prev: Some(LogPos::from(&rec(3, 4))),
            entries: vec![rec(4, 5)],
            commit: Some(4),
            request_ids: Vec::new(),
        };
        let refused = replica.on_replicate(batch).await;
        assert!(matches!(refused, Err(OrderError::Peer(_))), "{refused:?}");
        assert_eq!(
            refused.map_err(|e| e.status()).err(),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(replica.leadership(), before);
        assert_eq!(replica.store().count(), 1);
        assert_eq!(replica.commit(), None);
    }

    #[tokio::test]
    async fn malformed_batches_are_refused_before_anything_changes() {
        let (_dir, replica) = replica(&[rec(0, 1)]).await;
        let base = Replicate {
            leader_id: 2,
            epoch: 2,
            prev: Some(LogPos::from(&rec(0, 1))),
            entries: vec![rec(1, 2)],
            commit: None,
            request_ids: Vec::new(),
        };
        let bad = [
            Replicate {
                leader_id: 1,
                ..base.clone()
            },
            Replicate {
                leader_id: 7,
                ..base.clone()
            },
            Replicate {
                entries: vec![rec(2, 2)],
                ..base.clone()
            },
            Replicate {
                entries: vec![rec(1, 3)],
                ..base.clone()
            },
            Replicate {
                entries: vec![rec(1, 2), rec(3, 2)],
                ..base.clone()
            },
            Replicate {
                epoch: u64::MAX,
                entries: vec![],
                ..base.clone()
            },
        ];
        for batch in bad {
            assert!(matches!(
                replica.on_replicate(batch).await,
                Err(OrderError::BadRequest(_))
            ));
        }
        assert_eq!(replica.leadership().epoch, 0);
        assert_eq!(replica.store().count(), 1);
    }

    #[tokio::test]
    async fn a_follower_learns_the_commit_index_up_to_what_it_holds() {
        let (_dir, replica) = replica(&[rec(0, 1)]).await;
        let batch = Replicate {
            leader_id: 2,
            epoch: 1,
            prev: Some(LogPos::from(&rec(0, 1))),
            entries: vec![rec(1, 1)],
            commit: Some(0),
            request_ids: Vec::new(),
        };
        replica.on_replicate(batch).await.expect("append");
        assert_eq!(replica.commit(), Some(0));
        let ahead = Replicate {
            leader_id: 2,
            epoch: 1,
            prev: Some(LogPos::from(&rec(1, 1))),
            entries: vec![],
            commit: Some(9),
            request_ids: Vec::new(),
        };
        replica.on_replicate(ahead).await.expect("heartbeat");
        assert_eq!(replica.commit(), Some(1));
    }
}
