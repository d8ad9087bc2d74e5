//! Waiting, boundedly: for a service to be healthy, or for any condition.

use std::future::Future;
use std::time::{Duration, Instant};

use super::Cluster;

impl Cluster {
    /// Waits until `service` answers its health check as healthy.
    pub async fn wait_healthy(&mut self, service: &str) {
        let url = format!("{}/health", self.url(service));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let kind = self.topology.service(service).map(|s| s.kind);
            if let (Ok(resp), Ok(kind)) = (self.http.get(&url).send().await, kind) {
                if resp.text().await.is_ok_and(|body| kind.healthy(&body)) {
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
