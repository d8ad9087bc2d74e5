//! Bodies on the wire, public and internal, as plain serde types, one file per
//! audience:
//!
//! - [`public`]: what clients send and get back.
//! - [`catalog`]: the catalog's internal API (buys, invalidations, totals).
//! - [`orders`]: the order path between the front-end and the replicas, both modes.
//! - [`primary_backup`]: primary-backup mode's leader notices and replication.
//! - [`status`]: what the services report of themselves (`/health`, the cache).
//!
//! (Raft mode's messages are openraft's own, in bincode: see the `consensus` crate.)
//! Public replies are wrapped in [`Data`] (`{"data": ...}`); errors use
//! [`crate::error::ErrorBody`]. Internal bodies travel between services only and are
//! guarded by the cluster token. Every type is re-exported here.

pub mod catalog;
pub mod orders;
pub mod primary_backup;
pub mod public;
pub mod status;

use serde::{Deserialize, Serialize};

pub use catalog::*;
pub use orders::*;
pub use primary_backup::*;
pub use public::*;
pub use status::*;

/// The success envelope of every reply: `{"data": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Data<T> {
    pub data: T,
}

/// Wraps `data` in the success envelope, ready to return from a handler.
pub fn data<T: Serialize>(data: T) -> axum::Json<Data<T>> {
    axum::Json(Data { data })
}
