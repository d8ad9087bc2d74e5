//! A replicated catalog (`--id` and `--peers`): three catalog replicas form a Raft
//! group on the same machinery as the order log (the `consensus` crate), so the stock
//! outlives the loss of any one of them.
//!
//! Every change goes through the log: a batch of buys, a restock round, the seeding.
//! A buy is answered once its entry is committed on a majority and applied; what it
//! did is decided by the state machine ([`machine`]), in log order, at the time and key
//! cutoff the leader wrote into the entry, so every replica decides alike.
//!
//! - this module: the entry ([`Change`]), its reply ([`Applied`]), and
//!   [`CatalogRaft`], the replica's handle (buys, restocks, reads, status, routes).
//! - [`machine`]: the state machine over the catalog's store, and its snapshots.
//!
//! Only the leader takes buys, proposes restock rounds (each round at most once,
//! however leaders change) and seeds an empty group from its seed file; a follower
//! answers 421 with the leader it knows. A new leader first announces every toy's
//! version to the front-end ([`CatalogRaft::announce_when_leading`]). Lookups are served by the leader once a
//! majority has confirmed it still leads (a read index), so they never go back in
//! time; `/internal/totals` and `/health` answer from the replica's own state.

// openraft's storage traits return its `StorageError` (over 200 bytes); the state
// machine's helpers return the same type rather than convert back and forth.
#![allow(clippy::result_large_err)]

pub mod machine;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use common::client::{CatalogClient, ClusterClient};
use common::domain::{ReplicaId, Version};
use common::http::PathParam;
use common::retention;
use common::tasks::Tasks;
use common::wire::{BuyRequest, GroupStatus, Role};
use consensus::log::LogStore;
use consensus::{
    Identity, Limits, PeerView, Probe, Proposal, ProposeError, Proposer, RaftNode, ReadError,
};
use openraft::ServerState;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::error::CatalogError;
use crate::invalidate::Invalidator;
use crate::store::{BuyOutcome, SeedToy, Store};

/// Who this group is: openraft's cluster name and the route of its messages (apart
/// from the order log's, should both ever share a process or a proxy).
const GROUP: Identity = Identity {
    name: "toystore-catalog",
    route: "catalog-raft",
};

/// The proposer's limits: at most 4096 buys per entry (a buy batch's limit) and 2
/// entries in flight.
const MAX_BATCH: usize = 4096;
const IN_FLIGHT: usize = 2;

/// How soon a new leader that could not confirm its leadership tries again to
/// announce (see [`CatalogRaft::announce_when_leading`]).
const ANNOUNCE_RETRY: Duration = Duration::from_millis(500);

/// One log entry: a change of the stock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Change {
    /// Buys in order, made at `time` (the leader's clock, ms since the Unix epoch);
    /// keys of buys made before `key_cutoff` have expired.
    Buys {
        buys: Vec<BuyRequest>,
        time: u64,
        key_cutoff: u64,
    },
    /// Restock round `round` (the period's number since the Unix epoch): every
    /// sold-out toy goes to `amount`. A round already applied changes nothing.
    Restock { round: u64, amount: u64 },
    /// The toys and their initial stock; applied only to an empty catalog.
    Seed { toys: Vec<SeedToy>, stock: u64 },
}

/// Why the state machine refused one buy (the refusals of [`CatalogError`], in a
/// form a log reply can carry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Refusal {
    UnknownProduct(String),
    InsufficientStock {
        name: String,
        available: u64,
        requested: u64,
    },
    KeyReused(String),
    BadRequest(String),
}

impl From<Refusal> for CatalogError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::UnknownProduct(name) => CatalogError::UnknownProduct(name),
            Refusal::InsufficientStock {
                name,
                available,
                requested,
            } => CatalogError::InsufficientStock {
                name,
                available,
                requested,
            },
            Refusal::KeyReused(key) => CatalogError::KeyReused(key),
            Refusal::BadRequest(why) => CatalogError::BadRequest(why),
        }
    }
}

impl Refusal {
    /// A buy's refusal, or `Err` for a failure that must abort the whole entry.
    pub fn of(e: CatalogError) -> Result<Refusal, CatalogError> {
        match e {
            CatalogError::UnknownProduct(name) => Ok(Refusal::UnknownProduct(name)),
            CatalogError::InsufficientStock {
                name,
                available,
                requested,
            } => Ok(Refusal::InsufficientStock {
                name,
                available,
                requested,
            }),
            CatalogError::KeyReused(key) => Ok(Refusal::KeyReused(key)),
            CatalogError::BadRequest(why) => Ok(Refusal::BadRequest(why)),
            other => Err(other),
        }
    }
}

/// What applying one entry did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Applied {
    /// One outcome per buy, in order.
    Buys(Vec<Result<BuyOutcome, Refusal>>),
    /// The toys restocked, with their new versions.
    Restocked(Vec<(String, Version)>),
    /// Whether the seed was applied (not when the catalog already had toys).
    Seeded(bool),
    /// A blank or membership entry.
    Nothing,
}

openraft::declare_raft_types!(
    /// openraft's types for the catalog: a log entry carries a [`Change`]; applying it
    /// answers what it [`Applied`].
    pub TypeConfig:
        D = Change,
        R = Applied,
        SnapshotData = consensus::snapshot::LazyBytes,
);

pub type Entry = openraft::Entry<TypeConfig>;

/// How queued buys become an entry: stamped with the leader's time and key cutoff.
struct Buys {
    key_window: Duration,
}

impl Proposal<TypeConfig> for Buys {
    type Write = BuyRequest;
    type Answer = Result<BuyOutcome, Refusal>;

    fn entry(&self, buys: Vec<BuyRequest>) -> Change {
        let time = retention::now_ms();
        Change::Buys {
            buys,
            time,
            key_cutoff: retention::cutoff(time, self.key_window),
        }
    }

    fn answers(&self, reply: Applied) -> Vec<Self::Answer> {
        match reply {
            Applied::Buys(outcomes) => outcomes,
            // Not an entry of buys: no answers, which the proposer reports as a
            // mismatch rather than guessing.
            _ => Vec::new(),
        }
    }
}

/// Asks a peer catalog's `/health` where it stands in the group (a single catalog
/// is no member).
#[derive(Clone)]
struct HealthProbe(ClusterClient);

impl Probe for HealthProbe {
    async fn probe(&self, peer: &Url, within: Duration) -> Option<PeerView> {
        let health = CatalogClient::new(self.0.clone(), peer.clone())
            .health_within(within)
            .await
            .ok()?;
        let group = health.group?;
        Some(PeerView {
            term: group.term,
            leader: group.leader,
            commit_index: group.commit_index,
        })
    }
}

/// A replicated catalog's settings, from its flags.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub id: ReplicaId,
    /// Every member, this one included.
    pub members: Vec<(ReplicaId, Url)>,
    pub group: consensus::Settings,
    /// How long keys are kept.
    pub key_window: Duration,
    /// What an empty group is seeded with (by its first leader).
    pub seed: (Vec<SeedToy>, u64),
    /// `--rebuild`: the data directory was set aside; rejoin the group as a new member
    /// would (see `consensus::rejoin`).
    pub rebuild: bool,
}

/// This replica of the catalog group. Cheap to clone.
#[derive(Clone)]
pub struct CatalogRaft {
    node: RaftNode<TypeConfig>,
    store: Store,
    proposer: Proposer<TypeConfig, Buys>,
}

impl CatalogRaft {
    /// Opens the log (its own database in `log_dir`) and starts the member on it and
    /// `store`, with its proposer, the seeding of an empty group and the key pruner.
    pub async fn start(
        store: Store,
        (log_dir, cache_mb): (&std::path::Path, u64),
        cluster: ClusterClient,
        settings: RaftSettings,
        tasks: &Tasks,
    ) -> Result<Self, CatalogError> {
        let log = LogStore::open(log_dir, cache_mb, false, tasks)?;
        if settings.rebuild {
            log.set_rebuilding(true).await.map_err(|e| {
                CatalogError::RaftStart(Box::new(consensus::StartError::Storage(Box::new(e))))
            })?;
        }
        let node = RaftNode::start(
            settings.id,
            GROUP,
            &settings.members,
            log,
            machine::Machine::open(store.clone())?,
            cluster.clone(),
            settings.group,
            HealthProbe(cluster),
            tasks,
        )
        .await
        .map_err(|e| CatalogError::RaftStart(Box::new(e)))?;
        let proposer = Proposer::start(
            node.raft().clone(),
            Buys {
                key_window: settings.key_window,
            },
            Limits {
                max_batch: MAX_BATCH,
                in_flight: IN_FLIGHT,
                commit: settings.group.commit,
            },
            "catalog raft",
            tasks,
        );
        let raft = CatalogRaft {
            node,
            store: store.clone(),
            proposer,
        };
        tasks.spawn_cancellable("catalog seeding", raft.clone().seed(settings.seed));
        // Only keys older than the machine's own cutoff, which every replica applies
        // alike, are dropped, and none that the newest snapshot holds (see `machine`).
        tasks.spawn(
            "key pruner",
            retention::prune_loop(
                retention::prune_period(settings.key_window),
                {
                    let store = store.clone();
                    move || machine::Machine::prune_cutoff(&store)
                },
                move |cutoff, limit| store.prune_keys(cutoff, limit),
                tasks.clone(),
            ),
        );
        Ok(raft)
    }

    /// Seeds an empty group: whoever leads while the catalog has no toys proposes the
    /// seed (applied once: the state machine ignores a second). Ends once seeded.
    async fn seed(self, (toys, stock): (Vec<SeedToy>, u64)) {
        while self.store.is_empty() {
            if self.node.leads().is_ok() {
                let change = Change::Seed {
                    toys: toys.clone(),
                    stock,
                };
                match self.node.raft().client_write(change).await {
                    Ok(reply) if reply.data == Applied::Seeded(true) => {
                        tracing::info!(toys = toys.len(), stock, "seeded the catalog group");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "seeding not committed yet"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn id(&self) -> ReplicaId {
        self.node.id()
    }

    fn not_leader(&self, leader: Option<ReplicaId>) -> CatalogError {
        CatalogError::NotLeader {
            id: self.node.id(),
            leader,
        }
    }

    /// Ok if this replica leads and has confirmed with a majority that it still does,
    /// having applied everything committed before: its state is then as new as any.
    pub async fn linearize(&self) -> Result<(), CatalogError> {
        self.node
            .leads()
            .map_err(|leader| self.not_leader(leader))?;
        match self.node.linearize().await {
            Ok(()) => Ok(()),
            Err(e @ (ReadError::NotConfirmed(_) | ReadError::Timeout(_))) => {
                Err(CatalogError::NoMajority(e.to_string()))
            }
            Err(e @ ReadError::Fatal(_)) => Err(CatalogError::RaftRead(e)),
        }
    }

    /// Queues `buys` for the next entries and waits until they are applied; one
    /// outcome per buy. If any of them could not be committed (no longer the leader,
    /// no majority) the whole batch fails, so the caller sends it again elsewhere:
    /// the buys that did commit are then answered as repeated (same keys).
    pub async fn buy_batch(
        &self,
        buys: &[BuyRequest],
    ) -> Result<Vec<Result<BuyOutcome, CatalogError>>, CatalogError> {
        self.node
            .leads()
            .map_err(|leader| self.not_leader(leader))?;
        let answers =
            futures_util::future::join_all(buys.iter().map(|b| self.proposer.propose(b.clone())))
                .await;
        answers
            .into_iter()
            .map(|answer| match answer {
                Ok(outcome) => Ok(outcome.map_err(CatalogError::from)),
                Err(e) => Err(self.propose_error(e)),
            })
            .collect()
    }

    /// Proposes restock round `round`, if this replica leads; answers the toys it
    /// restocked (none if the round was done already).
    pub async fn restock(
        &self,
        round: u64,
        amount: u64,
    ) -> Result<Vec<(String, Version)>, CatalogError> {
        self.node
            .leads()
            .map_err(|leader| self.not_leader(leader))?;
        let write = self
            .node
            .raft()
            .client_write(Change::Restock { round, amount })
            .await;
        match write {
            Ok(reply) => match reply.data {
                Applied::Restocked(toys) => Ok(toys),
                _ => Err(CatalogError::Internal(
                    "a restock entry answered no restock",
                )),
            },
            Err(e) => Err(CatalogError::NoMajority(e.to_string())),
        }
    }

    fn propose_error(&self, e: ProposeError) -> CatalogError {
        match e {
            ProposeError::NotLeader { leader } => self.not_leader(leader),
            e @ ProposeError::NoMajority { .. } => CatalogError::NoMajority(e.to_string()),
            e => CatalogError::Proposal(e),
        }
    }

    /// Where this replica stands, for `/health`.
    pub fn status(&self) -> (bool, GroupStatus) {
        let view = self.node.view();
        let status = GroupStatus {
            id: self.node.id(),
            role: if view.leading {
                Role::Leader
            } else {
                Role::Follower
            },
            term: view.term,
            leader: view.leader,
            commit_index: view.commit_index,
            applied_index: view.applied_index,
        };
        (view.ready, status)
    }

    /// A new leader's first act toward the front-end: once it has confirmed its
    /// leadership with a majority (and so applied everything committed before), it
    /// announces every toy's version, so a front-end drops whatever pushes lost with
    /// its predecessor left stale, without waiting for its lease poll. Once per term
    /// it leads; runs until shutdown drops it.
    pub async fn announce_when_leading(self, invalidator: Invalidator) {
        let mut metrics = self.node.raft().metrics();
        let mut announced: Option<u64> = None;
        loop {
            let (leading, term) = {
                let m = metrics.borrow_and_update();
                (m.state == ServerState::Leader, m.current_term)
            };
            if leading && announced != Some(term) && self.linearize().await.is_ok() {
                match self.store.products() {
                    Ok(products) => {
                        let toys = products.len();
                        for p in products {
                            invalidator.announce(p.name.into_string(), Version(p.version));
                        }
                        announced = Some(term);
                        tracing::info!(term, toys, "leading: announced every toy's version");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the toys to announce"),
                }
            }
            // On a change, or again in a while if the leadership was not confirmed.
            if let Ok(Err(_)) = tokio::time::timeout(ANNOUNCE_RETRY, metrics.changed()).await {
                return; // the member has stopped
            }
        }
    }

    /// Whether this replica leads now (for the restock loop).
    pub fn leads(&self) -> bool {
        self.node.leads().is_ok()
    }

    /// Raft's messages from peers (token-guarded by the caller).
    pub fn routes<S>(&self) -> Router<S> {
        Router::new()
            .route("/internal/catalog-raft/{kind}", post(raft_message))
            .with_state(self.clone())
    }

    /// Stops the Raft node (the log is already durable).
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
    }
}

/// One of Raft's messages from a peer (bincode in, bincode out).
async fn raft_message(
    State(raft): State<CatalogRaft>,
    PathParam(kind): PathParam,
    body: Bytes,
) -> Result<impl IntoResponse, CatalogError> {
    let reply = raft.node.handle(&kind, &body).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        reply,
    ))
}
