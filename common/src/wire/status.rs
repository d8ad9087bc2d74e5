//! What the services report of themselves: roles, modes, each `/health`, the cache's
//! figures and view.

use crate::domain::{Epoch, LogIndex, OrderNumber, ReplicaId, Term, Version};
use serde::{Deserialize, Serialize};

/// A replica's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
}

/// How the order replicas agree on their history (`--replication`,
/// `TOYSTORE_REPLICATION`); every replica and the front-end must use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Replication {
    /// The lab's mode: the front-end chooses the leader (highest ready id), which
    /// acknowledges once the order is durable on itself and every follower that is up.
    #[default]
    PrimaryBackup,
    /// A Raft group (openraft): the replicas elect the leader, an order is
    /// acknowledged once a majority has it durably.
    Raft,
}

impl std::fmt::Display for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Replication::PrimaryBackup => "primary-backup",
            Replication::Raft => "raft",
        })
    }
}

/// `GET /health` of an order replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: ReplicaId,
    /// The replication mode this replica runs.
    #[serde(default)]
    pub mode: Replication,
    pub role: Role,
    /// Caught up with its peers and willing to serve.
    pub ready: bool,
    /// Highest leadership epoch this replica has accepted (Raft mode: the term, as
    /// the operational contract asks every replica for an `epoch`).
    pub epoch: Epoch,
    /// The leader this replica follows, if it knows one.
    pub leader: Option<ReplicaId>,
    /// Number of the newest order, `null` when there are none.
    pub last_order: Option<OrderNumber>,
    /// Epoch of the newest order (for comparing how up to date histories are).
    pub last_epoch: Option<Epoch>,
    /// Number of stored orders.
    pub orders: u64,
    /// Hash over all orders (number, name, quantity, key) in number order, hex.
    pub digest: String,
    /// Newest order known committed (durable everywhere the leader waits); reads of
    /// later orders are not answered.
    #[serde(default)]
    pub commit: Option<OrderNumber>,
    /// On a leader: followers it has stopped waiting for until they sync back.
    #[serde(default)]
    pub lagging: Vec<ReplicaId>,
    /// Why this replica stopped for good (its storage or its Raft core failed): it is
    /// not ready, and exits once its shutdown is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Raft mode: the current term (also reported as `epoch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<Term>,
    /// Raft mode: index of the newest log entry known committed by a majority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_index: Option<LogIndex>,
    /// Raft mode: index of the newest log entry applied to the orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_index: Option<LogIndex>,
}

/// The front-end's cache figures, in its `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CacheStats {
    pub enabled: bool,
    pub capacity: usize,
    pub size: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub invalidations: u64,
    /// Whether the cache lease is current (the catalog was heard from recently).
    pub leased: bool,
    pub lease_expiries: u64,
}

/// `GET /cache` of the front-end: what its cache holds and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CacheView {
    pub enabled: bool,
    pub capacity: usize,
    /// Cached toys (lower-cased names), most recently used first.
    pub entries: Vec<CachedToy>,
    /// The journal's events from `after` on (the newest 1024 are kept).
    pub events: Vec<CacheEvent>,
    /// Ask with `after` = this to get only newer events.
    pub next: u64,
}

/// One cached toy and the catalog version its entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CachedToy {
    pub name: String,
    #[schema(value_type = u64)]
    pub version: Version,
}

/// Something that happened to one cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CacheEvent {
    /// Grows by one per event.
    pub seq: u64,
    /// Milliseconds since the front-end started.
    pub at_ms: u64,
    pub kind: CacheEventKind,
    /// The toy (lower-cased name).
    pub name: String,
}

/// Why an entry came or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CacheEventKind {
    /// Stored after a lookup read the catalog.
    Filled,
    /// Dropped to make room (least recently used).
    Evicted,
    /// Dropped because the toy changed (an order, a restock, a newer version seen).
    Invalidated,
    /// Dropped because the cache's lease ran out (the catalog went unheard).
    Expired,
}

/// `GET /health` of the front-end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FrontendHealth {
    /// Always `"frontend"`.
    pub service: String,
    /// The order replica it believes leads, if any.
    #[schema(value_type = Option<u32>)]
    pub leader: Option<ReplicaId>,
    /// The leader's epoch (Raft mode: its term).
    #[schema(value_type = Option<u64>)]
    pub epoch: Option<Epoch>,
    pub cache: CacheStats,
    /// Its name in the cluster (`frontend`, or `frontend1` … of several).
    #[serde(default)]
    pub name: String,
    /// What it has served since it started; absent while its metrics are off. Two
    /// readings give its rates (the dashboard shows every front-end's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<Served>,
}

/// Requests a front-end has served since it started, and the time spent on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Served {
    /// `GET /products/{name}` replies.
    pub lookups: u64,
    /// Their summed latency, in microseconds.
    pub lookup_us: u64,
    /// `POST /orders` replies.
    pub orders: u64,
    /// Their summed latency, in microseconds.
    pub order_us: u64,
}

/// `GET /health` of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogHealth {
    /// Always `"catalog"`.
    pub service: String,
    /// Seeded and serving.
    pub ready: bool,
    /// How often sold-out toys are restocked.
    #[serde(default)]
    pub restock_period_ms: u64,
    /// Time until the next restock round.
    #[serde(default)]
    pub next_restock_ms: u64,
    /// A hash of every toy's stock and version and of the stock counters: replicas of
    /// a replicated catalog that applied the same changes report the same digest.
    #[serde(default)]
    pub digest: String,
    /// A replicated catalog's place in its Raft group (absent for the single catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupStatus>,
}

/// Where a member of a replicated catalog stands in its Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    pub id: ReplicaId,
    pub role: Role,
    pub term: Term,
    /// The leader it follows, if it knows one.
    pub leader: Option<ReplicaId>,
    pub commit_index: Option<LogIndex>,
    pub applied_index: Option<LogIndex>,
}
