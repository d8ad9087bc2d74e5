//! Typed clients for talking to other services over one pooled `reqwest::Client`.
//!
//! Every call has a timeout, and every failure is either [`PeerError::Unreachable`]
//! (no answer: connection refused, reset, timed out — worth failing over) or
//! [`PeerError::Status`] (the peer answered with an error — usually final). A call made
//! while serving a request carries that request's `x-request-id`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backoff::Backoff;
use crate::domain::OrderNumber;
use crate::error::ErrorBody;
use crate::trace::{RequestId, REQUEST_ID_HEADER};
use crate::wire::*;

/// Why a call to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// No usable answer: the peer is down, hung, or the connection broke.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer answered with an error status.
    #[error("answered {status}: {message}")]
    Status { status: StatusCode, message: String },
}

impl PeerError {
    /// The peer's status, if it answered at all.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            PeerError::Status { status, .. } => Some(*status),
            PeerError::Unreachable(_) => None,
        }
    }
}

/// Timeouts of calls to other services (see `config::PeerArgs` for the flags).
#[derive(Debug, Clone, Copy)]
pub struct PeerTimeouts {
    pub connect: Duration,
    /// One ordinary call.
    pub request: Duration,
    /// The front-end's wait for the leader to place an order.
    pub order: Duration,
    /// One page of history.
    pub page: Duration,
}

impl Default for PeerTimeouts {
    fn default() -> Self {
        PeerTimeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(3),
            order: Duration::from_secs(5),
            page: Duration::from_secs(10),
        }
    }
}

/// One pooled HTTP client plus the cluster token, shared by a service's typed clients.
#[derive(Clone)]
pub struct ClusterClient {
    http: reqwest::Client,
    token: Arc<str>,
    timeouts: PeerTimeouts,
}

/// How long a pooled connection to another service may sit idle before this side
/// closes it: below the services' idle timeout (`--header-timeout-ms`, 30 s by
/// default), so that a connection is never reused just as the server closes it.
pub const POOL_IDLE: Duration = Duration::from_secs(20);

impl ClusterClient {
    /// Builds the service's one HTTP client (keep-alive pool, `TCP_NODELAY`).
    pub fn new(token: &str, timeouts: PeerTimeouts) -> Result<Self, PeerError> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| PeerError::Unreachable(format!("cannot build HTTP client: {e}")))?;
        Ok(ClusterClient {
            http,
            token: token.into(),
            timeouts,
        })
    }

    /// A call with the cluster token, a timeout, and the id of the request this task
    /// serves, if any (see [`crate::trace`]).
    fn call(
        &self,
        method: reqwest::Method,
        url: Url,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, url)
            .header(crate::TOKEN_HEADER, &*self.token)
            .timeout(timeout);
        match RequestId::current().and_then(|id| id.header_value()) {
            Some(id) => req.header(REQUEST_ID_HEADER, id),
            None => req,
        }
    }

    async fn get<T: DeserializeOwned>(&self, url: Url, timeout: Duration) -> Result<T, PeerError> {
        send(
            self.call(reqwest::Method::GET, url, timeout),
            Envelope::Data,
        )
        .await
    }

    /// GET of an endpoint that answers without the `{"data": ...}` envelope (`/health`).
    async fn get_bare<T: DeserializeOwned>(
        &self,
        url: Url,
        timeout: Duration,
    ) -> Result<T, PeerError> {
        send(
            self.call(reqwest::Method::GET, url, timeout),
            Envelope::Bare,
        )
        .await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: Url,
        body: &B,
        timeout: Duration,
    ) -> Result<T, PeerError> {
        let req = self.call(reqwest::Method::POST, url, timeout).json(body);
        send(req, Envelope::Data).await
    }

    /// POST of an opaque binary body (Raft's messages), answered with bytes.
    pub async fn post_bytes(
        &self,
        url: Url,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<axum::body::Bytes, PeerError> {
        let resp = self
            .call(reqwest::Method::POST, url, timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| PeerError::Unreachable(error_chain(&e)))?;
        reply_bytes(resp).await
    }
}

/// Whether a success reply is wrapped in `{"data": ...}`.
#[derive(Clone, Copy)]
enum Envelope {
    Data,
    Bare,
}

async fn send<T: DeserializeOwned>(
    req: reqwest::RequestBuilder,
    envelope: Envelope,
) -> Result<T, PeerError> {
    let resp = req
        .send()
        .await
        .map_err(|e| PeerError::Unreachable(error_chain(&e)))?;
    let bytes = reply_bytes(resp).await?;
    let parsed = match envelope {
        Envelope::Data => serde_json::from_slice::<Data<T>>(&bytes).map(|d| d.data),
        Envelope::Bare => serde_json::from_slice::<T>(&bytes),
    };
    parsed.map_err(|e| PeerError::Status {
        status: StatusCode::BAD_GATEWAY,
        message: format!("unreadable reply: {e}"),
    })
}

/// The body of a success reply, or the peer's error (its JSON message if it sent one).
async fn reply_bytes(resp: reqwest::Response) -> Result<axum::body::Bytes, PeerError> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| PeerError::Unreachable(error_chain(&e)))?;
    if status.is_success() {
        return Ok(bytes);
    }
    let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => body.error.message,
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    Err(PeerError::Status { status, message })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `base` with `segments` appended as percent-encoded path segments.
pub fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// The catalog service's API: one catalog, or the replicas of a replicated one.
///
/// With several replicas, a call goes to the one that answered last (the leader, as
/// far as this client knows); if that one does not answer, is not the leader (421)
/// or has no majority (503), the call goes to the next, round the list, pausing
/// after each round ([`Backoff`]), until the `order` timeout has passed. Every call
/// is safe to repeat: lookups change nothing, and buys carry idempotency keys.
#[derive(Clone)]
pub struct CatalogClient {
    cluster: ClusterClient,
    replicas: Arc<[Url]>,
    /// Index of the replica that answered last.
    current: Arc<AtomicUsize>,
}

/// Whether a failed call may succeed on another catalog replica.
fn elsewhere(e: &PeerError) -> bool {
    match e {
        PeerError::Unreachable(_) => true,
        PeerError::Status { status, .. } => {
            *status == StatusCode::MISDIRECTED_REQUEST || *status == StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

impl CatalogClient {
    /// The catalog at `base`.
    pub fn new(cluster: ClusterClient, base: Url) -> Self {
        Self::replicated(cluster, vec![base])
    }

    /// The catalog replicas at `urls` (at least one; an empty list is a catalog that
    /// never answers).
    pub fn replicated(cluster: ClusterClient, urls: Vec<Url>) -> Self {
        CatalogClient {
            cluster,
            replicas: urls.into(),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Every replica's URL (one for the single catalog).
    pub fn replicas(&self) -> &[Url] {
        &self.replicas
    }

    /// The replica calls go to now.
    pub fn current(&self) -> Option<&Url> {
        let n = self.replicas.len();
        (n > 0).then(|| &self.replicas[self.current.load(Ordering::Relaxed) % n])
    }

    /// Runs `call` on the current replica, and on the others while it fails in a
    /// way another replica might not (see the type's docs).
    async fn on_leader<T, F, Fut>(&self, call: F) -> Result<T, PeerError>
    where
        F: Fn(Url) -> Fut,
        Fut: std::future::Future<Output = Result<T, PeerError>>,
    {
        let n = self.replicas.len();
        if n <= 1 {
            return match self.replicas.first() {
                Some(url) => call(url.clone()).await,
                None => Err(PeerError::Unreachable("no catalog configured".into())),
            };
        }
        let deadline = tokio::time::Instant::now() + self.cluster.timeouts.order;
        let mut backoff = Backoff::until(deadline);
        let mut tried = 0;
        loop {
            let at = self.current.load(Ordering::Relaxed) % n;
            match call(self.replicas[at].clone()).await {
                Err(e) if elsewhere(&e) => {
                    tracing::debug!(
                        replica = %self.replicas[at],
                        error = %e,
                        "catalog call failed; trying the next replica"
                    );
                    // Someone else may have moved on already; only move from `at`.
                    let _ = self.current.compare_exchange(
                        at,
                        (at + 1) % n,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    tried += 1;
                    if tried % n == 0 && !backoff.wait().await {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// One toy, looked up case-insensitively.
    pub async fn product(&self, name: &str) -> Result<CatalogProduct, PeerError> {
        self.on_leader(|base| async move {
            let url = endpoint(&base, &["products", name]);
            self.cluster.get(url, self.cluster.timeouts.request).await
        })
        .await
    }

    /// Every toy, in name order.
    pub async fn products(&self) -> Result<Vec<CatalogProduct>, PeerError> {
        self.products_within(self.cluster.timeouts.request).await
    }

    /// [`Self::products`], giving each replica at most `per_call`: for a caller with
    /// a deadline of its own shorter than the request timeout (the front-end's lease
    /// poll), so that a replica that does not answer is left for the next one before
    /// the caller gives up, rather than asked again by every poll.
    pub async fn products_within(
        &self,
        per_call: Duration,
    ) -> Result<Vec<CatalogProduct>, PeerError> {
        self.on_leader(|base| async move {
            let url = endpoint(&base, &["products"]);
            self.cluster.get(url, per_call).await
        })
        .await
    }

    /// `GET /health` of the current replica (readiness, the restock schedule and,
    /// in a group, its place in it).
    pub async fn health_within(&self, timeout: Duration) -> Result<CatalogHealth, PeerError> {
        let Some(base) = self.current() else {
            return Err(PeerError::Unreachable("no catalog configured".into()));
        };
        self.health_of(base, timeout).await
    }

    /// `GET /health` of the replica at `base`.
    pub async fn health_of(
        &self,
        base: &Url,
        timeout: Duration,
    ) -> Result<CatalogHealth, PeerError> {
        let url = endpoint(base, &["health"]);
        self.cluster.get_bare(url, timeout).await
    }

    /// Many buys in one request (one transaction and one flush in the catalog, or
    /// one log entry in a replicated one), one result per buy, in order.
    pub async fn buy_batch(&self, reqs: &[BuyRequest]) -> Result<Vec<BuyResult>, PeerError> {
        self.on_leader(|base| async move {
            let url = endpoint(&base, &["internal", "buy-batch"]);
            self.cluster
                .post(url, reqs, self.cluster.timeouts.request)
                .await
        })
        .await
    }

    /// Stock accounting totals of the current replica.
    pub async fn totals(&self) -> Result<StockTotals, PeerError> {
        let Some(base) = self.current() else {
            return Err(PeerError::Unreachable("no catalog configured".into()));
        };
        self.totals_of(base).await
    }

    /// Stock accounting totals of the replica at `base` (each answers from its own
    /// applied state).
    pub async fn totals_of(&self, base: &Url) -> Result<StockTotals, PeerError> {
        let url = endpoint(base, &["internal", "totals"]);
        self.cluster.get(url, self.cluster.timeouts.request).await
    }
}

/// The order replicas' API; each call names the replica's base URL.
#[derive(Clone)]
pub struct OrderClient {
    cluster: ClusterClient,
}

impl OrderClient {
    pub fn new(cluster: ClusterClient) -> Self {
        OrderClient { cluster }
    }

    /// Places an order on the leader.
    pub async fn place(&self, replica: &Url, order: &NewOrder) -> Result<OrderAccepted, PeerError> {
        let url = endpoint(replica, &["orders"]);
        self.cluster
            .post(url, order, self.cluster.timeouts.order)
            .await
    }

    /// Reads one order from a replica.
    pub async fn get(&self, replica: &Url, number: OrderNumber) -> Result<OrderView, PeerError> {
        let url = endpoint(replica, &["orders", &number.to_string()]);
        self.cluster.get(url, self.cluster.timeouts.request).await
    }

    /// The replica's health: role, readiness, epoch, last order and digest.
    pub async fn status(&self, replica: &Url) -> Result<ReplicaStatus, PeerError> {
        self.status_within(replica, Duration::from_millis(1000))
            .await
    }

    /// [`OrderClient::status`] with a timeout of the caller's choice.
    pub async fn status_within(
        &self,
        replica: &Url,
        timeout: Duration,
    ) -> Result<ReplicaStatus, PeerError> {
        let url = endpoint(replica, &["health"]);
        self.cluster.get_bare(url, timeout).await
    }

    /// Tells a replica who leads from which epoch on. The replica syncs its history
    /// (from its peers if it is made leader, else from the leader) before it answers,
    /// hence the caller's timeout.
    pub async fn leader_notice(
        &self,
        replica: &Url,
        notice: &LeaderNotice,
        timeout: Duration,
    ) -> Result<ReplicaStatus, PeerError> {
        let url = endpoint(replica, &["internal", "leader"]);
        self.cluster.post(url, notice, timeout).await
    }

    /// Sends a batch of orders to a follower; returns once it has flushed them.
    pub async fn replicate(
        &self,
        replica: &Url,
        batch: &Replicate,
        timeout: Duration,
    ) -> Result<Persisted, PeerError> {
        let url = endpoint(replica, &["internal", "replicate"]);
        self.cluster.post(url, batch, timeout).await
    }

    /// Up to `limit` orders with numbers from `from` on.
    pub async fn log_page(
        &self,
        replica: &Url,
        from: OrderNumber,
        limit: u64,
    ) -> Result<LogPage, PeerError> {
        let mut url = endpoint(replica, &["internal", "log"]);
        url.query_pairs_mut()
            .append_pair("from", &from.to_string())
            .append_pair("limit", &limit.to_string());
        self.cluster.get(url, self.cluster.timeouts.page).await
    }
}

/// The front-end's internal API (cache invalidation).
#[derive(Clone)]
pub struct FrontendClient {
    cluster: ClusterClient,
    base: Url,
}

impl FrontendClient {
    pub fn new(cluster: ClusterClient, base: Url) -> Self {
        FrontendClient { cluster, base }
    }

    /// Where it is reached.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `GET /health`: its leader, cache and what it has served.
    pub async fn health_within(&self, timeout: Duration) -> Result<FrontendHealth, PeerError> {
        let url = endpoint(&self.base, &["health"]);
        self.cluster.get_bare(url, timeout).await
    }

    /// Tells the front-end to drop its cached copies of these toys (one request).
    pub async fn invalidate(&self, inv: &[Invalidation]) -> Result<(), PeerError> {
        let url = endpoint(&self.base, &["internal", "invalidate"]);
        self.cluster
            .post::<_, serde_json::Value>(url, inv, self.cluster.timeouts.request)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_percent_encodes_names() {
        let base = Url::parse("http://127.0.0.1:8081").expect("url");
        let url = endpoint(&base, &["products", "Rubik's Cube"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8081/products/Rubik's%20Cube"
        );
        let url = endpoint(&base, &["products", "a/b?c#d"]);
        assert_eq!(url.as_str(), "http://127.0.0.1:8081/products/a%2Fb%3Fc%23d");
    }
}
