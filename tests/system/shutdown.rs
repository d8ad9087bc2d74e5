//! Graceful shutdown: SIGTERM stops every service while clients are ordering and
//! dashboard viewers are connected, and every background task ends on its own (none
//! is left to the shutdown deadline, which would log "did not stop in time"). The
//! front-end's open dashboard streams end with it: graceful shutdown waits for open
//! responses, so a stream that did not end would keep the front-end running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::wire::Replication;
use serde_json::json;

use crate::helpers::{in_both_modes, Cluster, Options};

in_both_modes!(every_service_stops_on_sigterm_under_load_with_viewers);

/// The line each service logs once it has stopped every task and flushed.
const STOPPED: [(&str, &str); 5] = [
    ("frontend", "front-end stopped"),
    ("order1", "order replica stopped"),
    ("order2", "order replica stopped"),
    ("order3", "order replica stopped"),
    ("catalog", "catalog stopped"),
];

async fn every_service_stops_on_sigterm_under_load_with_viewers(mode: Replication) {
    let mut cluster = Cluster::start(Options::in_mode(mode)).await;
    let base = cluster.url("frontend");
    let mut viewers = Vec::new();
    for _ in 0..2 {
        let mut stream = cluster
            .http
            .get(format!("{base}/dashboard/events"))
            .send()
            .await
            .expect("GET /dashboard/events");
        let first = tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await;
        assert!(matches!(first, Ok(Ok(Some(_)))), "no first dashboard event");
        viewers.push(stream);
    }
    let ordering = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (http, url, ordering) = (
            cluster.http.clone(),
            format!("{base}/orders"),
            ordering.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut placed = 0u32;
            while ordering.load(Ordering::SeqCst) {
                let sent = http.post(&url).json(&json!({"name": "Tux", "quantity": 1}));
                match sent.send().await {
                    Ok(r) if r.status().is_success() => placed += 1,
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            placed
        }));
    }
    // Orders are flowing before anything stops.
    tokio::time::sleep(Duration::from_millis(500)).await;

    for (service, _) in STOPPED {
        cluster.terminate(service);
    }
    for (service, _) in STOPPED {
        cluster.wait_exit(service, Duration::from_secs(15)).await;
    }
    ordering.store(false, Ordering::SeqCst);
    let mut placed = 0;
    for client in clients {
        placed += client.await.expect("client task");
    }
    assert!(placed > 0, "no order was placed before the shutdown");
    for (service, stopped) in STOPPED {
        let log = cluster.log_text(service);
        assert!(
            log.contains(stopped),
            "{service} did not finish its shutdown:\n{}",
            cluster.log_tail(service)
        );
        assert!(
            !log.contains("did not stop in time"),
            "{service} left a background task to the deadline:\n{}",
            cluster.log_tail(service)
        );
    }
    for mut viewer in viewers {
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(Some(_)) = viewer.chunk().await {}
        })
        .await;
        assert!(end.is_ok(), "a dashboard stream outlived the front-end");
    }
}
