//! The public API's bodies: what clients send and get back (besides the error body).

use serde::{Deserialize, Serialize};

/// A toy as the public API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    pub name: String,
    /// Price in the store's currency, two decimals.
    pub price: f64,
    pub quantity: u64,
}

/// Reply to a placed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderPlaced {
    pub order_number: u64,
}

/// An order as the public API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    pub number: u64,
    pub name: String,
    pub quantity: u64,
}
