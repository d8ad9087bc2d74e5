//! An order replica: stores orders durably and, as leader, replicates them.
//!
//! Modules:
//! - [`config`]: flags and environment variables.
//! - [`store`]: the sled database (orders, idempotency keys, epoch); the only module
//!   that touches sled.
//! - [`replica`]: shared state and the rules for leadership, replication and catch-up.
//! - [`buyer`]: the leader's first stage, taking stock at the catalog in batches.
//! - [`writer`]: the leader's second stage, group commit and replication; and the
//!   leader's heartbeat task (lagging followers, the commit index).
//! - [`http`]: routes and handlers.
//! - [`error`]: the error type and its HTTP mapping.
//!
//! An order flows: `http::place` (leader?) → `Buyer::buy` (the buyer task takes stock
//! for a whole batch in one catalog request) → `Writer::submit` (the writer task
//! numbers, writes, flushes and replicates a whole batch) → reply.

pub mod buyer;
pub mod config;
pub mod error;
pub mod http;
pub mod replica;
pub mod store;
pub mod writer;

use std::future::Future;

use common::client::{CatalogClient, ClusterClient, OrderClient};
use common::http::ClusterToken;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::OrderError;

/// Opens the replica's database, starts catch-up and the writer, and serves on
/// `listener` until `shutdown` resolves; then stops and flushes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OrderError> {
    if config.replicas.url(config.id).is_none() {
        return Err(OrderError::Config(format!(
            "replica id {} is not in --replicas",
            config.id
        )));
    }
    let store = store::Store::open_with_cache(&config.data_dir(), config.storage.sled_cache_mb)?;
    let secret = config.token.resolve().map_err(OrderError::Config)?;
    let cluster = ClusterClient::new(&secret, config.peer.timeouts())
        .map_err(|e| OrderError::Config(e.to_string()))?;
    let replica = replica::Replica::new(
        config.id,
        store.clone(),
        config.peers(),
        OrderClient::new(cluster.clone()),
        config.timeouts(),
    )?;
    tracing::info!(
        id = config.id,
        orders = store.count(),
        epoch = replica.leadership().epoch,
        addr = %listener.local_addr()?,
        "order replica listening"
    );
    let catch_up = tokio::spawn({
        let replica = replica.clone();
        async move { replica.catch_up().await }
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let heartbeat = tokio::spawn(writer::heartbeat_loop(replica.clone(), stopped));
    let state = http::AppState {
        writer: writer::Writer::start(replica.clone(), config.fault),
        buyer: buyer::Buyer::start(CatalogClient::new(cluster, config.catalog_url.clone())),
        replica,
    };
    let token = ClusterToken(secret.as_str().into());
    common::http::serve(listener, http::router(state, token), shutdown).await?;

    catch_up.abort();
    let _ = stop.send(true);
    let _ = heartbeat.await;
    store.flush().await?;
    tracing::info!("order replica stopped");
    Ok(())
}
