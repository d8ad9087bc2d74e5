//! The restock task: every period, every sold-out toy goes back to the restock amount,
//! durably, and the front-end is told.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::invalidate::Invalidator;
use crate::store::Store;

/// Runs until `stop` turns true.
pub async fn restock_loop(
    store: Store,
    invalidator: Invalidator,
    amount: u64,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate; the first restock is one period in
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        match store.restock_sold_out(amount).await {
            Ok(restocked) => {
                for (name, version) in restocked {
                    tracing::info!(toy = %name, amount, "restocked");
                    metrics::counter!("restocks_total").increment(1);
                    invalidator.announce(name, version);
                }
            }
            Err(e) => tracing::error!(error = %e, "restock failed"),
        }
    }
}
