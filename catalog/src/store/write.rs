//! Every change to the catalog's trees, as steps of one sled transaction ([`Tx`]).
//!
//! The single catalog runs a step per request (and flushes); the Raft group's state
//! machine runs the steps of the entries it applies, with its own position, in one
//! transaction (and the log makes them durable). Either way a buy's stock change, its
//! key and the counters change together or not at all.
//!
//! Nothing here reads the clock: a buy is made at the [`Clock`] it is given, so the
//! replicas of a group, applying the same entries, decide alike.

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;
use std::cell::RefCell;
use std::collections::BTreeMap;

use common::domain::Version;
use common::wire::{BuyReply, BuyRequest};

use super::{
    decode, encode, lookup_key, read_u64, time_key, BuyOutcome, SeedToy, Store, StoredBuy,
    StoredProduct, TimedKey, META_INITIAL, META_RESTOCKED, META_SOLD,
};
use crate::error::CatalogError;

/// A step's result inside a transaction. The outer error aborts the transaction
/// (storage); an inner one refuses one buy only.
pub type TxResult<T> = Result<T, ConflictableTransactionError<CatalogError>>;

/// When a buy is made: `now`, and keys of buys made before `valid_from` have expired;
/// in a replicated catalog also the log index of the entry it is applied from (0 in a
/// single catalog), which its key keeps for snapshots ([`Store::keys_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: u64,
    pub valid_from: u64,
    pub index: u64,
}

impl Clock {
    /// This machine's time, keys kept for `window`.
    pub fn now(window: std::time::Duration) -> Clock {
        let now = common::retention::now_ms();
        Clock {
            now,
            valid_from: common::retention::cutoff(now, window),
            index: 0,
        }
    }
}

/// The trees of one transaction, and the time entries it changes: read once, changed
/// here, and written once at its end, however many buys of the same millisecond it
/// makes.
pub struct Tx<'a> {
    products: &'a TransactionalTree,
    buys: &'a TransactionalTree,
    by_time: &'a TransactionalTree,
    meta: &'a TransactionalTree,
    times: RefCell<BTreeMap<u64, Vec<TimedKey>>>,
}

pub(super) fn flatten(e: TransactionError<CatalogError>) -> CatalogError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

impl Store {
    /// Runs `steps` as one transaction (sled may run it again on a conflict, so it
    /// must do nothing else). Not flushed.
    pub fn write<T>(&self, steps: impl Fn(&Tx<'_>) -> TxResult<T>) -> Result<T, CatalogError> {
        let trees = (&self.products, &self.buys, &self.by_time, &self.meta);
        trees
            .transaction(|(products, buys, by_time, meta)| {
                let tx = Tx {
                    products,
                    buys,
                    by_time,
                    meta,
                    times: RefCell::default(),
                };
                let done = steps(&tx)?;
                tx.write_times()?;
                Ok(done)
            })
            .map_err(flatten)
    }
}

impl Tx<'_> {
    /// Runs `change` on the keys of the buys made at `time` (read on first use).
    fn change_times<R>(
        &self,
        time: u64,
        change: impl FnOnce(&mut Vec<TimedKey>) -> R,
    ) -> TxResult<R> {
        let mut times = self.times.borrow_mut();
        let timed = match times.entry(time) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let held = match self.by_time.get(time_key(time))? {
                    Some(bytes) => decode(&bytes).map_err(ConflictableTransactionError::Abort)?,
                    None => Vec::new(),
                };
                entry.insert(held)
            }
        };
        Ok(change(timed))
    }

    /// Writes the time entries this transaction changed.
    fn write_times(&self) -> TxResult<()> {
        for (time, timed) in self.times.borrow().iter() {
            if !timed.is_empty() {
                self.by_time.insert(&time_key(*time), encode(timed))?;
            }
        }
        Ok(())
    }

    fn add(&self, counter: &[u8], delta: u64) -> TxResult<()> {
        let old = self.meta.get(counter)?.map(|v| read_u64(&v)).unwrap_or(0);
        // The start-up check (`Config::check_stock`) keeps this from happening; if it
        // did, the write is refused rather than the total made a lie.
        let new = old
            .checked_add(delta)
            .ok_or(ConflictableTransactionError::Abort(CatalogError::Internal(
                "a stock total would overflow",
            )))?;
        self.meta.insert(counter, &new.to_be_bytes())?;
        Ok(())
    }

    /// Sets `key` of the `meta` tree (e.g. a state machine's position).
    pub fn set_meta(&self, key: &[u8], value: &[u8]) -> Result<(), UnabortableTransactionError> {
        self.meta.insert(key, value)?;
        Ok(())
    }

    /// Removes `key` of the `meta` tree.
    pub fn remove_meta(&self, key: &[u8]) -> Result<(), UnabortableTransactionError> {
        self.meta.remove(key)?;
        Ok(())
    }

    /// Takes the stock of one buy at `clock`, unless its key was used before within
    /// the window (then its first reply, or a refusal if the key was used for another
    /// buy).
    pub fn buy(
        &self,
        req: &BuyRequest,
        clock: Clock,
    ) -> TxResult<Result<BuyOutcome, CatalogError>> {
        if req.quantity == 0 {
            return Ok(Err(CatalogError::BadRequest(
                "quantity must be positive".into(),
            )));
        }
        let lookup = lookup_key(&req.name);
        let key = common::idkey::encode(&req.key);
        // The replicas' cutoff, if later than ours (never later than now).
        let valid_from = clock.valid_from.max(req.valid_from.min(clock.now));
        let mut replaced = None;
        if let Some(bytes) = self.buys.get(&key)? {
            let held: StoredBuy = decode(&bytes).map_err(ConflictableTransactionError::Abort)?;
            if held.time >= valid_from {
                if lookup_key(&held.name) != lookup || held.quantity != req.quantity {
                    return Ok(Err(CatalogError::KeyReused(req.key.to_string())));
                }
                return Ok(Ok(BuyOutcome::Repeated(held.reply())));
            }
            replaced = Some(held);
        }
        let Some(bytes) = self.products.get(lookup.as_bytes())? else {
            return Ok(Err(CatalogError::UnknownProduct(req.name.to_string())));
        };
        let mut product: StoredProduct =
            decode(&bytes).map_err(ConflictableTransactionError::Abort)?;
        if product.quantity < req.quantity {
            return Ok(Err(CatalogError::InsufficientStock {
                name: product.name.into_string(),
                available: product.quantity,
                requested: req.quantity,
            }));
        }
        product.quantity -= req.quantity;
        product.version += 1;
        let stored = StoredBuy {
            name: product.name.clone(),
            quantity: req.quantity,
            version: product.version,
            time: clock.now,
        };
        self.products.insert(lookup.as_bytes(), encode(&product))?;
        self.buys.insert(key.as_slice(), encode(&stored))?;
        if let Some(old) = &replaced {
            self.keep_replaced(&key, old)?;
        }
        if replaced.is_none_or(|old| old.time != clock.now) {
            self.change_times(clock.now, |timed| {
                timed.push(TimedKey {
                    key,
                    index: clock.index,
                    replaced: None,
                })
            })?;
        }
        self.add(META_SOLD, req.quantity)?;
        Ok(Ok(BuyOutcome::Applied(BuyReply {
            repeated: false,
            ..stored.reply()
        })))
    }

    /// Keeps the expired buy `old` that a new buy with `key` replaces in `buys` in its
    /// time entry, for snapshots taken before. (Should both buys have the same time —
    /// only with a cutoff ahead of the clock, so both have expired — the entry stays
    /// the old buy's.)
    fn keep_replaced(&self, key: &[u8], old: &StoredBuy) -> TxResult<()> {
        self.change_times(old.time, |timed| {
            if let Some(entry) = timed.iter_mut().find(|t| t.key == key) {
                entry.replaced = Some(old.clone());
            }
        })
    }

    /// Sets every sold-out toy of `keys` (every toy's key, [`Store::product_keys`]) to
    /// `amount`; answers the restocked toys with their new versions.
    pub fn restock(&self, keys: &[sled::IVec], amount: u64) -> TxResult<Vec<(String, Version)>> {
        let mut restocked = Vec::new();
        if amount == 0 {
            return Ok(restocked);
        }
        for key in keys {
            let Some(bytes) = self.products.get(key)? else {
                continue;
            };
            let mut product: StoredProduct =
                decode(&bytes).map_err(ConflictableTransactionError::Abort)?;
            if product.quantity != 0 {
                continue;
            }
            product.quantity = amount;
            product.version += 1;
            self.products.insert(key, encode(&product))?;
            self.add(META_RESTOCKED, amount)?;
            restocked.push((product.name.into_string(), Version(product.version)));
        }
        Ok(restocked)
    }

    /// Writes the toys, each with `stock`, at version 1, and the initial total.
    pub fn seed(&self, toys: &[SeedToy], stock: u64) -> TxResult<()> {
        for toy in toys {
            let product = StoredProduct {
                name: toy.name.clone(),
                price_cents: (toy.price * 100.0).round() as u64,
                quantity: stock,
                version: 1,
            };
            self.products
                .insert(lookup_key(&toy.name).as_bytes(), encode(&product))?;
        }
        let initial =
            stock
                .checked_mul(toys.len() as u64)
                .ok_or(ConflictableTransactionError::Abort(CatalogError::Internal(
                    "the initial stock total would overflow",
                )))?;
        self.meta.insert(META_INITIAL, &initial.to_be_bytes())?;
        Ok(())
    }
}
