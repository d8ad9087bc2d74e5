//! The leader's write path: one task that turns queued orders into durable,
//! replicated history, many at a time (group commit).
//!
//! Handlers submit a [`NewOrder`] whose stock the catalog has already taken. The task
//! drains the queue, and for the whole batch under the log lock: answers keys it
//! already holds, numbers the rest (`last + 1`, ...), writes them in one transaction,
//! and then — at the same time — flushes once and sends them to every follower in one
//! request each (in parallel). Only when its own flush is done and every reachable
//! follower has flushed them too does any waiter get its order number. A follower that answers "stale epoch" means a newer leader
//! exists: this replica steps down and every waiter hears "not leader", so the
//! front-end retries on the new leader with the same key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::client::PeerError;
use common::wire::{NewOrder, OrderRecord, Replicate};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::config::Fault;
use crate::error::OrderError;
use crate::replica::{LogGuard, Replica};

/// Most orders written in one batch.
const MAX_BATCH: usize = 1024;

/// How long a leader stays silent before it sends followers a heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// A queued order and where its answer goes.
pub struct Submit {
    pub order: NewOrder,
    pub reply: oneshot::Sender<Result<u64, OrderError>>,
}

/// Handle to the writer task; it stops when every handle is dropped.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Submit>,
}

impl Writer {
    pub fn start(replica: Replica, fault: Option<Fault>) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_loop(replica, rx, fault));
        Writer { tx }
    }

    /// Queues `order` and waits for its number.
    pub async fn submit(&self, order: NewOrder) -> Result<u64, OrderError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Submit { order, reply })
            .await
            .map_err(|_| OrderError::Storage("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| OrderError::Storage("the writer has stopped".into()))?
    }
}

async fn write_loop(replica: Replica, mut rx: mpsc::Receiver<Submit>, fault: Option<Fault>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = rx.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    return; // every handle is gone: the replica is shutting down
                }
                let answers = write_batch(&replica, &mut batch, fault).await;
                for (submit, answer) in batch.drain(..).zip(answers) {
                    let _ = submit.reply.send(answer);
                }
                beat.reset();
            }
            _ = beat.tick() => heartbeat(&replica).await,
        }
    }
}

/// Writes and replicates one batch; returns one answer per submitted order.
async fn write_batch(
    replica: &Replica,
    batch: &mut [Submit],
    fault: Option<Fault>,
) -> Vec<Result<u64, OrderError>> {
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
    let fail_all = |e: OrderError| -> Vec<Result<u64, OrderError>> {
        let message = e.to_string();
        batch
            .iter()
            .map(|_| Err(OrderError::Storage(message.clone())))
            .collect()
    };
    let prev = match store.last_pos() {
        Ok(p) => p,
        Err(e) => return fail_all(e),
    };
    let mut next = prev.as_ref().map_or(0, |p| p.number + 1);

    let mut fresh: Vec<OrderRecord> = Vec::new();
    let mut in_batch: HashMap<String, usize> = HashMap::new();
    let mut answers = Vec::with_capacity(batch.len());
    for submit in batch.iter() {
        let order = &submit.order;
        let held = match store.by_key(&order.key) {
            Ok(held) => held,
            Err(e) => return fail_all(e),
        };
        let earlier = held.or_else(|| in_batch.get(&order.key).map(|&i| fresh[i].clone()));
        answers.push(match earlier {
            Some(r) if same_order(&r, order) => Ok(r.number),
            Some(_) => Err(OrderError::KeyReused(order.key.clone())),
            None => {
                in_batch.insert(order.key.clone(), fresh.len());
                fresh.push(OrderRecord {
                    number: next,
                    name: order.name.clone(),
                    quantity: order.quantity,
                    key: order.key.clone(),
                    epoch: leadership.epoch,
                });
                next += 1;
                Ok(next - 1)
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
        let request = Replicate {
            leader_id: replica.id(),
            epoch: leadership.epoch,
            prev,
            entries: Vec::new(),
        };
        let replicated = replicate(replica, request).await;
        return settle(replica, &log, replicated, answers, not_leader);
    }

    let started = std::time::Instant::now();
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
    };
    let orders = request.entries.len();
    // The local flush and the followers' writes run at the same time; the answers wait
    // for both, so nothing is acknowledged before it is durable everywhere it must be.
    // (A follower may then hold a batch the leader lost in a crash before its flush:
    // that is the same as a crash after replicating, and a retry finds the key.)
    let (flushed, replicated) = tokio::join!(store.flush(), replicate(replica, request));
    tracing::debug!(
        orders,
        took_us = started.elapsed().as_micros() as u64,
        "batch stored"
    );
    if let Err(e) = flushed {
        return fail_all(e);
    }
    settle(replica, &log, replicated, answers, not_leader)
}

/// The batch's final answers: as planned if the followers stored it; "not leader"
/// (after stepping down) if one knows a newer epoch; "replication failed" otherwise.
fn settle(
    replica: &Replica,
    log: &LogGuard<'_>,
    replicated: Replicated,
    answers: Vec<Result<u64, OrderError>>,
    not_leader: impl Fn() -> OrderError,
) -> Vec<Result<u64, OrderError>> {
    match replicated {
        Replicated::Stored => answers,
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

/// What sending a batch to the followers achieved.
enum Replicated {
    /// Every follower that is up has flushed it (unreachable ones and ones still
    /// catching up were skipped: they take it from the leader when they sync).
    Stored,
    /// A follower knows a newer epoch: this replica is no longer the leader.
    Deposed,
    /// A follower that is up failed to store it, even after retries.
    Failed(String),
}

/// Sends `request` to every follower in parallel and waits for all of them.
async fn replicate(replica: &Replica, request: Replicate) -> Replicated {
    let request = Arc::new(request);
    let mut sends = JoinSet::new();
    for (id, url) in replica.peers() {
        let client = replica.client().clone();
        let (id, url, request) = (*id, url.clone(), request.clone());
        sends.spawn(async move {
            let mut pause = Duration::from_millis(20);
            let mut tries = 0;
            loop {
                tries += 1;
                match client.replicate(&url, &request).await {
                    Ok(_) => return (id, Ok(())),
                    Err(PeerError::Status { status, .. })
                        if status == StatusCode::MISDIRECTED_REQUEST =>
                    {
                        return (id, Ok(())); // not ready: it is catching up
                    }
                    Err(e @ PeerError::Unreachable(_)) => {
                        tracing::debug!(peer = id, error = %e, "follower skipped; it will catch up");
                        return (id, Ok(()));
                    }
                    Err(PeerError::Status { status, message })
                        if status == StatusCode::CONFLICT =>
                    {
                        return (id, Err((true, message)));
                    }
                    Err(e) if tries >= 3 => return (id, Err((false, e.to_string()))),
                    Err(e) => {
                        tracing::warn!(peer = id, error = %e, "follower failed to store a batch; retrying");
                        tokio::time::sleep(pause).await;
                        pause *= 5;
                    }
                }
            }
        });
    }
    let mut outcome = Replicated::Stored;
    while let Some(done) = sends.join_next().await {
        match done {
            Ok((_, Ok(()))) => {}
            Ok((peer, Err((true, message)))) => {
                tracing::warn!(peer, %message, "follower refused our epoch");
                outcome = Replicated::Deposed;
            }
            Ok((peer, Err((false, message)))) => {
                tracing::error!(peer, %message, "follower could not store a batch");
                if !matches!(outcome, Replicated::Deposed) {
                    outcome = Replicated::Failed(format!("replica {peer}: {message}"));
                }
            }
            Err(e) => outcome = Replicated::Failed(e.to_string()),
        }
    }
    outcome
}

/// Idle leaders send every follower an empty batch with their newest entry as `prev`,
/// so a follower that missed something (or holds a tail the leader does not have)
/// notices and syncs even when no orders come in.
async fn heartbeat(replica: &Replica) {
    let log = replica.lock_log().await;
    let leadership = replica.leadership();
    if !leadership.accepts_writes() || replica.peers().is_empty() {
        return;
    }
    let Ok(prev) = replica.store().last_pos() else {
        return;
    };
    let request = Replicate {
        leader_id: replica.id(),
        epoch: leadership.epoch,
        prev,
        entries: Vec::new(),
    };
    if let Replicated::Deposed = replicate(replica, request).await {
        replica.step_down(&log);
    }
}

/// A repeated key must name the same toy (in any capitalisation) and quantity.
fn same_order(held: &OrderRecord, order: &NewOrder) -> bool {
    held.quantity == order.quantity && held.name.to_lowercase() == order.name.to_lowercase()
}
