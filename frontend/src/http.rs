//! The public REST API and the internal invalidation endpoint.
//!
//! - `GET /products` and `GET /products/{name}` — toys (lookups through the cache; a
//!   lookup's reply carries the toy's version in `x-toy-version`).
//! - `POST /orders` — place an order (idempotent with an `Idempotency-Key` header).
//! - `GET /orders/{number}` — read an order back.
//! - `GET /health` — leader and cache figures.
//! - `GET /cache` — the cache's entries in LRU order and its journal of changes.
//! - `GET /openapi.json`, `GET /docs` — the API's description (see [`crate::openapi`]).
//! - `GET /dashboard` (and `GET /` redirects there) — the live view (see
//!   [`crate::dashboard`]).
//! - `POST /internal/invalidate` (cluster token) — the catalog's cache invalidations.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use common::client::{CatalogClient, OrderClient};
use common::domain::Version;
use common::error::ErrorBody;
use common::http::{
    require_token, with_fallbacks, ClusterToken, Json, PathParam, QueryParams, BODY_LIMIT,
    INTERNAL_BODY_LIMIT,
};
use common::trace::RequestId;
use common::wire::{
    data, CacheView, Data, FrontendHealth, Invalidations, NewOrder, OrderPlaced, OrderView, Product,
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cache::Cache;
use crate::dashboard::Dashboard;
use crate::error::FrontendError;
use crate::leader::Leaders;
use crate::validate::{
    new_idempotency_key, parse_idempotency_key, parse_order_number, OrderBody, OrderRequest,
    ProductName,
};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// This front-end's name (`--name`).
    pub name: Arc<str>,
    pub catalog: CatalogClient,
    pub orders: OrderClient,
    pub leaders: Arc<Leaders>,
    pub cache: Arc<Cache>,
    /// Test-only pause between a catalog read and the cache fill.
    pub fill_delay: Duration,
}

/// The front-end's routes: the public API (each route registered from its handler's
/// `#[utoipa::path]`, so the description in [`crate::openapi`] lists exactly these),
/// its description and docs page, the dashboard, and the internal invalidation
/// endpoint.
pub fn router(state: AppState, dashboard: Dashboard, token: ClusterToken) -> Router {
    let (public, api) = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(list_products))
        .routes(routes!(product))
        .routes(routes!(place_order))
        .routes(routes!(order))
        .routes(routes!(health))
        .routes(routes!(cache))
        .split_for_parts();
    let internal = Router::new()
        .route("/internal/invalidate", post(invalidate))
        .route_layer(middleware::from_fn_with_state(token, require_token))
        // The catalog's pushes name many toys at once (all of them after a restock):
        // they get the internal limit, the public routes keep the small one.
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_LIMIT));
    let router = public
        .merge(crate::openapi::routes(api))
        .merge(crate::dashboard::routes(dashboard))
        .merge(internal)
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let served_by = header::HeaderValue::from_str(&state.name).ok();
    with_fallbacks(router).layer(middleware::map_response(move |mut resp: Response| {
        let served_by = served_by.clone();
        async move {
            if let Some(name) = served_by {
                resp.headers_mut()
                    .insert(header::HeaderName::from_static(SERVED_BY_HEADER), name);
            }
            resp
        }
    }))
}

/// Header of every reply: the name of the front-end that answered (`--name`), so a
/// client behind a load balancer can tell which one served it (the chaos checker
/// does, to check read-your-writes through the front-end that took an order).
pub const SERVED_BY_HEADER: &str = "x-served-by";

/// Header of a product reply: the catalog's version of that toy, so that a client (or
/// the chaos checker) can tell how fresh a reply is.
pub const VERSION_HEADER: &str = "x-toy-version";

fn product_body(version: Version, body: Bytes) -> Response {
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
#[utoipa::path(
    get,
    path = "/products/{name}",
    tag = "products",
    summary = "Look up one toy",
    description = "Names match case-insensitively; the reply carries the canonical name. \
                   Served from the front-end's cache when it holds the toy.",
    params(("name" = String, Path, min_length = 1, max_length = 128,
            pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
            description = "The toy's name (URL-encoded), e.g. `Tux` or `Rubik's%20Cube`")),
    responses(
        (status = 200, description = "The toy", body = Data<Product>,
         headers(("x-toy-version" = u64, description = "The catalog's version of this toy: \
                   it grows with every stock change"))),
        (status = 400, description = "A name that is too long or has control characters", body = ErrorBody),
        (status = 404, description = "No such toy", body = ErrorBody),
        (status = 503, description = "The catalog is unreachable", body = ErrorBody),
    )
)]
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
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    summary = "List every toy",
    description = "In name order, read from the catalog (never from the cache).",
    responses(
        (status = 200, description = "Every toy", body = Data<Vec<Product>>),
        (status = 503, description = "The catalog is unreachable", body = ErrorBody),
    )
)]
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
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    summary = "Place an order",
    description = "Takes the stock and stores the order durably on every order replica \
                   that must have it before it answers. A retry with the same \
                   `Idempotency-Key` gets the same order number and takes stock once.",
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128,
            pattern = "^[!-~]+$",
            description = "Makes retries of this request safe: 1 to 128 printable ASCII \
                           characters. Without it the front-end makes a key per request.")),
    request_body(content = OrderBody, description = "The toy and how many"),
    responses(
        (status = 200, description = "The order is placed", body = Data<OrderPlaced>),
        (status = 400, description = "Malformed JSON, a missing field, a quantity that is not \
                                      a positive integer, or a bad `Idempotency-Key`", body = ErrorBody),
        (status = 404, description = "No such toy", body = ErrorBody),
        (status = 409, description = "Not enough stock", body = ErrorBody),
        (status = 413, description = "A body over 16 KiB", body = ErrorBody),
        (status = 422, description = "The `Idempotency-Key` was used for a different order", body = ErrorBody),
        (status = 503, description = "The catalog or every order replica is unreachable", body = ErrorBody),
    )
)]
async fn place_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<OrderBody>,
) -> Result<impl IntoResponse, FrontendError> {
    let request = OrderRequest::parse(body)?;
    let key = match headers.get(common::IDEMPOTENCY_HEADER) {
        Some(v) => parse_idempotency_key(v.as_bytes())?,
        None => new_idempotency_key(),
    };
    let order = NewOrder {
        name: request.name.clone().into_toy_name(),
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
    tracing::info!(order = %accepted.order_number, toy = %accepted.name, "order placed");
    Ok(data(OrderPlaced {
        order_number: accepted.order_number,
    }))
}

/// Reads an order from the leader.
#[utoipa::path(
    get,
    path = "/orders/{number}",
    tag = "orders",
    summary = "Read an order",
    description = "Only orders that can no longer be lost are shown.",
    params(("number" = u64, Path, description = "The order number")),
    responses(
        (status = 200, description = "The order", body = Data<OrderView>),
        (status = 400, description = "Not a non-negative integer", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 503, description = "No order replica can serve the read", body = ErrorBody),
    )
)]
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

/// The leader the front-end uses, and its cache's figures.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    summary = "Front-end status",
    responses((status = 200, description = "The front-end's leader and cache", body = FrontendHealth))
)]
async fn health(State(state): State<AppState>) -> axum::Json<FrontendHealth> {
    axum::Json(crate::fleet::health(
        &state.name,
        &state.leaders,
        &state.cache,
    ))
}

/// Query of `GET /cache`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CacheQuery {
    /// Only events numbered this and up (the `next` of an earlier reply). An int64,
    /// as the description says (JSON Schema has no unsigned 64-bit format).
    #[param(minimum = 0)]
    after: Option<i64>,
}

/// What the cache holds, most recently used first, and its recent events.
#[utoipa::path(
    get,
    path = "/cache",
    tag = "operations",
    summary = "The cache's entries and journal",
    description = "Cached toys in LRU order (most recently used first) with their catalog \
                   versions, and the journal of fills, evictions, invalidations and lease \
                   expiries (the newest 1024). Reading it marks nothing used.",
    params(CacheQuery),
    responses(
        (status = 200, description = "Entries and events", body = Data<CacheView>),
        (status = 400, description = "`after` is not a non-negative integer", body = ErrorBody),
    )
)]
async fn cache(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<CacheQuery>,
) -> Result<impl IntoResponse, FrontendError> {
    let after = u64::try_from(q.after.unwrap_or(0))
        .map_err(|_| FrontendError::BadRequest("after must be a non-negative integer".into()))?;
    Ok(data(state.cache.view(after)))
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
