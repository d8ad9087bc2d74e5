//! The replicated catalog's state machine: the catalog's own store (the same trees as
//! the single catalog, so reads, totals and the digest work alike), changed only by
//! applying log entries.
//!
//! Applying an entry runs its steps (`store::Tx`) in log order: buys at the entry's
//! time with the machine's *key cutoff* (the highest cutoff of any entry applied so
//! far, so a leader whose clock lags cannot bring a key back), a restock round unless
//! a round as new was applied before, the seed unless the catalog has toys. The steps
//! of the entries openraft hands over at once and the machine's position (`SmState`:
//! last applied log id, membership, key cutoff, newest restock round) are written in
//! one transaction, so after a crash the stock and the position agree and openraft
//! re-applies exactly what follows. The store is not flushed per entry: the log is
//! durable, and a snapshot flushes before the log it replaces is purged.
//!
//! A snapshot is taken in two parts. When it is taken, under the same lock as
//! applying (openraft builds snapshots beside applying): its *head* — the position's
//! index, cutoff and round, and the toys and counters (a few hundred bytes), kept in
//! the store so the snapshot a peer reads is the one whose meta openraft holds. When a
//! peer first reads it: the keys held at its index ([`Store::keys_at`]), which every
//! buy's time entry records with its log index — so taking a snapshot costs the same
//! however many keys the day has seen. For those keys to still be there, the key
//! pruner stops at the snapshot's cutoff ([`Machine::prune_cutoff`]), and a read that
//! a newer snapshot overtook fails (openraft then sends the newer one). Installing a
//! snapshot replaces the store's content in one transaction.

use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use consensus::codec::{decode, encode, io_error};
use consensus::snapshot::LazyBytes;
use consensus::{Node, NodeId};

use super::{Applied, Change, Entry, Refusal, TypeConfig};
use crate::error::CatalogError;
use crate::store::{lookup_key, Clock, HeldKey, Image, Store};

/// `meta` key of the machine's position.
const STATE: &[u8] = b"raft_machine";
/// `meta` keys of the newest snapshot: its meta, and its head ([`SnapshotHead`]).
const SNAPSHOT_META: &[u8] = b"raft_snapshot_meta";
const SNAPSHOT_HEAD: &[u8] = b"raft_snapshot_head";
/// Where an earlier version kept a snapshot's whole data ([`WholeSnapshot`]).
const WHOLE_SNAPSHOT: &[u8] = b"raft_snapshot_data";
/// The machine's own records, which a snapshot does not carry in its image.
const OWN: [&[u8]; 4] = [STATE, SNAPSHOT_META, SNAPSHOT_HEAD, WHOLE_SNAPSHOT];

/// Where the machine stands; stored with every applied entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmState {
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    /// Keys of buys made before this time (ms since the Unix epoch) have expired.
    key_cutoff: u64,
    /// The newest restock round applied.
    restock_round: u64,
}

/// What a snapshot holds when it is taken.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHead {
    /// The snapshot it belongs to (its meta's `snapshot_id`).
    id: String,
    /// The index of its last entry (0 for none).
    index: u64,
    key_cutoff: u64,
    restock_round: u64,
    /// The toys and counters.
    stock: Image,
    /// The keys, for a snapshot an earlier version took whole; otherwise read from
    /// the store when a peer reads the snapshot.
    keys: Option<Vec<HeldKey>>,
}

/// A snapshot's data, as a peer receives it.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotData {
    id: String,
    key_cutoff: u64,
    restock_round: u64,
    stock: Image,
    keys: Vec<HeldKey>,
}

/// How an earlier version kept a snapshot: the store's whole image.
#[derive(Deserialize)]
struct WholeSnapshot {
    id: String,
    key_cutoff: u64,
    restock_round: u64,
    image: Vec<u8>,
}

/// Handle to the state machine; cheap to clone (it is its own snapshot builder).
#[derive(Clone)]
pub struct Machine {
    store: Store,
    /// Held while entries are applied and while a snapshot is taken (which openraft
    /// runs beside applying), so a snapshot's image and position agree. A std mutex:
    /// held only by blocking code, never across an `.await`.
    writing: Arc<Mutex<()>>,
}

fn store_error(e: CatalogError) -> StorageError<NodeId> {
    io_error(ErrorSubject::StateMachine, ErrorVerb::Write, &e)
}

fn read_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    io_error(ErrorSubject::StateMachine, ErrorVerb::Read, &e)
}

/// A value the machine stored, decoded (the catalog's error, naming the type).
fn from_store<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CatalogError> {
    consensus::codec::from_bytes(bytes).map_err(|e| {
        common::storage::StorageError::undecodable(std::any::type_name::<T>(), e).into()
    })
}

/// The position as stored (a plain struct of numbers: encoding cannot fail).
fn position(state: &SmState) -> Vec<u8> {
    consensus::codec::to_bytes(state).unwrap_or_default()
}

impl Machine {
    /// The machine over `store`; a snapshot an earlier version kept whole is kept as
    /// a head with its keys.
    pub fn open(store: Store) -> Result<Self, CatalogError> {
        if let Some(bytes) = store.meta(WHOLE_SNAPSHOT)? {
            let whole: WholeSnapshot = from_store(&bytes)?;
            let meta: Option<SnapshotMeta<NodeId, Node>> = match store.meta(SNAPSHOT_META)? {
                Some(bytes) => Some(from_store(&bytes)?),
                None => None,
            };
            let (stock, keys) = from_store::<Image>(&whole.image)?.split_keys()?;
            let head = SnapshotHead {
                id: whole.id,
                index: meta.and_then(|m| m.last_log_id).map_or(0, |id| id.index),
                key_cutoff: whole.key_cutoff,
                restock_round: whole.restock_round,
                stock,
                keys: Some(keys),
            };
            let head = consensus::codec::to_bytes(&head).map_err(|e| {
                CatalogError::from(common::storage::StorageError::corrupt(format!(
                    "a snapshot head cannot be encoded: {e}"
                )))
            })?;
            store.write(|tx| {
                tx.set_meta(SNAPSHOT_HEAD, &head)?;
                tx.remove_meta(WHOLE_SNAPSHOT)?;
                Ok(())
            })?;
        }
        Ok(Machine {
            store,
            writing: Arc::new(Mutex::new(())),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> Result<SmState, StorageError<NodeId>> {
        match self.store.meta(STATE).map_err(store_error)? {
            Some(bytes) => decode(&bytes),
            None => Ok(SmState::default()),
        }
    }

    /// How far the key pruner may go: keys of buys made before the machine's cutoff
    /// have expired, but the newest snapshot still reads those made from its own
    /// cutoff on.
    pub fn prune_cutoff(store: &Store) -> Result<u64, CatalogError> {
        let machine = match store.meta(STATE)? {
            Some(bytes) => from_store::<SmState>(&bytes)?.key_cutoff,
            None => 0,
        };
        let snapshot = match store.meta(SNAPSHOT_HEAD)? {
            Some(bytes) => from_store::<SnapshotHead>(&bytes)?.key_cutoff,
            None => u64::MAX,
        };
        Ok(machine.min(snapshot))
    }

    /// Applies `entries` on `start` in one transaction; answers what each did and the
    /// new position (written with them).
    fn apply_all(
        &self,
        start: &SmState,
        entries: &[Entry],
    ) -> Result<(Vec<Applied>, SmState), CatalogError> {
        // The toys' keys, for restocks (a transaction cannot list them); a seed in
        // these entries adds its own.
        let listed = self.store.product_keys()?;
        self.store.write(|tx| {
            let mut state = start.clone();
            let mut keys = listed.clone();
            let mut replies = Vec::with_capacity(entries.len());
            for entry in entries {
                state.applied = Some(entry.log_id);
                let applied = match &entry.payload {
                    EntryPayload::Blank => Applied::Nothing,
                    EntryPayload::Membership(m) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        Applied::Nothing
                    }
                    EntryPayload::Normal(Change::Buys {
                        buys,
                        time,
                        key_cutoff,
                    }) => {
                        state.key_cutoff = state.key_cutoff.max(*key_cutoff);
                        let clock = Clock {
                            now: *time,
                            valid_from: state.key_cutoff,
                            index: entry.log_id.index,
                        };
                        let mut outcomes = Vec::with_capacity(buys.len());
                        for buy in buys {
                            let outcome = match tx.buy(buy, clock)? {
                                Ok(outcome) => Ok(outcome),
                                Err(e) => Err(Refusal::of(e).map_err(
                                    sled::transaction::ConflictableTransactionError::Abort,
                                )?),
                            };
                            outcomes.push(outcome);
                        }
                        Applied::Buys(outcomes)
                    }
                    EntryPayload::Normal(Change::Restock { round, amount }) => {
                        if *round > state.restock_round {
                            state.restock_round = *round;
                            Applied::Restocked(tx.restock(&keys, *amount)?)
                        } else {
                            Applied::Restocked(Vec::new())
                        }
                    }
                    EntryPayload::Normal(Change::Seed { toys, stock }) => {
                        if keys.is_empty() {
                            tx.seed(toys, *stock)?;
                            keys = toys
                                .iter()
                                .map(|t| sled::IVec::from(lookup_key(&t.name).as_bytes()))
                                .collect();
                            Applied::Seeded(true)
                        } else {
                            Applied::Seeded(false)
                        }
                    }
                };
                replies.push(applied);
            }
            tx.set_meta(STATE, &position(&state))?;
            Ok((replies, state))
        })
    }
}

impl Machine {
    /// Takes a snapshot of the store as it is now: its meta and its head, kept in the
    /// store (on the blocking pool, under the applying lock).
    async fn take_snapshot(&self) -> Result<SnapshotMeta<NodeId, Node>, StorageError<NodeId>> {
        let machine = self.clone();
        tokio::task::spawn_blocking(move || {
            let _writing = machine.lock();
            let state = machine.state()?;
            let meta = SnapshotMeta {
                last_log_id: state.applied,
                last_membership: state.membership.clone(),
                snapshot_id: match state.applied {
                    Some(id) => format!("{}-{}", id.leader_id.term, id.index),
                    None => "empty".into(),
                },
            };
            let head = SnapshotHead {
                id: meta.snapshot_id.clone(),
                index: state.applied.map_or(0, |id| id.index),
                key_cutoff: state.key_cutoff,
                restock_round: state.restock_round,
                stock: machine.store.stock_image(&OWN).map_err(store_error)?,
                keys: None,
            };
            let (head, meta_bytes) = (encode(&head)?, encode(&meta)?);
            machine
                .store
                .write(|tx| {
                    tx.set_meta(SNAPSHOT_META, &meta_bytes)?;
                    tx.set_meta(SNAPSHOT_HEAD, &head)?;
                    Ok(())
                })
                .map_err(store_error)?;
            Ok(meta)
        })
        .await
        .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, &e))?
    }

    /// The newest snapshot's head.
    fn head(store: &Store) -> std::io::Result<Option<SnapshotHead>> {
        match store.meta(SNAPSHOT_HEAD).map_err(std::io::Error::other)? {
            Some(bytes) => consensus::codec::from_bytes(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            None => Ok(None),
        }
    }

    /// The data of the snapshot named `id`, as a peer receives it: its head, and the
    /// keys held at its index, read now — if it is still the newest snapshot once they
    /// are read (after a newer one, the pruner may have dropped some).
    fn snapshot_data(store: &Store, id: &str) -> std::io::Result<Vec<u8>> {
        let replaced = |by: Option<SnapshotHead>| {
            std::io::Error::other(format!(
                "snapshot {id} was replaced by {}",
                by.map_or_else(|| "none".into(), |h| h.id)
            ))
        };
        let head = match Machine::head(store)? {
            Some(head) if head.id == id => head,
            other => return Err(replaced(other)),
        };
        let keys = match head.keys {
            Some(keys) => keys,
            None => {
                let keys = store
                    .keys_at(head.index, head.key_cutoff)
                    .map_err(std::io::Error::other)?;
                match Machine::head(store)? {
                    Some(now) if now.id == id => keys,
                    other => return Err(replaced(other)),
                }
            }
        };
        tracing::info!(
            snapshot = id,
            keys = keys.len(),
            "read a catalog snapshot for a peer"
        );
        let data = SnapshotData {
            id: head.id,
            key_cutoff: head.key_cutoff,
            restock_round: head.restock_round,
            stock: head.stock,
            keys,
        };
        consensus::codec::to_bytes(&data).map_err(std::io::Error::other)
    }
}

impl Machine {
    /// The snapshot of `meta`, its data made when first read.
    fn lazy(&self, meta: SnapshotMeta<NodeId, Node>) -> Snapshot<TypeConfig> {
        let store = self.store.clone();
        let id = meta.snapshot_id.clone();
        Snapshot {
            meta,
            snapshot: Box::new(LazyBytes::later(move || {
                Machine::snapshot_data(&store, &id)
            })),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let meta = self.take_snapshot().await?;
        // Everything the snapshot holds must be durable before openraft purges the
        // entries it came from (the log's flushes do not cover this database).
        self.store.flush().await.map_err(store_error)?;
        Ok(self.lazy(meta))
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

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let _writing = self.lock();
        let start = self.state()?;
        let (replies, _) = self.apply_all(&start, &entries).map_err(store_error)?;
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
        let bytes = snapshot.into_bytes().map_err(read_error)?;
        let data: SnapshotData = decode(&bytes)?;
        let machine = self.clone();
        let meta_bytes = encode(meta)?;
        let (applied, membership) = (meta.last_log_id, meta.last_membership.clone());
        // Possibly a large transaction: on the blocking pool, not an async worker.
        tokio::task::spawn_blocking(move || {
            let _writing = machine.lock();
            let mut state = machine.state()?;
            state.applied = applied;
            state.membership = membership;
            state.key_cutoff = state.key_cutoff.max(data.key_cutoff);
            state.restock_round = state.restock_round.max(data.restock_round);
            // This replica's own snapshot now: its keys are the ones installed here,
            // each with the index it came with.
            let head = SnapshotHead {
                id: data.id,
                index: applied.map_or(0, |id| id.index),
                key_cutoff: data.key_cutoff,
                restock_round: data.restock_round,
                stock: data.stock.clone(),
                keys: None,
            };
            let values = [
                (STATE, position(&state)),
                (SNAPSHOT_META, meta_bytes),
                (SNAPSHOT_HEAD, encode(&head)?),
            ];
            machine
                .store
                .import(data.stock, data.keys, &OWN, &values)
                .map_err(store_error)
        })
        .await
        .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Write, &e))??;
        self.store.flush().await.map_err(store_error)?;
        tracing::info!(applied = ?meta.last_log_id, "installed a catalog snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(bytes) = self.store.meta(SNAPSHOT_META).map_err(store_error)? else {
            return Ok(None);
        };
        // The data is read when a peer first needs it: at start-up openraft reads
        // only the meta.
        Ok(Some(self.lazy(decode(&bytes)?)))
    }
}

#[cfg(test)]
mod tests;
