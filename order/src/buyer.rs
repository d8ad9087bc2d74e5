//! The leader's first stage: taking stock at the catalog, for many orders at once.
//!
//! Handlers queue their order; one task drains the queue and sends the whole batch to
//! the catalog in one request (one transaction and one flush there), then answers each
//! order with the toy's canonical name and version, or the catalog's refusal. The
//! writer (second stage) numbers, stores and replicates the bought orders, so while it
//! works on one batch the next one is already being bought.
//!
//! Buys are idempotent by key in the catalog, so a batch that got no answer is sent
//! again for up to 3 s: a reply lost in a catalog crash must not leave stock taken
//! without an order. After that, orders whose key this replica already holds go ahead
//! without the catalog (version 0, [`Purchase::NotBought`]); the others fail with 503.
//! Each order carries what the catalog did for it on to the writer, which decides
//! with it (see `idempotency`).

use std::time::{Duration, Instant};

use common::backoff::Backoff;
use common::batch::{Batcher, Limits};
use common::client::{CatalogClient, PeerError};
use common::domain::Version;
use common::tasks::Tasks;
use common::wire::{BuyReply, BuyRequest, BuyResult, NewOrder};
use reqwest::StatusCode;

use crate::error::OrderError;
use crate::idempotency::Purchase;

/// Most orders bought in one catalog request.
const MAX_BATCH: usize = 1024;

/// How long an unanswered batch is sent again.
const RETRY_FOR: Duration = Duration::from_secs(3);

/// An order whose stock the catalog has taken.
pub struct Bought {
    /// The order, with the toy's canonical name.
    pub order: NewOrder,
    /// The toy's version right after this order's buy (0 if the catalog was not asked).
    pub version: Version,
    /// What the catalog did for it.
    pub purchase: Purchase,
}

/// An order to buy, and whether this replica already holds an order with its key.
type Job = (NewOrder, bool);

/// Handle to the buyer; it stops at shutdown, after the batch it is buying.
#[derive(Clone)]
pub struct Buyer {
    batcher: Batcher<Job, Result<Bought, OrderError>>,
}

impl Buyer {
    /// Starts the buyer, one catalog request at a time. Every buy tells the catalog
    /// that keys recorded more than `key_retention` ago (this replica's
    /// `--key-retention`, without the replicas' margin) have expired, so that the
    /// catalog, whatever its own window, never calls repeated a key the replicas have
    /// forgotten (see `common::retention`).
    pub fn start(catalog: CatalogClient, key_retention: Duration, tasks: &Tasks) -> Self {
        let limits = Limits {
            max_batch: MAX_BATCH,
            in_flight: 1,
        };
        let batcher = Batcher::start("buyer", limits, tasks, move |jobs| {
            let catalog = catalog.clone();
            async move { buy_all(&catalog, jobs, key_retention).await }
        });
        Buyer { batcher }
    }

    /// Takes stock for `order` (idempotent by its key); `held`: this replica already
    /// holds an order with its key.
    pub async fn buy(&self, order: NewOrder, held: bool) -> Result<Bought, OrderError> {
        self.batcher.submit((order, held)).await?
    }
}

/// Buys a batch in one catalog request; one answer per order.
async fn buy_all(
    catalog: &CatalogClient,
    jobs: Vec<Job>,
    key_retention: Duration,
) -> Vec<Result<Bought, OrderError>> {
    let valid_from = common::retention::cutoff(common::retention::now_ms(), key_retention);
    let requests: Vec<BuyRequest> = jobs
        .iter()
        .map(|(order, _)| BuyRequest {
            name: order.name.clone(),
            quantity: order.quantity,
            key: order.key.clone(),
            request_id: order.request_id.clone(),
            valid_from,
        })
        .collect();
    let started = Instant::now();
    let outcome = buy_batch(catalog, &requests).await;
    tracing::debug!(
        orders = requests.len(),
        catalog_us = started.elapsed().as_micros() as u64,
        "batch bought"
    );
    metrics::histogram!("buyer_batch_size").record(requests.len() as f64);
    metrics::histogram!("buyer_batch_seconds").record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(results) if results.len() == jobs.len() => jobs
            .into_iter()
            .zip(results)
            .map(|((order, _), result)| match result {
                BuyResult::Ok(reply) => Ok(bought(order, reply)),
                BuyResult::Error(e) => Err(refusal(e.code, e.message)),
            })
            .collect(),
        outcome => {
            let why = match outcome {
                Err(e) => e.to_string(),
                Ok(_) => "the catalog answered a different number of buys".into(),
            };
            jobs.into_iter()
                .map(|(order, held)| {
                    if held {
                        Ok(Bought {
                            order,
                            version: Version(0),
                            purchase: Purchase::NotBought,
                        })
                    } else {
                        Err(OrderError::CatalogUnavailable(why.clone()))
                    }
                })
                .collect()
        }
    }
}

fn bought(order: NewOrder, reply: BuyReply) -> Bought {
    Bought {
        order: NewOrder {
            name: reply.name,
            ..order
        },
        version: reply.version,
        purchase: if reply.repeated {
            Purchase::Repeated
        } else {
            Purchase::Fresh
        },
    }
}

/// The catalog's refusal of one buy: its 4xx are final for the order, anything else
/// means the catalog could not do it.
fn refusal(code: u16, message: String) -> OrderError {
    match StatusCode::from_u16(code) {
        Ok(status) if status.is_client_error() => OrderError::Catalog { status, message },
        _ => OrderError::CatalogUnavailable(message),
    }
}

/// Sends the batch, again while the catalog does not answer, for up to [`RETRY_FOR`].
async fn buy_batch(
    catalog: &CatalogClient,
    requests: &[BuyRequest],
) -> Result<Vec<BuyResult>, PeerError> {
    let mut backoff = Backoff::until(tokio::time::Instant::now() + RETRY_FOR);
    loop {
        match catalog.buy_batch(requests).await {
            Err(PeerError::Unreachable(why)) => {
                tracing::debug!(error = %why, "catalog unreachable; sending the buys again");
                if !backoff.wait().await {
                    return Err(PeerError::Unreachable(why));
                }
            }
            other => return other,
        }
    }
}
