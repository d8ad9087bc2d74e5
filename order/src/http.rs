//! Routes and handlers of an order replica.
//!
//! - `GET /health` (public): id, mode, role, ready, epoch (Raft's term), last order,
//!   digest.
//! - `GET /orders/{n}` (public): one committed order.
//! - `POST /orders` (token): place an order — leader only.
//! - `GET /internal/log` (token): a page of orders.
//! - Primary-backup mode, `POST /internal/leader`, `POST /internal/replicate` (token):
//!   leader notices and replication batches.
//! - Raft mode, `POST /internal/raft/{append,vote,snapshot}` (token): Raft's messages.

use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use common::http::{
    require_token, with_fallbacks, ClusterToken, Json, PathParam, QueryParams, INTERNAL_BODY_LIMIT,
};
use common::retention;
use common::trace::RequestId;
use common::wire::{data, LeaderNotice, LogPage, NewOrder, OrderAccepted, OrderView, Replicate};
use serde::Deserialize;

use crate::buyer::Buyer;
use crate::error::OrderError;
use crate::replica::{Replica, MAX_TEXT};
use crate::replication::Protocol;

/// Most orders in one catch-up page.
const MAX_PAGE: u64 = 1000;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub protocol: Protocol,
    pub buyer: Buyer,
    /// How long the replicas keep an idempotency key (`common::retention`).
    pub key_window: std::time::Duration,
}

/// The replica's routes.
pub fn router(state: AppState, token: ClusterToken) -> Router {
    let mut internal = Router::new()
        .route("/orders", post(place))
        .route("/internal/log", get(log_page));
    internal = match &state.protocol {
        Protocol::PrimaryBackup { .. } => internal
            .route("/internal/leader", post(leader_notice))
            .route("/internal/replicate", post(replicate)),
        Protocol::Raft(node) => internal.merge(node.routes()),
    };
    let internal = internal.route_layer(middleware::from_fn_with_state(token, require_token));
    let router = Router::new()
        .route("/health", get(health))
        .route("/orders/{number}", get(one))
        .merge(internal)
        .with_state(state)
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_LIMIT));
    with_fallbacks(router)
}

async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, OrderError> {
    Ok(axum::Json(state.protocol.status()?))
}

async fn one(
    State(state): State<AppState>,
    PathParam(number): PathParam,
) -> Result<impl IntoResponse, OrderError> {
    let number: u64 = number
        .parse()
        .map_err(|_| OrderError::BadRequest(format!("order number {number:?} is not a number")))?;
    let record = state.protocol.read(number).await?;
    Ok(data(OrderView::from(record)))
}

/// Places an order: the catalog takes the stock (idempotent by key), then the
/// protocol stores and replicates the order (or answers the order a repeated key made).
async fn place(
    State(state): State<AppState>,
    Json(mut order): Json<NewOrder>,
) -> Result<impl IntoResponse, OrderError> {
    state.protocol.check_writable()?;
    if order.request_id.is_none() {
        order.request_id = RequestId::current();
    }
    if order.quantity == 0
        || order.name.is_empty()
        || order.name.len() > MAX_TEXT
        || order.key.is_empty()
        || order.key.len() > MAX_TEXT
    {
        return Err(OrderError::BadRequest(
            "an order needs a name and key of 1 to 512 bytes and a positive quantity".into(),
        ));
    }
    // The catalog is idempotent by key, so a repeated key is bought again too: that
    // returns the toy's version after the original buy, which the front-end's cache
    // needs (see `buyer` for what happens when the catalog is down).
    let valid_from = retention::cutoff(retention::now_ms(), state.key_window);
    let held = state
        .protocol
        .store()
        .by_key(&order.key, valid_from)?
        .is_some();
    let bought = state.buyer.buy(order, held).await?;
    let (order, version) = (bought.order, bought.version);
    // A held key is answered by the protocol too, so the reply waits until that
    // order is durable and replicated.
    let name = order.name.clone();
    let number = state.protocol.submit(order, bought.purchase).await?;
    tracing::info!(order = number, toy = %name, "order placed");
    Ok(data(OrderAccepted {
        order_number: number,
        name,
        version,
    }))
}

/// The primary-backup replica (its routes exist only in that mode).
fn primary_backup(state: &AppState) -> Result<&Replica, OrderError> {
    match &state.protocol {
        Protocol::PrimaryBackup { replica, .. } => Ok(replica),
        Protocol::Raft(_) => Err(OrderError::BadRequest(
            "this replica runs raft, not primary-backup".into(),
        )),
    }
}

async fn leader_notice(
    State(state): State<AppState>,
    Json(notice): Json<LeaderNotice>,
) -> Result<impl IntoResponse, OrderError> {
    Ok(data(primary_backup(&state)?.on_notice(notice).await?))
}

async fn replicate(
    State(state): State<AppState>,
    Json(batch): Json<Replicate>,
) -> Result<impl IntoResponse, OrderError> {
    Ok(data(primary_backup(&state)?.on_replicate(batch).await?))
}

#[derive(Deserialize)]
struct PageQuery {
    from: u64,
    limit: Option<u64>,
}

async fn log_page(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<impl IntoResponse, OrderError> {
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE) as usize;
    let store = state.protocol.store();
    Ok(data(LogPage {
        entries: store.page(q.from, limit)?,
        last_order: store.last()?.map(|r| r.number),
    }))
}
