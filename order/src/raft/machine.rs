//! Raft's state machine: the orders, in the same trees as primary-backup mode (so
//! `/health`'s count and digest, `GET /orders/{n}` and catch-up pages read them the
//! same way).
//!
//! Applying an entry numbers its orders `last + 1, …` in log order and indexes their
//! keys, so every replica numbers alike; an order whose key is already held gets the
//! first order's number (or is refused if the key was used for another order; the
//! whole rule is `idempotency`'s). Whether a key is held depends on time, so the
//! time comes from the log, never from the replica's clock: new orders take the
//! entry's `time`, and a key has expired if its order is older than the *key cutoff*,
//! the highest `key_cutoff` of any entry applied so far (a leader whose clock lags
//! cannot bring a key back). The cutoff is part of the machine's position and of its
//! snapshots, and the key pruner drops only keys older than it. The
//! orders of an entry and the machine's position (`SmState`: last applied log id,
//! membership, newest order) are written in one transaction, so after a crash the
//! orders and the position agree and openraft re-applies exactly what follows.
//!
//! Snapshots cost nothing to build: committed orders never change, so a snapshot is
//! its position alone, and its data — every order up to the position's newest — is
//! read when a peer needs it ([`super::snapshot`]). Installing one adds the orders this
//! replica lacks (its own are a prefix of the snapshot's: both are committed history).

use std::collections::HashMap;

use common::domain::{Epoch, IdempotencyKey, OrderNumber};
use common::wire::OrderRecord;
use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use consensus::codec::{decode, encode, io_error};
use consensus::snapshot::LazyBytes;
use consensus::{Node, NodeId};

use super::{Batch, Entry, Placed, TypeConfig};
use crate::idempotency::{decide, Decision, Purchase};
use crate::store::Store;

/// `meta` key of the machine's position.
const STATE: &[u8] = b"raft_machine";
/// `meta` key of the newest snapshot's description.
const SNAPSHOT: &[u8] = b"raft_snapshot";

/// Most orders written in one transaction.
const MAX_APPLY: usize = 4096;

/// Where the machine stands; stored with every applied entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmState {
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    /// Number of the newest order.
    last_order: Option<OrderNumber>,
    /// Keys of orders stored before this time (ms since the Unix epoch) have expired.
    key_cutoff: u64,
}

/// The newest snapshot: its description, the newest order it holds and its key cutoff.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotInfo {
    meta: SnapshotMeta<NodeId, Node>,
    last_order: Option<OrderNumber>,
    key_cutoff: u64,
}

/// Handle to the state machine; cheap to clone (it is its own snapshot builder).
#[derive(Clone)]
pub struct Machine {
    store: Store,
}

fn store_error(e: crate::error::OrderError) -> StorageError<NodeId> {
    io_error(ErrorSubject::StateMachine, ErrorVerb::Write, &e)
}

impl Machine {
    pub fn new(store: Store) -> Self {
        Machine { store }
    }

    fn state(&self) -> Result<SmState, StorageError<NodeId>> {
        match self.store.meta(STATE).map_err(store_error)? {
            Some(bytes) => decode(&bytes),
            None => Ok(SmState::default()),
        }
    }

    fn snapshot_info(&self) -> Result<Option<SnapshotInfo>, StorageError<NodeId>> {
        match self.store.meta(SNAPSHOT).map_err(store_error)? {
            Some(bytes) => decode(&bytes),
            None => Ok(None),
        }
    }

    /// The key cutoff of the machine's position: the key pruner may drop the keys of
    /// orders stored before it.
    pub fn key_cutoff(store: &Store) -> Result<u64, crate::error::OrderError> {
        match store.meta(STATE)? {
            Some(bytes) => consensus::codec::from_bytes::<SmState>(&bytes)
                .map(|s| s.key_cutoff)
                .map_err(|e| {
                    common::storage::StorageError::undecodable("raft machine state", e).into()
                }),
            None => Ok(0),
        }
    }

    /// Numbers the orders of one entry after `state.last_order`, adding the new ones to
    /// `written` (this apply's orders, not yet stored; `new_keys` indexes them).
    fn number(
        &self,
        state: &mut SmState,
        written: &mut Vec<OrderRecord>,
        new_keys: &mut HashMap<IdempotencyKey, usize>,
        batch: Batch,
        term: u64,
    ) -> Result<Vec<Placed>, StorageError<NodeId>> {
        state.key_cutoff = state.key_cutoff.max(batch.key_cutoff);
        let mut placed = Vec::with_capacity(batch.orders.len());
        for (i, order) in batch.orders.into_iter().enumerate() {
            // An entry is written by our own leader; one without a purchase per order
            // is damaged, and its extra orders are refused like unbought ones.
            let purchase = batch
                .purchases
                .get(i)
                .copied()
                .unwrap_or(Purchase::NotBought);
            let held = match new_keys.get(&order.key) {
                Some(i) => written.get(*i).cloned(),
                None => self
                    .store
                    .by_key(&order.key, state.key_cutoff)
                    .map_err(store_error)?,
            };
            match decide(held.as_ref(), &order, purchase) {
                Decision::Held(number) => {
                    placed.push(Placed::Number(number));
                    continue;
                }
                Decision::KeyReused => {
                    placed.push(Placed::KeyReused);
                    continue;
                }
                Decision::NotBought => {
                    placed.push(Placed::NotBought);
                    continue;
                }
                Decision::New => {}
            }
            let number = state
                .last_order
                .map_or(OrderNumber(0), |n| OrderNumber(n.get().saturating_add(1)));
            state.last_order = Some(number);
            new_keys.insert(order.key.clone(), written.len());
            placed.push(Placed::Number(number));
            tracing::info!(
                order = %number,
                toy = %order.name,
                request_id = order.request_id.as_ref().map(tracing::field::display),
                "order applied"
            );
            written.push(OrderRecord {
                number,
                name: order.name,
                quantity: order.quantity,
                key: order.key,
                epoch: Epoch(term),
                time: batch.time,
            });
        }
        Ok(placed)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // One read: the position, the membership and the newest order agree.
        let state = self.state()?;
        let meta = SnapshotMeta {
            last_log_id: state.applied,
            last_membership: state.membership.clone(),
            snapshot_id: match state.applied {
                Some(id) => format!("{}-{}", id.leader_id.term, id.index),
                None => "empty".into(),
            },
        };
        let info = SnapshotInfo {
            meta: meta.clone(),
            last_order: state.last_order,
            key_cutoff: state.key_cutoff,
        };
        self.store
            .set_meta(&[(SNAPSHOT, encode(&Some(info))?)])
            .map_err(store_error)?;
        // The log's flushes do not cover the orders (they are in another database, see
        // `log`): everything this snapshot holds must be durable before openraft purges
        // the entries it came from.
        self.store.flush().await.map_err(store_error)?;
        // openraft 0.9 keeps only the meta of a built snapshot (core/sm/worker.rs);
        // the orders are read when a peer needs them (`get_current_snapshot`), and
        // these bytes too would be made only if read.
        Ok(Snapshot {
            meta,
            snapshot: Box::new(super::snapshot::of_orders(
                self.store.clone(),
                state.last_order,
                state.key_cutoff,
            )),
        })
    }
}

impl RaftStateMachine<TypeConfig> for Machine {
    type SnapshotBuilder = Machine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let state = self.state()?;
        Ok((state.applied, state.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Placed>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        // The entries openraft hands over at once are applied in one transaction (or a
        // few, when a replica catches up with many).
        let mut state = self.state()?;
        let mut replies = Vec::new();
        let mut written = Vec::new();
        let mut new_keys = HashMap::new();
        for entry in entries {
            state.applied = Some(entry.log_id);
            let placed = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => self.number(
                    &mut state,
                    &mut written,
                    &mut new_keys,
                    batch,
                    entry.log_id.leader_id.term,
                )?,
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            replies.push(placed);
            if written.len() >= MAX_APPLY {
                self.store
                    .add_with_meta(&written, &[(STATE, encode(&state)?)])
                    .map_err(store_error)?;
                written.clear();
                new_keys.clear();
            }
        }
        self.store
            .add_with_meta(&written, &[(STATE, encode(&state)?)])
            .map_err(store_error)?;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<LazyBytes>, StorageError<NodeId>> {
        Ok(Box::new(LazyBytes::empty()))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<LazyBytes>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot
            .into_bytes()
            .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, &e))?;
        let mut state = self.state()?;
        // Only the orders this replica lacks are decoded: its own are a prefix.
        let (key_cutoff, missing) = super::snapshot::orders_after(&bytes, state.last_order)
            .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, &e))?;
        state.key_cutoff = state.key_cutoff.max(key_cutoff);
        if let Some(last) = missing.last() {
            state.last_order = Some(last.number);
        }
        state.applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        let info = Some(SnapshotInfo {
            meta: meta.clone(),
            last_order: state.last_order,
            key_cutoff: state.key_cutoff,
        });
        let values = [(STATE, encode(&state)?), (SNAPSHOT, encode(&info)?)];
        // Possibly a large transaction: on the blocking pool, not an async worker.
        let store = self.store.clone();
        let added = missing.len();
        tokio::task::spawn_blocking(move || store.add_with_meta(&missing, &values))
            .await
            .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Write, &e))?
            .map_err(store_error)?;
        self.store.flush().await.map_err(store_error)?;
        tracing::info!(
            orders = added,
            applied = ?meta.last_log_id,
            "installed a snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(info) = self.snapshot_info()? else {
            return Ok(None);
        };
        // Every order up to the snapshot's newest, read and encoded on the blocking
        // pool when openraft first reads the data: at start-up it reads only the meta.
        Ok(Some(Snapshot {
            meta: info.meta,
            snapshot: Box::new(super::snapshot::of_orders(
                self.store.clone(),
                info.last_order,
                info.key_cutoff,
            )),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::domain::{IdempotencyKey, ToyName};
    use common::wire::NewOrder;
    use openraft::{CommittedLeaderId, Membership};
    use tokio::io::AsyncWriteExt;

    use crate::idempotency::Purchase;

    fn entry(index: u64, batch: Batch) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(batch),
        }
    }

    fn batch(key: &str, purchase: Purchase, time: u64, key_cutoff: u64) -> Batch {
        Batch {
            orders: vec![NewOrder {
                name: ToyName::new("Tux").expect("name"),
                quantity: 1,
                key: IdempotencyKey::new(key).expect("key"),
                request_id: None,
            }],
            purchases: vec![purchase],
            time,
            key_cutoff,
        }
    }

    fn machine() -> (tempfile::TempDir, Machine) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        (dir, Machine::new(store))
    }

    #[tokio::test]
    async fn a_leader_whose_clock_lags_cannot_bring_a_key_back() {
        let (_dir, mut m) = machine();
        let placed = m
            .apply([entry(1, batch("k", Purchase::Fresh, 100, 0))])
            .await
            .expect("apply");
        assert_eq!(placed, vec![vec![Placed::Number(OrderNumber(0))]]);
        // A later entry moves the cutoff past the order; the catalog had not been
        // reached, so the order is refused.
        let placed = m
            .apply([entry(2, batch("k", Purchase::NotBought, 500, 200))])
            .await
            .expect("apply");
        assert_eq!(placed, vec![vec![Placed::NotBought]]);
        // An entry of a leader whose clock lags (cutoff 50) still sees the key expired.
        let placed = m
            .apply([entry(3, batch("k", Purchase::Repeated, 150, 50))])
            .await
            .expect("apply");
        assert_eq!(placed, vec![vec![Placed::Number(OrderNumber(1))]]);
        assert_eq!(Machine::key_cutoff(&m.store).expect("cutoff"), 200);
    }

    #[tokio::test]
    async fn a_snapshot_carries_the_key_cutoff() {
        let (_dir, mut leader) = machine();
        leader
            .apply([
                entry(1, batch("a", Purchase::Fresh, 100, 0)),
                entry(2, batch("b", Purchase::Fresh, 300, 250)),
            ])
            .await
            .expect("apply");
        let snapshot = leader.build_snapshot().await.expect("build");
        let mut data = snapshot.snapshot;
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut data, &mut bytes)
            .await
            .expect("read");

        let (_dir2, mut follower) = machine();
        let mut received = follower.begin_receiving_snapshot().await.expect("begin");
        received.write_all(&bytes).await.expect("write");
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 2)),
            last_membership: StoredMembership::new(None, Membership::default()),
            snapshot_id: "1-2".into(),
        };
        follower
            .install_snapshot(&meta, received)
            .await
            .expect("install");
        assert_eq!(Machine::key_cutoff(&follower.store).expect("cutoff"), 250);
        assert_eq!(follower.store.count(), 2);
        // Key "a" (time 100) has expired on the follower as it has on the leader.
        let placed = follower
            .apply([entry(3, batch("a", Purchase::Repeated, 260, 0))])
            .await
            .expect("apply");
        assert_eq!(placed, vec![vec![Placed::Number(OrderNumber(2))]]);
    }
}
