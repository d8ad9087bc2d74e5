//! The front-end: toystore's only public entry point.
//!
//! Modules:
//! - [`config`]: flags and environment variables.
//! - [`validate`]: typed, validated request values.
//! - [`http`]: the public routes and the invalidation endpoint.
//! - [`openapi`]: the API's OpenAPI description and its docs page.
//! - [`cache`]: the LRU product cache with versioned invalidation and a lease.
//! - [`lease`]: the task that polls the catalog's versions to renew the lease.
//! - [`leader`]: leader selection among the order replicas, and failover.
//! - [`fleet`]: this front-end's own report, and the other front-ends' for the
//!   dashboard.
//! - [`monitor`]: the cluster as a whole, polled for the dashboard.
//! - [`dashboard`]: the live page, its event stream and its polling task.
//! - [`error`]: the error type and its HTTP mapping.
//!
//! A lookup flows: `http::product` → cache hit, or catalog read → cache fill.
//! An order flows: `http::place_order` (validate, idempotency key) → `Leaders::call`
//! (leader, failover with the same key) → cache invalidation → reply.

pub mod cache;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod fleet;
pub mod http;
pub mod leader;
pub mod lease;
pub mod monitor;
pub mod openapi;
pub mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use common::client::{CatalogClient, ClusterClient, OrderClient};
use common::http::ClusterToken;
use common::tasks::Tasks;
use tokio::net::TcpListener;

pub use config::Config;

/// How long shutdown waits for the background tasks once the server has drained.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// A started front-end: its routes and its background tasks.
pub struct App {
    router: Router,
    tasks: Tasks,
    /// A signal (no task runs on it), stopped as soon as shutdown begins: the
    /// dashboard's streams end, and requests in flight stop failing over.
    closing: Tasks,
    /// Keeps the cache's figures in every `/metrics` render while the front-end runs.
    _gauges: common::metrics::OnRender,
}

impl App {
    /// Checks the configuration and starts the background tasks: the leader watcher,
    /// the cache lease and the dashboard's poll.
    pub async fn start(config: Config) -> std::io::Result<Self> {
        config.validate().map_err(std::io::Error::other)?;
        let secret = config.token.resolve().map_err(std::io::Error::other)?;
        let cluster =
            ClusterClient::new(&secret, config.peer.timeouts()).map_err(std::io::Error::other)?;
        let orders = OrderClient::new(cluster.clone());
        let cache = Arc::new(cache::Cache::new(
            config.cache,
            config.cache_capacity as usize,
        ));
        let tasks = Tasks::new();
        let closing = Tasks::new();
        let leaders = Arc::new(leader::Leaders::new(
            config.replication,
            config.replicas.clone(),
            orders.clone(),
            config.leader_timing(),
            cache.clone(),
            tasks.clone(),
            closing.clone(),
        ));
        let fleet = fleet::Fleet::new(&config.name, config.frontend_urls.as_ref(), &cluster);
        let catalog = CatalogClient::replicated(cluster, config.catalog_url.0.clone());
        let dashboard = dashboard::Dashboard::start(
            monitor::Monitor::new(
                config.replication,
                config.replicas.clone(),
                catalog.clone(),
                leaders.clone(),
                cache.clone(),
                fleet,
                config.name.clone(),
            ),
            &tasks,
            closing.clone(),
        );
        let state = http::AppState {
            name: config.name.as_str().into(),
            catalog: catalog.clone(),
            orders,
            leaders: leaders.clone(),
            cache: cache.clone(),
            fill_delay: Duration::from_millis(config.test_fill_delay_ms),
        };
        tasks.spawn_cancellable("leader watcher", {
            let leaders = leaders.clone();
            async move { leaders.watch().await }
        });
        // Runs with the cache off too: failover asks it whether the catalog is heard.
        tasks.spawn_cancellable(
            "cache lease",
            lease::lease_loop(
                catalog,
                cache.clone(),
                config.catalog_poll(),
                config.cache_lease(),
            ),
        );
        let token = ClusterToken(secret.as_str().into());
        Ok(App {
            router: http::router(state, dashboard, token),
            closing,
            tasks,
            _gauges: cache_metrics(cache),
        })
    }

    /// The front-end's routes (cheap to clone; serve them, or drive them in-process).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Stops the background tasks and waits for them.
    pub async fn stop(self) {
        self.tasks.shutdown(SHUTDOWN_DEADLINE).await;
        tracing::info!("front-end stopped");
    }
}

/// Starts the front-end and serves on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (cache, capacity) = (config.cache, config.cache_capacity);
    let edge = config.edge.edge();
    let app = App::start(config).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        cache,
        capacity,
        "front-end listening"
    );
    // The dashboard's streams end and failover stops as soon as shutdown begins (the
    // server could not finish draining otherwise); the tasks run until it has
    // drained, since requests in flight still consult the leader and the lease.
    let closing = app.closing.clone();
    let shutdown = async move {
        shutdown.await;
        closing.stop();
    };
    common::serve::serve(listener, app.router(), edge, shutdown).await?;
    app.stop().await;
    Ok(())
}

/// Puts the cache's figures into every `/metrics` render (read from its own counters
/// then, so a lookup costs nothing extra), until the guard is dropped.
fn cache_metrics(cache: Arc<cache::Cache>) -> common::metrics::OnRender {
    common::metrics::on_render(move || {
        let s = cache.stats();
        metrics::counter!("cache_hits_total").absolute(s.hits);
        metrics::counter!("cache_misses_total").absolute(s.misses);
        metrics::counter!("cache_evictions_total").absolute(s.evictions);
        metrics::counter!("cache_invalidations_total").absolute(s.invalidations);
        metrics::counter!("cache_lease_expiries_total").absolute(s.lease_expiries);
        metrics::gauge!("cache_entries").set(s.size as f64);
        metrics::gauge!("cache_capacity").set(s.capacity as f64);
        metrics::gauge!("cache_leased").set(if s.leased { 1.0 } else { 0.0 });
    })
}
