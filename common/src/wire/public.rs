//! The public API's bodies: what clients send and get back (besides the error body).

use crate::domain::OrderNumber;
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
    #[schema(value_type = u64)]
    pub order_number: OrderNumber,
}

/// An order as the public API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    #[schema(value_type = u64)]
    pub number: OrderNumber,
    pub name: String,
    pub quantity: u64,
}
