//! The performance baselines the benchmark compares the front-end with: a bare axum
//! server answering a constant product body (what a cached lookup could cost at best),
//! and a bare proxy hop that forwards each request to it over one pooled `reqwest`
//! client (what an uncached lookup could cost at best). Both serve like the services
//! do: multi-threaded tokio, `TCP_NODELAY`, keep-alive.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use reqwest::Url;

use crate::ClientError;

/// The body a lookup of Tux returns, byte for byte.
const PRODUCT: &str = r#"{"data":{"name":"Tux","price":15.99,"quantity":100}}"#;

/// Serves the constant body, or with `upstream` the proxy hop, until Ctrl-C/SIGTERM.
pub async fn serve(listen: SocketAddr, upstream: Option<Url>) -> Result<(), ClientError> {
    let listener = common::http::bind(listen)
        .await
        .map_err(|e| ClientError::Other(e.to_string()))?;
    let router = match upstream {
        None => Router::new().route("/products/{name}", get(constant)),
        Some(url) => {
            let http = reqwest::Client::builder()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(256)
                .build()
                .map_err(|e| ClientError::Other(e.to_string()))?;
            Router::new()
                .route("/products/{name}", get(proxy))
                .with_state((http, url))
        }
    };
    let edge = common::serve::Edge::default();
    common::serve::serve(listener, router, edge, common::http::shutdown_signal())
        .await
        .map_err(|e| ClientError::Other(e.to_string()))
}

async fn constant() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], PRODUCT).into_response()
}

async fn proxy(State((http, url)): State<(reqwest::Client, Url)>) -> Response {
    let reply = async {
        let resp = http.get(url).send().await?;
        let status = resp.status();
        Ok::<_, reqwest::Error>((status, resp.bytes().await?))
    };
    match reply.await {
        Ok((status, body)) => {
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(_) => (StatusCode::BAD_GATEWAY, Bytes::new()).into_response(),
    }
}
