//! An order replica: stores orders durably and, as leader, replicates them.
//!
//! Modules:
//! - [`config`]: flags and environment variables.
//! - [`store`]: the sled database (orders, idempotency keys, epoch); the only module
//!   that touches sled. [`record`]: how an order is laid out on disk.
//! - [`idempotency`]: which order a key makes, given what the catalog did.
//! - [`replication`]: the seam: what the API asks of the replicated log, in either
//!   mode (`--replication primary-backup|raft`).
//! - [`replica`]: primary-backup mode's shared state and its rules for leadership,
//!   replication and catch-up.
//! - [`buyer`]: the leader's first stage, taking stock at the catalog in batches.
//! - [`writer`]: the leader's second stage, group commit and replication; and the
//!   leader's heartbeat task (lagging followers, the commit index).
//! - [`raft`]: Raft mode on openraft (log and state machine in sled, messages over
//!   HTTP).
//! - [`http`]: routes and handlers.
//! - [`error`]: the error type and its HTTP mapping.
//!
//! An order flows: `http::place` (leader?) → `Buyer::buy` (the buyer task takes stock
//! for a whole batch in one catalog request) → `Protocol::submit`: in primary-backup
//! mode the writer task numbers, writes, flushes and replicates a whole batch; in Raft
//! mode the batch becomes one log entry, numbered when a majority has committed it →
//! reply.

pub mod buyer;
pub mod config;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod raft;
pub mod record;
pub mod replica;
pub mod replication;
pub mod store;
pub mod writer;

use std::future::Future;

use common::client::{CatalogClient, ClusterClient, OrderClient};
use common::http::ClusterToken;
use common::retention;
use common::wire::Replication;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::OrderError;
use replication::Protocol;

/// Opens the replica's database, starts its replication protocol (catch-up, writer
/// and heartbeats; or the Raft node), and serves on `listener` until `shutdown`
/// resolves; then stops and flushes.
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
    let buyer = buyer::Buyer::start(
        CatalogClient::new(cluster.clone(), config.catalog_url.clone()),
        config.retention.key_retention,
    );
    let token = ClusterToken(secret.as_str().into());
    let addr = listener.local_addr()?;
    match config.replication {
        Replication::PrimaryBackup => {
            store.claim_mode(Replication::PrimaryBackup)?;
            let replica = replica::Replica::new(
                config.id,
                store.clone(),
                config.peers(),
                OrderClient::new(cluster),
                config.timeouts(),
            )?;
            tracing::info!(
                id = config.id,
                mode = %config.replication,
                orders = store.count(),
                epoch = replica.leadership().epoch,
                %addr,
                "order replica listening"
            );
            let catch_up = tokio::spawn({
                let replica = replica.clone();
                async move { replica.catch_up().await }
            });
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let heartbeat = tokio::spawn(writer::heartbeat_loop(replica.clone(), stopped.clone()));
            let window = config.key_window();
            let pruner = tokio::spawn(retention::prune_loop(
                retention::prune_period(window),
                move || Ok(retention::cutoff(retention::now_ms(), window)),
                pruner(&store),
                stopped,
            ));
            let protocol = Protocol::PrimaryBackup {
                writer: writer::Writer::start(replica.clone(), config.fault, window),
                replica,
            };
            let _gauges = gauges(&protocol);
            let state = http::AppState {
                protocol,
                buyer,
                key_window: window,
            };
            common::http::serve(listener, http::router(state, token), shutdown).await?;
            catch_up.abort();
            let _ = stop.send(true);
            let _ = heartbeat.await;
            let _ = pruner.await;
        }
        Replication::Raft => {
            let log_dir = config.data_dir().join("raft-log");
            let node = raft::RaftMode::start(
                config.id,
                store.clone(),
                (&log_dir, config.storage.sled_cache_mb),
                &config.replicas.0,
                cluster,
                config.raft_settings(),
            )
            .await?;
            tracing::info!(
                id = config.id,
                mode = %config.replication,
                orders = store.count(),
                %addr,
                "order replica listening"
            );
            // Only keys older than the machine's own cutoff, which every replica
            // applies alike, are dropped (see `raft::machine`).
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let pruner = tokio::spawn(retention::prune_loop(
                retention::prune_period(config.key_window()),
                {
                    let store = store.clone();
                    move || raft::machine::Machine::key_cutoff(&store).map_err(|e| e.to_string())
                },
                pruner(&store),
                stopped,
            ));
            let protocol = Protocol::Raft(node.clone());
            let _gauges = gauges(&protocol);
            let state = http::AppState {
                protocol,
                buyer,
                key_window: config.key_window(),
            };
            common::http::serve(listener, http::router(state, token), shutdown).await?;
            let _ = stop.send(true);
            let _ = pruner.await;
            node.shutdown().await;
        }
    }
    store.flush().await?;
    tracing::info!("order replica stopped");
    Ok(())
}

/// Drops the keys of orders older than a cutoff from `store`'s index, a batch at a time.
fn pruner(store: &store::Store) -> impl Fn(u64, usize) -> Result<usize, String> + Send + Sync {
    let store = store.clone();
    move |cutoff, limit| store.prune_keys(cutoff, limit).map_err(|e| e.to_string())
}

/// Keeps the replica's gauges (role, epoch, orders, …) current in every `/metrics`
/// render, until the guard is dropped.
fn gauges(protocol: &Protocol) -> common::metrics::OnRender {
    let protocol = protocol.clone();
    common::metrics::on_render(move || {
        let _ = protocol.status();
    })
}
