//! What tests ask of a running cluster over HTTP: the public API through the
//! front-end, the services' own endpoints, and the replicas' state.

use std::time::{Duration, Instant};

use common::wire::{CacheStats, CatalogHealth, FrontendHealth, Role, StockTotals};
use serde_json::{json, Value};

use super::Cluster;

impl Cluster {
    /// POST with the cluster token to an internal endpoint: (status, JSON body).
    pub async fn post_internal(&self, service: &str, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url(service)))
            .header(common::TOKEN_HEADER, &self.token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} on {service}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// GET with the cluster token on an internal endpoint: (status, JSON body).
    pub async fn get_internal(&self, service: &str, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url(service)))
            .header(common::TOKEN_HEADER, &self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {service}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// GET on the front-end: (status, JSON body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_from(&self.frontend(), path).await
    }

    /// GET on any service: (status, JSON body).
    pub async fn get_from(&self, service: &str, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url(service)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {service}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POST /orders on the front-end with an optional idempotency key.
    pub async fn order(&self, name: &str, quantity: u64, key: Option<&str>) -> (u16, Value) {
        self.order_via(&self.frontend(), name, quantity, key).await
    }

    /// POST /orders on front-end `frontend` with an optional idempotency key.
    pub async fn order_via(
        &self,
        frontend: &str,
        name: &str,
        quantity: u64,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/orders", self.url(frontend)))
            .json(&json!({"name": name, "quantity": quantity}));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = req.send().await.expect("POST /orders");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POST /orders on the front-end in a task of its own (for orders that wait on a
    /// fault): its (status, JSON body) when it ends.
    pub fn order_in_background(
        &self,
        name: &str,
        quantity: u64,
    ) -> tokio::task::JoinHandle<(u16, Value)> {
        self.order_in_background_via(&self.frontend(), name, quantity, None)
    }

    /// POST /orders, with `key` if given, on front-end `frontend`, in a task of its
    /// own.
    pub fn order_in_background_via(
        &self,
        frontend: &str,
        name: &str,
        quantity: u64,
        key: Option<&str>,
    ) -> tokio::task::JoinHandle<(u16, Value)> {
        let mut req = self
            .http
            .post(format!("{}/orders", self.url(frontend)))
            .json(&json!({"name": name, "quantity": quantity}));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        tokio::spawn(async move {
            let resp = req.send().await.expect("POST /orders");
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        })
    }

    /// Places an order that must succeed; returns its number.
    pub async fn order_ok(&self, name: &str, quantity: u64) -> u64 {
        let (status, body) = self.order(name, quantity, None).await;
        assert_eq!(status, 200, "order failed: {body}");
        body["data"]["order_number"].as_u64().expect("order number")
    }

    /// The quantity of a toy, read through the front-end.
    pub async fn quantity(&self, name: &str) -> u64 {
        let (status, body) = self.get(&format!("/products/{name}")).await;
        assert_eq!(status, 200, "lookup of {name} failed: {body}");
        body["data"]["quantity"].as_u64().expect("quantity")
    }

    /// The quantity of a toy, read from the catalog itself (from the replica that
    /// leads, in a replicated catalog: the others answer 421).
    pub async fn catalog_quantity(&self, name: &str) -> u64 {
        let mut last = Vec::new();
        for catalog in self.running_catalogs() {
            let (status, body) = self.get_from(&catalog, &format!("/products/{name}")).await;
            if status == 200 {
                return body["data"]["quantity"].as_u64().expect("quantity");
            }
            last.push((catalog, status, body));
        }
        panic!("no catalog answered the lookup of {name}: {last:?}");
    }

    /// The front-end's `GET /health`, typed.
    pub async fn frontend_health(&self) -> FrontendHealth {
        self.frontend_health_of(&self.frontend()).await
    }

    /// Front-end `frontend`'s `GET /health`, typed.
    pub async fn frontend_health_of(&self, frontend: &str) -> FrontendHealth {
        let url = format!("{}/health", self.url(frontend));
        let resp = self.http.get(url).send().await.expect("GET /health");
        resp.json().await.expect("the front-end's health body")
    }

    /// The front-end's cache figures.
    pub async fn cache_stats(&self) -> CacheStats {
        self.frontend_health().await.cache
    }

    /// The leader the front-end uses now (waits up to 10 s for it to know one).
    pub async fn leader(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = self.frontend_health().await.leader {
                return id.get();
            }
            assert!(Instant::now() < deadline, "the front-end knows no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A replica that is not the front-end's leader.
    pub async fn follower(&self) -> u32 {
        let leader = self.leader().await;
        (1..=self.opts.replicas)
            .find(|id| *id != leader)
            .expect("a follower")
    }

    /// `GET /health` of replica `id`.
    pub async fn replica(&self, id: u32) -> Value {
        self.get_from(&format!("order{id}"), "/health").await.1
    }

    /// Waits until every running replica is ready and all report the same digest and
    /// last order; returns that digest.
    pub async fn converged(&mut self) -> String {
        let ids: Vec<u32> = (1..=self.opts.replicas)
            .filter(|i| self.children.contains_key(&format!("order{i}")))
            .collect();
        let mut last = Vec::new();
        for _ in 0..200 {
            last.clear();
            for &id in &ids {
                last.push(self.replica(id).await);
            }
            let first = &last[0];
            if last.iter().all(|s| {
                s["ready"] == json!(true)
                    && s["digest"] == first["digest"]
                    && s["last_order"] == first["last_order"]
                    && s["orders"] == first["orders"]
            }) {
                return first["digest"].as_str().unwrap_or_default().to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("replicas did not converge: {last:#?}");
    }
}

impl Cluster {
    /// `GET /health` of catalog replica `name`, if it answers.
    pub async fn catalog_health(&self, name: &str) -> Option<CatalogHealth> {
        let url = format!("{}/health", self.url(name));
        // A paused replica answers nothing: do not wait for it long.
        let asked = self.http.get(url).timeout(Duration::from_secs(1)).send();
        let resp = asked.await.ok()?;
        resp.json().await.ok()
    }

    /// The running catalog replica that leads, once one does (waits up to 10 s); the
    /// single catalog.
    pub async fn catalog_leader(&self) -> String {
        if let [single] = self.catalogs().as_slice() {
            if self
                .topology
                .service(single)
                .is_ok_and(|s| s.replica.is_none())
            {
                return single.clone();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for name in self.running_catalogs() {
                let health = self.catalog_health(&name).await;
                if health
                    .and_then(|h| h.group)
                    .is_some_and(|g| g.role == Role::Leader)
                {
                    return name;
                }
            }
            assert!(Instant::now() < deadline, "no catalog replica leads");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The stock totals of catalog (replica) `name` (its own applied state).
    pub async fn catalog_totals(&self, name: &str) -> StockTotals {
        let resp = self
            .http
            .get(format!("{}/internal/totals", self.url(name)))
            .header(common::TOKEN_HEADER, &self.token)
            .send()
            .await
            .expect("GET /internal/totals");
        let body: serde_json::Value = resp.json().await.expect("totals body");
        serde_json::from_value(body["data"].clone()).expect("totals")
    }

    /// Waits until the running catalog replicas report one digest; returns it.
    pub async fn catalogs_converged(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut digests = Vec::new();
            for name in self.running_catalogs() {
                match self.catalog_health(&name).await {
                    Some(h) if h.ready => digests.push(h.digest),
                    other => digests.push(format!("{name} not ready: {other:?}")),
                }
            }
            if digests.windows(2).all(|w| w[0] == w[1]) {
                return digests.pop().unwrap_or_default();
            }
            assert!(
                Instant::now() < deadline,
                "catalog replicas did not converge: {digests:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Crashes the catalog, or every catalog replica (SIGKILL).
    pub fn kill_catalogs(&mut self) {
        for name in self.running_catalogs() {
            self.kill(&name);
        }
    }

    /// Starts the catalog, or every catalog replica, and waits until each is healthy.
    pub async fn start_catalogs(&mut self) {
        let names = self.catalogs();
        for name in &names {
            self.spawn(name);
        }
        for name in &names {
            self.wait_healthy(name).await;
        }
    }

    /// Whether any catalog (replica) has logged `text`.
    pub fn catalog_logged(&self, text: &str) -> bool {
        self.catalogs()
            .iter()
            .any(|name| self.log_text(name).contains(text))
    }
}
