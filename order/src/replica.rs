//! A replica's shared state and every rule that changes its history or leadership:
//! leader notices, replication from the leader, and catch-up from peers.
//!
//! One async lock (`log`) serialises every change to the history, the epoch and the
//! role, whoever makes it (the leader's writer task, a replication batch, a catch-up,
//! a leader notice). Readers (`/health`, `GET /orders`, catch-up pages served to
//! peers) read sled and a small snapshot without it.
//!
//! The rules (see docs/DESIGN.md for why they keep every acknowledged order):
//! - Every order carries the epoch of the leader that wrote it; a replica refuses
//!   leadership and replication messages from an epoch older than its own.
//! - A follower appends a batch only if it holds the entry just before it (`prev`);
//!   otherwise the leader's history wins: the follower syncs from the leader. Where an
//!   entry conflicts with what it holds, or it holds older-epoch orders beyond the
//!   leader's newest one, it drops its divergent tail.
//! - A replica made leader first syncs from the most up-to-date reachable peer
//!   (highest epoch of its newest order, then most orders), then accepts writes; if
//!   that fails, it refuses to lead.
//! - A replica that starts syncs from the leader if a peer says it leads, otherwise
//!   from the most up-to-date peer; then it reports itself ready and takes from the
//!   leader, once more, what it refused while catching up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::client::{OrderClient, PeerError};
use common::wire::{LeaderNotice, OrderRecord, Persisted, ReplicaStatus, Replicate, Role};
use reqwest::Url;
use tokio::sync::MutexGuard;

use crate::error::OrderError;
use crate::store::Store;

/// Orders per catch-up page.
const PAGE: u64 = 500;

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
}

/// Proof that the caller holds the log lock.
pub type LogGuard<'a> = MutexGuard<'a, ()>;

fn peer_error(e: PeerError) -> OrderError {
    match e {
        PeerError::Unreachable(m) => OrderError::Storage(format!("peer unreachable: {m}")),
        PeerError::Status { status, message } => {
            OrderError::Storage(format!("peer answered {status}: {message}"))
        }
    }
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
    ) -> Result<Self, OrderError> {
        let (epoch, leader) = store.epoch()?;
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
            }),
        })
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
        let last = self.inner.store.last()?;
        Ok(ReplicaStatus {
            id: self.inner.id,
            role: l.role,
            ready: l.ready,
            epoch: l.epoch,
            leader: l.leader,
            last_order: last.as_ref().map(|r| r.number),
            last_epoch: last.as_ref().map(|r| r.epoch),
            orders: self.inner.store.count(),
            digest: self.inner.store.digest(),
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
        let current = self.leadership();
        if epoch < current.epoch {
            return Err(OrderError::StaleEpoch {
                mine: current.epoch,
                theirs: epoch,
            });
        }
        if epoch == current.epoch && current.leader.is_some_and(|l| l != leader) {
            // Two leaders claiming one epoch: only the first one counted.
            return Err(OrderError::StaleEpoch {
                mine: current.epoch,
                theirs: epoch,
            });
        }
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
        let log = self.lock_log().await;
        let before = self.leadership();
        let now = self
            .adopt_epoch(&log, notice.epoch, notice.leader_id)
            .await?;
        if notice.leader_id == self.inner.id {
            if !now.accepts_writes() {
                if let Err(e) = self.promotion_sync(&log).await {
                    tracing::warn!(error = %e, "refusing leadership");
                    return Err(e);
                }
                self.set_leadership(
                    &log,
                    Leadership {
                        role: Role::Leader,
                        ready: true,
                        ..now
                    },
                );
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

    /// Handles a replication batch from the leader.
    pub async fn on_replicate(&self, batch: Replicate) -> Result<Persisted, OrderError> {
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
        if batch.leader_id == self.inner.id {
            return Err(OrderError::BadRequest(
                "a replica cannot replicate to itself".into(),
            ));
        }
        self.adopt_epoch(&log, batch.epoch, batch.leader_id).await?;
        let store = &self.inner.store;
        let follows = match &batch.prev {
            None => true,
            Some(prev) => store.holds(prev)?,
        };
        let first_is_next = batch.entries.first().is_none_or(|e| {
            Some(e.number)
                == batch
                    .prev
                    .as_ref()
                    .map_or(Some(0), |p| p.number.checked_add(1))
        });
        if follows && first_is_next && consecutive(&batch.entries) {
            let change = store.append(&batch.entries)?;
            let mut dropped = change.removed.len();
            // Orders beyond the leader's newest one that a previous leader wrote (an
            // older epoch) are not in the leader's history: drop them, so that even an
            // empty heartbeat repairs an ex-leader's tail. (Orders of the leader's own
            // epoch beyond it cannot exist: it sends its batches in order.)
            let end = batch
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
        } else {
            let url = self.peer_url(batch.leader_id).cloned().ok_or_else(|| {
                OrderError::BadRequest(format!("unknown leader {}", batch.leader_id))
            })?;
            tracing::info!(
                leader = batch.leader_id,
                "batch does not follow my history; syncing"
            );
            self.sync_from(&log, &url).await?;
        }
        Ok(Persisted {
            last_order: store.last()?.map(|r| r.number),
        })
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
    async fn promotion_sync(&self, log: &LogGuard<'_>) -> Result<(), OrderError> {
        let last = self.inner.store.last()?;
        let mine = freshness(
            last.as_ref().map(|r| r.epoch),
            last.as_ref().map(|r| r.number),
        );
        let statuses = self.peer_statuses(Duration::from_secs(3)).await;
        let Some(best) = statuses
            .iter()
            .map(|(_, s)| freshness(s.last_epoch, s.last_order))
            .max()
            .filter(|best| *best > mine)
        else {
            return Ok(());
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
                    return Ok(());
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
            let statuses = self.peer_statuses(Duration::from_secs(1)).await;
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
                Some((url, s)) => match self.adopt_epoch(&log, s.epoch, s.id).await {
                    Ok(_) => Some((url.clone(), s.id)),
                    Err(e) => {
                        tracing::warn!(peer = s.id, error = %e, "peer claims an old leadership");
                        None
                    }
                },
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
                return Err(OrderError::Storage(format!(
                    "peer history has a gap after order {from}"
                )));
            }
            let next = last.number.saturating_add(1);
            let change = store.append(&page.entries)?;
            taken += change.written;
            dropped += change.removed.len();
            from = next;
        }
        dropped += store.truncate_after(from.checked_sub(1))?.len();
        store.flush().await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use common::client::ClusterClient;
    use common::wire::LogPos;

    fn rec(number: u64, epoch: u64) -> OrderRecord {
        OrderRecord {
            number,
            name: "Tux".into(),
            quantity: 1,
            key: format!("k{number}-{epoch}"),
            epoch,
        }
    }

    /// A replica with no peers, caught up (so ready), holding `orders`.
    async fn replica(orders: &[OrderRecord]) -> (tempfile::TempDir, Replica) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.append(orders).expect("append");
        let client = OrderClient::new(ClusterClient::new("t").expect("client"));
        let replica = Replica::new(1, store, Vec::new(), client).expect("replica");
        replica.catch_up().await;
        (dir, replica)
    }

    fn heartbeat(epoch: u64, prev: Option<&OrderRecord>) -> Replicate {
        Replicate {
            leader_id: 2,
            epoch,
            prev: prev.map(LogPos::from),
            entries: Vec::new(),
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
        };
        let persisted = replica.on_replicate(batch).await.expect("append");
        assert_eq!(persisted.last_order, Some(2));
        assert_eq!(replica.store().count(), 3);
    }
}
