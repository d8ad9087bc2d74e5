//! Server push of cache invalidations to every front-end.
//!
//! A purchase or restock only *announces* an invalidation (a channel send per
//! front-end, never blocking the purchase); one background task per front-end
//! delivers them, so a front-end that is down or slow delays no other. Announcements that pile
//! up while a delivery is in flight are coalesced to the newest version per toy and
//! sent together, in one request.
//! Failed deliveries are retried for a few seconds; a batch refused as too large is
//! split in halves. Pushes make the cache fresh *fast*; they are not what makes it
//! correct: the front-end serves cached entries only under a lease that its own polls
//! of the catalog renew (see the front-end's `lease` module), so a push given up on
//! costs at most one poll interval of freshness, never correctness.

use std::collections::HashMap;
use std::time::Duration;

use common::backoff::Backoff;
use common::client::{FrontendClient, PeerError};
use common::domain::Version;
use common::tasks::Tasks;
use common::wire::Invalidation;
use reqwest::StatusCode;
use tokio::sync::mpsc;

/// How long a delivery is retried before it is dropped.
const RETRY_FOR: Duration = Duration::from_secs(5);

/// Handle for announcing invalidations. Cheap to clone; the delivery tasks stop at
/// shutdown (a push not made then is covered by the front-ends' leases).
#[derive(Clone)]
pub struct Invalidator {
    /// One queue per front-end.
    txs: Vec<mpsc::UnboundedSender<Invalidation>>,
}

impl Invalidator {
    /// Starts a delivery task per front-end on `tasks`.
    pub fn start(frontends: impl IntoIterator<Item = FrontendClient>, tasks: &Tasks) -> Self {
        let txs = frontends
            .into_iter()
            .map(|frontend| {
                let (tx, rx) = mpsc::unbounded_channel();
                tasks.spawn_cancellable("invalidation push", deliver_loop(frontend, rx));
                tx
            })
            .collect();
        Invalidator { txs }
    }

    /// Queues "toy `name` changed, now at `version`" for every front-end.
    pub fn announce(&self, name: String, version: Version) {
        for tx in &self.txs {
            let _ = tx.send(Invalidation {
                name: name.clone(),
                version,
            });
        }
    }
}

async fn deliver_loop(frontend: FrontendClient, mut rx: mpsc::UnboundedReceiver<Invalidation>) {
    while let Some(first) = rx.recv().await {
        let mut newest: HashMap<String, Version> = HashMap::new();
        let mut add = |inv: Invalidation| {
            let v = newest.entry(inv.name).or_default();
            *v = (*v).max(inv.version);
        };
        add(first);
        while let Ok(more) = rx.try_recv() {
            add(more);
        }
        let batch: Vec<Invalidation> = newest
            .into_iter()
            .map(|(name, version)| Invalidation { name, version })
            .collect();
        deliver(&frontend, &batch).await;
    }
}

async fn deliver(frontend: &FrontendClient, batch: &[Invalidation]) {
    let mut backoff = Backoff::until(tokio::time::Instant::now() + RETRY_FOR);
    loop {
        let sent = frontend.invalidate(batch).await;
        metrics::counter!(
            "invalidation_pushes_total",
            "outcome" => if sent.is_ok() { "sent" } else { "failed" }
        )
        .increment(1);
        match sent {
            Ok(()) => return,
            Err(PeerError::Status { status, .. })
                if status == StatusCode::PAYLOAD_TOO_LARGE && batch.len() > 1 =>
            {
                let (a, b) = batch.split_at(batch.len() / 2);
                tracing::debug!(
                    toys = batch.len(),
                    "invalidation batch too large; splitting"
                );
                Box::pin(deliver(frontend, a)).await;
                Box::pin(deliver(frontend, b)).await;
                return;
            }
            Err(PeerError::Status { status, message }) if status.is_client_error() => {
                tracing::warn!(toys = batch.len(), %status, %message, "front-end refused invalidations");
                return;
            }
            Err(e) => {
                metrics::counter!("invalidation_push_retries_total").increment(1);
                if !backoff.wait().await {
                    tracing::debug!(toys = batch.len(), error = %e, "giving up on invalidations");
                    return;
                }
            }
        }
    }
}
