//! An order replica: stores orders durably and, as leader, replicates them.
//!
//! Modules, by use case:
//! - [`place`]: `POST /orders` — the whole order path, the same in both modes.
//! - [`read`]: `GET /orders/{n}` and the catch-up pages peers read.
//! - [`buyer`]: the leader's first stage, taking stock at the catalog in batches.
//! - [`idempotency`]: which order a key makes, given what the catalog did.
//! - [`replication`]: the seam — what the API asks of the replicated log, one line
//!   per mode (`--replication primary-backup|raft`).
//! - [`primary_backup`]: the lab's mode — leader notices, the writer, heartbeats,
//!   followers, catch-up.
//! - [`raft`]: Raft mode — the order log's entries and state machine, on the shared
//!   machinery of the `consensus` crate.
//! - [`store`]: the orders' sled database and its record layout (the Raft log has a
//!   database of its own, `consensus::log`).
//! - [`http`]: the routes; [`config`]: flags and environment variables; [`error`]:
//!   the error type and its HTTP mapping.
//!
//! An order flows: [`place`] (leader?) → `Buyer::buy` (the buyer task takes stock for
//! a whole batch in one catalog request) → `Protocol::submit`: in primary-backup mode
//! the writer task numbers, writes, flushes and replicates a whole batch; in Raft
//! mode the batch becomes one log entry, numbered when a majority has committed it →
//! reply.

pub mod buyer;
pub mod config;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod keys;
pub mod place;
pub mod primary_backup;
pub mod raft;
pub mod read;
pub mod replication;
pub mod store;

use std::future::Future;
use std::time::Duration;

use axum::Router;

use common::client::{CatalogClient, ClusterClient, OrderClient};
use common::http::ClusterToken;
use common::tasks::Tasks;
use common::wire::Replication;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::OrderError;
use replication::Protocol;

/// How long shutdown waits for the background tasks once the server has drained.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// A started replica: its routes, and what stopping it must stop and flush.
pub struct App {
    router: Router,
    protocol: Protocol,
    tasks: Tasks,
    store: store::Store,
    /// Keeps the replica's gauges current while the replica runs.
    _gauges: common::metrics::OnRender,
}

impl App {
    /// Opens the replica's database and starts its replication mode (and its tasks).
    pub async fn start(config: Config) -> Result<Self, OrderError> {
        if config.replicas.url(config.id).is_none() {
            return Err(OrderError::Config(format!(
                "replica id {} is not in --replicas",
                config.id
            )));
        }
        if config.rebuild {
            common::storage::set_aside(&config.data_dir())?;
        }
        let store =
            store::Store::open_with_cache(&config.data_dir(), config.storage.sled_cache_mb)?;
        if config.rebuild && config.replication == Replication::PrimaryBackup {
            store.set_rebuilding(true).await?;
        }
        let secret = config.token.resolve().map_err(OrderError::Config)?;
        let cluster =
            ClusterClient::new(&secret, config.peer.timeouts()).map_err(OrderError::HttpClient)?;
        let tasks = Tasks::new();
        let buyer = buyer::Buyer::start(
            CatalogClient::replicated(cluster.clone(), config.catalog_url.0.clone()),
            config.retention.key_retention,
            &tasks,
        );
        let protocol = start_mode(&config, &store, cluster, &tasks).await?;
        let state = http::AppState {
            protocol: protocol.clone(),
            buyer,
            keys: keys::KeyGate::default(),
            key_window: config.key_window(),
        };
        let router = http::router(state, ClusterToken(secret.as_str().into()));
        Ok(App {
            router,
            _gauges: gauges(&protocol),
            protocol,
            tasks,
            store,
        })
    }

    /// The replica's routes (cheap to clone; serve them, or drive them in-process).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Stops the replication mode and every task, then flushes the database.
    pub async fn stop(self) -> Result<(), OrderError> {
        self.protocol.shutdown(&self.tasks, SHUTDOWN_DEADLINE).await;
        self.store.flush().await?;
        tracing::info!("order replica stopped");
        Ok(())
    }
}

/// Starts the replica and serves on `listener` until `shutdown` resolves; then stops
/// every task and flushes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OrderError> {
    let (id, mode, edge) = (config.id, config.replication, config.edge.edge());
    let app = App::start(config).await?;
    tracing::info!(
        %id,
        %mode,
        orders = app.store.count(),
        epoch = %app.protocol.status().map(|s| s.epoch).unwrap_or_default(),
        addr = %listener.local_addr()?,
        "order replica listening"
    );
    // Serve until the signal, or until the replica stops for good (its storage or its
    // Raft core failed): then stop the same way and exit saying why.
    let until = app.tasks.until_failed(shutdown);
    common::serve::serve(listener, app.router(), edge, until).await?;
    let failure = app.tasks.failure().map(str::to_string);
    app.stop().await?;
    failure.map_or(Ok(()), |why| Err(OrderError::Failed(why)))
}

/// Starts the replication mode of `config` on `store`.
async fn start_mode(
    config: &Config,
    store: &store::Store,
    cluster: ClusterClient,
    tasks: &Tasks,
) -> Result<Protocol, OrderError> {
    Ok(match config.replication {
        Replication::PrimaryBackup => {
            Protocol::PrimaryBackup(primary_backup::PrimaryBackup::start(
                config.id,
                store.clone(),
                config.peers(),
                OrderClient::new(cluster),
                primary_backup::Options {
                    timeouts: config.timeouts(),
                    fault: config.fault,
                    key_window: config.key_window(),
                },
                tasks,
            )?)
        }
        Replication::Raft => Protocol::Raft(
            raft::RaftMode::start(
                config.id,
                store.clone(),
                (
                    &config.data_dir().join("raft-log"),
                    config.storage.sled_cache_mb,
                ),
                &config.replicas.0,
                cluster,
                config.raft_settings(),
                tasks,
            )
            .await?,
        ),
    })
}

/// Keeps the replica's gauges (role, epoch, orders, …) current in every `/metrics`
/// render, until the guard is dropped.
fn gauges(protocol: &Protocol) -> common::metrics::OnRender {
    let protocol = protocol.clone();
    common::metrics::on_render(move || {
        let _ = protocol.status();
    })
}
