//! The catalog's durable state — the only module that touches sled.
//!
//! Trees:
//! - `products`: lower-cased name → [`StoredProduct`] (canonical name, price in cents,
//!   quantity, version).
//! - `applied`: idempotency key → the [`BuyReply`] it produced, written in the same
//!   transaction as the stock change, so a repeated key can never take stock twice.
//! - `meta`: stock accounting counters (`initial`, `restocked`, `sold`).
//!
//! Every change is flushed (group commit through [`GroupFlush`]) before it is
//! reported, so an acknowledged buy or restock survives `kill -9`.

use std::path::Path;

use common::flush::GroupFlush;
use common::wire::{BuyReply, BuyRequest, CatalogProduct, StockTotals};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::error::CatalogError;

const META_INITIAL: &[u8] = b"initial";
const META_RESTOCKED: &[u8] = b"restocked";
const META_SOLD: &[u8] = b"sold";

/// A toy as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredProduct {
    pub name: String,
    pub price_cents: u64,
    pub quantity: u64,
    pub version: u64,
}

impl From<StoredProduct> for CatalogProduct {
    fn from(p: StoredProduct) -> Self {
        CatalogProduct {
            name: p.name,
            price: p.price_cents as f64 / 100.0,
            quantity: p.quantity,
            version: p.version,
        }
    }
}

/// One line of the seed file.
#[derive(Debug, Clone, Deserialize)]
pub struct SeedToy {
    pub name: String,
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
#[derive(Debug, Clone, PartialEq)]
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
    applied: sled::Tree,
    meta: sled::Tree,
    flusher: GroupFlush,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain structs of strings and integers into a Vec cannot fail.
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, CatalogError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| CatalogError::Storage(format!("corrupt record: {e}")))
}

fn read_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn add_u64(
    tree: &TransactionalTree,
    key: &[u8],
    delta: u64,
) -> Result<(), ConflictableTransactionError<CatalogError>> {
    let old = tree.get(key)?.map(|v| read_u64(&v)).unwrap_or(0);
    tree.insert(key, &old.saturating_add(delta).to_be_bytes())?;
    Ok(())
}

/// One buy inside a transaction. The outer error aborts the transaction (storage);
/// the inner one refuses this buy only.
type TxResult<T> = Result<T, ConflictableTransactionError<CatalogError>>;

fn buy_one(
    products: &TransactionalTree,
    applied: &TransactionalTree,
    req: &BuyRequest,
) -> TxResult<Result<BuyOutcome, CatalogError>> {
    if req.quantity == 0 {
        return Ok(Err(CatalogError::BadRequest(
            "quantity must be positive".into(),
        )));
    }
    let lookup = lookup_key(&req.name);
    if let Some(bytes) = applied.get(req.key.as_bytes())? {
        let reply: BuyReply = decode(&bytes).map_err(ConflictableTransactionError::Abort)?;
        if lookup_key(&reply.name) != lookup || reply.quantity != req.quantity {
            return Ok(Err(CatalogError::KeyReused(req.key.clone())));
        }
        return Ok(Ok(BuyOutcome::Repeated(reply)));
    }
    let Some(bytes) = products.get(lookup.as_bytes())? else {
        return Ok(Err(CatalogError::UnknownProduct(req.name.clone())));
    };
    let mut product: StoredProduct = decode(&bytes).map_err(ConflictableTransactionError::Abort)?;
    if product.quantity < req.quantity {
        return Ok(Err(CatalogError::InsufficientStock {
            name: product.name,
            available: product.quantity,
            requested: req.quantity,
        }));
    }
    product.quantity -= req.quantity;
    product.version += 1;
    let reply = BuyReply {
        name: product.name.clone(),
        quantity: req.quantity,
        version: product.version,
    };
    products.insert(lookup.as_bytes(), encode(&product))?;
    applied.insert(req.key.as_bytes(), encode(&reply))?;
    Ok(Ok(BuyOutcome::Applied(reply)))
}

fn flatten(e: TransactionError<CatalogError>) -> CatalogError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

impl Store {
    /// Opens (or creates) the database in `dir` with this project's default page
    /// cache ([`common::storage::DEFAULT_CACHE_MB`]) and starts its flusher.
    pub fn open(dir: &Path) -> Result<Self, CatalogError> {
        Store::open_with_cache(dir, common::storage::DEFAULT_CACHE_MB)
    }

    /// Opens (or creates) the database in `dir` with a page cache of `cache_mb` MiB
    /// and starts its flusher.
    pub fn open_with_cache(dir: &Path, cache_mb: u64) -> Result<Self, CatalogError> {
        let db = common::storage::open_db(dir, cache_mb)?;
        Ok(Store {
            products: db.open_tree("products")?,
            applied: db.open_tree("applied")?,
            meta: db.open_tree("meta")?,
            flusher: GroupFlush::start(db.clone()),
            db,
        })
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
        let result = (&self.products, &self.meta).transaction(|(products, meta)| {
            for toy in toys {
                let product = StoredProduct {
                    name: toy.name.clone(),
                    price_cents: (toy.price * 100.0).round() as u64,
                    quantity: stock,
                    version: 1,
                };
                products.insert(lookup_key(&toy.name).as_bytes(), encode(&product))?;
            }
            meta.insert(META_INITIAL, &(stock * toys.len() as u64).to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<CatalogError>>(())
        });
        result.map_err(flatten)?;
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
            .unwrap_or_else(|| Err(CatalogError::Storage("empty batch result".into())))
    }

    /// [`Store::buy`] for many orders at once: one transaction, one flush. Each buy
    /// gets its own outcome (a refused buy changes nothing and does not affect the
    /// others); the outer error is a storage failure, after which nothing changed.
    pub async fn buy_batch(
        &self,
        reqs: &[BuyRequest],
    ) -> Result<Vec<Result<BuyOutcome, CatalogError>>, CatalogError> {
        let result =
            (&self.products, &self.applied, &self.meta).transaction(|(products, applied, meta)| {
                let mut outcomes = Vec::with_capacity(reqs.len());
                let mut sold = 0u64;
                for req in reqs {
                    let outcome = buy_one(products, applied, req)?;
                    if let Ok(BuyOutcome::Applied(reply)) = &outcome {
                        sold = sold.saturating_add(reply.quantity);
                    }
                    outcomes.push(outcome);
                }
                if sold > 0 {
                    add_u64(meta, META_SOLD, sold)?;
                }
                Ok(outcomes)
            });
        let outcomes = result.map_err(flatten)?;
        // Flush even for repeated keys only: a first reply may not have been flushed
        // yet when a concurrent duplicate read it.
        self.flusher.flush().await?;
        Ok(outcomes)
    }

    /// Sets every sold-out toy to `amount`, durably. Returns the restocked toys with
    /// their new versions.
    pub async fn restock_sold_out(&self, amount: u64) -> Result<Vec<(String, u64)>, CatalogError> {
        let mut restocked = Vec::new();
        if amount == 0 {
            return Ok(restocked);
        }
        for product in self.products()? {
            if product.quantity != 0 {
                continue;
            }
            let lookup = lookup_key(&product.name);
            let result = (&self.products, &self.meta).transaction(|(products, meta)| {
                let Some(bytes) = products.get(lookup.as_bytes())? else {
                    return Ok(None);
                };
                let mut current: StoredProduct =
                    decode(&bytes).map_err(ConflictableTransactionError::Abort)?;
                if current.quantity != 0 {
                    return Ok(None); // bought back up meanwhile? never mind: not sold out
                }
                current.quantity = amount;
                current.version += 1;
                products.insert(lookup.as_bytes(), encode(&current))?;
                add_u64(meta, META_RESTOCKED, amount)?;
                Ok(Some((current.name, current.version)))
            });
            if let Some(done) = result.map_err(flatten)? {
                restocked.push(done);
            }
        }
        if !restocked.is_empty() {
            self.flusher.flush().await?;
        }
        Ok(restocked)
    }

    /// Stock accounting: what was seeded, restocked and sold, and what is left — one
    /// snapshot, read in one transaction over the products and the counters, so it
    /// adds up even while buys and restocks run. (A transaction cannot iterate, but
    /// the set of toys is fixed once seeded: their keys are listed first.)
    pub fn totals(&self) -> Result<StockTotals, CatalogError> {
        let keys: Vec<sled::IVec> = self.products.iter().keys().collect::<Result<_, _>>()?;
        let read = (&self.products, &self.meta).transaction(|(products, meta)| {
            let mut current = 0u64;
            for key in &keys {
                if let Some(bytes) = products.get(key)? {
                    let p: StoredProduct =
                        decode(&bytes).map_err(ConflictableTransactionError::Abort)?;
                    current = current.saturating_add(p.quantity);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn toys() -> Vec<SeedToy> {
        vec![
            SeedToy {
                name: "Tux".into(),
                price: 15.99,
            },
            SeedToy {
                name: "Rubik's Cube".into(),
                price: 12.99,
            },
        ]
    }

    fn buy(name: &str, quantity: u64, key: &str) -> BuyRequest {
        BuyRequest {
            name: name.into(),
            quantity,
            key: key.into(),
            request_id: None,
        }
    }

    async fn seeded() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert!(store.seed_if_empty(&toys(), 10).await.expect("seed"));
        (dir, store)
    }

    #[tokio::test]
    async fn lookups_ignore_case_and_keep_the_canonical_name() {
        let (_dir, store) = seeded().await;
        let p = store.product("rUBIK'S cube").expect("read").expect("found");
        assert_eq!(p.name, "Rubik's Cube");
        assert_eq!(p.price_cents, 1299);
        assert!(store.product("Rubiks Cube").expect("read").is_none());
    }

    #[tokio::test]
    async fn seeding_happens_only_once() {
        let (_dir, store) = seeded().await;
        store.buy(&buy("tux", 3, "k")).await.expect("buy");
        assert!(!store.seed_if_empty(&toys(), 10).await.expect("seed"));
        assert_eq!(
            store.product("Tux").expect("read").expect("found").quantity,
            7
        );
    }

    #[tokio::test]
    async fn a_buy_takes_stock_and_bumps_the_version() {
        let (_dir, store) = seeded().await;
        let out = store.buy(&buy("tux", 3, "k1")).await.expect("buy");
        assert_eq!(
            out,
            BuyOutcome::Applied(BuyReply {
                name: "Tux".into(),
                quantity: 3,
                version: 2
            })
        );
        let p = store.product("Tux").expect("read").expect("found");
        assert_eq!((p.quantity, p.version), (7, 2));
    }

    #[tokio::test]
    async fn a_repeated_key_changes_nothing() {
        let (_dir, store) = seeded().await;
        store.buy(&buy("Tux", 3, "k1")).await.expect("buy");
        let again = store.buy(&buy("Tux", 3, "k1")).await.expect("buy again");
        assert!(matches!(again, BuyOutcome::Repeated(ref r) if r.version == 2));
        assert_eq!(
            store.product("Tux").expect("read").expect("found").quantity,
            7
        );
        let other = store.buy(&buy("Tux", 4, "k1")).await;
        assert!(matches!(other, Err(CatalogError::KeyReused(_))));
    }

    #[tokio::test]
    async fn insufficient_stock_and_unknown_toys_change_nothing() {
        let (_dir, store) = seeded().await;
        let err = store.buy(&buy("Tux", 11, "k1")).await;
        assert!(matches!(
            err,
            Err(CatalogError::InsufficientStock { available: 10, .. })
        ));
        let err = store.buy(&buy("Nope", 1, "k2")).await;
        assert!(matches!(err, Err(CatalogError::UnknownProduct(_))));
        let t = store.totals().expect("totals");
        assert_eq!((t.sold, t.current), (0, 20));
        // the failed key was not recorded, so it can still be used
        store.buy(&buy("Tux", 10, "k1")).await.expect("buy");
    }

    #[tokio::test]
    async fn a_batch_applies_each_buy_on_its_own() {
        let (_dir, store) = seeded().await;
        let outcomes = store
            .buy_batch(&[
                buy("Tux", 4, "a"),
                buy("Tux", 7, "b"),  // only 6 left after the first: refused
                buy("Nope", 1, "c"), // unknown: refused
                buy("Tux", 4, "a"),  // repeated in the same batch
                buy("Tux", 6, "d"),
            ])
            .await
            .expect("batch");
        assert!(matches!(outcomes[0], Ok(BuyOutcome::Applied(ref r)) if r.version == 2));
        assert!(matches!(
            outcomes[1],
            Err(CatalogError::InsufficientStock { available: 6, .. })
        ));
        assert!(matches!(outcomes[2], Err(CatalogError::UnknownProduct(_))));
        assert!(matches!(outcomes[3], Ok(BuyOutcome::Repeated(ref r)) if r.version == 2));
        assert!(matches!(outcomes[4], Ok(BuyOutcome::Applied(ref r)) if r.version == 3));
        let t = store.totals().expect("totals");
        assert_eq!((t.sold, t.current), (10, 10));
    }

    #[tokio::test]
    async fn restock_refills_only_sold_out_toys_and_stock_adds_up() {
        let (_dir, store) = seeded().await;
        store.buy(&buy("Tux", 10, "k1")).await.expect("buy");
        store.buy(&buy("Rubik's Cube", 4, "k2")).await.expect("buy");
        let restocked = store.restock_sold_out(100).await.expect("restock");
        assert_eq!(restocked, vec![("Tux".to_string(), 3)]);
        let t = store.totals().expect("totals");
        assert_eq!(
            t,
            StockTotals {
                initial: 20,
                restocked: 100,
                sold: 14,
                current: 106
            }
        );
        assert_eq!(t.initial + t.restocked - t.sold, t.current);
    }

    #[test]
    fn the_shipped_seed_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/toys.json");
        let toys = read_seed(&path).expect("valid seed");
        assert!(toys.len() >= 20);
        assert!(toys
            .iter()
            .any(|t| t.name.contains(' ') && t.name.contains('\'')));
    }
}
