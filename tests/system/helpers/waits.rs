//! Waiting, boundedly: for a service to be healthy, or for any condition.

use std::future::Future;
use std::time::{Duration, Instant};

use common::wire::{CatalogHealth, FrontendHealth, ReplicaStatus};

use super::Cluster;

impl Cluster {
    /// Waits until `service` answers its health check as healthy.
    pub async fn wait_healthy(&mut self, service: &str) {
        let url = format!("{}/health", self.url(service));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(resp) = self.http.get(&url).send().await {
                let ok = match service {
                    // Ready to serve when it has a leader and has heard from the
                    // catalog (its cache lease is current).
                    "frontend" => resp.json::<FrontendHealth>().await.is_ok_and(|h| {
                        (h.leader.is_some() || self.opts.replicas == 0) && h.cache.leased
                    }),
                    "catalog" => resp.json::<CatalogHealth>().await.is_ok_and(|h| h.ready),
                    _ => resp.json::<ReplicaStatus>().await.is_ok_and(|s| s.ready),
                };
                if ok {
                    return;
                }
            }
            assert!(self.is_running(service), "{service} exited during start-up");
            assert!(
                Instant::now() < deadline,
                "{service} did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `check` until it returns true or `timeout` passes; returns whether it did.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
