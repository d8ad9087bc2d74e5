//! The catalog service: owns the toys and their stock.
//!
//! Modules:
//! - [`config`]: flags and environment variables.
//! - [`store`]: the sled database (products, applied idempotency keys, stock totals);
//!   the only module that touches sled.
//! - [`http`]: routes and handlers.
//! - [`restock`]: the periodic restock task.
//! - [`invalidate`]: server push of cache invalidations to the front-end.
//! - [`error`]: the error type and its HTTP mapping.
//! - [`raft`]: the replicated catalog (`--id`, `--peers`): a Raft group whose log
//!   carries every change, on the `consensus` crate.
//!
//! A buy flows: `http::buy` → `Store::buy` (one transaction: check and take stock,
//! record the key) → group flush → `Invalidator::announce` → reply. In a replicated
//! catalog the leader's `CatalogRaft::buy_batch` proposes the buys instead, and they
//! are taken as the entry is applied on every replica (`raft::machine`).

pub mod config;
pub mod error;
pub mod http;
pub mod invalidate;
pub mod raft;
pub mod restock;
pub mod store;

use std::future::Future;

use axum::Router;

use common::client::{ClusterClient, FrontendClient};
use common::http::ClusterToken;
use common::retention;
use common::tasks::Tasks;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::CatalogError;

/// How long shutdown waits for the background tasks once the server has drained.
const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// A started catalog: its routes, and what stopping it must stop and flush.
pub struct App {
    router: Router,
    tasks: Tasks,
    store: store::Store,
    /// A replicated catalog's Raft member.
    group: Option<raft::CatalogRaft>,
}

impl App {
    /// Opens (and if needed seeds) the database and starts the background tasks; a
    /// replicated catalog starts its Raft member, which seeds the group instead.
    pub async fn start(config: Config) -> Result<Self, CatalogError> {
        let window = config.retention.key_retention;
        let membership = config.group().map_err(CatalogError::Config)?;
        if config.rebuild {
            common::storage::set_aside(&config.data_dir)?;
        }
        let store =
            store::Store::open_with(&config.data_dir, config.storage.sled_cache_mb, window)?;
        // Read now, so a bad seed file or stock settings that could overflow stop the
        // start, not a later seeding.
        let seed = if store.is_empty() {
            store::read_seed(&config.seed_file)?
        } else {
            Vec::new()
        };
        let toys = match seed.len() {
            0 => store.products()?.len(),
            n => n,
        };
        config.check_stock(toys).map_err(CatalogError::Config)?;
        if !seed.is_empty() && membership.is_none() {
            store.seed_if_empty(&seed, config.initial_stock).await?;
            tracing::info!(
                toys = seed.len(),
                stock = config.initial_stock,
                "seeded the catalog"
            );
        }
        let secret = config.token.resolve().map_err(CatalogError::Config)?;
        let cluster = ClusterClient::new(&secret, config.peer.timeouts())
            .map_err(CatalogError::HttpClient)?;
        let tasks = Tasks::new();
        let group = match membership {
            None => None,
            Some((id, members)) => {
                let settings = raft::RaftSettings {
                    id,
                    members: members.0,
                    group: config.group_settings(),
                    key_window: window,
                    seed: (seed, config.initial_stock),
                    rebuild: config.rebuild,
                };
                let log_dir = config.data_dir.join("raft-log");
                let cache = (log_dir.as_path(), config.storage.sled_cache_mb);
                Some(
                    raft::CatalogRaft::start(
                        store.clone(),
                        cache,
                        cluster.clone(),
                        settings,
                        &tasks,
                    )
                    .await?,
                )
            }
        };
        let frontends = config.frontend_urls.0.iter();
        let invalidator = invalidate::Invalidator::start(
            frontends.map(|url| FrontendClient::new(cluster.clone(), url.clone())),
            &tasks,
        );

        // No start-up announcement is needed: a crash between a flush and its push is
        // covered by the front-end's lease, whose next poll reads the new version. A
        // group's new leader announces every version all the same, to be quicker.
        if let Some(group) = &group {
            tasks.spawn_cancellable(
                "leader announcements",
                group.clone().announce_when_leading(invalidator.clone()),
            );
        }

        let next_restock = restock::NextRestock::new(config.restock_period());
        tasks.spawn_cancellable(
            "restocker",
            restock::restock_loop(
                restock::Restocker {
                    store: store.clone(),
                    group: group.clone(),
                    amount: config.restock_amount,
                    period: config.restock_period(),
                },
                invalidator.clone(),
                next_restock.clone(),
            ),
        );
        if group.is_none() {
            // A group's pruner follows its machine's cutoff (started with it).
            tasks.spawn(
                "key pruner",
                retention::prune_loop(
                    retention::prune_period(window),
                    move || Ok::<_, CatalogError>(retention::cutoff(retention::now_ms(), window)),
                    {
                        let store = store.clone();
                        move |cutoff, limit| store.prune_keys(cutoff, limit)
                    },
                    tasks.clone(),
                ),
            );
        }

        let state = http::AppState {
            store: store.clone(),
            group: group.clone(),
            invalidator,
            next_restock,
            restock_period: config.restock_period(),
        };
        let router = http::router(state, ClusterToken(secret.as_str().into()));
        Ok(App {
            router,
            tasks,
            store,
            group,
        })
    }

    /// The catalog's routes (cheap to clone; serve them, or drive them in-process).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Stops the background tasks and flushes the database.
    pub async fn stop(self) -> Result<(), CatalogError> {
        // openraft's own tasks first (the log is durable), then ours.
        if let Some(group) = &self.group {
            group.shutdown().await;
        }
        self.tasks.shutdown(SHUTDOWN_DEADLINE).await;
        self.store.flush().await?;
        tracing::info!("catalog stopped");
        Ok(())
    }
}

/// Starts the catalog and serves on `listener` until `shutdown` resolves; then stops
/// the tasks and flushes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CatalogError> {
    let edge = config.edge.edge();
    let app = App::start(config).await?;
    tracing::info!(addr = %listener.local_addr()?, "catalog listening");
    // Serve until the signal, or until a replica of the group stops for good (its Raft
    // core failed): then stop the same way and exit saying why.
    let until = app.tasks.until_failed(shutdown);
    common::serve::serve(listener, app.router(), edge, until).await?;
    let failure = app.tasks.failure().map(str::to_string);
    app.stop().await?;
    failure.map_or(Ok(()), |why| Err(CatalogError::Failed(why)))
}
