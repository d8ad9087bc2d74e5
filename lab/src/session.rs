//! One client session, as the lab describes it: on one kept-alive connection, query a
//! random toy; if it is in stock, order one with probability `p`; remember every
//! acknowledged order and, before finishing, read each one back and check it.
//! [`run_sessions`] runs several at once and merges what they measured.
//!
//! Given several front-end URLs, a session sends each request to one of them (session
//! `i` starts at the `i`-th) and, when it does not answer or answers 5xx, sends it again
//! to the next, once to each — an order with the same idempotency key, so a retry
//! through another front-end never places a second order (orders then always carry a
//! key, unique to the run).
//!
//! Given a [`History`] (the chaos checker's), sessions also behave like careful
//! clients: every order carries an idempotency key of its own, and the ones that
//! failed are sent once more, with the same key, when the run stops (after the
//! faults have healed) — so stock the catalog took for a failed request ends up in
//! an order. Every acknowledged order, failure and product version goes into the
//! history; after each acknowledged order the session looks the toy up again, and
//! the history notes whether the front-end that answered (`x-served-by`) was the one
//! that took the order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::endpoint;
use common::wire::{Data, OrderPlaced, OrderView, Product};
use indicatif::ProgressBar;
use reqwest::{StatusCode, Url};
use serde_json::json;

use crate::checker::History;
use crate::stats::{Kind, Record};
use crate::ClientError;

/// What a set of sessions should do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Front-end base URLs (at least one): requests fail over from one to the next.
    pub urls: Vec<Url>,
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
    history: Option<Arc<History>>,
) -> Result<Record, ClientError> {
    let toys = Arc::new(toy_names(&plan.urls).await?);
    // Keys must be new in every run (a plain run sent twice with one seed places new
    // orders); a checked run's are its own anyway.
    let run = match &history {
        Some(_) => String::new(),
        None => format!("-{:x}", nonce()),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..plan.sessions {
        let session = Session {
            urls: plan.urls.clone(),
            at: i % plan.urls.len().max(1),
            p: plan.p,
            iterations: plan.iterations,
            toys: toys.clone(),
            rng: fastrand::Rng::with_seed(plan.seed.wrapping_add(i as u64)),
            stop: stop.clone(),
            progress: progress.clone(),
            history: history.clone(),
            id: format!("s{}{run}-{i}", plan.seed),
        };
        tasks.spawn(session.run());
    }
    let mut record = Record::default();
    while let Some(done) = tasks.join_next().await {
        record.merge(done.map_err(ClientError::task("a client session"))??);
    }
    Ok(record)
}

/// Something new in every run: the time in nanoseconds.
fn nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The names of every toy, from `GET /products` of the first front-end that answers.
pub async fn toy_names(urls: &[Url]) -> Result<Vec<String>, ClientError> {
    let http = http_client()?;
    let mut last = None;
    for url in urls {
        match http.get(endpoint(url, &["products"])).send().await {
            Ok(resp) if resp.status().is_success() => return products_of(resp).await,
            Ok(resp) => last = Some(format!("{url} answered {}", resp.status())),
            Err(e) => last = Some(format!("cannot reach the front-end at {url}: {e}")),
        }
    }
    Err(ClientError::Other(
        last.unwrap_or_else(|| "no front-end URL was given".into()),
    ))
}

/// The toys' names in a `GET /products` reply.
async fn products_of(resp: reqwest::Response) -> Result<Vec<String>, ClientError> {
    let list: Data<Vec<Product>> = resp
        .json()
        .await
        .map_err(ClientError::http("unexpected product list"))?;
    if list.data.is_empty() {
        return Err(ClientError::Other("the store has no toys".into()));
    }
    Ok(list.data.into_iter().map(|p| p.name).collect())
}

/// Pause after a failed request.
const FAILURE_BACKOFF: Duration = Duration::from_millis(50);

/// A client whose one connection is kept alive between requests.
fn http_client() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(common::client::POOL_IDLE)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(ClientError::http("building the HTTP client"))
}

struct Session {
    urls: Vec<Url>,
    /// The front-end this session sends to now (an index into `urls`).
    at: usize,
    p: f64,
    iterations: Option<u64>,
    toys: Arc<Vec<String>>,
    rng: fastrand::Rng,
    stop: Arc<AtomicBool>,
    progress: Option<ProgressBar>,
    history: Option<Arc<History>>,
    /// Prefix of this session's idempotency keys.
    id: String,
}

/// A request's outcome as a session sees it.
enum Outcome<T> {
    Ok(T),
    /// The status and the error message of the reply.
    Status(StatusCode, String),
    Unreachable,
}

impl Session {
    async fn run(mut self) -> Result<Record, ClientError> {
        let http = http_client()?;
        let mut record = Record::default();
        let mut placed: Vec<OrderView> = Vec::new();
        // Orders that failed, as (key, toy): sent again at the end (with a history).
        let mut failed: Vec<(String, String)> = Vec::new();
        let mut done = 0u64;
        while self.iterations.is_none_or(|n| done < n) && !self.stop.load(Ordering::Relaxed) {
            done += 1;
            if let Some(bar) = &self.progress {
                bar.inc(1);
            }
            let toys = self.toys.clone();
            let toy = &toys[self.rng.usize(..toys.len())];
            let started = Instant::now();
            let sent = self.history.as_ref().map(|h| h.now());
            let outcome = self.lookup(&http, toy).await;
            record.latency(Kind::Query, started.elapsed());
            let (product, version) = match outcome {
                Outcome::Ok(reply) => {
                    if let (Some(h), Some(sent), Some(v)) = (&self.history, sent, reply.version) {
                        h.product_read(sent, &reply.data.name, v);
                    }
                    (reply.data, reply.version)
                }
                Outcome::Status(s, why) => {
                    record.error(Kind::Query, s.as_u16());
                    self.failed(format!("lookup of {toy}: {s} {why}")).await;
                    continue;
                }
                Outcome::Unreachable => {
                    record.error(Kind::Query, "unreachable");
                    self.failed(format!("lookup of {toy}: unreachable")).await;
                    continue;
                }
            };
            if product.quantity == 0 || self.rng.f64() >= self.p {
                continue;
            }
            let started = Instant::now();
            let key = format!("{}-{done}", self.id);
            let outcome = self.order(&http, &product.name, &key).await;
            record.latency(Kind::Order, started.elapsed());
            match outcome {
                Outcome::Ok((placed_order, acked_by)) => {
                    record.orders += 1;
                    placed.push(placed_order);
                    if let Some(before) = version {
                        self.read_after_order(&http, &product.name, before, acked_by)
                            .await;
                    }
                }
                Outcome::Status(StatusCode::CONFLICT, _) => record.sold_out += 1,
                Outcome::Status(s, why) => {
                    record.error(Kind::Order, s.as_u16());
                    self.failed(format!("order {key}: {s} {why}")).await;
                    failed.push((key, product.name));
                }
                Outcome::Unreachable => {
                    record.error(Kind::Order, "unreachable");
                    self.failed(format!("order {key}: unreachable")).await;
                    failed.push((key, product.name));
                }
            }
        }
        if self.history.is_some() {
            // The careful client's retry, with the same key, once the run is over.
            for (key, name) in failed {
                if let Outcome::Ok((placed_order, _)) = self.order(&http, &name, &key).await {
                    record.orders += 1;
                    placed.push(placed_order);
                }
            }
        }
        for expected in placed {
            let started = Instant::now();
            let number = expected.number.to_string();
            let outcome = self
                .fail_over(|url| fetch::<OrderView>(http.get(endpoint(url, &["orders", &number]))))
                .await;
            record.latency(Kind::Lookup, started.elapsed());
            match outcome {
                Outcome::Ok(found) if found == expected => {}
                Outcome::Ok(found) => record
                    .mismatches
                    .push(format!("ordered {expected:?}, read back {found:?}")),
                Outcome::Status(s, _) => {
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

impl Session {
    /// Sends a request made by `send` to the current front-end and, while it does
    /// not answer or answers 5xx, to the next ones (once each); stays with the one
    /// that answered.
    async fn fail_over<T, F, Fut>(&mut self, send: F) -> Outcome<T>
    where
        F: Fn(&Url) -> Fut,
        Fut: std::future::Future<Output = Outcome<T>>,
    {
        let mut tries = 0;
        loop {
            let outcome = send(&self.urls[self.at]).await;
            tries += 1;
            let failed = match &outcome {
                Outcome::Unreachable => true,
                Outcome::Status(s, _) => s.is_server_error(),
                Outcome::Ok(_) => false,
            };
            if !failed || tries >= self.urls.len() {
                return outcome;
            }
            self.at = (self.at + 1) % self.urls.len();
        }
    }

    /// Looks `toy` up (failing over like every request).
    async fn lookup(&mut self, http: &reqwest::Client, toy: &str) -> Outcome<Reply<Product>> {
        self.fail_over(|url| fetch_reply::<Product>(http.get(endpoint(url, &["products", toy]))))
            .await
    }

    /// With a history: looks `toy` up again after an order of it that `acked_by`
    /// acknowledged, `before` being the version read before ordering, and notes the
    /// reply (see [`History::read_after_order`]).
    async fn read_after_order(
        &mut self,
        http: &reqwest::Client,
        toy: &str,
        before: u64,
        acked_by: Option<String>,
    ) {
        let Some(history) = self.history.clone() else {
            return;
        };
        let sent = history.now();
        if let Outcome::Ok(reply) = self.lookup(http, toy).await {
            if let Some(version) = reply.version {
                let same = acked_by.is_some() && reply.served_by == acked_by;
                history.read_after_order(sent, toy, before, version, same);
            }
        }
    }

    /// Orders one `name` with idempotency key `key`; records an acknowledgement. The
    /// order as placed, and the front-end that acknowledged it (`x-served-by`).
    async fn order(
        &mut self,
        http: &reqwest::Client,
        name: &str,
        key: &str,
    ) -> Outcome<(OrderView, Option<String>)> {
        // Keys with a history or several front-ends (a retry elsewhere must find the
        // first try's order); a plain run's keys are new in each run (see `Plan`).
        let keyed = self.history.is_some() || self.urls.len() > 1;
        let body = json!({"name": name, "quantity": 1});
        let outcome = self
            .fail_over(|url| {
                let mut request = http.post(endpoint(url, &["orders"])).json(&body);
                if keyed {
                    request = request.header(common::IDEMPOTENCY_HEADER, key);
                }
                fetch_reply::<OrderPlaced>(request)
            })
            .await;
        match outcome {
            Outcome::Ok(Reply {
                data: placed,
                served_by,
                ..
            }) => {
                if let Some(h) = &self.history {
                    h.acked(key, placed.order_number.get(), name, 1);
                }
                let view = OrderView {
                    number: placed.order_number,
                    name: name.to_string(),
                    quantity: 1,
                };
                Outcome::Ok((view, served_by))
            }
            Outcome::Status(s, why) => Outcome::Status(s, why),
            Outcome::Unreachable => Outcome::Unreachable,
        }
    }

    /// Notes a failed request and backs off a little, as a client would, instead of
    /// hammering a service that is down.
    async fn failed(&self, what: String) {
        if let Some(h) = &self.history {
            h.failed(what);
        }
        tokio::time::sleep(FAILURE_BACKOFF).await;
    }
}

/// A success reply's data and what its headers say.
struct Reply<T> {
    data: T,
    /// `x-toy-version`: the catalog's version of the toy (product replies).
    version: Option<u64>,
    /// `x-served-by`: the front-end that answered.
    served_by: Option<String>,
}

/// Like [`fetch`], with the reply's headers.
async fn fetch_reply<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
) -> Outcome<Reply<T>> {
    let Ok(resp) = req.send().await else {
        return Outcome::Unreachable;
    };
    let status = resp.status();
    if !status.is_success() {
        let why = match resp.json::<common::error::ErrorBody>().await {
            Ok(body) => body.error.message,
            Err(_) => String::new(),
        };
        return Outcome::Status(status, why);
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let version = header("x-toy-version").and_then(|v| v.parse().ok());
    let served_by = header("x-served-by");
    match resp.json::<Data<T>>().await {
        Ok(body) => Outcome::Ok(Reply {
            data: body.data,
            version,
            served_by,
        }),
        Err(e) => Outcome::Status(StatusCode::BAD_GATEWAY, format!("unreadable reply: {e}")),
    }
}

/// Sends `req`; the `data` of a success, or what went wrong.
async fn fetch<T: serde::de::DeserializeOwned>(req: reqwest::RequestBuilder) -> Outcome<T> {
    match fetch_reply(req).await {
        Outcome::Ok(reply) => Outcome::Ok(reply.data),
        Outcome::Status(s, why) => Outcome::Status(s, why),
        Outcome::Unreachable => Outcome::Unreachable,
    }
}
