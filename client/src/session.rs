//! One client session, as the lab describes it: on one kept-alive connection, query a
//! random toy; if it is in stock, order one with probability `p`; remember every
//! acknowledged order and, before finishing, read each one back and check it.
//! [`run_sessions`] runs several at once and merges what they measured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::endpoint;
use common::wire::{Data, OrderPlaced, OrderView, Product};
use indicatif::ProgressBar;
use reqwest::{StatusCode, Url};
use serde_json::json;

use crate::stats::{Kind, Record};
use crate::ClientError;

/// What a set of sessions should do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Front-end base URL.
    pub url: Url,
    /// Number of concurrent sessions.
    pub sessions: usize,
    /// Probability of ordering a toy that is in stock.
    pub p: f64,
    /// Queries per session; `None` runs until stopped.
    pub iterations: Option<u64>,
    /// Seed of the random choices (session `i` uses `seed + i`).
    pub seed: u64,
}

/// Runs `plan.sessions` sessions concurrently until they finish (or `stop` is set),
/// then merges their records.
pub async fn run_sessions(
    plan: &Plan,
    stop: Arc<AtomicBool>,
    progress: Option<ProgressBar>,
) -> Result<Record, ClientError> {
    let toys = Arc::new(toy_names(&plan.url).await?);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..plan.sessions {
        let session = Session {
            url: plan.url.clone(),
            p: plan.p,
            iterations: plan.iterations,
            toys: toys.clone(),
            rng: fastrand::Rng::with_seed(plan.seed.wrapping_add(i as u64)),
            stop: stop.clone(),
            progress: progress.clone(),
        };
        tasks.spawn(session.run());
    }
    let mut record = Record::default();
    while let Some(done) = tasks.join_next().await {
        record.merge(done.map_err(|e| ClientError::Other(format!("session panicked: {e}")))??);
    }
    Ok(record)
}

/// The names of every toy, from `GET /products`.
pub async fn toy_names(url: &Url) -> Result<Vec<String>, ClientError> {
    let http = http_client()?;
    let resp = http
        .get(endpoint(url, &["products"]))
        .send()
        .await
        .map_err(|e| ClientError::Other(format!("cannot reach the front-end at {url}: {e}")))?;
    let list: Data<Vec<Product>> = resp
        .json()
        .await
        .map_err(|e| ClientError::Other(format!("unexpected product list: {e}")))?;
    if list.data.is_empty() {
        return Err(ClientError::Other("the store has no toys".into()));
    }
    Ok(list.data.into_iter().map(|p| p.name).collect())
}

/// A client whose one connection is kept alive between requests.
fn http_client() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| ClientError::Other(e.to_string()))
}

struct Session {
    url: Url,
    p: f64,
    iterations: Option<u64>,
    toys: Arc<Vec<String>>,
    rng: fastrand::Rng,
    stop: Arc<AtomicBool>,
    progress: Option<ProgressBar>,
}

/// A request's outcome as a session sees it.
enum Outcome<T> {
    Ok(T),
    Status(StatusCode),
    Unreachable,
}

impl Session {
    async fn run(mut self) -> Result<Record, ClientError> {
        let http = http_client()?;
        let mut record = Record::default();
        let mut placed: Vec<OrderView> = Vec::new();
        let mut done = 0u64;
        while self.iterations.is_none_or(|n| done < n) && !self.stop.load(Ordering::Relaxed) {
            done += 1;
            if let Some(bar) = &self.progress {
                bar.inc(1);
            }
            let toy = &self.toys[self.rng.usize(..self.toys.len())];
            let started = Instant::now();
            let outcome = fetch::<Product>(http.get(endpoint(&self.url, &["products", toy]))).await;
            record.latency(Kind::Query, started.elapsed());
            let product = match outcome {
                Outcome::Ok(p) => p,
                Outcome::Status(s) => {
                    record.error(Kind::Query, s.as_u16());
                    continue;
                }
                Outcome::Unreachable => {
                    record.error(Kind::Query, "unreachable");
                    continue;
                }
            };
            if product.quantity == 0 || self.rng.f64() >= self.p {
                continue;
            }
            let started = Instant::now();
            let request = http
                .post(endpoint(&self.url, &["orders"]))
                .json(&json!({"name": product.name, "quantity": 1}));
            let outcome = fetch::<OrderPlaced>(request).await;
            record.latency(Kind::Order, started.elapsed());
            match outcome {
                Outcome::Ok(placed_order) => {
                    record.orders += 1;
                    placed.push(OrderView {
                        number: placed_order.order_number,
                        name: product.name,
                        quantity: 1,
                    });
                }
                Outcome::Status(StatusCode::CONFLICT) => record.sold_out += 1,
                Outcome::Status(s) => record.error(Kind::Order, s.as_u16()),
                Outcome::Unreachable => record.error(Kind::Order, "unreachable"),
            }
        }
        for expected in placed {
            let started = Instant::now();
            let url = endpoint(&self.url, &["orders", &expected.number.to_string()]);
            let outcome = fetch::<OrderView>(http.get(url)).await;
            record.latency(Kind::Lookup, started.elapsed());
            match outcome {
                Outcome::Ok(found) if found == expected => {}
                Outcome::Ok(found) => record
                    .mismatches
                    .push(format!("ordered {expected:?}, read back {found:?}")),
                Outcome::Status(s) => {
                    record.error(Kind::Lookup, s.as_u16());
                    record
                        .mismatches
                        .push(format!("order {} could not be read: {s}", expected.number));
                }
                Outcome::Unreachable => {
                    record.error(Kind::Lookup, "unreachable");
                    record
                        .mismatches
                        .push(format!("order {} could not be read", expected.number));
                }
            }
        }
        Ok(record)
    }
}

async fn fetch<T: serde::de::DeserializeOwned>(req: reqwest::RequestBuilder) -> Outcome<T> {
    let Ok(resp) = req.send().await else {
        return Outcome::Unreachable;
    };
    let status = resp.status();
    if !status.is_success() {
        return Outcome::Status(status);
    }
    match resp.json::<Data<T>>().await {
        Ok(body) => Outcome::Ok(body.data),
        Err(_) => Outcome::Status(StatusCode::BAD_GATEWAY),
    }
}
