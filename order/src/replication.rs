//! The seam between the order API and the replication protocol: everything the HTTP
//! layer asks of "the replicated log", whichever protocol runs it. The protocol is
//! one value chosen at start-up (`--replication`).
//!
//! Outcomes are typed [`OrderError`]s, the same in both modes: `NotLeader` and
//! `NotReady` (ask the leader; 421), `NoMajority` / `Peer` (nothing acknowledged, try
//! again; 503), `ReplicationFailed` (502), `UnknownOrder` (404).

use common::wire::{NewOrder, OrderRecord, ReplicaStatus, Role};

use crate::error::OrderError;
use crate::idempotency::Purchase;
use crate::raft::RaftMode;
use crate::replica::Replica;
use crate::store::Store;
use crate::writer::Writer;

/// The replication protocol of this replica. Cheap to clone.
#[derive(Clone)]
pub enum Protocol {
    /// The lab's mode: the front-end makes leaders; the writer task replicates to
    /// every follower that is up (`replica`, `writer`).
    PrimaryBackup { replica: Replica, writer: Writer },
    /// openraft: elected leader, majority commit (`raft`).
    Raft(RaftMode),
}

impl Protocol {
    pub fn store(&self) -> &Store {
        match self {
            Protocol::PrimaryBackup { replica, .. } => replica.store(),
            Protocol::Raft(node) => node.store(),
        }
    }

    /// Ok if this replica takes client writes now.
    pub fn check_writable(&self) -> Result<(), OrderError> {
        match self {
            Protocol::PrimaryBackup { replica, .. } => {
                let leadership = replica.leadership();
                if leadership.accepts_writes() {
                    Ok(())
                } else {
                    Err(OrderError::NotLeader {
                        id: replica.id(),
                        leader: leadership.leader,
                    })
                }
            }
            Protocol::Raft(node) => node.check_writable(),
        }
    }

    /// Stores and replicates a bought order (or finds the order its key made) and
    /// answers its number once the order is durable where the protocol requires.
    pub async fn submit(&self, order: NewOrder, purchase: Purchase) -> Result<u64, OrderError> {
        match self {
            Protocol::PrimaryBackup { writer, .. } => writer.submit(order, purchase).await,
            Protocol::Raft(node) => node.submit(order, purchase).await,
        }
    }

    /// The committed order `number`; never one that could still be dropped.
    pub async fn read(&self, number: u64) -> Result<OrderRecord, OrderError> {
        match self {
            Protocol::PrimaryBackup { replica, .. } => {
                // A number not stored at all is answered at once; one stored but not
                // yet on every follower the leader waits for is shown after a short
                // wait for the commit, or not at all.
                if replica.store().order(number)?.is_none() || !replica.committed(number).await {
                    return Err(OrderError::UnknownOrder(number));
                }
                // Read again: what was stored at that number may have changed meanwhile.
                replica
                    .store()
                    .order(number)?
                    .ok_or(OrderError::UnknownOrder(number))
            }
            Protocol::Raft(node) => node.read(number).await,
        }
    }

    /// What `GET /health` reports. Also sets the replica's gauges for `/metrics`
    /// (the front-end asks for the status several times a second).
    pub fn status(&self) -> Result<ReplicaStatus, OrderError> {
        let status = match self {
            Protocol::PrimaryBackup { replica, .. } => replica.status(),
            Protocol::Raft(node) => node.status(),
        }?;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        metrics::gauge!("replica_epoch").set(status.epoch as f64);
        metrics::gauge!("replica_leader").set(flag(status.role == Role::Leader));
        metrics::gauge!("replica_ready").set(flag(status.ready));
        metrics::gauge!("replica_orders").set(status.orders as f64);
        if let Some(i) = status.commit_index {
            metrics::gauge!("raft_commit_index").set(i as f64);
        }
        if let Some(i) = status.applied_index {
            metrics::gauge!("raft_applied_index").set(i as f64);
        }
        Ok(status)
    }
}
