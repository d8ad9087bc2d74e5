//! The catalog's whole state as one value: its digest (`/health`), and the bytes of a
//! replicated catalog's snapshot — every entry of the four trees — and their install.

use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::{
    decode, encode, read_u64, Store, StoredProduct, META_INITIAL, META_RESTOCKED, META_SOLD,
};
use crate::error::CatalogError;
use common::storage::StorageError;

/// The trees a snapshot holds, by number in [`Image`].
const PRODUCTS: u8 = 0;
const BUYS: u8 = 1;
const BY_TIME: u8 = 2;
const META: u8 = 3;

/// Every entry of the catalog's trees: (tree, key, value).
#[derive(Serialize, Deserialize)]
struct Image(Vec<(u8, Vec<u8>, Vec<u8>)>);

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

    /// Every entry of the four trees but the `meta` keys in `skip` (a state
    /// machine's own records), encoded.
    pub fn export(&self, skip: &[&[u8]]) -> Result<Vec<u8>, CatalogError> {
        let mut entries = Vec::new();
        for (id, tree) in self.trees() {
            for item in tree.iter() {
                let (key, value) = item?;
                if id == META && skip.contains(&key.as_ref()) {
                    continue;
                }
                entries.push((id, key.to_vec(), value.to_vec()));
            }
        }
        Ok(encode(&Image(entries)))
    }

    /// Replaces the four trees' contents (but the `meta` keys in `skip`) with an
    /// [`Store::export`], and sets `meta_values`, in one transaction: a crash leaves
    /// the old state or the new one. Not flushed.
    pub fn import(
        &self,
        bytes: &[u8],
        skip: &[&[u8]],
        meta_values: &[(&[u8], Vec<u8>)],
    ) -> Result<(), CatalogError> {
        let Image(entries) = decode(bytes)?;
        if let Some((id, _, _)) = entries.iter().find(|(id, _, _)| *id > META) {
            return Err(StorageError::corrupt(format!("snapshot names tree {id}")).into());
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
