//! The public REST API and the internal invalidation endpoint.
//!
//! - `GET /products` and `GET /products/{name}` — toys (lookups through the cache; a
//!   lookup's reply carries the toy's version in `x-toy-version`).
//! - `POST /orders` — place an order (idempotent with an `Idempotency-Key` header).
//! - `GET /orders/{number}` — read an order back.
//! - `GET /health` — leader and cache figures.
//! - `POST /internal/invalidate` (cluster token) — the catalog's cache invalidations.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use common::client::{CatalogClient, OrderClient};
use common::http::{
    require_token, with_fallbacks, ClusterToken, Json, PathParam, BODY_LIMIT, INTERNAL_BODY_LIMIT,
};
use common::trace::RequestId;
use common::wire::{data, Data, FrontendHealth, Invalidations, NewOrder, OrderPlaced, Product};

use crate::cache::Cache;
use crate::error::FrontendError;
use crate::leader::Leaders;
use crate::validate::{
    parse_idempotency_key, parse_order_number, OrderBody, OrderRequest, ProductName,
};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub catalog: CatalogClient,
    pub orders: OrderClient,
    pub leaders: Arc<Leaders>,
    pub cache: Arc<Cache>,
    /// Test-only pause between a catalog read and the cache fill.
    pub fill_delay: Duration,
}

/// The front-end's routes.
pub fn router(state: AppState, token: ClusterToken) -> Router {
    let internal = Router::new()
        .route("/internal/invalidate", post(invalidate))
        .route_layer(middleware::from_fn_with_state(token, require_token))
        // The catalog's pushes name many toys at once (all of them after a restock):
        // they get the internal limit, the public routes keep the small one.
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_LIMIT));
    let router = Router::new()
        .route("/products", get(list_products))
        .route("/products/{name}", get(product))
        .route("/orders", post(place_order))
        .route("/orders/{number}", get(order))
        .route("/health", get(health))
        .merge(internal)
        .with_state(state)
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    with_fallbacks(router)
}

/// Header of a product reply: the catalog's version of that toy, so that a client (or
/// the chaos checker) can tell how fresh a reply is.
pub const VERSION_HEADER: &str = "x-toy-version";

fn product_body(version: u64, body: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::HeaderName::from_static(VERSION_HEADER),
                version.to_string(),
            ),
        ],
        body,
    )
        .into_response()
}

/// One toy: from the cache when present, else from the catalog (then cached).
async fn product(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
) -> Result<Response, FrontendError> {
    let name = ProductName::parse(&raw)?;
    let key = name.key();
    if let Some((version, body)) = state.cache.get(&key) {
        return Ok(product_body(version, body));
    }
    let found = state
        .catalog
        .product(name.as_str())
        .await
        .map_err(FrontendError::from_catalog)?;
    let version = found.version;
    let body = Bytes::from(
        serde_json::to_vec(&Data {
            data: Product::from(found),
        })
        .unwrap_or_default(),
    );
    if !state.fill_delay.is_zero() {
        tokio::time::sleep(state.fill_delay).await;
    }
    state.cache.fill(&key, version, body.clone());
    Ok(product_body(version, body))
}

/// Every toy, always fresh from the catalog (never stale quantities).
async fn list_products(State(state): State<AppState>) -> Result<impl IntoResponse, FrontendError> {
    let products = state
        .catalog
        .products()
        .await
        .map_err(FrontendError::from_catalog)?;
    Ok(data(
        products.into_iter().map(Product::from).collect::<Vec<_>>(),
    ))
}

/// Places an order on the leader, failing over with the same idempotency key.
async fn place_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<OrderBody>,
) -> Result<impl IntoResponse, FrontendError> {
    let request = OrderRequest::parse(body)?;
    let key = match headers.get(common::IDEMPOTENCY_HEADER) {
        Some(v) => parse_idempotency_key(v.as_bytes())?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let order = NewOrder {
        name: request.name.as_str().to_string(),
        quantity: request.quantity,
        key,
        request_id: RequestId::current(),
    };
    let accepted = state
        .leaders
        .call(|leader| {
            let (orders, order) = (state.orders.clone(), order.clone());
            async move { orders.place(&leader, &order).await }
        })
        .await;
    // Whatever the outcome, this toy may have changed: never serve its old quantity
    // to the client that just ordered it.
    match &accepted {
        Ok(a) => state.cache.invalidate(&a.name.to_lowercase(), a.version),
        Err(_) => state.cache.forget(&request.name.key()),
    }
    let accepted = accepted?;
    tracing::info!(order = accepted.order_number, toy = %accepted.name, "order placed");
    Ok(data(OrderPlaced {
        order_number: accepted.order_number,
    }))
}

/// Reads an order from the leader.
async fn order(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
) -> Result<impl IntoResponse, FrontendError> {
    let number = parse_order_number(&raw)?;
    let view = state
        .leaders
        .call(|leader| {
            let orders = state.orders.clone();
            async move { orders.get(&leader, number).await }
        })
        .await?;
    Ok(data(view))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let leader = state.leaders.current();
    axum::Json(FrontendHealth {
        service: "frontend".into(),
        leader: leader.as_ref().map(|l| l.id),
        epoch: leader.as_ref().map(|l| l.epoch),
        cache: state.cache.stats(),
    })
}

async fn invalidate(
    State(state): State<AppState>,
    Json(body): Json<Invalidations>,
) -> impl IntoResponse {
    for inv in body.into_vec() {
        state
            .cache
            .invalidate(&inv.name.to_lowercase(), inv.version);
    }
    data(serde_json::json!({}))
}
