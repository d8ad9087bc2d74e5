//! The replica's routes; the handlers are in the files of their use case.
//!
//! - `GET /health` (public): id, mode, role, ready, epoch (Raft's term), last order,
//!   digest.
//! - `GET /orders/{n}` (public, `read`): one committed order.
//! - `POST /orders` (token, `place`): place an order — leader only.
//! - `GET /internal/log` (token, `read`): a page of orders.
//! - The mode's own routes (token): primary-backup's leader notices and replication
//!   batches, or Raft's messages (`Protocol::routes`).

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use common::http::{require_token, with_fallbacks, ClusterToken, INTERNAL_BODY_LIMIT};

use crate::buyer::Buyer;
use crate::error::OrderError;
use crate::keys::KeyGate;
use crate::replication::Protocol;
use crate::{place, read};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub protocol: Protocol,
    pub buyer: Buyer,
    /// One order per idempotency key at a time.
    pub keys: KeyGate,
    /// How long the replicas keep an idempotency key (`common::retention`).
    pub key_window: Duration,
}

/// The replica's routes.
pub fn router(state: AppState, token: ClusterToken) -> Router {
    let internal = Router::new()
        .route("/orders", post(place::place))
        .route("/internal/log", get(read::log_page))
        .merge(state.protocol.routes())
        .route_layer(middleware::from_fn_with_state(token, require_token));
    let router = Router::new()
        .route("/health", get(health))
        .route("/orders/{number}", get(read::one))
        .merge(internal)
        .with_state(state)
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_LIMIT));
    with_fallbacks(router)
}

async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, OrderError> {
    Ok(axum::Json(state.protocol.status()?))
}
