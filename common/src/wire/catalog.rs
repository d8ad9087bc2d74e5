//! The catalog's internal API: products with versions, buys (idempotent by key),
//! invalidations pushed to the front-end, stock totals.

use crate::domain::{IdempotencyKey, ToyName, Version};
use serde::{Deserialize, Serialize};

use super::Product;
use crate::trace::RequestId;

/// A toy as the catalog reports it: the public fields plus its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogProduct {
    pub name: String,
    pub price: f64,
    pub quantity: u64,
    /// Grows with every stock change of this toy; lets caches order what they hear.
    pub version: Version,
}

impl From<CatalogProduct> for Product {
    fn from(p: CatalogProduct) -> Self {
        Product {
            name: p.name,
            price: p.price,
            quantity: p.quantity,
        }
    }
}

/// Catalog request to take stock for one order, idempotent by `key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuyRequest {
    pub name: ToyName,
    pub quantity: u64,
    pub key: IdempotencyKey,
    /// The `x-request-id` of the order's request, for the catalog's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// The replicas' key cutoff (ms since the Unix epoch): a key the catalog recorded
    /// before it counts as expired there too, whatever the catalog's own window, so
    /// the catalog never calls "repeated" a key the replicas have forgotten.
    #[serde(default)]
    pub valid_from: u64,
}

/// What a successful buy did (the same reply again for a repeated key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuyReply {
    /// Canonical name of the toy.
    pub name: ToyName,
    pub quantity: u64,
    /// The toy's version right after this buy.
    pub version: Version,
    /// True when the stock was taken before, for the same key (and not now).
    #[serde(default)]
    pub repeated: bool,
}

/// The outcome of one buy in a batch: `{"ok": {...}}` or `{"error": {code, message}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuyResult {
    Ok(BuyReply),
    Error(crate::error::ErrorDetail),
}

/// Catalog → front-end: forget what you cached about `name`; it is now at `version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invalidation {
    pub name: String,
    pub version: Version,
}

/// The body of the front-end's invalidation endpoint: one invalidation, or several.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Invalidations {
    One(Invalidation),
    Many(Vec<Invalidation>),
}

impl Invalidations {
    pub fn into_vec(self) -> Vec<Invalidation> {
        match self {
            Invalidations::One(i) => vec![i],
            Invalidations::Many(v) => v,
        }
    }
}

/// Catalog stock accounting: `initial + restocked - sold == current` must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockTotals {
    pub initial: u64,
    pub restocked: u64,
    pub sold: u64,
    pub current: u64,
}
