//! The cache lease: a background task that polls the catalog for every toy's version.
//!
//! Pushed invalidations make the cache coherent quickly; this poll makes it coherent
//! *surely*. Each successful poll drops entries older than what it read and extends
//! the lease to the poll's send time + the lease length (see [`crate::cache`]), so a
//! front-end cut off from the catalog, or one that missed a push, never serves a
//! quantity that is stale by more than the lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::CatalogClient;
use common::domain::Version;

use crate::cache::Cache;

/// Polls every `every`, until shutdown drops it; each success renews the lease for
/// `lease`.
pub async fn lease_loop(
    catalog: CatalogClient,
    cache: Arc<Cache>,
    every: Duration,
    lease: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        let sent = Instant::now();
        // A poll answered after the lease it would grant has run out grants nothing,
        // so it need not wait longer than that; and each catalog replica gets half of
        // it, so that a replicated catalog's stalled leader is left for the next
        // replica within the poll (the client then starts there next time).
        let polled = tokio::time::timeout(lease, catalog.products_within(lease / 2)).await;
        match polled {
            Ok(Ok(products)) => {
                let versions: Vec<(String, Version)> = products
                    .into_iter()
                    .map(|p| (p.name.to_lowercase(), p.version))
                    .collect();
                cache.renew(versions.iter().map(|(k, v)| (k.as_str(), *v)), sent + lease);
                if failing {
                    tracing::info!("catalog heard again; cache lease renewed");
                    failing = false;
                }
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot poll the catalog; the cache lease will run out");
                }
                failing = true;
            }
            Err(_) => {
                if !failing {
                    tracing::warn!("catalog poll timed out; the cache lease will run out");
                }
                failing = true;
            }
        }
    }
}
