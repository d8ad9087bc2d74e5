//! Routes and handlers of an order replica.
//!
//! - `GET /health` (public): id, role, ready, epoch, last order, digest.
//! - `GET /orders/{n}` (public): one order from this replica's store.
//! - `POST /orders` (token): place an order — leader only.
//! - `POST /internal/leader`, `POST /internal/replicate`, `GET /internal/log` (token):
//!   leader notices, replication batches and catch-up pages.

use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use common::http::{
    require_token, with_fallbacks, ClusterToken, Json, PathParam, QueryParams, INTERNAL_BODY_LIMIT,
};
use common::wire::{data, LeaderNotice, LogPage, NewOrder, OrderAccepted, OrderView, Replicate};
use serde::Deserialize;

use crate::buyer::Buyer;
use crate::error::OrderError;
use crate::replica::{Replica, MAX_TEXT};
use crate::writer::Writer;

/// Most orders in one catch-up page.
const MAX_PAGE: u64 = 1000;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub replica: Replica,
    pub writer: Writer,
    pub buyer: Buyer,
}

/// The replica's routes.
pub fn router(state: AppState, token: ClusterToken) -> Router {
    let internal = Router::new()
        .route("/orders", post(place))
        .route("/internal/leader", post(leader_notice))
        .route("/internal/replicate", post(replicate))
        .route("/internal/log", get(log_page))
        .route_layer(middleware::from_fn_with_state(token, require_token));
    let router = Router::new()
        .route("/health", get(health))
        .route("/orders/{number}", get(one))
        .merge(internal)
        .with_state(state)
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_LIMIT));
    with_fallbacks(router)
}

async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, OrderError> {
    Ok(axum::Json(state.replica.status()?))
}

async fn one(
    State(state): State<AppState>,
    PathParam(number): PathParam,
) -> Result<impl IntoResponse, OrderError> {
    let number: u64 = number
        .parse()
        .map_err(|_| OrderError::BadRequest(format!("order number {number:?} is not a number")))?;
    // Only committed orders are shown: one that is stored but could still be dropped
    // (not yet on every follower the leader waits for) is not, after a short wait. A
    // number not stored at all is answered at once.
    if state.replica.store().order(number)?.is_none() || !state.replica.committed(number).await {
        return Err(OrderError::UnknownOrder(number));
    }
    // Read again: what was stored at that number may have changed while we waited.
    match state.replica.store().order(number)? {
        Some(record) => Ok(data(OrderView::from(record))),
        None => Err(OrderError::UnknownOrder(number)),
    }
}

/// Places an order: the catalog takes the stock (idempotent by key), then the writer
/// stores and replicates the order (or answers the order a repeated key made).
async fn place(
    State(state): State<AppState>,
    Json(order): Json<NewOrder>,
) -> Result<impl IntoResponse, OrderError> {
    let leadership = state.replica.leadership();
    if !leadership.accepts_writes() {
        return Err(OrderError::NotLeader {
            id: state.replica.id(),
            leader: leadership.leader,
        });
    }
    if order.quantity == 0
        || order.name.is_empty()
        || order.name.len() > MAX_TEXT
        || order.key.is_empty()
        || order.key.len() > MAX_TEXT
    {
        return Err(OrderError::BadRequest(
            "an order needs a name and key of 1 to 256 bytes and a positive quantity".into(),
        ));
    }
    // The catalog is idempotent by key, so a repeated key is bought again too: that
    // returns the toy's version after the original buy, which the front-end's cache
    // needs (see `buyer` for what happens when the catalog is down).
    let held = state.replica.store().by_key(&order.key)?.is_some();
    let bought = state.buyer.buy(order, held).await?;
    let (order, version) = (bought.order, bought.version);
    // The writer answers a held key too, so the reply waits until that order's batch
    // is durable and replicated.
    let name = order.name.clone();
    let number = state.writer.submit(order).await?;
    Ok(data(OrderAccepted {
        order_number: number,
        name,
        version,
    }))
}

async fn leader_notice(
    State(state): State<AppState>,
    Json(notice): Json<LeaderNotice>,
) -> Result<impl IntoResponse, OrderError> {
    Ok(data(state.replica.on_notice(notice).await?))
}

async fn replicate(
    State(state): State<AppState>,
    Json(batch): Json<Replicate>,
) -> Result<impl IntoResponse, OrderError> {
    Ok(data(state.replica.on_replicate(batch).await?))
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
    let store = state.replica.store();
    Ok(data(LogPage {
        entries: store.page(q.from, limit)?,
        last_order: store.last()?.map(|r| r.number),
    }))
}
