//! Leader selection and transparent failover for the order replicas.
//!
//! In Raft mode the replicas elect their leader themselves: "selection" is only
//! discovery — the replica that says it leads, at the highest term — and the
//! watcher re-discovers on every check, so a leader replaced by an election (paused,
//! or cut off from its followers) is left at once.
//!
//! Selection: ask every replica for its status. If one is a ready leader at the
//! highest epoch any replica knows, and it is not the leader that just failed, it is
//! followed as it is: another front-end (or this one, before a restart) chose it, and
//! the replicas' epochs decide. Otherwise the highest id that answers and is ready
//! becomes leader at `epoch = highest epoch seen + 1`. It is told first (it catches up
//! with its peers before it answers), then the others are told in the background.
//! Only one selection runs at a time here; a request that fails on a leader that
//! someone else has already replaced just uses the new one. So several front-ends
//! over one set of replicas never outbid each other's choice: each promotes only
//! when the leader at the highest epoch is gone or failing, and follows a newer
//! epoch as soon as it sees one (the watcher checks the leader's epoch). Two that
//! promote at once may name different leaders for one epoch; a replica takes only
//! the first claim of an epoch, so at most one of them can replicate, and the other
//! front-end follows it at its next selection.
//!
//! Failover: [`Leaders::call`] runs an operation on the leader; when the leader does
//! not answer, or answers "not leader", it re-selects and repeats the operation (the
//! caller makes it idempotent), with backoff, until it succeeds or the failover budget
//! — a hard deadline on every path, selections included — is spent. An attempt still
//! waiting on a leader that the watcher has meanwhile replaced (a stalled leader) is
//! abandoned and repeated on the new one at once.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::backoff::Backoff;
use common::client::{OrderClient, PeerError};
use common::config::Replicas;
use common::domain::{Epoch, ReplicaId};
use common::tasks::Tasks;
use common::wire::{LeaderNotice, ReplicaStatus, Replication, Role};
use reqwest::Url;
use tokio::sync::watch;

use crate::cache::Cache;
use crate::error::FrontendError;

/// How long a follower may take to sync from a new leader; selection itself waits
/// at most one status timeout for the followers, the rest happens in the background.
const FOLLOWER_NOTICE_TIMEOUT: Duration = Duration::from_secs(5);

/// The front-end's timeouts for talking to the replicas.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long one request may keep failing over.
    pub budget: Duration,
    /// Timeout of one status check.
    pub status: Duration,
    /// How often the watcher checks the leader.
    pub interval: Duration,
    /// How long a replica made leader may take to catch up before it answers.
    pub promotion: Duration,
}

/// The leader as the front-end knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Leader {
    pub id: ReplicaId,
    pub url: Url,
    pub epoch: Epoch,
}

/// Leader state and the replicas' addresses.
pub struct Leaders {
    /// How the replicas agree: whether this front-end makes leaders or finds them.
    mode: Replication,
    /// Set once a replica of another mode was reported (reported once).
    mode_mismatch: AtomicBool,
    replicas: Replicas,
    client: OrderClient,
    /// The current leader; a watch so that requests waiting on a leader that gets
    /// replaced can move on at once.
    current: watch::Sender<Option<Leader>>,
    /// Serialises selections (held across the notices, hence tokio's mutex).
    selecting: tokio::sync::Mutex<()>,
    /// Highest epoch this front-end has handed out, so that it never reuses one even
    /// if the replicas that saw it are down.
    issued: AtomicU64,
    timing: Timing,
    /// Tells whether this front-end hears the catalog (its lease is current): a
    /// leader that says "catalog unavailable" while we hear it is cut off itself.
    catalog: Arc<Cache>,
    /// The front-end's background tasks (follower notices run on them).
    tasks: Tasks,
    /// Stopped as soon as shutdown begins: a request in flight then stops failing
    /// over (503) instead of holding the drain up for the whole budget.
    closing: Tasks,
}

/// What one attempt of [`Leaders::call`] came to.
enum Attempt<T> {
    Done(Result<T, FrontendError>),
    Retry,
}

/// Among replica statuses, the ready leader at the highest term.
pub(crate) fn best_leader(
    statuses: &[(ReplicaId, ReplicaStatus)],
) -> Option<&(ReplicaId, ReplicaStatus)> {
    statuses
        .iter()
        .filter(|(_, s)| s.role == Role::Leader && s.ready)
        .max_by_key(|(_, s)| s.epoch)
}

/// True when a failure means "try another leader" rather than "tell the client".
fn worth_failing_over(e: &PeerError) -> bool {
    match e {
        PeerError::Unreachable(_) => true,
        PeerError::Status { status, .. } => {
            // 421: not the leader (or not ready); 500: storage failure; 502: a
            // follower could not store the order. In each case nothing was
            // acknowledged, and a new selection (which re-syncs everyone) may help.
            *status == StatusCode::MISDIRECTED_REQUEST
                || *status == StatusCode::INTERNAL_SERVER_ERROR
                || *status == StatusCode::BAD_GATEWAY
        }
    }
}

impl Leaders {
    pub fn new(
        mode: Replication,
        replicas: Replicas,
        client: OrderClient,
        timing: Timing,
        catalog: Arc<Cache>,
        tasks: Tasks,
        closing: Tasks,
    ) -> Self {
        Leaders {
            tasks,
            closing,
            mode,
            mode_mismatch: AtomicBool::new(false),
            replicas,
            client,
            current: watch::Sender::new(None),
            selecting: tokio::sync::Mutex::new(()),
            issued: AtomicU64::new(0),
            timing,
            catalog,
        }
    }

    pub fn current(&self) -> Option<Leader> {
        self.current.borrow().clone()
    }

    fn set_current(&self, leader: Option<Leader>) {
        self.current.send_if_modified(|current| {
            let changed = *current != leader;
            if changed {
                metrics::counter!("leader_changes_total").increment(1);
                if let Some(l) = &leader {
                    metrics::gauge!("leader_id").set(f64::from(l.id.get()));
                    metrics::gauge!("leader_epoch").set(l.epoch.get() as f64);
                }
            }
            *current = leader;
            changed
        });
    }

    /// Runs `op` against the leader, failing over as needed, within the budget (and
    /// not past the start of shutdown).
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, FrontendError>
    where
        F: Fn(Url) -> Fut,
        Fut: Future<Output = Result<T, PeerError>>,
    {
        let deadline = tokio::time::Instant::now() + self.timing.budget;
        let mut backoff = Backoff::until(deadline);
        loop {
            match tokio::time::timeout_at(deadline, self.attempt(&op)).await {
                Ok(Attempt::Done(result)) => return result,
                Ok(Attempt::Retry) => {}
                Err(_) => break,
            }
            let go_on = tokio::select! {
                more = backoff.wait() => more,
                _ = self.closing.stopping() => false,
            };
            if !go_on {
                break;
            }
        }
        if self.closing.is_stopping() {
            tracing::warn!("shutting down: no more failover");
        } else {
            tracing::warn!("failover budget spent");
        }
        Err(FrontendError::OrdersUnavailable)
    }

    /// One try of `op` on the leader (selecting one if there is none).
    async fn attempt<T, F, Fut>(&self, op: &F) -> Attempt<T>
    where
        F: Fn(Url) -> Fut,
        Fut: Future<Output = Result<T, PeerError>>,
    {
        let mut changes = self.current.subscribe();
        let known = changes.borrow_and_update().clone();
        let leader = match known {
            Some(l) => l,
            None => match self.reselect(None).await {
                Some(l) => {
                    changes.borrow_and_update();
                    l
                }
                None => return Attempt::Retry,
            },
        };
        let result = tokio::select! {
            result = op(leader.url.clone()) => result,
            _ = changes.changed() => {
                tracing::debug!(leader = %leader.id, "leader replaced mid-request; retrying on the new one");
                return Attempt::Retry;
            }
        };
        match result {
            Ok(value) => Attempt::Done(Ok(value)),
            Err(e) if worth_failing_over(&e) => {
                tracing::warn!(leader = %leader.id, error = %e, "leader failed; re-selecting");
                self.reselect(Some(&leader)).await;
                Attempt::Retry
            }
            Err(PeerError::Status { status, message }) if status.is_client_error() => {
                Attempt::Done(Err(FrontendError::Refused { status, message }))
            }
            Err(e)
                if e.status() == Some(StatusCode::SERVICE_UNAVAILABLE)
                    && self.catalog.catalog_heard() =>
            {
                // The leader cannot reach the catalog, but we can: the leader is the
                // one cut off (or was, while the request waited). Try again, with
                // backoff, within the budget. Re-selecting would not help: selection
                // does not look at who reaches the catalog. In Raft mode a 503 may
                // also mean that the leader lost its majority: look for a newer one.
                tracing::warn!(leader = %leader.id, error = %e, "leader cannot serve; retrying");
                if self.mode == Replication::Raft {
                    self.reselect(Some(&leader)).await;
                }
                Attempt::Retry
            }
            Err(e) => {
                // e.g. 503: the leader cannot reach the catalog
                tracing::warn!(error = %e, "order service failed");
                Attempt::Done(Err(
                    if e.status() == Some(StatusCode::SERVICE_UNAVAILABLE) {
                        FrontendError::CatalogUnavailable
                    } else {
                        FrontendError::OrdersUnavailable
                    },
                ))
            }
        }
    }

    /// Selects a new leader unless the `failed` one has been replaced meanwhile.
    pub async fn reselect(&self, failed: Option<&Leader>) -> Option<Leader> {
        let _one_at_a_time = self.selecting.lock().await;
        let current = self.current();
        if current.is_some() && current.as_ref() != failed {
            return current;
        }
        let chosen = self.select(failed).await;
        self.set_current(chosen.clone());
        chosen
    }

    /// Asks every replica for its status and follows the standing leader, or makes
    /// the highest ready id the leader (in Raft mode: finds the leader).
    async fn select(&self, failed: Option<&Leader>) -> Option<Leader> {
        if self.mode == Replication::Raft {
            return self.discover().await;
        }
        let statuses = self.statuses(|_| false).await;
        if let Some(standing) = self.standing(&statuses, failed) {
            tracing::info!(leader = %standing.id, epoch = %standing.epoch, "following the leader");
            return Some(standing);
        }
        let mut epoch = statuses
            .iter()
            .map(|(_, s)| s.epoch)
            .max()
            .unwrap_or_default()
            .max(Epoch(self.issued.load(Ordering::SeqCst)));
        for id in self.replicas.ids_descending() {
            let Some(status) = statuses.iter().find(|(i, _)| *i == id).map(|(_, s)| s) else {
                continue;
            };
            if !status.ready {
                continue;
            }
            let Some(url) = self.replicas.url(id).cloned() else {
                continue;
            };
            let Some(next) = epoch.next() else {
                tracing::error!(%epoch, "leadership epochs are exhausted");
                return None;
            };
            epoch = next;
            self.issued.fetch_max(epoch.get(), Ordering::SeqCst);
            let notice = LeaderNotice {
                leader_id: id,
                epoch,
            };
            match self
                .client
                .leader_notice(&url, &notice, self.timing.promotion)
                .await
            {
                Ok(_) => {
                    tracing::info!(leader = %id, %epoch, "selected the leader");
                    let answered: Vec<ReplicaId> = statuses.iter().map(|(i, _)| *i).collect();
                    self.tell_followers(notice, &answered).await;
                    return Some(Leader { id, url, epoch });
                }
                Err(e) => {
                    tracing::warn!(replica = %id, error = %e, "replica refused leadership");
                    // Another front-end may have chosen meanwhile: follow its leader.
                    let now = self.statuses(|_| false).await;
                    if let Some(standing) = self.standing(&now, failed) {
                        tracing::info!(leader = %standing.id, epoch = %standing.epoch, "following the leader");
                        return Some(standing);
                    }
                    // It may know a newer epoch than we saw; outbid it on the next try.
                    epoch = now.iter().map(|(_, s)| s.epoch).fold(epoch, Epoch::max);
                }
            }
        }
        tracing::warn!("no order replica can lead");
        None
    }

    /// Primary-backup: the ready leader at the highest epoch any replica reports, if
    /// there is one, no older than any epoch this front-end has handed out (a newer
    /// one may live on a replica that is down), and not `failed` (the same replica at
    /// a newer epoch is a new choice, and followed).
    fn standing(
        &self,
        statuses: &[(ReplicaId, ReplicaStatus)],
        failed: Option<&Leader>,
    ) -> Option<Leader> {
        let (id, status) = best_leader(statuses)?;
        let newest = statuses.iter().all(|(_, s)| s.epoch <= status.epoch)
            && status.epoch.get() >= self.issued.load(Ordering::SeqCst);
        let is_failed = failed.is_some_and(|f| f.id == *id && f.epoch == status.epoch);
        if !newest || is_failed {
            return None;
        }
        Some(Leader {
            id: *id,
            url: self.replicas.url(*id)?.clone(),
            epoch: status.epoch,
        })
    }

    /// Raft mode: the replica that says it leads and is ready, at the highest term (a
    /// leader cut off from its followers still says it leads, at an older term).
    ///
    /// It need not wait for a stalled replica's status: once a majority has answered
    /// and one of them leads at the highest term any of them knows, no newer leader
    /// can exist (its election would have needed one of that majority).
    async fn discover(&self) -> Option<Leader> {
        let majority = self.replicas.0.len() / 2 + 1;
        let settled = |answered: &[(ReplicaId, ReplicaStatus)]| {
            answered.len() >= majority
                && best_leader(answered).is_some_and(|(_, leader)| {
                    answered.iter().all(|(_, s)| s.epoch <= leader.epoch)
                })
        };
        let statuses = self.statuses(settled).await;
        let (id, status) = best_leader(&statuses)?;
        let url = self.replicas.url(*id)?.clone();
        Some(Leader {
            id: *id,
            url,
            epoch: status.epoch,
        })
    }

    /// Raft mode's watch: follows the newest leader the replicas report; keeps the
    /// known one while an election finds none.
    async fn rediscover(&self) {
        let _one_at_a_time = self.selecting.lock().await;
        if let Some(found) = self.select(None).await {
            if self.current().as_ref() != Some(&found) {
                tracing::info!(
                    leader = %found.id,
                    term = %found.epoch,
                    "found the raft leader"
                );
            }
            self.set_current(Some(found));
        }
    }

    /// Every replica's status (those that answer within the status timeout), or fewer
    /// as soon as `enough` says the answers so far settle the question. (The
    /// dashboard's monitor asks for all of them.)
    pub(crate) async fn statuses(
        &self,
        enough: impl Fn(&[(ReplicaId, ReplicaStatus)]) -> bool,
    ) -> Vec<(ReplicaId, ReplicaStatus)> {
        let mut set = tokio::task::JoinSet::new();
        for (id, url) in &self.replicas.0 {
            let (id, url, client) = (*id, url.clone(), self.client.clone());
            let timeout = self.timing.status;
            set.spawn(async move { client.status_within(&url, timeout).await.map(|s| (id, s)) });
        }
        let mut out = Vec::new();
        while let Some(done) = set.join_next().await {
            if let Ok(Ok(status)) = done {
                if status.1.mode != self.mode {
                    // A replica of the other mode cannot be led or followed by this
                    // front-end; say so once, loudly, rather than fail quietly.
                    if !self.mode_mismatch.swap(true, Ordering::SeqCst) {
                        tracing::error!(
                            replica = %status.0,
                            replica_mode = %status.1.mode,
                            mode = %self.mode,
                            "a replica runs another replication mode than this front-end \
                             (set the same TOYSTORE_REPLICATION everywhere)"
                        );
                    }
                    continue;
                }
                out.push(status);
                if enough(&out) {
                    break;
                }
            }
        }
        out
    }

    /// Tells the other replicas who leads, and waits (at most one status timeout, so
    /// a stalled replica never holds up failover) while each adopts the new epoch and
    /// syncs from the new leader: a deposed leader that resumes then finds its
    /// followers fenced. A follower that does not answer in time is told in the
    /// background (each notice has its own timeout) and left to the leader's
    /// heartbeats.
    ///
    /// Only replicas in `answered` (they answered the selection's status check) are
    /// waited for; the others are told in the background straight away.
    async fn tell_followers(&self, notice: LeaderNotice, answered: &[ReplicaId]) {
        let mut told = Vec::new();
        for (id, url) in &self.replicas.0 {
            if *id == notice.leader_id {
                continue;
            }
            let (id, url, client) = (*id, url.clone(), self.client.clone());
            let (done, answer) = tokio::sync::oneshot::channel::<()>();
            // Each notice is bounded by its own timeout, and goes on in the background
            // if not waited for.
            self.tasks.spawn_cancellable("follower notice", async move {
                if let Err(e) = client
                    .leader_notice(&url, &notice, FOLLOWER_NOTICE_TIMEOUT)
                    .await
                {
                    tracing::debug!(replica = %id, error = %e, "follower not told of the leader");
                }
                let _ = done.send(());
            });
            if answered.contains(&id) {
                told.push(answer);
            }
        }
        let _ =
            tokio::time::timeout(self.timing.status, futures_util::future::join_all(told)).await;
    }

    /// Background task: picks a leader at start and replaces one that is gone, so that
    /// replicas learn who leads even before the first order. Runs until shutdown drops
    /// it (a selection can take a while, and shutdown does not wait for it).
    pub async fn watch(&self) {
        let mut failures = 0;
        loop {
            let check = async {
                if self.mode == Replication::Raft {
                    self.rediscover().await;
                    return;
                }
                match self.current() {
                    None => {
                        self.reselect(None).await;
                    }
                    Some(leader) => match self
                        .client
                        .status_within(&leader.url, self.timing.status)
                        .await
                    {
                        Ok(s) if s.role == Role::Leader && s.epoch == leader.epoch => failures = 0,
                        Ok(s) if s.epoch > leader.epoch => {
                            // Another front-end chose since: follow its choice.
                            failures = 0;
                            self.reselect(Some(&leader)).await;
                        }
                        _ => {
                            failures += 1;
                            if failures >= 2 {
                                failures = 0;
                                self.reselect(Some(&leader)).await;
                            }
                        }
                    },
                }
            };
            check.await;
            tokio::time::sleep(self.timing.interval).await;
        }
    }
}
