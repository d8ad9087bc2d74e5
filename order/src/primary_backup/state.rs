//! Primary-backup mode's shared state, and the rules every change of it obeys.
//!
//! One async lock (`log`) serialises every change to the history, the epoch and the
//! role, whoever makes it (the leader's writer task, a replication batch, a catch-up,
//! a leader notice). Readers (`/health`, `GET /orders`, catch-up pages served to
//! peers) read sled and a small snapshot without it.
//!
//! The rules shared by every change (the rest are in `notice`, `follower`,
//! `catch_up`, `leader` and `heartbeat`; docs/DESIGN.md says why they keep every
//! acknowledged order):
//! - Validate, then change: a leadership claim naming a replica outside the
//!   configuration, or an epoch more than [`MAX_EPOCH_STEP`] ahead, is refused before
//!   anything is stored or adopted.
//! - Every order carries the epoch of the leader that wrote it; a replica refuses
//!   leadership and replication messages from an epoch older than its own, and a
//!   second leader for the epoch it holds.
//! - The commit index is the newest order durable on the leader and every follower it
//!   waits for (followers learn it from the leader); only orders up to it are read.
//! - A replica whose own storage fails stops for good (`Replica::storage_failed`):
//!   not ready, no longer leading, and its process exits; it catches up when started
//!   again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::client::{OrderClient, PeerError};
use common::domain::{Epoch, OrderNumber, ReplicaId};
use common::error::chain;
use common::tasks::Tasks;
use common::wire::{LogPos, ReplicaStatus, Replicate, Replication, Role};
use reqwest::Url;
use tokio::sync::{watch, MutexGuard, Notify};

use crate::config::Timeouts;
use crate::error::OrderError;
use crate::store::Store;

/// Furthest a leadership epoch may jump ahead of the one a replica holds. Real
/// selections move it by a few; a message that jumps further is refused, so that no
/// peer can push an epoch to the end of its range and wedge the cluster.
pub const MAX_EPOCH_STEP: u64 = 1 << 20;

/// Who leads, as this replica knows it. Changed only while the log lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub role: Role,
    pub epoch: Epoch,
    pub leader: Option<ReplicaId>,
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
    pub(super) inner: Arc<Inner>,
}

/// The replica's state; the mode's other files read and change it under the rules
/// above (hence `pub(super)`).
pub(super) struct Inner {
    pub(super) id: ReplicaId,
    pub(super) store: Store,
    /// Serialises every change of history, epoch and role; held across `.await`
    /// (catch-up and replication are network calls), hence tokio's mutex.
    pub(super) log: tokio::sync::Mutex<()>,
    /// Snapshot for readers; a std mutex because it is never held across `.await`.
    pub(super) leadership: Mutex<Leadership>,
    /// Every other replica.
    pub(super) peers: Vec<(ReplicaId, Url)>,
    pub(super) client: OrderClient,
    pub(super) timeouts: Timeouts,
    /// Newest order known durable on this replica's leader and every follower the
    /// leader waits for; reads above it are not answered. A watch so that a read can
    /// wait for it to move.
    pub(super) commit: watch::Sender<Option<OrderNumber>>,
    /// As leader: followers that missed a deadline; batches do not wait for them until
    /// a heartbeat finds them synced back. A std mutex: held only to read or edit.
    pub(super) lagging: Mutex<BTreeSet<ReplicaId>>,
    /// As leader: the newest order each follower reported holding, for its lag.
    pub(super) reported: Mutex<BTreeMap<ReplicaId, Option<OrderNumber>>>,
    /// Wakes the heartbeat task at once (after a promotion).
    pub(super) beat_now: Notify,
    /// The replica's lifecycle: a failure of its own storage stops it through this.
    pub(super) tasks: Tasks,
}

/// Proof that the caller holds the log lock.
pub type LogGuard<'a> = MutexGuard<'a, ()>;

pub(super) fn peer_error(e: PeerError) -> OrderError {
    OrderError::Peer(e)
}

/// How up to date a history is: epoch of its newest order, then its length.
pub(super) fn freshness(
    last_epoch: Option<Epoch>,
    last_order: Option<OrderNumber>,
) -> (Epoch, u64) {
    (
        last_epoch.unwrap_or_default(),
        OrderNumber::count_through(last_order),
    )
}

impl Replica {
    pub fn new(
        id: ReplicaId,
        store: Store,
        peers: Vec<(ReplicaId, Url)>,
        client: OrderClient,
        timeouts: Timeouts,
        tasks: &Tasks,
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
                tasks: tasks.clone(),
            }),
        })
    }

    pub fn timeouts(&self) -> Timeouts {
        self.inner.timeouts
    }

    /// The commit index (see `Inner::commit`).
    pub fn commit(&self) -> Option<OrderNumber> {
        *self.inner.commit.borrow()
    }

    /// Raises the commit index to `upto` (never lowers it).
    pub fn advance_commit(&self, upto: Option<OrderNumber>) {
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
    pub(super) fn clamp_commit(&self, last: Option<OrderNumber>) {
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
    pub async fn committed(&self, n: OrderNumber) -> bool {
        let mut rx = self.inner.commit.subscribe();
        let waited = tokio::time::timeout(
            self.inner.timeouts.read_wait,
            rx.wait_for(|c| c.is_some_and(|c| c >= n)),
        )
        .await;
        matches!(waited, Ok(Ok(_)))
    }

    /// Followers the leader is not waiting for.
    pub fn lagging(&self) -> BTreeSet<ReplicaId> {
        self.inner
            .lagging
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks follower `id` lagging (true) or synced back (false); returns whether that
    /// changed anything.
    pub fn set_lagging(&self, id: ReplicaId, lagging: bool) -> bool {
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
                    peer = %id,
                    "follower lagging: not waiting for it until it syncs back"
                );
            } else {
                tracing::info!(peer = %id, "follower synced back");
            }
        }
        changed
    }

    /// As leader: notes the newest order of each follower in `heard` (those that just
    /// answered), and sets `follower_lag_orders{follower}` to how many orders each
    /// follower it has heard from is behind `end`, this replica's newest order. A
    /// follower that does not answer keeps the position it last reported, so its lag
    /// grows as the leader writes.
    pub fn record_lag(&self, end: Option<OrderNumber>, heard: &[(ReplicaId, Option<OrderNumber>)]) {
        let count = OrderNumber::count_through;
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
    pub(super) fn forget_lag(&self) {
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
    pub fn check_claim(&self, leader: ReplicaId, epoch: Epoch) -> Result<(), OrderError> {
        if leader != self.inner.id && self.peer_url(leader).is_none() {
            return Err(OrderError::BadRequest(format!(
                "replica {leader} is not in this cluster's configuration"
            )));
        }
        let mine = self.leadership().epoch;
        if epoch.get() > mine.get().saturating_add(MAX_EPOCH_STEP) {
            return Err(OrderError::BadRequest(format!(
                "epoch {epoch} is absurdly far ahead of this replica's {mine}"
            )));
        }
        Ok(())
    }

    pub fn id(&self) -> ReplicaId {
        self.inner.id
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn client(&self) -> &OrderClient {
        &self.inner.client
    }

    pub fn peers(&self) -> &[(ReplicaId, Url)] {
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

    pub(super) fn set_leadership(&self, _log: &LogGuard<'_>, value: Leadership) {
        *self
            .inner
            .leadership
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = value;
    }

    /// An empty batch from this leader naming `prev` (its newest order) and its commit
    /// index: a heartbeat, or a confirmation that followers hold everything up to `prev`.
    pub fn empty_batch(&self, epoch: Epoch, prev: Option<LogPos>) -> Replicate {
        Replicate {
            leader_id: self.inner.id,
            epoch,
            prev,
            entries: Vec::new(),
            commit: self.commit(),
            request_ids: Vec::new(),
        }
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
            failure: self.inner.tasks.failure().map(str::to_string),
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

    pub(super) fn peer_url(&self, id: ReplicaId) -> Option<&Url> {
        self.inner
            .peers
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, u)| u)
    }

    /// Accepts `epoch` as the newest one, durably, or refuses an older one.
    pub(super) async fn adopt_epoch(
        &self,
        log: &LogGuard<'_>,
        epoch: Epoch,
        leader: ReplicaId,
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

    /// Refuses a claim from an older epoch, or a second leader for the same epoch.
    pub(super) fn check_epoch(&self, epoch: Epoch, leader: ReplicaId) -> Result<(), OrderError> {
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

    /// This replica's own storage failed with `error`: it steps down if it led, reports
    /// itself not ready with the reason, and stops for good ([`Tasks::fail`]; the
    /// process exits once its shutdown is done, and catches up when started again). A
    /// leader that cannot store cannot acknowledge; a follower that cannot store must
    /// be neither waited for nor made leader. Returns the answer for the request at
    /// hand: a 503, which a leader takes as "lagging" at once and the front-end as
    /// "choose another leader".
    pub(super) fn storage_failed(&self, log: &LogGuard<'_>, error: &OrderError) -> OrderError {
        let why = format!("storage failed: {}", chain(error));
        let current = self.leadership();
        self.set_leadership(
            log,
            Leadership {
                role: Role::Follower,
                leader: current.leader.filter(|l| *l != self.inner.id),
                ready: false,
                ..current
            },
        );
        self.inner.tasks.fail(why.clone());
        OrderError::Failed(why)
    }

    /// `result`, unless it is a failure of this replica's own storage: then the
    /// replica stops ([`Replica::storage_failed`]) and the caller is answered 503.
    pub(super) async fn unless_storage_failed<T>(
        &self,
        result: Result<T, OrderError>,
    ) -> Result<T, OrderError> {
        match result {
            Err(e @ OrderError::Storage(_)) => {
                let log = self.lock_log().await;
                Err(self.storage_failed(&log, &e))
            }
            other => other,
        }
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
        tracing::warn!(epoch = %current.epoch, "a newer leader exists; stepped down");
    }

    /// Statuses of every peer that answers within `timeout`.
    pub(super) async fn peer_statuses(&self, timeout: Duration) -> Vec<(Url, ReplicaStatus)> {
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
}
