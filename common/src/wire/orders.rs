//! The order path between the front-end and the replicas, in both replication modes:
//! a new order, its acceptance, orders as stored and paged for catch-up.

use crate::domain::{Epoch, IdempotencyKey, OrderNumber, ToyName, Version};
use serde::{Deserialize, Serialize};

use super::OrderView;
use crate::trace::RequestId;

/// Front-end → leader: place an order (the front-end has validated it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewOrder {
    pub name: ToyName,
    pub quantity: u64,
    /// Idempotency key: a retry with the same key gets the same order.
    pub key: IdempotencyKey,
    /// The `x-request-id` of the request that placed it, for every replica's log
    /// (it travels in Raft's log entries too, so no `skip_serializing_if`: bincode
    /// needs every field).
    #[serde(default)]
    pub request_id: Option<RequestId>,
}

/// Leader → front-end: the order is placed. The front-end replies only the number;
/// it uses the toy's new version to keep its cache from going stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAccepted {
    pub order_number: OrderNumber,
    /// Canonical name of the toy.
    pub name: ToyName,
    /// The toy's version after this order's stock change (0 when the order was placed
    /// by an earlier request with the same key and the catalog was not asked again).
    pub version: Version,
}

/// An order as replicas store and replicate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub number: OrderNumber,
    pub name: ToyName,
    pub quantity: u64,
    pub key: IdempotencyKey,
    /// Leadership epoch in which the leader wrote this order (Raft mode: the term).
    pub epoch: Epoch,
    /// When the leader stored it, in ms since the Unix epoch: its idempotency key is
    /// kept for a window from then (`common::retention`). Every replica holds the
    /// leader's time, so they agree on when a key expires.
    #[serde(default)]
    pub time: u64,
}

impl OrderRecord {
    /// True when both records are the same write of the same leader.
    pub fn same_write(&self, other: &OrderRecord) -> bool {
        self.number == other.number && self.epoch == other.epoch && self.key == other.key
    }
}

impl From<OrderRecord> for OrderView {
    fn from(r: OrderRecord) -> Self {
        OrderView {
            number: r.number,
            name: r.name.into_string(),
            quantity: r.quantity,
        }
    }
}

/// Identifies one entry of a replica's history: number, epoch and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPos {
    pub number: OrderNumber,
    pub epoch: Epoch,
    pub key: IdempotencyKey,
}

impl From<&OrderRecord> for LogPos {
    fn from(r: &OrderRecord) -> Self {
        LogPos {
            number: r.number,
            epoch: r.epoch,
            key: r.key.clone(),
        }
    }
}

/// A page of a replica's history, for catch-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogPage {
    pub entries: Vec<OrderRecord>,
    /// The newest order number the replica holds.
    pub last_order: Option<OrderNumber>,
}
