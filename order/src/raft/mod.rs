//! Raft mode (`--replication raft`): the three replicas form a Raft group on the
//! openraft library, which elects the leader and commits each batch of orders on a
//! majority; the front-end only discovers who leads.
//!
//! - [`log`]: the log and the vote in sled, flushed before openraft is told.
//! - [`machine`]: the state machine — numbering orders in log order — and snapshots.
//! - [`network`]: Raft's messages over the cluster's HTTP client.
//!
//! What stays as in primary-backup mode: the HTTP API, the buyer stage (stock is taken
//! at the catalog, idempotently by key, before an order enters the log), the order
//! trees, the digest. An order flows: `http::place` → `Buyer::buy` → [`RaftNode::submit`]
//! (a task drains the queue into one log entry per batch, several batches in flight)
//! → openraft appends, replicates, commits on a majority and applies → the number the
//! state machine gave it.

// openraft's storage traits return its `StorageError` (over 200 bytes); our helpers
// return the same type rather than convert back and forth.
#![allow(clippy::result_large_err)]

pub mod log;
pub mod machine;
pub mod network;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::client::{ClusterClient, OrderClient};
use common::retention;
use common::wire::{NewOrder, OrderRecord, ReplicaStatus, Replication, Role};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::OrderError;
use crate::idempotency::Purchase;
use crate::store::Store;

/// Most orders in one log entry.
const MAX_BATCH: usize = 1024;

/// Most log entries being committed at once; more orders wait and join a later entry.
/// Every entry costs a round of messages and a flush on each replica, so fewer,
/// fuller entries carry more orders per second: measured at 32 clients, 1–2 entries
/// in flight gave ~2,900 orders/s, 8 gave ~2,200 and 32 gave ~1,500.
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
    Number(u64),
    /// Its key was used before for a different order.
    KeyReused,
    /// The catalog was not reached and no order is held for its key.
    NotBought,
}

openraft::declare_raft_types!(
    /// openraft's types for toystore: a log entry carries a [`Batch`]; applying it
    /// answers one [`Placed`] per order.
    pub TypeConfig:
        D = Batch,
        R = Vec<Placed>,
        SnapshotData = snapshot::SnapshotBytes,
);

pub type NodeId = u64;
pub type Node = BasicNode;
pub type Entry = openraft::Entry<TypeConfig>;

/// Raft's settings, from the replica's flags.
#[derive(Debug, Clone, Copy)]
pub struct RaftSettings {
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// Shortest election timeout; each timeout is drawn between this and twice it.
    pub election: Duration,
    /// How long a batch may wait for a majority before its orders are answered 503.
    pub commit: Duration,
    /// How long a read may wait for the leader to confirm its leadership.
    pub read: Duration,
    /// Log entries between snapshots; as many are kept after the log is purged.
    pub snapshot_entries: u64,
    /// How long the replicas keep an idempotency key.
    pub key_window: Duration,
    /// Test-only fault injection.
    pub fault: Option<crate::config::Fault>,
}

fn to_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
}

fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map(|(v, _)| v)
}

struct Submit {
    order: NewOrder,
    purchase: Purchase,
    reply: oneshot::Sender<Result<u64, OrderError>>,
}

/// Handle to this replica's Raft node. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: u32,
    raft: Raft<TypeConfig>,
    /// Set once this replica has applied everything its leader had committed when
    /// it asked (after a start); until then it is not ready. A restarted follower
    /// learns of the leader from its first heartbeat, before it has the entries it
    /// missed: knowing the leader alone does not mean caught up.
    caught_up: AtomicBool,
    store: Store,
    log: log::LogStore,
    queue: mpsc::Sender<Submit>,
    settings: RaftSettings,
}

impl RaftNode {
    /// Opens the log (its own database in `log_dir`, with a page cache of `cache_mb`
    /// MiB) and starts the Raft node on it and the store. The replica with the lowest
    /// id initialises the group if neither it nor any peer that answers has one yet.
    pub async fn start(
        id: u32,
        store: Store,
        (log_dir, cache_mb): (&std::path::Path, u64),
        replicas: &[(u32, Url)],
        cluster: ClusterClient,
        settings: RaftSettings,
    ) -> Result<Self, OrderError> {
        let peers: Vec<(u32, Url)> = replicas.iter().filter(|(p, _)| *p != id).cloned().collect();
        store.claim_mode(Replication::Raft)?;
        let log = log::LogStore::open(log_dir, cache_mb, settings.fault)?;
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let config = openraft::Config {
            cluster_name: "toystore".into(),
            heartbeat_interval: millis(settings.heartbeat),
            election_timeout_min: millis(settings.election),
            election_timeout_max: millis(settings.election).saturating_mul(2),
            install_snapshot_timeout: millis(settings.commit),
            max_payload_entries: 64,
            snapshot_max_chunk_size: 1 << 20,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_entries),
            max_in_snapshot_log_to_keep: settings.snapshot_entries,
            ..Default::default()
        }
        .validate()
        .map_err(|e| OrderError::Config(format!("raft settings: {e}")))?;
        let network = network::Network::new(cluster.clone(), peers.clone());
        let raft = Raft::new(
            u64::from(id),
            Arc::new(config),
            network,
            log.clone(),
            machine::Machine::new(store.clone()),
        )
        .await
        .map_err(|e| OrderError::Storage(format!("raft did not start: {e}")))?;

        let (queue, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_loop(raft.clone(), rx, id, settings));
        let node = RaftNode {
            inner: Arc::new(Inner {
                id,
                raft,
                caught_up: AtomicBool::new(false),
                store,
                log,
                queue,
                settings,
            }),
        };
        let client = OrderClient::new(cluster);
        tokio::spawn(catch_up(node.clone(), client.clone(), peers.clone()));
        if peers.iter().all(|(p, _)| *p > id) {
            let members: BTreeMap<NodeId, Node> = replicas
                .iter()
                .map(|(p, url)| {
                    (
                        u64::from(*p),
                        BasicNode {
                            addr: url.to_string(),
                        },
                    )
                })
                .collect();
            tokio::spawn(initialize(node.clone(), members, client, peers));
        }
        Ok(node)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Ok if this replica leads and so takes client writes.
    pub fn check_writable(&self) -> Result<(), OrderError> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        if m.state == ServerState::Leader {
            Ok(())
        } else {
            Err(OrderError::NotLeader {
                id: self.inner.id,
                leader: m.current_leader.and_then(|l| u32::try_from(l).ok()),
            })
        }
    }

    /// Queues `order` for the next log entry and waits until it is committed and
    /// applied; answers its number.
    pub async fn submit(&self, order: NewOrder, purchase: Purchase) -> Result<u64, OrderError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || OrderError::Storage("the raft writer has stopped".into());
        self.inner
            .queue
            .send(Submit {
                order,
                purchase,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// The committed order `number`. The state machine holds only committed orders;
    /// one it lacks may be committed but not yet applied here, so the leader first
    /// confirms its leadership and waits until it has applied everything committed
    /// (a linearizable read); a follower sends the reader to the leader.
    pub async fn read(&self, number: u64) -> Result<OrderRecord, OrderError> {
        if let Some(record) = self.inner.store.order(number)? {
            return Ok(record);
        }
        self.check_writable()?;
        match tokio::time::timeout(
            self.inner.settings.read,
            self.inner.raft.ensure_linearizable(),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(RaftError::APIError(e))) => {
                return Err(OrderError::NoMajority(format!(
                    "cannot confirm leadership: {e}"
                )))
            }
            Ok(Err(RaftError::Fatal(e))) => return Err(OrderError::Storage(e.to_string())),
            Err(_) => {
                return Err(OrderError::NoMajority(
                    "no majority confirmed the leadership in time".into(),
                ))
            }
        }
        self.inner
            .store
            .order(number)?
            .ok_or(OrderError::UnknownOrder(number))
    }

    /// What `GET /health` reports. Also sets each follower's lag in log entries for
    /// `/metrics` (`follower_lag_entries{follower}`: as leader, the last log index
    /// minus the highest one the follower has matched; 0 on a follower).
    pub fn status(&self) -> Result<ReplicaStatus, OrderError> {
        let m = self.inner.raft.metrics().borrow().clone();
        let last = m.last_log_index.map_or(0, |i| i.saturating_add(1));
        for (follower, _) in m.membership_config.nodes().filter(|(id, _)| **id != m.id) {
            // Only the leader knows; elsewhere 0, not the values of an earlier term.
            let behind = match &m.replication {
                Some(replication) => {
                    let matched = replication.get(follower).copied().flatten();
                    last.saturating_sub(matched.map_or(0, |l| l.index.saturating_add(1)))
                }
                None => 0,
            };
            metrics::gauge!("follower_lag_entries", "follower" => follower.to_string())
                .set(behind as f64);
        }
        let store = &self.inner.store;
        let last = store.last()?;
        let applied = m.last_applied.map(|l| l.index);
        let committed = self.inner.log.committed_index();
        let leader = m.current_leader.and_then(|l| u32::try_from(l).ok());
        Ok(ReplicaStatus {
            id: self.inner.id,
            mode: Replication::Raft,
            role: if m.state == ServerState::Leader {
                Role::Leader
            } else {
                Role::Follower
            },
            // Caught up once (after its start) and knows a leader. Not "has applied
            // all it knows committed": under load a replica applies a moment after it
            // learns of a commit, so that would flicker.
            ready: self.inner.caught_up.load(Ordering::SeqCst) && leader.is_some(),
            epoch: m.current_term,
            leader,
            last_order: last.as_ref().map(|r| r.number),
            last_epoch: last.as_ref().map(|r| r.epoch),
            orders: store.count(),
            digest: store.digest(),
            commit: last.as_ref().map(|r| r.number),
            lagging: Vec::new(),
            term: Some(m.current_term),
            commit_index: committed,
            applied_index: applied,
        })
    }

    /// Handles one of Raft's messages from a peer: `kind` is `append`, `vote` or
    /// `snapshot`; the body and the answer are bincode.
    pub async fn handle(&self, kind: &str, body: &[u8]) -> Result<Vec<u8>, OrderError> {
        let raft = &self.inner.raft;
        let unreadable = |e: bincode::error::DecodeError| {
            OrderError::BadRequest(format!("unreadable raft message: {e}"))
        };
        tracing::trace!(kind, bytes = body.len(), "raft message");
        let answer = match kind {
            "append" => to_bytes(
                &raft
                    .append_entries(from_bytes(body).map_err(unreadable)?)
                    .await,
            ),
            "vote" => to_bytes(&raft.vote(from_bytes(body).map_err(unreadable)?).await),
            "snapshot" => to_bytes(
                &raft
                    .install_snapshot(from_bytes(body).map_err(unreadable)?)
                    .await,
            ),
            other => return Err(OrderError::BadRequest(format!("no raft message {other:?}"))),
        };
        answer.map_err(|e| OrderError::Storage(format!("cannot encode a raft reply: {e}")))
    }

    /// Stops the Raft node (its tasks end; the log is already durable).
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
    }
}

/// Marks the replica caught up once it leads, or once it has applied what its leader
/// reported committed when asked (a fixed target: under load the leader's commit
/// index moves on all the time); ends then, or when the node stops.
async fn catch_up(node: RaftNode, client: OrderClient, peers: Vec<(u32, Url)>) {
    let inner = &node.inner;
    let mut metrics = inner.raft.metrics();
    let me = u64::from(inner.id);
    let mut target: Option<(u64, Option<u64>)> = None; // (leader, its commit index)
    loop {
        let (leader, applied, stopped) = {
            let m = metrics.borrow_and_update();
            (
                m.current_leader,
                m.last_applied.map(|l| l.index),
                m.running_state.is_err(),
            )
        };
        if stopped {
            return;
        }
        let done = match leader {
            Some(l) if l == me => true,
            Some(l) => {
                if target.is_none_or(|(asked, _)| asked != l) {
                    target = None;
                    if let Some((_, url)) = peers.iter().find(|(p, _)| u64::from(*p) == l) {
                        if let Ok(s) = client.status_within(url, inner.settings.read).await {
                            if s.mode == Replication::Raft {
                                target = Some((l, s.commit_index));
                            }
                        }
                    }
                }
                target.is_some_and(|(_, commit)| applied >= commit)
            }
            None => false,
        };
        if done {
            inner.caught_up.store(true, Ordering::SeqCst);
            tracing::info!(applied, "caught up with the raft group");
            return;
        }
        // Wait for progress (or a little while, if the leader could not be asked).
        if let Ok(Err(_)) = tokio::time::timeout(inner.settings.heartbeat, metrics.changed()).await
        {
            return; // the node has stopped
        }
    }
}

/// Initialises the group with every configured replica, unless a peer already
/// belongs to one (this replica's data was lost while the others kept theirs).
async fn initialize(
    node: RaftNode,
    members: BTreeMap<NodeId, Node>,
    client: OrderClient,
    peers: Vec<(u32, Url)>,
) {
    let raft = &node.inner.raft;
    if raft.is_initialized().await.unwrap_or(true) {
        return;
    }
    for (peer, url) in &peers {
        if let Ok(s) = client
            .status_within(url, node.inner.settings.election)
            .await
        {
            if s.epoch > 0 || s.leader.is_some() {
                tracing::info!(
                    peer,
                    "a peer already belongs to a raft group; not initialising"
                );
                return;
            }
        }
    }
    match raft.initialize(members).await {
        Ok(()) => tracing::info!("initialised the raft group"),
        Err(e) => tracing::info!(error = %e, "raft group not initialised"),
    }
}

/// Drains queued orders into log entries, up to [`IN_FLIGHT`] entries at a time, and
/// answers each order when its entry is applied (or failed).
async fn write_loop(
    raft: Raft<TypeConfig>,
    mut rx: mpsc::Receiver<Submit>,
    id: u32,
    settings: RaftSettings,
) {
    let wait = settings.commit;
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let submits: Vec<Submit> = std::mem::take(&mut batch);
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let time = retention::now_ms();
            let batch = Batch {
                orders: submits.iter().map(|s| s.order.clone()).collect(),
                purchases: submits.iter().map(|s| s.purchase).collect(),
                time,
                key_cutoff: retention::cutoff(time, settings.key_window),
            };
            let started = std::time::Instant::now();
            let written = tokio::time::timeout(wait, raft.client_write(batch)).await;
            tracing::debug!(
                orders = submits.len(),
                commit_us = started.elapsed().as_micros() as u64,
                "entry committed"
            );
            metrics::histogram!("raft_entry_size").record(submits.len() as f64);
            metrics::histogram!("raft_commit_seconds").record(started.elapsed().as_secs_f64());
            match written {
                Ok(Ok(response)) if response.data.len() == submits.len() => {
                    for (submit, placed) in submits.into_iter().zip(response.data) {
                        let answer = match placed {
                            Placed::Number(n) => Ok(n),
                            Placed::KeyReused => Err(OrderError::KeyReused(submit.order.key)),
                            Placed::NotBought => Err(crate::idempotency::not_bought()),
                        };
                        let _ = submit.reply.send(answer);
                    }
                }
                other => {
                    let error = move || match &other {
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                            OrderError::NotLeader {
                                id,
                                leader: f.leader_id.and_then(|l| u32::try_from(l).ok()),
                            }
                        }
                        Ok(Err(e)) => OrderError::Storage(format!("raft write failed: {e}")),
                        Ok(Ok(_)) => OrderError::Storage(
                            "the state machine answered a different number of orders".into(),
                        ),
                        Err(_) => OrderError::NoMajority(format!(
                            "no majority stored the orders within {} ms",
                            wait.as_millis()
                        )),
                    };
                    for submit in submits {
                        let _ = submit.reply.send(Err(error()));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership, Vote};

    fn roundtrip<T: Serialize + DeserializeOwned + std::fmt::Debug>(v: &T) {
        let bytes = to_bytes(v).expect("encode");
        let back: T = from_bytes(&bytes).expect("decode");
        assert_eq!(format!("{v:?}"), format!("{back:?}"));
    }

    #[test]
    fn raft_types_survive_bincode() {
        let id = LogId::new(CommittedLeaderId::new(3, 1), 7);
        roundtrip(&Some(id));
        roundtrip(&Vote::<NodeId>::new(3, 1));
        let nodes: BTreeMap<NodeId, Node> = (1..=3)
            .map(|i| {
                (
                    i,
                    BasicNode {
                        addr: "http://x".into(),
                    },
                )
            })
            .collect();
        let m = Membership::<NodeId, Node>::new(vec![nodes.keys().copied().collect()], nodes);
        roundtrip(&StoredMembership::new(Some(id), m.clone()));
        roundtrip(&Entry {
            log_id: id,
            payload: openraft::EntryPayload::Membership(m),
        });
        roundtrip(&Entry {
            log_id: id,
            payload: openraft::EntryPayload::Blank,
        });
    }
}
