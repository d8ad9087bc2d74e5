//! The leader's write path: one task that turns queued orders into durable,
//! replicated history, many at a time (group commit).
//!
//! Handlers submit a [`NewOrder`] whose stock the catalog has already taken. The task
//! drains the queue, and for the whole batch under the log lock: answers keys it
//! already holds (within the key window; `idempotency` has the rule), numbers the rest
//! (`last + 1`, ...) and stamps them with the time, writes them in one transaction,
//! and then — at the same time — flushes once and sends them to every follower in one
//! request each (in parallel). Only when its own flush is done and every follower it
//! waits for has flushed them too does any waiter get its order number; the batch's
//! last number then becomes the commit index. A follower that answers "stale epoch"
//! means a newer leader exists: this replica steps down and every waiter hears "not
//! leader", so the front-end retries on the new leader with the same key.
//!
//! A follower that misses the replication deadline (stalled, cut off, down, still
//! catching up) is marked *lagging*: later batches do not wait for it, so a stalled
//! peer costs one timeout, not one per batch. The heartbeat (`heartbeat`) probes every
//! follower on its own task, outside the log lock, and a lagging follower that answers
//! a heartbeat (it syncs from the leader before it does) is waited for again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::backoff::Backoff;
use common::batch::{Batcher, Limits};
use common::client::PeerError;
use common::domain::{IdempotencyKey, OrderNumber, ReplicaId};
use common::retention;
use common::tasks::Tasks;
use common::wire::{NewOrder, OrderRecord, Replicate};
use reqwest::Url;
use tokio::task::JoinSet;

use super::state::{LogGuard, Replica};
use crate::config::Fault;
use crate::error::OrderError;
use crate::idempotency::{self, decide, Decision, Purchase};

/// Most orders written in one batch.
const MAX_BATCH: usize = 1024;

/// A bought order and what the catalog did for it.
type Submit = (NewOrder, Purchase);

/// Handle to the writer; it stops at shutdown, after the batch it is writing.
#[derive(Clone)]
pub struct Writer {
    batcher: Batcher<Submit, Result<OrderNumber, OrderError>>,
}

impl Writer {
    /// Starts the writer on `tasks`, one batch at a time (a batch holds the log lock);
    /// keys are held for `key_window` from their order's time.
    pub fn start(
        replica: Replica,
        fault: Option<Fault>,
        key_window: Duration,
        tasks: &Tasks,
    ) -> Self {
        let limits = Limits {
            max_batch: MAX_BATCH,
            in_flight: 1,
        };
        let batcher = Batcher::start("order writer", limits, tasks, move |batch| {
            let replica = replica.clone();
            async move { write_batch(&replica, &batch, fault, key_window).await }
        });
        Writer { batcher }
    }

    /// Queues `order`, for which the catalog did `purchase`, and waits for its number.
    pub async fn submit(
        &self,
        order: NewOrder,
        purchase: Purchase,
    ) -> Result<OrderNumber, OrderError> {
        self.batcher.submit((order, purchase)).await?
    }
}

/// Writes and replicates one batch; returns one answer per submitted order.
async fn write_batch(
    replica: &Replica,
    batch: &[Submit],
    fault: Option<Fault>,
    key_window: Duration,
) -> Vec<Result<OrderNumber, OrderError>> {
    let log = replica.lock_log().await;
    let leadership = replica.leadership();
    let not_leader = || OrderError::NotLeader {
        id: replica.id(),
        leader: leadership.leader,
    };
    if !leadership.accepts_writes() {
        return batch.iter().map(|_| Err(not_leader())).collect();
    }
    let store = replica.store();
    // Every failure below is this replica's own storage's: it stops leading (and
    // stops), and the front-end places the orders on another leader, same keys.
    let fail_all = |e: OrderError| -> Vec<Result<OrderNumber, OrderError>> {
        replica.storage_failed(&log, &e);
        batch.iter().map(|_| Err(not_leader())).collect()
    };
    let prev = match store.last_pos() {
        Ok(p) => p,
        Err(e) => return fail_all(e),
    };
    let mut next = match &prev {
        Some(p) => p.number.get().saturating_add(1),
        None => 0,
    };
    let now = retention::now_ms();
    let valid_from = retention::cutoff(now, key_window);

    let mut fresh: Vec<OrderRecord> = Vec::new();
    let mut request_ids = Vec::new();
    let mut in_batch: HashMap<IdempotencyKey, usize> = HashMap::new();
    let mut answers = Vec::with_capacity(batch.len());
    for (order, purchase) in batch {
        let held = match in_batch.get(&order.key) {
            Some(&i) => Some(fresh[i].clone()),
            None => match store.by_key(&order.key, valid_from) {
                Ok(held) => held,
                Err(e) => return fail_all(e),
            },
        };
        answers.push(match decide(held.as_ref(), order, *purchase) {
            Decision::Held(number) => Ok(number),
            Decision::KeyReused => Err(OrderError::KeyReused(order.key.clone())),
            Decision::NotBought => Err(idempotency::not_bought()),
            Decision::New => {
                in_batch.insert(order.key.clone(), fresh.len());
                request_ids.push(order.request_id.clone());
                fresh.push(OrderRecord {
                    number: OrderNumber(next),
                    name: order.name.clone(),
                    quantity: order.quantity,
                    key: order.key.clone(),
                    epoch: leadership.epoch,
                    time: now,
                });
                next += 1;
                Ok(OrderNumber(next - 1))
            }
        });
    }
    if fresh.is_empty() {
        if answers.iter().all(|a| a.is_err()) {
            return answers;
        }
        // Only repeated keys. Their orders may not be on every follower yet (their
        // first batch failed at a follower, or this replica led in an earlier epoch
        // and crashed): confirm before answering, with an empty batch whose `prev` is
        // our newest order — a follower that lacks anything syncs before it replies.
        let request = replica.empty_batch(leadership.epoch, prev);
        let end = end_of(&request);
        let replicated = replicate(replica, Arc::new(request)).await;
        return settle(replica, &log, end, replicated, answers, not_leader);
    }

    let started = Instant::now();
    if let Err(e) = store.append(&fresh) {
        return fail_all(e);
    }
    if fault == Some(Fault::CrashBeforeReplicate) {
        // The fault's point: stored locally (durably), never replicated.
        let _ = store.flush().await;
        tracing::error!("fault injection: crashing before replication");
        std::process::abort();
    }

    let request = Replicate {
        leader_id: replica.id(),
        epoch: leadership.epoch,
        prev,
        entries: fresh,
        commit: replica.commit(),
        request_ids,
    };
    let orders = request.entries.len();
    // The local flush and the followers' writes run at the same time; the answers wait
    // for both, so nothing is acknowledged before it is durable everywhere it must be.
    // (A follower may then hold a batch the leader lost in a crash before its flush:
    // that is the same as a crash after replicating, and a retry finds the key.)
    let end = end_of(&request);
    let flush = async {
        let started = Instant::now();
        let flushed = store.flush().await;
        metrics::histogram!("writer_flush_seconds").record(started.elapsed().as_secs_f64());
        flushed
    };
    let (flushed, replicated) = tokio::join!(flush, replicate(replica, Arc::new(request)));
    tracing::debug!(
        orders,
        took_us = started.elapsed().as_micros() as u64,
        "batch stored"
    );
    metrics::histogram!("writer_batch_size").record(orders as f64);
    metrics::histogram!("writer_batch_seconds").record(started.elapsed().as_secs_f64());
    if let Err(e) = flushed {
        return fail_all(e);
    }
    settle(replica, &log, end, replicated, answers, not_leader)
}

/// The batch's final answers: as planned if the followers stored it (and the batch's
/// end is committed); "not leader" (after stepping down) if one knows a newer epoch;
/// "replication failed" otherwise.
fn settle(
    replica: &Replica,
    log: &LogGuard<'_>,
    end: Option<OrderNumber>,
    replicated: Replicated,
    answers: Vec<Result<OrderNumber, OrderError>>,
    not_leader: impl Fn() -> OrderError,
) -> Vec<Result<OrderNumber, OrderError>> {
    match replicated {
        Replicated::Stored => {
            replica.advance_commit(end);
            answers
        }
        Replicated::Deposed => {
            replica.step_down(log);
            answers.iter().map(|_| Err(not_leader())).collect()
        }
        Replicated::Failed(why) => answers
            .iter()
            .map(|_| Err(OrderError::ReplicationFailed(why.clone())))
            .collect(),
    }
}

/// The newest order a batch (or heartbeat) names.
pub(super) fn end_of(request: &Replicate) -> Option<OrderNumber> {
    request
        .entries
        .last()
        .map(|e| e.number)
        .or(request.prev.as_ref().map(|p| p.number))
}

/// What sending a batch to the followers achieved.
enum Replicated {
    /// Every follower waited for has flushed it (the others are lagging: they take it
    /// from the leader when they sync back).
    Stored,
    /// A follower knows a newer epoch: this replica is no longer the leader.
    Deposed,
    /// A follower that is up failed to store it, even after retries.
    Failed(String),
}

/// How one follower took a batch.
pub(super) enum Sent {
    /// Flushed; with the newest order the follower now holds.
    Stored(Option<OrderNumber>),
    /// No answer in time, or "not ready / cannot sync now": stop waiting for it.
    Lagging(String),
    /// It knows a newer epoch.
    Refused(String),
    /// It answered with an error, even after retries.
    Failed(String),
}

/// Sends `request` to one follower (retrying a failure that is neither "no answer"
/// nor "not now" a couple of times).
async fn send_to(replica: &Replica, url: &Url, request: &Replicate) -> Sent {
    let timeout = replica.timeouts().replicate;
    let mut backoff = Backoff::new();
    let mut tries = 0;
    loop {
        tries += 1;
        match replica.client().replicate(url, request, timeout).await {
            Ok(persisted) => return Sent::Stored(persisted.last_order),
            Err(e @ PeerError::Unreachable(_)) => return Sent::Lagging(e.to_string()),
            Err(e @ PeerError::Status { status, .. })
                if status == StatusCode::MISDIRECTED_REQUEST
                    || status == StatusCode::SERVICE_UNAVAILABLE =>
            {
                return Sent::Lagging(e.to_string()); // catching up, or cannot sync now
            }
            Err(PeerError::Status { status, message }) if status == StatusCode::CONFLICT => {
                return Sent::Refused(message)
            }
            Err(e) if tries >= 3 => return Sent::Failed(e.to_string()),
            Err(e) => {
                tracing::warn!(error = %e, "follower failed to store a batch; retrying");
                backoff.wait().await;
            }
        }
    }
}

/// Sends `request` to every follower that is not lagging, in parallel, and waits
/// for them; a follower that misses the deadline is marked lagging.
async fn replicate(replica: &Replica, request: Arc<Replicate>) -> Replicated {
    let lagging = replica.lagging();
    let peers = replica
        .peers()
        .iter()
        .filter(|(id, _)| !lagging.contains(id))
        .cloned()
        .collect();
    let mut outcome = Replicated::Stored;
    let end = end_of(&request);
    let mut heard = Vec::new();
    for (peer, sent) in send_all(replica, peers, request).await {
        match sent {
            Sent::Stored(last) => heard.push((peer, last)),
            Sent::Lagging(why) => {
                tracing::debug!(%peer, %why, "follower skipped; it will sync back");
                replica.set_lagging(peer, true);
            }
            Sent::Refused(message) => {
                tracing::warn!(%peer, %message, "follower refused our epoch");
                outcome = Replicated::Deposed;
            }
            Sent::Failed(message) => {
                tracing::error!(%peer, %message, "follower could not store a batch");
                if !matches!(outcome, Replicated::Deposed) {
                    outcome = Replicated::Failed(format!("replica {peer}: {message}"));
                }
            }
        }
    }
    replica.record_lag(end, &heard);
    outcome
}

/// Sends `request` to each of `peers` at once, each on its own task; waits for all.
pub(super) async fn send_all(
    replica: &Replica,
    peers: Vec<(ReplicaId, Url)>,
    request: Arc<Replicate>,
) -> Vec<(ReplicaId, Sent)> {
    let mut sends = JoinSet::new();
    for (id, url) in peers {
        let (replica, request) = (replica.clone(), request.clone());
        sends.spawn(async move {
            // One deadline for all of a follower's tries: missing it means lagging.
            let deadline = replica.timeouts().replicate;
            let started = Instant::now();
            let sent = tokio::time::timeout(deadline, send_to(&replica, &url, &request))
                .await
                .unwrap_or_else(|_| Sent::Lagging("missed the replication deadline".into()));
            // A batch's round trip to this follower (not a heartbeat's).
            if matches!(sent, Sent::Stored(_)) && !request.entries.is_empty() {
                metrics::histogram!("replicate_seconds", "follower" => id.to_string())
                    .record(started.elapsed().as_secs_f64());
            }
            (id, sent)
        });
    }
    let mut out = Vec::with_capacity(sends.len());
    while let Some(done) = sends.join_next().await {
        match done {
            Ok(sent) => out.push(sent),
            Err(e) => tracing::error!(error = %e, "a replication send panicked"),
        }
    }
    out
}
