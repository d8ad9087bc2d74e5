//! The catalog's whole state as one value: its digest (`/health`), and what a
//! replicated catalog's snapshot holds — the toys and counters as they were
//! ([`Image`]), and the keys held at its index, read from the store when a peer needs
//! them ([`Store::keys_at`]) — and its install.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::{
    decode, encode, read_u64, time_key, Store, StoredBuy, StoredProduct, TimedKey, META_INITIAL,
    META_RESTOCKED, META_SOLD,
};
use crate::error::CatalogError;
use common::storage::StorageError;

/// The trees a snapshot holds, by number in [`Image`].
const PRODUCTS: u8 = 0;
const BUYS: u8 = 1;
const BY_TIME: u8 = 2;
const META: u8 = 3;

/// Entries of the catalog's trees: (tree, key, value).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image(Vec<(u8, Vec<u8>, Vec<u8>)>);

/// A key a replicated catalog held at a snapshot's index: its buy, and the index of
/// the entry that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldKey {
    pub(super) index: u64,
    pub(super) key: Vec<u8>,
    pub(super) buy: StoredBuy,
}

/// FNV-1a, 64 bits: small, stable across builds and machines.
fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Store {
    fn trees(&self) -> [(u8, &sled::Tree); 4] {
        [
            (PRODUCTS, &self.products),
            (BUYS, &self.buys),
            (BY_TIME, &self.by_time),
            (META, &self.meta),
        ]
    }

    /// A value of the `meta` tree.
    pub fn meta(&self, key: &[u8]) -> Result<Option<sled::IVec>, CatalogError> {
        Ok(self.meta.get(key)?)
    }

    /// A hash of every toy's stock and version and of the stock counters, as 16 hex
    /// digits: two catalogs with the same stock report the same digest.
    pub fn digest(&self) -> Result<String, CatalogError> {
        let mut hash = 0xcbf2_9ce4_8422_2325;
        for item in self.products.iter() {
            let (key, value) = item?;
            let product: StoredProduct = decode(&value)?;
            hash = fnv(hash, &key);
            hash = fnv(hash, &product.quantity.to_be_bytes());
            hash = fnv(hash, &product.version.to_be_bytes());
        }
        for counter in [META_INITIAL, META_RESTOCKED, META_SOLD] {
            let value = self.meta.get(counter)?.map(|v| read_u64(&v)).unwrap_or(0);
            hash = fnv(hash, &value.to_be_bytes());
        }
        Ok(format!("{hash:016x}"))
    }

    /// Every entry of the trees that change in place — the toys and the counters —
    /// but the `meta` keys in `skip` (a state machine's own records).
    pub fn stock_image(&self, skip: &[&[u8]]) -> Result<Image, CatalogError> {
        self.image_of(&[(PRODUCTS, &self.products), (META, &self.meta)], skip)
    }

    /// Every entry of the four trees, as an earlier version exported a snapshot.
    #[cfg(test)]
    pub fn whole_image(&self) -> Result<Image, CatalogError> {
        self.image_of(&self.trees(), &[])
    }

    /// Every entry of `trees` but the `meta` keys in `skip`.
    fn image_of(&self, trees: &[(u8, &sled::Tree)], skip: &[&[u8]]) -> Result<Image, CatalogError> {
        let mut entries = Vec::new();
        for (id, tree) in trees {
            for item in tree.iter() {
                let (key, value) = item?;
                if *id == META && skip.contains(&key.as_ref()) {
                    continue;
                }
                entries.push((*id, key.to_vec(), value.to_vec()));
            }
        }
        Ok(Image(entries))
    }

    /// The keys that the store held, unexpired, once the entry at log index `index`
    /// was applied, `cutoff` being the machine's key cutoff then: every buy whose
    /// time entry (at or after `cutoff`) names an index up to `index`, the newest for
    /// each key. Entries applied since only add keys with later indexes or keep the
    /// buys they replace in their time entries, so this can be read long after, while
    /// buys go on — as long as nothing at or after `cutoff` has been pruned.
    pub fn keys_at(&self, index: u64, cutoff: u64) -> Result<Vec<HeldKey>, CatalogError> {
        let mut keys = Vec::new();
        for item in self.by_time.range(time_key(cutoff)..) {
            let (time, value) = item?;
            let time = read_u64(&time);
            let timed: Vec<TimedKey> = decode(&value)?;
            for TimedKey {
                key,
                index: held_index,
                replaced,
            } in timed
            {
                if held_index > index {
                    continue;
                }
                let buy = match replaced {
                    Some(buy) => buy,
                    None => self.buy_at(&key, time)?,
                };
                keys.push(HeldKey {
                    index: held_index,
                    key,
                    buy,
                });
            }
        }
        // A key bought again after it expired (by a buy's own, later cutoff) can
        // have two entries at or after `cutoff`: the newer buy is the one held.
        keys.sort_unstable_by(|a, b| a.key.cmp(&b.key).then(b.index.cmp(&a.index)));
        keys.dedup_by(|later, first| later.key == first.key);
        Ok(keys)
    }

    /// The buy of `key` made at `time`: in `buys`, unless a buy since has replaced it
    /// there — then kept in its time entry.
    fn buy_at(&self, key: &[u8], time: u64) -> Result<StoredBuy, CatalogError> {
        if let Some(bytes) = self.buys.get(key)? {
            let buy: StoredBuy = decode(&bytes)?;
            if buy.time == time {
                return Ok(buy);
            }
        }
        // Replaced while this was read: the time entry holds it now.
        let Some(value) = self.by_time.get(time_key(time))? else {
            return Err(StorageError::corrupt("a held key was pruned while it was read").into());
        };
        let timed: Vec<TimedKey> = decode(&value)?;
        match timed.into_iter().find(|t| t.key == key) {
            Some(TimedKey {
                replaced: Some(buy),
                ..
            }) => Ok(buy),
            _ => Err(StorageError::corrupt("a key's time entry names no buy").into()),
        }
    }

    /// Replaces the four trees' contents (but the `meta` keys in `skip`) with `image`
    /// and `keys`, and sets `meta_values`, in one transaction: a crash leaves the old
    /// state or the new one. Not flushed.
    pub fn import(
        &self,
        Image(mut entries): Image,
        keys: Vec<HeldKey>,
        skip: &[&[u8]],
        meta_values: &[(&[u8], Vec<u8>)],
    ) -> Result<(), CatalogError> {
        if let Some((id, _, _)) = entries.iter().find(|(id, _, _)| *id > META) {
            return Err(StorageError::corrupt(format!("snapshot names tree {id}")).into());
        }
        let mut times: BTreeMap<u64, Vec<TimedKey>> = BTreeMap::new();
        for held in keys {
            times.entry(held.buy.time).or_default().push(TimedKey {
                key: held.key.clone(),
                index: held.index,
                replaced: None,
            });
            entries.push((BUYS, held.key, encode(&held.buy)));
        }
        for (time, timed) in times {
            entries.push((BY_TIME, time_key(time).to_vec(), encode(&timed)));
        }
        let mut old: Vec<(u8, sled::IVec)> = Vec::new();
        for (id, tree) in self.trees() {
            for key in tree.iter().keys() {
                let key = key?;
                if !(id == META && skip.contains(&key.as_ref())) {
                    old.push((id, key));
                }
            }
        }
        let trees = (&self.products, &self.buys, &self.by_time, &self.meta);
        let result = trees.transaction(|(products, buys, by_time, meta)| {
            let tree = |id: u8| match id {
                PRODUCTS => products,
                BUYS => buys,
                BY_TIME => by_time,
                _ => meta,
            };
            for (id, key) in &old {
                tree(*id).remove(key)?;
            }
            for (id, key, value) in &entries {
                tree(*id).insert(key.as_slice(), value.as_slice())?;
            }
            for (key, value) in meta_values {
                meta.insert(*key, value.as_slice())?;
            }
            Ok::<_, ConflictableTransactionError<CatalogError>>(())
        });
        result.map_err(super::flatten)
    }
}

impl Image {
    /// An image of all four trees as an earlier version stored it whole: the toys and
    /// counters, and the keys it held (their indexes unknown, so 0: all of them were
    /// held at the image's index).
    pub fn split_keys(self) -> Result<(Image, Vec<HeldKey>), CatalogError> {
        let mut stock = Vec::new();
        let mut keys = Vec::new();
        for (id, key, value) in self.0 {
            match id {
                BUYS => keys.push(HeldKey {
                    index: 0,
                    key,
                    buy: decode(&value)?,
                }),
                BY_TIME => {}
                _ => stock.push((id, key, value)),
            }
        }
        Ok((Image(stock), keys))
    }
}
