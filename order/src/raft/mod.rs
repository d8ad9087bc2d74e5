//! Raft mode (`--replication raft`): the three replicas form a Raft group that elects
//! its leader and commits each batch of orders on a majority; the front-end only
//! discovers who leads. The group runs on the shared machinery of the `consensus`
//! crate (log, network, proposer, start-up); what is the order log's own is here:
//!
//! - this module: the entry ([`Batch`]), its reply ([`Placed`]), and [`RaftMode`], the
//!   replication seam's Raft arm (writes, reads, status, routes, shutdown).
//! - [`machine`]: the state machine — numbering orders in log order — and snapshots.
//! - [`snapshot`]: a snapshot's bytes (the store's buckets as stored).
//!
//! What stays as in primary-backup mode: the HTTP API, the buyer stage (stock is taken
//! at the catalog, idempotently by key, before an order enters the log), the order
//! trees, the digest. An order flows: `place` → `Buyer::buy` → [`RaftMode::submit`]
//! (the proposer drains the queue into one log entry per batch, several batches in
//! flight) → openraft appends, replicates, commits on a majority and applies → the
//! number the state machine gave it.

// openraft's storage traits return its `StorageError` (over 200 bytes); the state
// machine's helpers return the same type rather than convert back and forth.
#![allow(clippy::result_large_err)]

pub mod machine;
pub mod snapshot;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use common::client::{ClusterClient, OrderClient};
use common::domain::OrderNumber;
use common::domain::{Epoch, ReplicaId, Term};
use common::http::PathParam;
use common::retention;
use common::tasks::Tasks;
use common::wire::{NewOrder, OrderRecord, ReplicaStatus, Replication, Role};
use consensus::log::LogStore;
use consensus::{
    Identity, Limits, PeerView, Probe, Proposal, ProposeError, Proposer, RaftNode, ReadError,
};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::error::OrderError;
use crate::idempotency::Purchase;
use crate::store::Store;

/// Who this group is: openraft's cluster name and the route of its messages.
const GROUP: Identity = Identity {
    name: "toystore",
    route: "raft",
};

/// The proposer's limits: at most 1024 orders per log entry and 2 entries in flight
/// (see `consensus::proposer` for what more entries in flight cost).
const MAX_BATCH: usize = 1024;
const IN_FLIGHT: usize = 2;

/// A batch of bought orders: the payload of one log entry. Everything that decides
/// what the orders become is in it, so every replica decides alike (see `machine`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub orders: Vec<NewOrder>,
    /// What the catalog did for each order.
    pub purchases: Vec<Purchase>,
    /// When the leader proposed it (ms since the Unix epoch): its new orders' time.
    pub time: u64,
    /// Keys of orders stored before this time have expired (the leader's clock).
    pub key_cutoff: u64,
}

/// What the state machine made of one order of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placed {
    /// Its number: a new one, or the first order's for a repeated key.
    Number(OrderNumber),
    /// Its key was used before for a different order.
    KeyReused,
    /// The catalog was not reached and no order is held for its key.
    NotBought,
}

openraft::declare_raft_types!(
    /// openraft's types for the order log: a log entry carries a [`Batch`]; applying
    /// it answers one [`Placed`] per order.
    pub TypeConfig:
        D = Batch,
        R = Vec<Placed>,
        SnapshotData = consensus::snapshot::LazyBytes,
);

pub type Entry = openraft::Entry<TypeConfig>;

/// Raft mode's settings, from the replica's flags.
#[derive(Debug, Clone, Copy)]
pub struct RaftSettings {
    /// The group's timing.
    pub group: consensus::Settings,
    /// How long the replicas keep an idempotency key.
    pub key_window: Duration,
    /// Test-only fault injection.
    pub fault: Option<crate::config::Fault>,
    /// `--rebuild`: the data directory was set aside; rejoin the group as a new member
    /// would (see `consensus::rejoin`).
    pub rebuild: bool,
}

/// How orders become a log entry: the batch, stamped with the leader's time and key
/// cutoff; each order is answered what the state machine made of it.
struct Orders {
    key_window: Duration,
}

impl Proposal<TypeConfig> for Orders {
    type Write = (NewOrder, Purchase);
    type Answer = Placed;

    fn entry(&self, writes: Vec<(NewOrder, Purchase)>) -> Batch {
        let time = retention::now_ms();
        let (orders, purchases) = writes.into_iter().unzip();
        Batch {
            orders,
            purchases,
            time,
            key_cutoff: retention::cutoff(time, self.key_window),
        }
    }

    fn answers(&self, reply: Vec<Placed>) -> Vec<Placed> {
        reply
    }
}

/// Asks a peer replica's `/health` where it stands in the group (a replica of the
/// other mode is no member).
#[derive(Clone)]
struct StatusProbe(OrderClient);

impl Probe for StatusProbe {
    async fn probe(&self, peer: &Url, within: Duration) -> Option<PeerView> {
        let s = self.0.status_within(peer, within).await.ok()?;
        (s.mode == Replication::Raft).then_some(PeerView {
            term: Term(s.epoch.get()),
            leader: s.leader,
            commit_index: s.commit_index,
        })
    }
}

/// This replica in Raft mode. Cheap to clone.
#[derive(Clone)]
pub struct RaftMode {
    node: RaftNode<TypeConfig>,
    store: Store,
    proposer: Proposer<TypeConfig, Orders>,
}

impl RaftMode {
    /// Opens the log (its own database in `log_dir`, with a page cache of `cache_mb`
    /// MiB) and starts the Raft node on it and the store, the proposer and the key
    /// pruner, on `tasks`. The replica with the lowest id initialises the group if
    /// neither it nor any peer that answers has one yet.
    pub async fn start(
        id: ReplicaId,
        store: Store,
        (log_dir, cache_mb): (&std::path::Path, u64),
        replicas: &[(ReplicaId, Url)],
        cluster: ClusterClient,
        settings: RaftSettings,
        tasks: &Tasks,
    ) -> Result<Self, OrderError> {
        store.claim_mode(Replication::Raft)?;
        let crash = settings.fault == Some(crate::config::Fault::CrashBeforeReplicate);
        let log = LogStore::open(log_dir, cache_mb, crash, tasks)?;
        if settings.rebuild {
            log.set_rebuilding(true)
                .await
                .map_err(|e| consensus::StartError::Storage(Box::new(e)))?;
        }
        let node = RaftNode::start(
            id,
            GROUP,
            replicas,
            log,
            machine::Machine::new(store.clone()),
            cluster.clone(),
            settings.group,
            StatusProbe(OrderClient::new(cluster)),
            tasks,
        )
        .await?;
        let proposer = Proposer::start(
            node.raft().clone(),
            Orders {
                key_window: settings.key_window,
            },
            Limits {
                max_batch: MAX_BATCH,
                in_flight: IN_FLIGHT,
                commit: settings.group.commit,
            },
            "raft",
            tasks,
        );
        // Only keys older than the machine's own cutoff, which every replica applies
        // alike, are dropped (see `machine`).
        tasks.spawn(
            "key pruner",
            retention::prune_loop(
                retention::prune_period(settings.key_window),
                {
                    let store = store.clone();
                    move || machine::Machine::key_cutoff(&store)
                },
                store.pruner(),
                tasks.clone(),
            ),
        );
        Ok(RaftMode {
            node,
            store,
            proposer,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Ok if this replica leads and so takes client writes.
    pub fn check_writable(&self) -> Result<(), OrderError> {
        self.node.leads().map_err(|leader| OrderError::NotLeader {
            id: self.node.id(),
            leader,
        })
    }

    /// Queues `order` for the next log entry and waits until it is committed and
    /// applied; answers its number.
    pub async fn submit(
        &self,
        order: NewOrder,
        purchase: Purchase,
    ) -> Result<OrderNumber, OrderError> {
        let key = order.key.clone();
        match self.proposer.propose((order, purchase)).await {
            Ok(Placed::Number(n)) => Ok(n),
            Ok(Placed::KeyReused) => Err(OrderError::KeyReused(key)),
            Ok(Placed::NotBought) => Err(crate::idempotency::not_bought()),
            Err(ProposeError::NotLeader { leader }) => Err(OrderError::NotLeader {
                id: self.node.id(),
                leader,
            }),
            Err(e @ ProposeError::NoMajority { .. }) => Err(OrderError::NoMajority(e.to_string())),
            Err(e) => Err(OrderError::Proposal(e)),
        }
    }

    /// The committed order `number`. The state machine holds only committed orders;
    /// one it lacks may be committed but not yet applied here, so the leader first
    /// confirms its leadership and waits until it has applied everything committed
    /// (a linearizable read); a follower sends the reader to the leader.
    pub async fn read(&self, number: OrderNumber) -> Result<OrderRecord, OrderError> {
        if let Some(record) = self.store.order(number)? {
            return Ok(record);
        }
        self.check_writable()?;
        match self.node.linearize().await {
            Ok(()) => {}
            Err(e @ (ReadError::NotConfirmed(_) | ReadError::Timeout(_))) => {
                return Err(OrderError::NoMajority(format!("{e}")))
            }
            Err(e @ ReadError::Fatal(_)) => return Err(OrderError::RaftRead(e)),
        }
        self.store
            .order(number)?
            .ok_or(OrderError::UnknownOrder(number))
    }

    /// What `GET /health` reports. Also sets each follower's lag in log entries for
    /// `/metrics` (`follower_lag_entries{follower}`: as leader, the last log index
    /// minus the highest one the follower has matched; 0 on a follower).
    pub fn status(&self) -> Result<ReplicaStatus, OrderError> {
        let view = self.node.view();
        for (follower, behind) in &view.behind {
            metrics::gauge!("follower_lag_entries", "follower" => follower.to_string())
                .set(*behind as f64);
        }
        let last = self.store.last()?;
        Ok(ReplicaStatus {
            id: self.node.id(),
            mode: Replication::Raft,
            role: if view.leading {
                Role::Leader
            } else {
                Role::Follower
            },
            ready: view.ready,
            epoch: Epoch(view.term.get()),
            leader: view.leader,
            last_order: last.as_ref().map(|r| r.number),
            last_epoch: last.as_ref().map(|r| r.epoch),
            orders: self.store.count(),
            digest: self.store.digest(),
            commit: last.as_ref().map(|r| r.number),
            lagging: Vec::new(),
            failure: view.failure,
            term: Some(view.term),
            commit_index: view.commit_index,
            applied_index: view.applied_index,
        })
    }

    /// Raft mode's own routes: Raft's messages from peers (token-guarded by the caller).
    pub fn routes<S>(&self) -> Router<S> {
        Router::new()
            .route("/internal/raft/{kind}", post(raft_message))
            .with_state(self.clone())
    }

    /// Stops the Raft node (the log is already durable); the mode's other tasks stop
    /// with the replica's `Tasks`, after this.
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
    }
}

/// One of Raft's messages from a peer (bincode in, bincode out).
async fn raft_message(
    State(mode): State<RaftMode>,
    PathParam(kind): PathParam,
    body: Bytes,
) -> Result<impl IntoResponse, OrderError> {
    let reply = mode.node.handle(&kind, &body).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        reply,
    ))
}

#[cfg(test)]
mod tests {
    use consensus::codec::{from_bytes, to_bytes};
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use common::domain::{IdempotencyKey, ToyName};

    /// An entry of orders survives the log's encoding (membership and blank entries
    /// are the consensus crate's own tests).
    #[test]
    fn an_entry_of_orders_survives_bincode() {
        let order = NewOrder {
            name: ToyName::new("Tux").expect("name"),
            quantity: 1,
            key: IdempotencyKey::new("k").expect("key"),
            request_id: None,
        };
        let batch = Orders {
            key_window: Duration::from_secs(1),
        }
        .entry(vec![(order, Purchase::Fresh)]);
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), 7),
            payload: openraft::EntryPayload::Normal(batch),
        };
        let back: Entry = from_bytes(&to_bytes(&entry).expect("encode")).expect("decode");
        assert_eq!(format!("{entry:?}"), format!("{back:?}"));
    }
}
