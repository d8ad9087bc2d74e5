//! An order replica's durable state — the only module that touches sled.
//!
//! Trees (their layout is `record`'s):
//! - `records`: buckets of 16 consecutive order numbers (keyed by `number / 16`,
//!   big-endian, so sled's order is number order) → their orders (name, quantity,
//!   idempotency key, epoch of the writing leader, time).
//! - `index`: idempotency key → order number, for the keys still within the
//!   retention window; [`Store::prune_keys`] drops the older ones, oldest first.
//! - `meta`: `epoch`, the highest leadership epoch this replica has accepted, with the
//!   leader it accepted for it (so that after a restart it still refuses a second
//!   leader claiming the same epoch); `mode`, the replication mode that wrote the
//!   orders; `pruned`, the first order whose key the pruner has not dropped; `format`,
//!   the layout's version; in Raft mode also the state machine's own figures (see
//!   `raft::machine`), written in the same transaction as the orders they describe.
//!
//! A database written before this layout (trees `orders` and `keys`, bincode records)
//! is rewritten once when opened, its keys kept for a window from then.
//!
//! In Raft mode the log and the vote live in a database of their own, `raft-log` in
//! the same directory, owned by `consensus::log`.
//!
//! Orders and their keys change together in one transaction. Callers serialise the
//! changes of the history (see `primary_backup::state`; in raft mode the state machine
//! applies one entry at a time), which lets this module plan a change with plain reads
//! and then commit it atomically; the figures' lock (below) serialises every commit
//! too, `meta`-only writes included. Nothing is durable until [`Store::flush`].
//!
//! The store also keeps two figures: the number of orders and the digest (a wrapping
//! sum of per-order hashes). They live in memory and in `meta` (`figures`), written in
//! the same transaction as every change of the orders, so a restart reads them instead
//! of walking every order (a database written before they were kept is walked once).

pub mod record;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::domain::{Epoch, OrderNumber, ReplicaId};
use common::storage::StorageError;
use common::wire::{LogPos, OrderRecord, Replication};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::error::OrderError;
use record::{bucket_key, number_key};

const META_EPOCH: &[u8] = b"epoch";
const META_MODE: &[u8] = b"mode";
const META_FIGURES: &[u8] = b"figures";
const META_PRUNED: &[u8] = b"pruned";
const META_FORMAT: &[u8] = b"format";
/// Present while the store is being rebuilt from a peer (`--rebuild`): until then it
/// holds nothing anyone may rely on.
const META_REBUILDING: &[u8] = b"rebuilding";

/// The layout `record` describes.
const FORMAT: &[u8] = b"3";

/// Handle to a replica's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// `records`.
    orders: sled::Tree,
    /// `index`.
    keys: sled::Tree,
    meta: sled::Tree,
    /// Digest (wrapping sum of [`order_hash`] over all orders) and number of orders
    /// (sled's `len` walks the whole tree). The mutex also serialises every change of
    /// the orders with the update of these figures, whoever makes it (in raft mode the
    /// snapshot builder writes `meta` while the state machine applies entries). A std
    /// mutex: held only around a synchronous sled transaction.
    figures: Arc<Mutex<(u64, u64)>>,
}

/// What a write changed.
#[derive(Debug, Default, PartialEq)]
pub struct Change {
    /// Orders dropped because they conflicted with the written history.
    pub removed: Vec<OrderRecord>,
    /// Orders written.
    pub written: usize,
}

/// `figures` as stored: digest then count, big-endian.
fn figures_bytes((digest, count): (u64, u64)) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&digest.to_be_bytes());
    out[8..].copy_from_slice(&count.to_be_bytes());
    out
}

fn figures_of(bytes: &[u8]) -> Option<(u64, u64)> {
    let digest = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let count = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((digest, count))
}

/// Hash of one order for the digest: FNV-1a over its fields, then a finaliser.
/// Stable across processes and builds, unlike `std`'s hasher.
pub fn order_hash(r: &OrderRecord) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&r.number.get().to_be_bytes());
    eat(&(r.name.len() as u64).to_be_bytes());
    eat(r.name.as_bytes());
    eat(&r.quantity.to_be_bytes());
    eat(&(r.key.len() as u64).to_be_bytes());
    eat(r.key.as_bytes());
    eat(&r.time.to_be_bytes());
    // splitmix64 finaliser, so that sums of hashes do not cancel out easily
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Store {
    /// Opens (or creates) the database in `dir` with sled's default page cache of
    /// this project ([`common::storage::DEFAULT_CACHE_MB`]).
    pub fn open(dir: &Path) -> Result<Self, OrderError> {
        Store::open_with_cache(dir, common::storage::DEFAULT_CACHE_MB)
    }

    /// Opens (or creates) the database in `dir` with a page cache of `cache_mb` MiB
    /// and rebuilds the in-memory figures.
    pub fn open_with_cache(dir: &Path, cache_mb: u64) -> Result<Self, OrderError> {
        let db = common::storage::open_db(dir, cache_mb)?;
        let store = Store {
            orders: db.open_tree("records")?,
            keys: db.open_tree("index")?,
            meta: db.open_tree("meta")?,
            db,
            figures: Arc::new(Mutex::new((0, 0))),
        };
        match store.meta.get(META_FORMAT)? {
            None => store.upgrade()?,
            Some(format) if format.as_ref() == FORMAT => {}
            Some(format) => {
                return Err(OrderError::Config(format!(
                    "{} holds orders in layout {} of another build; this one reads layout {}",
                    dir.display(),
                    String::from_utf8_lossy(&format),
                    String::from_utf8_lossy(FORMAT)
                )))
            }
        }
        let (digest, count) = match store.meta.get(META_FIGURES)?.as_deref().map(figures_of) {
            Some(Some(figures)) => figures,
            _ => {
                let figures = store.walk()?;
                store
                    .meta
                    .insert(META_FIGURES, &figures_bytes(figures)[..])?;
                figures
            }
        };
        *store.lock_figures() = (digest, count);
        Ok(store)
    }

    /// Rewrites a database of the earlier layout (trees `orders` and `keys`) into this
    /// one, its keys kept for a window from now, or marks a new database. Safe to
    /// crash in: the old trees are dropped only after the new ones and the marker are
    /// durable, and an interrupted upgrade starts over.
    fn upgrade(&self) -> Result<(), OrderError> {
        let had_old = self.db.tree_names().iter().any(|n| n.as_ref() == b"orders");
        if had_old {
            let old = self.db.open_tree("orders")?;
            self.orders.clear()?;
            self.keys.clear()?;
            let now = common::retention::now_ms();
            let mut moved = 0u64;
            for item in old.iter() {
                let (_, v) = item?;
                let r = record::legacy::decode(&v, now)?;
                let bucket = bucket_key(r.number);
                let held = self.orders.get(bucket)?;
                let bytes = record::encode(&r);
                if let Some(value) =
                    record::edit_bucket(held.as_deref(), &[], &[(r.number, &bytes)])?
                {
                    self.orders.insert(bucket, value)?;
                }
                self.keys
                    .insert(common::idkey::encode(&r.key), record::index_value(r.number))?;
                moved += 1;
            }
            self.meta.remove(META_FIGURES)?;
            tracing::info!(orders = moved, "rewrote the orders in the compact layout");
        }
        self.meta.insert(META_FORMAT, FORMAT)?;
        self.db.flush()?;
        if had_old {
            self.db.drop_tree("orders")?;
            self.db.drop_tree("keys")?;
            self.db.flush()?;
        }
        Ok(())
    }

    /// Digest and count computed from every order (what `figures` must equal).
    pub fn walk(&self) -> Result<(u64, u64), OrderError> {
        let (mut digest, mut count) = (0u64, 0u64);
        for item in self.orders.iter() {
            let (k, v) = item?;
            for r in record::bucket_orders(&k, &v)? {
                digest = digest.wrapping_add(order_hash(&r));
                count += 1;
            }
        }
        Ok((digest, count))
    }

    /// Records that `mode` writes this database, or refuses if another mode wrote it:
    /// the two modes' histories cannot be mixed (a Raft state machine holds only what
    /// its log committed).
    pub fn claim_mode(&self, mode: Replication) -> Result<(), OrderError> {
        let name = mode.to_string();
        match self.meta.get(META_MODE)? {
            Some(held) if held.as_ref() == name.as_bytes() => Ok(()),
            Some(held) => Err(OrderError::Config(format!(
                "this data directory holds orders of {} mode; start {name} mode with another \
                 --data-dir",
                String::from_utf8_lossy(&held)
            ))),
            None if self.count() > 0 => Err(OrderError::Config(format!(
                "this data directory holds orders of primary-backup mode; start {name} mode \
                 with another --data-dir"
            ))),
            None => {
                self.meta.insert(META_MODE, name.as_bytes())?;
                Ok(())
            }
        }
    }

    /// Whether this store is being rebuilt from a peer and has not yet taken a whole
    /// history (see [`Store::set_rebuilding`]).
    pub fn rebuilding(&self) -> Result<bool, OrderError> {
        Ok(self.meta.contains_key(META_REBUILDING)?)
    }

    /// Marks the store as being rebuilt (a new, empty store), or done with that;
    /// durably.
    pub async fn set_rebuilding(&self, rebuilding: bool) -> Result<(), OrderError> {
        if rebuilding {
            self.meta.insert(META_REBUILDING, &[1u8][..])?;
        } else {
            self.meta.remove(META_REBUILDING)?;
        }
        self.flush().await
    }

    /// A value of the `meta` tree.
    pub fn meta(&self, key: &[u8]) -> Result<Option<sled::IVec>, OrderError> {
        Ok(self.meta.get(key)?)
    }

    /// Writes `meta` values alone (durable with the next flush).
    pub fn set_meta(&self, values: &[(&[u8], Vec<u8>)]) -> Result<(), OrderError> {
        self.commit(&[], &[], values)
    }

    /// Adds `written` (new numbers, each key new) and sets `meta` values, in one
    /// transaction: the Raft state machine's orders and its applied position.
    pub fn add_with_meta(
        &self,
        written: &[OrderRecord],
        meta: &[(&[u8], Vec<u8>)],
    ) -> Result<(), OrderError> {
        let written: Vec<&OrderRecord> = written.iter().collect();
        self.commit(&[], &written, meta)
    }

    /// The order with this number.
    pub fn order(&self, number: OrderNumber) -> Result<Option<OrderRecord>, OrderError> {
        match self.orders.get(bucket_key(number))? {
            Some(v) => record::bucket_order(number, &v),
            None => Ok(None),
        }
    }

    /// The order placed with this idempotency key, if it was stored at `valid_from`
    /// (ms since the Unix epoch) or later: an older one's key has expired.
    pub fn by_key(&self, key: &str, valid_from: u64) -> Result<Option<OrderRecord>, OrderError> {
        match self.keys.get(common::idkey::encode(key))? {
            Some(n) => Ok(self
                .order(record::indexed_number(&n)?)?
                .filter(|r| r.time >= valid_from)),
            None => Ok(None),
        }
    }

    /// [`Store::prune_keys`] for the key pruner (`common::retention::prune_loop`).
    pub fn pruner(&self) -> impl Fn(u64, usize) -> Result<usize, OrderError> + Send + Sync {
        let store = self.clone();
        move |cutoff, limit| store.prune_keys(cutoff, limit)
    }

    /// Drops from the key index up to `limit` keys of the oldest orders stored before
    /// `cutoff` (ms since the Unix epoch), from where the last call stopped, and
    /// stops at the first order stored since. Answers how many orders it passed: fewer
    /// than `limit` means it is done for this cutoff. Serialised with every change of
    /// the orders; the transaction is small, so writers wait little.
    pub fn prune_keys(&self, cutoff: u64, limit: usize) -> Result<usize, OrderError> {
        let _serialised = self.lock_figures();
        let from = match self.meta.get(META_PRUNED)? {
            Some(v) => record::number_of(&v)?,
            None => OrderNumber(0),
        };
        let mut expired = self.page(from, limit)?;
        if let Some(kept) = expired.iter().position(|r| r.time >= cutoff) {
            expired.truncate(kept);
        }
        let Some(next) = expired.last().and_then(|r| r.number.next()) else {
            return Ok(0);
        };
        (&self.keys, &self.meta)
            .transaction(|(keys, meta)| {
                for r in &expired {
                    let stored = common::idkey::encode(&r.key);
                    if keys.get(&stored)?.as_deref() == Some(&record::index_value(r.number)[..]) {
                        keys.remove(stored)?;
                    }
                }
                meta.insert(META_PRUNED, &number_key(next)[..])?;
                Ok::<_, ConflictableTransactionError<OrderError>>(())
            })
            .map_err(transaction_error)?;
        Ok(expired.len())
    }

    /// The newest order.
    pub fn last(&self) -> Result<Option<OrderRecord>, OrderError> {
        match self.orders.last()? {
            Some((k, v)) => Ok(record::bucket_orders(&k, &v)?.pop()),
            None => Ok(None),
        }
    }

    /// Position of the newest order (what a follower must hold before the next batch).
    pub fn last_pos(&self) -> Result<Option<LogPos>, OrderError> {
        Ok(self.last()?.as_ref().map(LogPos::from))
    }

    /// Up to `limit` orders with numbers `from` and above, in number order.
    pub fn page(&self, from: OrderNumber, limit: usize) -> Result<Vec<OrderRecord>, OrderError> {
        let mut out = Vec::new();
        for item in self.orders.range(bucket_key(from)..) {
            let (k, v) = item?;
            for r in record::bucket_orders(&k, &v)? {
                if out.len() == limit {
                    return Ok(out);
                }
                if r.number >= from {
                    out.push(r);
                }
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every order up to `last` (none for `None`) as a stream of buckets, copied as
    /// stored (`record::put_bucket`): a Raft snapshot's orders, made without decoding
    /// any but the last bucket's.
    pub fn export(&self, last: Option<OrderNumber>) -> Result<Vec<u8>, OrderError> {
        let mut out = Vec::new();
        let Some(last) = last else {
            return Ok(out);
        };
        let end = bucket_key(last);
        for item in self.orders.range(..=end) {
            let (key, value) = item?;
            if key.as_ref() == &end[..] {
                // The newest bucket may hold orders after `last`: leave them out.
                let after: Vec<OrderNumber> = record::bucket_orders(&key, &value)?
                    .iter()
                    .map(|r| r.number)
                    .filter(|&n| n > last)
                    .collect();
                if let Some(kept) = record::edit_bucket(Some(&value), &after, &[])? {
                    record::put_bucket(&mut out, &key, &kept);
                }
            } else {
                record::put_bucket(&mut out, &key, &value);
            }
        }
        Ok(out)
    }

    /// True when this replica holds exactly the write `pos` names.
    pub fn holds(&self, pos: &LogPos) -> Result<bool, OrderError> {
        Ok(self
            .order(pos.number)?
            .is_some_and(|r| r.epoch == pos.epoch && r.key == pos.key))
    }

    fn lock_figures(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        self.figures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of orders held.
    pub fn count(&self) -> u64 {
        self.lock_figures().1
    }

    /// Digest over all orders, as 16 hex digits.
    pub fn digest(&self) -> String {
        format!("{:016x}", self.lock_figures().0)
    }

    /// Highest epoch accepted so far (0 for a new replica) and its leader.
    pub fn epoch(&self) -> Result<(Epoch, Option<ReplicaId>), OrderError> {
        let Some(v) = self.meta.get(META_EPOCH)? else {
            return Ok((Epoch(0), None));
        };
        let epoch = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(|b| Epoch(u64::from_be_bytes(b)));
        let leader = v
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map(|b| ReplicaId(u32::from_be_bytes(b)));
        match epoch {
            Some(e) => Ok((e, leader)),
            None => Err(StorageError::corrupt("epoch record").into()),
        }
    }

    /// Records an accepted epoch and its leader (durable with the next flush).
    pub fn set_epoch(&self, epoch: Epoch, leader: ReplicaId) -> Result<(), OrderError> {
        let mut v = epoch.get().to_be_bytes().to_vec();
        v.extend_from_slice(&leader.get().to_be_bytes());
        self.meta.insert(META_EPOCH, v)?;
        Ok(())
    }

    /// Writes consecutive `entries` into the history, Raft-style: an entry this replica
    /// already holds (same number, epoch and key) is kept; at the first entry that
    /// conflicts with what is held, that order and every later one are dropped and the
    /// rest of `entries` is written in their place.
    pub fn append(&self, entries: &[OrderRecord]) -> Result<Change, OrderError> {
        let mut conflict_at = None;
        let mut to_write = Vec::new();
        for entry in entries {
            if conflict_at.is_none() {
                match self.order(entry.number)? {
                    Some(held) if held.same_write(entry) => continue,
                    Some(_) => conflict_at = Some(entry.number),
                    None => {}
                }
            }
            to_write.push(entry);
        }
        let removed = match conflict_at {
            Some(n) => self.page(n, usize::MAX)?,
            None => Vec::new(),
        };
        self.commit(&removed, &to_write, &[])?;
        Ok(Change {
            removed,
            written: to_write.len(),
        })
    }

    /// Drops every order after `keep` (all of them for `None`).
    pub fn truncate_after(
        &self,
        keep: Option<OrderNumber>,
    ) -> Result<Vec<OrderRecord>, OrderError> {
        let from = match keep {
            Some(n) => match n.next() {
                Some(next) => next,
                None => return Ok(Vec::new()),
            },
            None => OrderNumber(0),
        };
        let removed = self.page(from, usize::MAX)?;
        self.commit(&removed, &[], &[])?;
        Ok(removed)
    }

    fn commit(
        &self,
        removed: &[OrderRecord],
        written: &[&OrderRecord],
        values: &[(&[u8], Vec<u8>)],
    ) -> Result<(), OrderError> {
        if removed.is_empty() && written.is_empty() && values.is_empty() {
            return Ok(());
        }
        // The figures after this change, computed and stored under their lock, which
        // serialises changes. An order overwritten in place is in `removed` first, so
        // the sums stay right.
        let mut figures = self.lock_figures();
        let (mut digest, mut count) = *figures;
        for r in removed {
            digest = digest.wrapping_sub(order_hash(r));
            count = count.saturating_sub(1);
        }
        for w in written {
            digest = digest.wrapping_add(order_hash(w));
            count += 1;
        }
        let stored = figures_bytes((digest, count));
        let first_removed = removed.iter().map(|r| r.number).min();
        // Each bucket changed: the numbers it loses and the orders written into it.
        let encoded: Vec<Vec<u8>> = written.iter().map(|w| record::encode(w)).collect();
        type Edit<'a> = (Vec<OrderNumber>, Vec<(OrderNumber, &'a [u8])>);
        let mut buckets: BTreeMap<[u8; 8], Edit<'_>> = BTreeMap::new();
        for r in removed {
            buckets
                .entry(bucket_key(r.number))
                .or_default()
                .0
                .push(r.number);
        }
        for (w, bytes) in written.iter().zip(&encoded) {
            let edit = buckets.entry(bucket_key(w.number)).or_default();
            edit.1.push((w.number, bytes.as_slice()));
        }
        (&self.orders, &self.keys, &self.meta)
            .transaction(|(orders, keys, meta)| {
                for (bucket, (lost, added)) in &buckets {
                    let held = orders.get(bucket)?;
                    match record::edit_bucket(held.as_deref(), lost, added) {
                        Ok(Some(value)) => orders.insert(&bucket[..], value)?,
                        Ok(None) => orders.remove(&bucket[..])?,
                        Err(e) => return Err(ConflictableTransactionError::Abort(e)),
                    };
                }
                for r in removed {
                    let key = common::idkey::encode(&r.key);
                    let indexed = keys.get(&key)?;
                    if indexed.as_deref() == Some(&record::index_value(r.number)[..]) {
                        keys.remove(key)?;
                    }
                }
                if let Some(first) = first_removed {
                    // Orders written in their place are the pruner's to look at again.
                    let pruned = meta.get(META_PRUNED)?;
                    if pruned.is_some_and(|p| p.as_ref() > &number_key(first)[..]) {
                        meta.insert(META_PRUNED, &number_key(first)[..])?;
                    }
                }
                for w in written {
                    keys.insert(common::idkey::encode(&w.key), record::index_value(w.number))?;
                }
                for (key, value) in values {
                    meta.insert(*key, value.as_slice())?;
                }
                if !removed.is_empty() || !written.is_empty() {
                    meta.insert(META_FIGURES, &stored[..])?;
                }
                Ok(())
            })
            .map_err(transaction_error)?;
        // The in-memory figures follow only once the commit succeeded.
        *figures = (digest, count);
        Ok(())
    }

    /// Makes every write so far durable (on the blocking pool).
    pub async fn flush(&self) -> Result<(), OrderError> {
        Ok(common::flush::flush_blocking(&self.db).await?)
    }
}

/// A failed transaction's error: the reason it was aborted, or sled's.
fn transaction_error(e: TransactionError<OrderError>) -> OrderError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

#[cfg(test)]
mod tests;
