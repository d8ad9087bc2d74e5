//! Routes and handlers of the catalog.
//!
//! Public (read-only): `GET /products`, `GET /products/{name}`, `GET /health`.
//! Internal (cluster token): `POST /internal/buy`, `POST /internal/buy-batch`,
//! `GET /internal/totals`; a replicated catalog's Raft messages
//! (`/internal/catalog-raft/…`).
//!
//! In a replicated catalog, buys and lookups are the leader's (a follower answers
//! 421 naming the leader it knows); totals and health are each replica's own.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use common::error::ErrorDetail;
use common::http::{
    require_token, with_fallbacks, ClusterToken, Json, PathParam, INTERNAL_BODY_LIMIT,
};
use common::trace::RequestId;
use common::wire::{data, BuyReply, BuyRequest, BuyResult, CatalogHealth, CatalogProduct};

use crate::error::CatalogError;
use crate::invalidate::Invalidator;
use crate::raft::CatalogRaft;
use crate::restock::NextRestock;
use crate::store::{BuyOutcome, Store};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// A replicated catalog's Raft member.
    pub group: Option<CatalogRaft>,
    pub invalidator: Invalidator,
    /// When the restock task runs next, for `GET /health`.
    pub next_restock: NextRestock,
    pub restock_period: Duration,
}

/// The catalog's routes.
pub fn router(state: AppState, token: ClusterToken) -> Router {
    let mut internal = Router::new()
        .route("/internal/buy", post(buy))
        .route("/internal/buy-batch", post(buy_batch))
        .route("/internal/totals", get(totals));
    if let Some(group) = &state.group {
        internal = internal.merge(group.routes());
    }
    let internal = internal.route_layer(middleware::from_fn_with_state(token, require_token));
    let router = Router::new()
        .route("/products", get(list))
        .route("/products/{name}", get(one))
        .route("/health", get(health))
        .merge(internal)
        .with_state(state)
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_LIMIT));
    with_fallbacks(router)
}

impl AppState {
    /// Ok once this catalog may answer a lookup: always alone; in a group, once it
    /// leads and a majority has confirmed it (so no lookup goes back in time).
    async fn readable(&self) -> Result<(), CatalogError> {
        match &self.group {
            Some(group) => group.linearize().await,
            None => Ok(()),
        }
    }

    async fn buy_batch(
        &self,
        reqs: &[BuyRequest],
    ) -> Result<Vec<Result<BuyOutcome, CatalogError>>, CatalogError> {
        match &self.group {
            Some(group) => group.buy_batch(reqs).await,
            None => self.store.buy_batch(reqs).await,
        }
    }
}

async fn list(State(state): State<AppState>) -> Result<impl IntoResponse, CatalogError> {
    state.readable().await?;
    let products: Vec<CatalogProduct> = state
        .store
        .products()?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(data(products))
}

async fn one(
    State(state): State<AppState>,
    PathParam(name): PathParam,
) -> Result<impl IntoResponse, CatalogError> {
    state.readable().await?;
    match state.store.product(&name)? {
        Some(p) => Ok(data(CatalogProduct::from(p))),
        None => Err(CatalogError::UnknownProduct(name)),
    }
}

async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, CatalogError> {
    let (caught_up, group) = match &state.group {
        Some(g) => {
            let (ready, status) = g.status();
            (ready, Some(status))
        }
        None => (true, None),
    };
    Ok(axum::Json(CatalogHealth {
        service: "catalog".into(),
        ready: caught_up && !state.store.is_empty(),
        restock_period_ms: millis(state.restock_period),
        next_restock_ms: millis(state.next_restock.due_in()),
        digest: state.store.digest()?,
        group,
    }))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn buy(
    State(state): State<AppState>,
    Json(req): Json<BuyRequest>,
) -> Result<impl IntoResponse, CatalogError> {
    let outcome = state.buy_batch(std::slice::from_ref(&req)).await?.pop();
    let outcome = outcome.unwrap_or(Err(CatalogError::Internal("a buy was not answered")));
    let reply = match outcome? {
        BuyOutcome::Applied(reply) => {
            log_bought(&reply, req.request_id.as_ref());
            state
                .invalidator
                .announce(reply.name.to_string(), reply.version);
            reply
        }
        BuyOutcome::Repeated(reply) => reply,
    };
    Ok(data(reply))
}

/// Most buys in one batch.
const MAX_BATCH: usize = 4096;

/// Many buys at once: one transaction, one flush, one result per buy.
async fn buy_batch(
    State(state): State<AppState>,
    Json(reqs): Json<Vec<BuyRequest>>,
) -> Result<impl IntoResponse, CatalogError> {
    if reqs.len() > MAX_BATCH {
        return Err(CatalogError::BadRequest(format!(
            "at most {MAX_BATCH} buys per batch"
        )));
    }
    // Names and keys were checked as the body was read (`common::domain`).
    let outcomes = state.buy_batch(&reqs).await?;
    if outcomes.len() != reqs.len() {
        return Err(CatalogError::Internal(
            "a buy of the batch was not answered",
        ));
    }
    let results: Vec<BuyResult> = outcomes
        .into_iter()
        .zip(&reqs)
        .map(|(outcome, req)| match outcome {
            Ok(BuyOutcome::Applied(reply)) => {
                log_bought(&reply, req.request_id.as_ref());
                state
                    .invalidator
                    .announce(reply.name.to_string(), reply.version);
                BuyResult::Ok(reply)
            }
            Ok(BuyOutcome::Repeated(reply)) => BuyResult::Ok(reply),
            Err(e) => BuyResult::Error(ErrorDetail {
                code: e.status().as_u16(),
                message: e.to_string(),
            }),
        })
        .collect();
    Ok(data(results))
}

/// One line per buy, under the id of the order's request (see `common::trace`).
fn log_bought(reply: &BuyReply, request_id: Option<&RequestId>) {
    tracing::info!(
        toy = %reply.name,
        quantity = reply.quantity,
        request_id = request_id.map(tracing::field::display),
        "stock taken"
    );
}

async fn totals(State(state): State<AppState>) -> Result<impl IntoResponse, CatalogError> {
    Ok(data(state.store.totals()?))
}
