//! Bodies on the wire, public and internal, as plain serde types.
//!
//! Public replies are wrapped in [`Data`] (`{"data": ...}`); errors use
//! [`crate::error::ErrorBody`]. Internal bodies travel between services only and are
//! guarded by the cluster token.

use serde::{Deserialize, Serialize};

use crate::trace::RequestId;

/// The success envelope of every reply: `{"data": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Data<T> {
    pub data: T,
}

/// Wraps `data` in the success envelope, ready to return from a handler.
pub fn data<T: Serialize>(data: T) -> axum::Json<Data<T>> {
    axum::Json(Data { data })
}

/// A toy as the public API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    pub name: String,
    /// Price in the store's currency, two decimals.
    pub price: f64,
    pub quantity: u64,
}

/// A toy as the catalog reports it: the public fields plus its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogProduct {
    pub name: String,
    pub price: f64,
    pub quantity: u64,
    /// Grows with every stock change of this toy; lets caches order what they hear.
    pub version: u64,
}

impl From<CatalogProduct> for Product {
    fn from(p: CatalogProduct) -> Self {
        Product {
            name: p.name,
            price: p.price,
            quantity: p.quantity,
        }
    }
}

/// Catalog request to take stock for one order, idempotent by `key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuyRequest {
    pub name: String,
    pub quantity: u64,
    pub key: String,
    /// The `x-request-id` of the order's request, for the catalog's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// The replicas' key cutoff (ms since the Unix epoch): a key the catalog recorded
    /// before it counts as expired there too, whatever the catalog's own window, so
    /// the catalog never calls "repeated" a key the replicas have forgotten.
    #[serde(default)]
    pub valid_from: u64,
}

/// What a successful buy did (the same reply again for a repeated key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuyReply {
    /// Canonical name of the toy.
    pub name: String,
    pub quantity: u64,
    /// The toy's version right after this buy.
    pub version: u64,
    /// True when the stock was taken before, for the same key (and not now).
    #[serde(default)]
    pub repeated: bool,
}

/// The outcome of one buy in a batch: `{"ok": {...}}` or `{"error": {code, message}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuyResult {
    Ok(BuyReply),
    Error(crate::error::ErrorDetail),
}

/// Catalog → front-end: forget what you cached about `name`; it is now at `version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invalidation {
    pub name: String,
    pub version: u64,
}

/// The body of the front-end's invalidation endpoint: one invalidation, or several.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Invalidations {
    One(Invalidation),
    Many(Vec<Invalidation>),
}

impl Invalidations {
    pub fn into_vec(self) -> Vec<Invalidation> {
        match self {
            Invalidations::One(i) => vec![i],
            Invalidations::Many(v) => v,
        }
    }
}

/// Catalog stock accounting: `initial + restocked - sold == current` must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockTotals {
    pub initial: u64,
    pub restocked: u64,
    pub sold: u64,
    pub current: u64,
}

/// Front-end → leader: place an order (the front-end has validated it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewOrder {
    pub name: String,
    pub quantity: u64,
    /// Idempotency key: a retry with the same key gets the same order.
    pub key: String,
    /// The `x-request-id` of the request that placed it, for every replica's log
    /// (it travels in Raft's log entries too, so no `skip_serializing_if`: bincode
    /// needs every field).
    #[serde(default)]
    pub request_id: Option<RequestId>,
}

/// Reply to a placed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderPlaced {
    pub order_number: u64,
}

/// Leader → front-end: the order is placed. The front-end replies only the number;
/// it uses the toy's new version to keep its cache from going stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAccepted {
    pub order_number: u64,
    /// Canonical name of the toy.
    pub name: String,
    /// The toy's version after this order's stock change (0 when the order was placed
    /// by an earlier request with the same key and the catalog was not asked again).
    pub version: u64,
}

/// An order as the public API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    pub number: u64,
    pub name: String,
    pub quantity: u64,
}

/// An order as replicas store and replicate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub number: u64,
    pub name: String,
    pub quantity: u64,
    pub key: String,
    /// Leadership epoch in which the leader wrote this order.
    pub epoch: u64,
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
            name: r.name,
            quantity: r.quantity,
        }
    }
}

/// Identifies one entry of a replica's history: number, epoch and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPos {
    pub number: u64,
    pub epoch: u64,
    pub key: String,
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

/// Leader → follower: append these orders after `prev`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replicate {
    pub leader_id: u32,
    pub epoch: u64,
    /// The leader's entry just before `entries[0]` (None when they start at order 0).
    pub prev: Option<LogPos>,
    pub entries: Vec<OrderRecord>,
    /// The leader's commit index: every order up to it is durable on the leader and
    /// on every follower it waits for (so it may have been acknowledged).
    #[serde(default)]
    pub commit: Option<u64>,
    /// The `x-request-id` of each entry's order, by position, for the followers' logs
    /// (empty when none is known).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_ids: Vec<Option<RequestId>>,
}

/// Follower → leader: the batch is flushed to disk.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Persisted {
    pub last_order: Option<u64>,
}

/// Front-end → replica: `leader_id` leads from `epoch` on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LeaderNotice {
    pub leader_id: u32,
    pub epoch: u64,
}

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
    pub id: u32,
    /// The replication mode this replica runs.
    #[serde(default)]
    pub mode: Replication,
    pub role: Role,
    /// Caught up with its peers and willing to serve.
    pub ready: bool,
    /// Highest leadership epoch this replica has accepted.
    pub epoch: u64,
    /// The leader this replica follows, if it knows one.
    pub leader: Option<u32>,
    /// Number of the newest order, `null` when there are none.
    pub last_order: Option<u64>,
    /// Epoch of the newest order (for comparing how up to date histories are).
    pub last_epoch: Option<u64>,
    /// Number of stored orders.
    pub orders: u64,
    /// Hash over all orders (number, name, quantity, key) in number order, hex.
    pub digest: String,
    /// Newest order known committed (durable everywhere the leader waits); reads of
    /// later orders are not answered.
    #[serde(default)]
    pub commit: Option<u64>,
    /// On a leader: followers it has stopped waiting for until they sync back.
    #[serde(default)]
    pub lagging: Vec<u32>,
    /// Raft mode: the current term (also reported as `epoch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// Raft mode: index of the newest log entry known committed by a majority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_index: Option<u64>,
    /// Raft mode: index of the newest log entry applied to the orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_index: Option<u64>,
}

/// A page of a replica's history, for catch-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogPage {
    pub entries: Vec<OrderRecord>,
    /// The newest order number the replica holds.
    pub last_order: Option<u64>,
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
    pub version: u64,
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
    pub leader: Option<u32>,
    pub epoch: Option<u64>,
    pub cache: CacheStats,
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
}
