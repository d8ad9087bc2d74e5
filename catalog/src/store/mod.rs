//! The catalog's durable state — the only module that touches sled.
//!
//! Trees:
//! - `products`: lower-cased name → [`StoredProduct`] (canonical name, price in cents,
//!   quantity, version).
//! - `buys`: idempotency key (in `common::idkey`'s form) → the buy it made and when,
//!   written in the same transaction as the stock change, so a repeated key can never
//!   take stock twice within the key window.
//! - `buy_times`: time (ms, big-endian) → the keys of the buys made in that
//!   millisecond (`TimedKey`: the key, the log index of the entry that made the buy —
//!   0 in a single catalog — and, once the key has been bought again after it expired,
//!   the buy it replaced in `buys`): the order in which keys expire, for
//!   [`Store::prune_keys`], and what a replicated catalog's snapshot reads its keys
//!   from ([`Store::keys_at`]). One entry per millisecond, not per key: sled stores a
//!   tree that grows at its end in half-full pages, and a key per buy there cost about
//!   180 bytes of disk per buy, more than everything else the catalog keeps for it.
//! - `meta`: stock accounting counters (`initial`, `restocked`, `sold`); `format`.
//!
//! A key is kept for the window (`--key-retention`) from its buy: after it the key
//! has expired — a buy with it takes stock again — even before the pruner drops it.
//! A database written before keys expired (tree `applied`) is rewritten once when
//! opened, its keys kept for a window from then; one written with a time entry per
//! key (tree `buys_by_time`, format 2) has its time entries regrouped once.
//!
//! Every change is flushed (group commit through [`GroupFlush`]) before it is
//! reported, so an acknowledged buy or restock survives `kill -9`.

use std::path::Path;
use std::time::Duration;

use common::domain::{ToyName, Version};
use common::flush::GroupFlush;
use common::storage::StorageError;
use common::wire::{BuyReply, BuyRequest, CatalogProduct, StockTotals};
use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use crate::error::CatalogError;

const META_INITIAL: &[u8] = b"initial";
const META_RESTOCKED: &[u8] = b"restocked";
const META_SOLD: &[u8] = b"sold";
const META_FORMAT: &[u8] = b"format";

/// The layout described above.
const FORMAT: &[u8] = b"3";
/// The layout with a time entry per key (tree `buys_by_time`).
const FORMAT_KEY_TIMES: &[u8] = b"2";

/// A buy as `buys` keeps it: its reply and when it was made (ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredBuy {
    name: ToyName,
    quantity: u64,
    version: u64,
    time: u64,
}

impl StoredBuy {
    fn reply(self) -> BuyReply {
        BuyReply {
            name: self.name,
            quantity: self.quantity,
            version: Version(self.version),
            repeated: true,
        }
    }
}

/// The `buy_times` key of the buys made at `time`.
fn time_key(time: u64) -> [u8; 8] {
    time.to_be_bytes()
}

/// A buy's key in its `buy_times` entry: the log index of the entry that made the
/// buy, and the buy itself once a later buy with its key replaced it in `buys` (a
/// snapshot taken before that still holds it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TimedKey {
    key: Vec<u8>,
    index: u64,
    replaced: Option<StoredBuy>,
}

/// A toy as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredProduct {
    pub name: ToyName,
    pub price_cents: u64,
    pub quantity: u64,
    pub version: u64,
}

impl From<StoredProduct> for CatalogProduct {
    fn from(p: StoredProduct) -> Self {
        CatalogProduct {
            name: p.name.into_string(),
            price: p.price_cents as f64 / 100.0,
            quantity: p.quantity,
            version: Version(p.version),
        }
    }
}

/// One line of the seed file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedToy {
    pub name: ToyName,
    pub price: f64,
}

/// Reads and checks the seed file: non-empty unique names, non-negative prices.
pub fn read_seed(path: &Path) -> Result<Vec<SeedToy>, CatalogError> {
    let seed_err = |reason: String| CatalogError::Seed {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| seed_err(e.to_string()))?;
    let toys: Vec<SeedToy> = serde_json::from_str(&text).map_err(|e| seed_err(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    for toy in &toys {
        if toy.name.trim().is_empty() || !seen.insert(lookup_key(&toy.name)) {
            return Err(seed_err(format!("empty or duplicate name {:?}", toy.name)));
        }
        if !(toy.price.is_finite() && toy.price >= 0.0) {
            return Err(seed_err(format!("bad price for {:?}", toy.name)));
        }
    }
    if toys.is_empty() {
        return Err(seed_err("no toys".into()));
    }
    Ok(toys)
}

/// Names match case-insensitively: this is the key under which a toy is stored.
pub fn lookup_key(name: &str) -> String {
    name.to_lowercase()
}

/// Result of a buy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BuyOutcome {
    /// Stock was taken now.
    Applied(BuyReply),
    /// The key was applied before; nothing changed.
    Repeated(BuyReply),
}

/// Handle to the catalog's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    products: sled::Tree,
    buys: sled::Tree,
    /// `buy_times`.
    by_time: sled::Tree,
    meta: sled::Tree,
    flusher: GroupFlush,
    /// How long a key is kept.
    key_window: Duration,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain structs of strings and integers into a Vec cannot fail.
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, CatalogError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| StorageError::undecodable(std::any::type_name::<T>(), e).into())
}

fn read_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

impl Store {
    /// Opens (or creates) the database in `dir` with this project's default page
    /// cache ([`common::storage::DEFAULT_CACHE_MB`]) and key window, and starts its
    /// flusher.
    pub fn open(dir: &Path) -> Result<Self, CatalogError> {
        let window = common::retention::parse_window(common::retention::DEFAULT_WINDOW)
            .map_err(CatalogError::Config)?;
        Store::open_with(dir, common::storage::DEFAULT_CACHE_MB, window)
    }

    /// Opens (or creates) the database in `dir` with a page cache of `cache_mb` MiB,
    /// keeping keys for `key_window`, and starts its flusher.
    pub fn open_with(
        dir: &Path,
        cache_mb: u64,
        key_window: Duration,
    ) -> Result<Self, CatalogError> {
        let db = common::storage::open_db(dir, cache_mb)?;
        let store = Store {
            products: db.open_tree("products")?,
            buys: db.open_tree("buys")?,
            by_time: db.open_tree("buy_times")?,
            meta: db.open_tree("meta")?,
            flusher: GroupFlush::start(db.clone())?,
            db,
            key_window,
        };
        match store.meta.get(META_FORMAT)?.as_deref() {
            None => store.upgrade()?,
            Some(FORMAT_KEY_TIMES) => store.group_key_times()?,
            Some(_) => {}
        }
        Ok(store)
    }

    /// Rewrites the keys of a database of the earlier layout (tree `applied`, key →
    /// reply) into `buys`, kept for a window from now, or marks a new database. The
    /// old tree is dropped only once the new ones and the marker are durable; an
    /// interrupted upgrade starts over.
    fn upgrade(&self) -> Result<(), CatalogError> {
        let had_old = self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == b"applied");
        if had_old {
            let old = self.db.open_tree("applied")?;
            self.buys.clear()?;
            self.by_time.clear()?;
            let now = common::retention::now_ms();
            let mut keys = Vec::new();
            /// The earlier layout's value: the buy's reply.
            #[derive(Deserialize)]
            struct Reply {
                name: ToyName,
                quantity: u64,
                version: u64,
            }
            for item in old.iter() {
                let (key, value) = item?;
                let reply: Reply = decode(&value)?;
                let key = String::from_utf8(key.to_vec()).map_err(|e| {
                    CatalogError::from(StorageError::undecodable("idempotency key", e))
                })?;
                let stored = common::idkey::encode(&key);
                let buy = StoredBuy {
                    name: reply.name,
                    quantity: reply.quantity,
                    version: reply.version,
                    time: now,
                };
                self.buys.insert(stored.as_slice(), encode(&buy))?;
                keys.push(TimedKey {
                    key: stored,
                    index: 0,
                    replaced: None,
                });
            }
            self.by_time.insert(time_key(now), encode(&keys))?;
            tracing::info!(
                keys = old.len(),
                "rewrote the idempotency keys with their time"
            );
        }
        self.meta.insert(META_FORMAT, FORMAT)?;
        self.db.flush()?;
        if had_old {
            self.db.drop_tree("applied")?;
            self.db.flush()?;
        }
        Ok(())
    }

    /// Regroups the time entries of a database of format 2 (tree `buys_by_time`,
    /// one entry (time, key) → index and replaced buy per key) into `buy_times`. The
    /// old tree is dropped only once the new one and the format are durable; an
    /// interrupted regrouping starts over.
    fn group_key_times(&self) -> Result<(), CatalogError> {
        let old = self.db.open_tree("buys_by_time")?;
        self.by_time.clear()?;
        let mut batch = sled::Batch::default();
        let mut current: Option<(u64, Vec<TimedKey>)> = None;
        for item in old.iter() {
            let (entry, value) = item?;
            let (time, key) = entry.split_at(8.min(entry.len()));
            let time = read_u64(time);
            let (index, replaced) = match value.split_first_chunk::<8>() {
                None => (0, None),
                Some((index, [])) => (u64::from_be_bytes(*index), None),
                Some((index, buy)) => (u64::from_be_bytes(*index), Some(decode(buy)?)),
            };
            if current.as_ref().is_some_and(|(t, _)| *t != time) {
                if let Some((t, keys)) = current.take() {
                    batch.insert(&time_key(t), encode(&keys));
                }
            }
            current
                .get_or_insert_with(|| (time, Vec::new()))
                .1
                .push(TimedKey {
                    key: key.to_vec(),
                    index,
                    replaced,
                });
        }
        if let Some((t, keys)) = current {
            batch.insert(&time_key(t), encode(&keys));
        }
        self.by_time.apply_batch(batch)?;
        self.meta.insert(META_FORMAT, FORMAT)?;
        self.db.flush()?;
        tracing::info!(
            keys = old.len(),
            "regrouped the idempotency keys' time entries"
        );
        self.db.drop_tree("buys_by_time")?;
        self.db.flush()?;
        Ok(())
    }

    /// Drops the keys of buys made before `cutoff` (ms since the Unix epoch), oldest
    /// first, a millisecond's keys at a time, until at least `limit` are dropped;
    /// answers how many it dropped (fewer than `limit`: done). A key bought again
    /// since keeps its newer buy. Not flushed: a prune lost in a crash is done again,
    /// and an expired key counts as absent anyway.
    pub fn prune_keys(&self, cutoff: u64, limit: usize) -> Result<usize, CatalogError> {
        let mut expired: Vec<sled::IVec> = Vec::new();
        let mut count = 0;
        for item in self.by_time.range(..time_key(cutoff)) {
            if count >= limit {
                break;
            }
            let (time, value) = item?;
            count += decode::<Vec<TimedKey>>(&value)?.len();
            expired.push(time);
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let result = (&self.buys, &self.by_time).transaction(|(buys, by_time)| {
            for time in &expired {
                // Read again in the transaction: what it removes is what it prunes.
                let Some(value) = by_time.remove(time)? else {
                    continue;
                };
                let keys: Vec<TimedKey> =
                    decode(&value).map_err(ConflictableTransactionError::Abort)?;
                for timed in &keys {
                    if let Some(bytes) = buys.get(&timed.key)? {
                        let held: StoredBuy =
                            decode(&bytes).map_err(ConflictableTransactionError::Abort)?;
                        if held.time.to_be_bytes()[..] == **time {
                            buys.remove(timed.key.as_slice())?;
                        }
                    }
                }
            }
            Ok(())
        });
        result.map_err(flatten)?;
        Ok(count)
    }

    /// True until the catalog has been seeded.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Seeds the toys if the database has none; returns whether it did.
    pub async fn seed_if_empty(&self, toys: &[SeedToy], stock: u64) -> Result<bool, CatalogError> {
        if !self.products.is_empty() {
            return Ok(false);
        }
        self.write(|tx| tx.seed(toys, stock))?;
        self.flusher.flush().await?;
        Ok(true)
    }

    /// One toy by any capitalisation of its name.
    pub fn product(&self, name: &str) -> Result<Option<StoredProduct>, CatalogError> {
        match self.products.get(lookup_key(name).as_bytes())? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Whether any toy is sold out.
    pub fn any_sold_out(&self) -> Result<bool, CatalogError> {
        Ok(self.products()?.iter().any(|p| p.quantity == 0))
    }

    /// Every toy, ordered by lower-cased name.
    pub fn products(&self) -> Result<Vec<StoredProduct>, CatalogError> {
        self.products.iter().values().map(|v| decode(&v?)).collect()
    }

    /// Takes `quantity` of a toy for the order with idempotency key `key`, in one
    /// transaction with recording the key, then flushes. A key seen before returns its
    /// first result and changes nothing.
    pub async fn buy(&self, req: &BuyRequest) -> Result<BuyOutcome, CatalogError> {
        self.buy_batch(std::slice::from_ref(req))
            .await?
            .pop()
            .unwrap_or(Err(CatalogError::Internal(
                "a batch of one buy answered none",
            )))
    }

    /// [`Store::buy`] for many orders at once: one transaction, one flush. Each buy
    /// gets its own outcome (a refused buy changes nothing and does not affect the
    /// others); the outer error is a storage failure, after which nothing changed.
    ///
    /// A damaged value or page aborts the whole transaction; then each buy is made in
    /// a transaction of its own, so that only the buys that touch the damage fail
    /// (with the storage error as their outcome) and the others are made. Only when
    /// every one of them fails in storage is the batch's error the outer error.
    pub async fn buy_batch(
        &self,
        reqs: &[BuyRequest],
    ) -> Result<Vec<Result<BuyOutcome, CatalogError>>, CatalogError> {
        let clock = Clock::now(self.key_window);
        let outcomes = match self.write(|tx| reqs.iter().map(|req| tx.buy(req, clock)).collect()) {
            Ok(outcomes) => outcomes,
            Err(failed) if reqs.len() > 1 => {
                let outcomes: Vec<_> = reqs
                    .iter()
                    .map(|req| {
                        self.write(|tx| tx.buy(req, clock))
                            .and_then(|outcome| outcome)
                    })
                    .collect();
                let damaged = outcomes
                    .iter()
                    .filter(|o| matches!(o, Err(CatalogError::Storage(_))))
                    .count();
                if damaged == reqs.len() {
                    return Err(failed);
                }
                tracing::warn!(
                    error = %failed,
                    buys = reqs.len(),
                    damaged,
                    "a buy batch failed in storage; its buys were made one by one"
                );
                outcomes
            }
            Err(failed) => return Err(failed),
        };
        // Flush even for repeated keys only: a first reply may not have been flushed
        // yet when a concurrent duplicate read it.
        self.flusher.flush().await?;
        Ok(outcomes)
    }

    /// Sets every sold-out toy to `amount`, durably. Returns the restocked toys with
    /// their new versions.
    pub async fn restock_sold_out(
        &self,
        amount: u64,
    ) -> Result<Vec<(String, Version)>, CatalogError> {
        let keys = self.product_keys()?;
        let restocked = self.write(|tx| tx.restock(&keys, amount))?;
        if !restocked.is_empty() {
            self.flusher.flush().await?;
        }
        Ok(restocked)
    }

    /// The keys of every toy (the set is fixed once seeded; a transaction cannot
    /// iterate, so writes that visit every toy list them first).
    pub fn product_keys(&self) -> Result<Vec<sled::IVec>, CatalogError> {
        Ok(self.products.iter().keys().collect::<Result<_, _>>()?)
    }

    /// Stock accounting: what was seeded, restocked and sold, and what is left — one
    /// snapshot, read in one transaction over the products and the counters, so it
    /// adds up even while buys and restocks run. (A transaction cannot iterate, but
    /// the set of toys is fixed once seeded: their keys are listed first.)
    pub fn totals(&self) -> Result<StockTotals, CatalogError> {
        let keys = self.product_keys()?;
        let read = (&self.products, &self.meta).transaction(|(products, meta)| {
            let mut current = 0u64;
            for key in &keys {
                if let Some(bytes) = products.get(key)? {
                    let p: StoredProduct =
                        decode(&bytes).map_err(ConflictableTransactionError::Abort)?;
                    current = current.checked_add(p.quantity).ok_or(
                        ConflictableTransactionError::Abort(CatalogError::Internal(
                            "the stock total would overflow",
                        )),
                    )?;
                }
            }
            let counter = |key| {
                Ok::<_, sled::transaction::UnabortableTransactionError>(
                    meta.get(key)?.map(|v| read_u64(&v)).unwrap_or(0),
                )
            };
            Ok(StockTotals {
                initial: counter(META_INITIAL)?,
                restocked: counter(META_RESTOCKED)?,
                sold: counter(META_SOLD)?,
                current,
            })
        });
        read.map_err(flatten)
    }

    /// Flushes everything (used on shutdown).
    pub async fn flush(&self) -> Result<(), CatalogError> {
        Ok(common::flush::flush_blocking(&self.db).await?)
    }
}

mod image;
#[cfg(test)]
mod tests;
mod write;

pub use image::{HeldKey, Image};
use write::flatten;
pub use write::{Clock, Tx, TxResult};
