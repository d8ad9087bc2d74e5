//! The restock task: every period, every sold-out toy goes back to the restock amount,
//! durably, and the front-end is told. When the next round is due is published in a
//! [`NextRestock`], for `GET /health` (the front-end's dashboard shows it).
//!
//! In a replicated catalog only the leader restocks: it proposes round *n* (the
//! period's number since the Unix epoch), and the state machine applies each round
//! once, so a round is not done twice when the leader changes within a period.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use common::domain::Version;

use crate::error::CatalogError;
use crate::invalidate::Invalidator;
use crate::raft::CatalogRaft;
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

/// What a restock round changes.
pub struct Restocker {
    pub store: Store,
    /// A replicated catalog's member (rounds go through its log).
    pub group: Option<CatalogRaft>,
    pub amount: u64,
    pub period: Duration,
}

impl Restocker {
    /// One round: the restocked toys with their new versions (none on a follower).
    async fn round(&self) -> Result<Vec<(String, Version)>, CatalogError> {
        match &self.group {
            None => self.store.restock_sold_out(self.amount).await,
            // A round only when a toy is sold out, as far as this leader has applied
            // (one it has not seen yet is restocked next round): the log does not
            // grow while nothing sells out.
            Some(group) if group.leads() && self.store.any_sold_out()? => {
                let period = u64::try_from(self.period.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let round = common::retention::now_ms() / period;
                group.restock(round, self.amount).await
            }
            Some(_) => Ok(Vec::new()),
        }
    }
}

/// Runs until shutdown drops it (a round under way has flushed before it announces).
pub async fn restock_loop(restocker: Restocker, invalidator: Invalidator, next: NextRestock) {
    let period = restocker.period;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate; the first restock is one period in
    loop {
        ticks.tick().await;
        // `Delay`: the next tick comes one period after this one was taken.
        next.0.send_replace(Instant::now() + period);
        match restocker.round().await {
            Ok(restocked) => {
                for (name, version) in restocked {
                    tracing::info!(toy = %name, amount = restocker.amount, "restocked");
                    metrics::counter!("restocks_total").increment(1);
                    invalidator.announce(name, version);
                }
            }
            Err(e) => tracing::error!(error = %e, "restock failed"),
        }
    }
}
