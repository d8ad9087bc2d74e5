//! Serving a service's router on its listener, with the edge bounded: every service
//! accepts at most [`Edge::max_connections`] connections at once (past that a new one
//! is answered a JSON 503 and closed), gives a client [`Edge::header_timeout`] to send
//! a request's head (also how long a kept-alive connection may sit idle: hyper's one
//! timer covers both, from the moment it waits for a head), and takes request heads of
//! up to [`MAX_HEAD`] bytes, so that the edge middleware (`http::with_edge`) answers
//! a long URI or too many headers with the contract's JSON error. What the HTTP
//! library cannot parse at all (a malformed head, a target over 64 KiB, a head over
//! `MAX_HEAD`) it answers itself, with an empty body, which `serve::unparsed` replaces with
//! the same JSON error. Connections get `TCP_NODELAY`. On shutdown the listener
//! closes and in-flight requests finish (hyper-util's graceful shutdown).
//!
//! `axum::serve` exposes none of these knobs, hence this loop (the one axum runs,
//! plus a semaphore and hyper's builder).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::http::with_edge;

mod unparsed;

use unparsed::JsonErrors;

/// Largest request head (request line and headers) read before the HTTP library
/// itself answers 431 (given a JSON body by `serve::unparsed`): room for the edge middleware's own limits
/// ([`crate::http::MAX_URI`], [`crate::http::MAX_HEADER_BYTES`]) to be exceeded, and
/// answered by the middleware, many times over. (hyper answers a request target over
/// 64 KiB with its own 414, whatever this is.)
pub const MAX_HEAD: usize = 256 * 1024;

/// Most headers the HTTP library parses (the edge refuses more than
/// [`crate::http::MAX_HEADERS`] in JSON).
const PARSED_HEADERS: usize = 1024;

/// How long shutdown lets in-flight requests finish.
const DRAIN: Duration = Duration::from_secs(10);

/// The bounds of a service's edge (flags: `common::config::EdgeArgs`).
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    /// Time to send a request's head; also the idle timeout of a kept-alive
    /// connection.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for Edge {
    fn default() -> Self {
        Edge {
            header_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Serves `router` (behind [`with_edge`]) on `listener` within `edge`'s bounds until
/// `shutdown` resolves; then stops accepting and lets in-flight requests finish (up to
/// 10 s).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    edge: Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = TowerToHyperService::new(with_edge(router));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(edge.header_timeout)
        .max_buf_size(MAX_HEAD)
        .max_headers(PARSED_HEADERS);
    let permits = Arc::new(Semaphore::new(edge.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse(tcp, edge.max_connections));
            continue;
        };
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(JsonErrors::new(tcp)), service.clone()));
        tokio::spawn(async move {
            // A connection's end (a closed socket, a timed-out head) is not the
            // service's error; hyper has already answered what it could.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after 10 s of shutdown; closing them");
    }
    Ok(())
}

/// An `accept` that failed: out of file descriptors, or a connection reset before it
/// was taken. Waits a moment on the former, as axum's loop does, so that a full table
/// does not spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if !matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Answers a connection past the cap with a JSON 503 and closes it.
async fn refuse(mut tcp: TcpStream, cap: usize) {
    metrics::counter!("connections_refused_total").increment(1);
    let body = crate::error::error_body(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("too many connections (at most {cap}); try again"),
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let _ = tcp.write_all(body.as_bytes()).await;
    let _ = tcp.shutdown().await;
}
