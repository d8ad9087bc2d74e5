//! HTTP plumbing shared by the services: the JSON body extractor, the cluster-token
//! guard, JSON fallbacks and `/metrics`, and the edge every request passes (the head's
//! limits, each request in a span named by its request id, see [`crate::trace`]).
//! Serving itself is [`crate::serve`].

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::error::{error_response, BadRequest};
use crate::trace::{RequestId, REQUEST_ID_HEADER};

/// Largest request body any service accepts.
pub const BODY_LIMIT: usize = 16 * 1024;

/// Largest internal body (replication batches, catch-up pages).
pub const INTERNAL_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Longest request target (path and query), in bytes: longer is a 414.
pub const MAX_URI: usize = 8 * 1024;

/// Most headers in a request: more is a 431.
pub const MAX_HEADERS: usize = 100;

/// Most bytes of headers (names and values) in a request: more is a 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// A JSON request body. Unlike `axum::Json` it ignores the `Content-Type` header (so
/// `curl -d` works) and rejects with the contract's JSON error shape.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = BadRequest;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| BadRequest {
                status: r.status(),
                message: r.body_text(),
            })?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| BadRequest::new(format!("malformed JSON body: {e}")))
    }
}

/// The shared secret that internal endpoints require.
#[derive(Clone)]
pub struct ClusterToken(pub Arc<str>);

/// Middleware: refuse with 401 (and do nothing) unless the cluster token is present.
pub async fn require_token(
    State(token): State<ClusterToken>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(crate::TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if constant_time_eq(given, token.0.as_bytes()) {
        next.run(req).await
    } else {
        error_response(
            StatusCode::UNAUTHORIZED,
            "internal endpoint: missing or wrong cluster token",
        )
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Fallback for unknown paths.
pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "no such endpoint")
}

/// Fallback for a known path with the wrong method.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

/// Finishes a service's router: request metrics on every route (see
/// [`crate::metrics`]), `GET /metrics`, and the JSON 404/405 fallbacks.
pub fn with_fallbacks(router: Router) -> Router {
    router
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .route("/metrics", axum::routing::get(crate::metrics::render))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// `router` behind the edge every request passes first (a head within the limits,
/// trailing slash trimmed, request id): what [`crate::serve::serve`] serves, and what
/// in-process tests drive.
pub fn with_edge(router: Router) -> Router {
    // Routing happens inside `router`: the outer router rewrites the path first.
    Router::new()
        .fallback_service(router)
        .layer(axum::middleware::from_fn(edge))
}

/// What every request goes through before routing: a head beyond the limits is
/// refused, the trailing slash is trimmed, and the request runs in a `request{id=…}`
/// span with its id current (see [`crate::trace`]); the reply carries the id back.
async fn edge(mut req: Request, next: Next) -> Response {
    if let Some(refused) = head_too_large(&req) {
        return refused;
    }
    trim_trailing_slash(&mut req);
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| RequestId::parse(v.as_bytes()))
        .unwrap_or_else(RequestId::generate);
    // A span costs every request about a microsecond even when nothing logs in it
    // (7-10% of a cached lookup's throughput, measured): lookups get theirs at
    // `debug` only, requests that change something at `info`.
    let span = if req.method() == Method::GET || req.method() == Method::HEAD {
        tracing::debug_span!("request", id = %id)
    } else {
        tracing::info_span!("request", id = %id)
    };
    let header = id.header_value();
    let mut resp = id.scope(next.run(req)).instrument(span).await;
    if let Some(value) = header {
        resp.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    resp
}

/// A JSON 414 or 431 for a request whose head is beyond [`MAX_URI`],
/// [`MAX_HEADERS`] or [`MAX_HEADER_BYTES`] (the HTTP library reads heads of up to
/// [`crate::serve::MAX_HEAD`] bytes, so that these answer, not its empty one).
fn head_too_large(req: &Request) -> Option<Response> {
    let uri = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri > MAX_URI {
        return Some(error_response(
            StatusCode::URI_TOO_LONG,
            format!("the request target is {uri} bytes; at most {MAX_URI} are read"),
        ));
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Some(error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "{} headers of {bytes} bytes; at most {MAX_HEADERS} headers of \
                 {MAX_HEADER_BYTES} bytes in all are read",
                headers.len()
            ),
        ));
    }
    None
}

/// Marks a request whose path lost its trailing slash at the edge (see
/// [`with_edge`]): a handler that must tell `/docs/` from `/docs` can.
#[derive(Debug, Clone, Copy)]
pub struct TrimmedSlash;

/// `/products/Tux/` is `/products/Tux`, `/orders/` is `/orders`: one trailing slash is
/// dropped before routing. Only one, so `/products//` (an empty name) stays a 404.
fn trim_trailing_slash(req: &mut Request) {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = &path[..path.len() - 1];
        let rebuilt = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(pq) = rebuilt.parse::<axum::http::uri::PathAndQuery>() {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
                req.extensions_mut().insert(TrimmedSlash);
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// The body of every service's `main`: bind `addr`, run the service until Ctrl-C or
/// SIGTERM, and turn any failure into a logged error and a failing exit code.
pub async fn run_service<F, Fut, E>(
    name: &str,
    addr: std::net::SocketAddr,
    run: F,
) -> std::process::ExitCode
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    let listener = match bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let _upkeep = crate::metrics::install();
    match run(listener).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{name} failed: {}", crate::error::chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Binds `addr`, turning "address in use" into a message that names the address.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

impl IntoResponse for crate::flush::FlushError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "flush failed");
        error_response(StatusCode::INTERNAL_SERVER_ERROR, "storage failure")
    }
}

/// One path parameter as text; a rejection comes out in the contract's error shape.
pub struct PathParam(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathParam {
    type Rejection = BadRequest;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|r| BadRequest {
                    status: StatusCode::BAD_REQUEST,
                    message: r.body_text(),
                })?;
        Ok(PathParam(value))
    }
}

/// Query parameters; a rejection comes out in the contract's error shape.
pub struct QueryParams<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = BadRequest;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|r| BadRequest::new(r.body_text()))?;
        Ok(QueryParams(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_needs_exact_match() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }
}
