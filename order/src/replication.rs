//! The seam between the order API and the replication protocol: everything the HTTP
//! layer asks of "the replicated log", whichever protocol runs it. The protocol is
//! one value chosen at start-up (`--replication`), and each of its operations is one
//! line per mode; the modes themselves are `primary_backup` and `raft`.
//!
//! Outcomes are typed [`OrderError`]s, the same in both modes: `NotLeader` and
//! `NotReady` (ask the leader; 421), `NoMajority` / `Peer` (nothing acknowledged, try
//! again; 503), `ReplicationFailed` (502), `UnknownOrder` (404).

use axum::Router;
use common::domain::OrderNumber;
use common::tasks::Tasks;
use common::wire::{NewOrder, OrderRecord, ReplicaStatus, Role};

use crate::error::OrderError;
use crate::idempotency::Purchase;
use crate::primary_backup::PrimaryBackup;
use crate::raft::RaftMode;
use crate::store::Store;

/// The replication protocol of this replica. Cheap to clone.
#[derive(Clone)]
pub enum Protocol {
    /// The lab's mode: the front-end makes leaders; the leader replicates to every
    /// follower that is up.
    PrimaryBackup(PrimaryBackup),
    /// openraft: elected leader, majority commit.
    Raft(RaftMode),
}

impl Protocol {
    pub fn store(&self) -> &Store {
        match self {
            Protocol::PrimaryBackup(mode) => mode.store(),
            Protocol::Raft(mode) => mode.store(),
        }
    }

    /// Ok if this replica takes client writes now.
    pub fn check_writable(&self) -> Result<(), OrderError> {
        match self {
            Protocol::PrimaryBackup(mode) => mode.check_writable(),
            Protocol::Raft(mode) => mode.check_writable(),
        }
    }

    /// Stores and replicates a bought order (or finds the order its key made) and
    /// answers its number once the order is durable where the protocol requires.
    pub async fn submit(
        &self,
        order: NewOrder,
        purchase: Purchase,
    ) -> Result<OrderNumber, OrderError> {
        match self {
            Protocol::PrimaryBackup(mode) => mode.submit(order, purchase).await,
            Protocol::Raft(mode) => mode.submit(order, purchase).await,
        }
    }

    /// The committed order `number`; never one that could still be dropped.
    pub async fn read(&self, number: OrderNumber) -> Result<OrderRecord, OrderError> {
        match self {
            Protocol::PrimaryBackup(mode) => mode.read(number).await,
            Protocol::Raft(mode) => mode.read(number).await,
        }
    }

    /// What `GET /health` reports. Also sets the replica's gauges for `/metrics`
    /// (the front-end asks for the status several times a second).
    pub fn status(&self) -> Result<ReplicaStatus, OrderError> {
        let status = match self {
            Protocol::PrimaryBackup(mode) => mode.status(),
            Protocol::Raft(mode) => mode.status(),
        }?;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        metrics::gauge!("replica_epoch").set(status.epoch.get() as f64);
        metrics::gauge!("replica_leader").set(flag(status.role == Role::Leader));
        metrics::gauge!("replica_ready").set(flag(status.ready));
        metrics::gauge!("replica_orders").set(status.orders as f64);
        if let Some(i) = status.commit_index {
            metrics::gauge!("raft_commit_index").set(i.get() as f64);
        }
        if let Some(i) = status.applied_index {
            metrics::gauge!("raft_applied_index").set(i.get() as f64);
        }
        Ok(status)
    }

    /// The mode's internal routes (the caller guards them with the cluster token).
    pub fn routes<S>(&self) -> Router<S> {
        match self {
            Protocol::PrimaryBackup(mode) => mode.routes(),
            Protocol::Raft(mode) => mode.routes(),
        }
    }

    /// Stops the mode: its protocol first (Raft's own tasks), then every task it
    /// spawned on `tasks`, within `deadline`.
    pub async fn shutdown(&self, tasks: &Tasks, deadline: std::time::Duration) {
        if let Protocol::Raft(mode) = self {
            mode.shutdown().await;
        }
        tasks.shutdown(deadline).await;
    }
}
