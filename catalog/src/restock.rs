//! The restock task: every period, every sold-out toy goes back to the restock amount,
//! durably, and the front-end is told. When the next round is due is published in a
//! [`NextRestock`], for `GET /health` (the front-end's dashboard shows it).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::invalidate::Invalidator;
use crate::store::Store;

/// When the next restock round is due; cheap to clone.
#[derive(Clone)]
pub struct NextRestock(watch::Sender<Instant>);

impl NextRestock {
    /// Due one `period` from now (the loop's first round).
    pub fn new(period: Duration) -> Self {
        NextRestock(watch::Sender::new(Instant::now() + period))
    }

    /// Time until the next round (zero while one is running).
    pub fn due_in(&self) -> Duration {
        self.0.borrow().saturating_duration_since(Instant::now())
    }
}

/// Runs until shutdown drops it (a round under way has flushed before it announces).
pub async fn restock_loop(
    store: Store,
    invalidator: Invalidator,
    amount: u64,
    period: Duration,
    next: NextRestock,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate; the first restock is one period in
    loop {
        ticks.tick().await;
        // `Delay`: the next tick comes one period after this one was taken.
        next.0.send_replace(Instant::now() + period);
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
