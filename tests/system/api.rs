//! The public API when the services behind the front-end are gone: 503 in the
//! contract's error shape, and nothing changed. (The contract's rules that need no
//! crash — shapes, errors, idempotency, tokens — are tested in-process, in
//! tests/handlers.)

use std::time::Duration;

use common::wire::Replication;
use serde_json::json;

use crate::helpers::{in_both_modes, Cluster, Options};

// Every test here runs in both replication modes.
in_both_modes!(unreachable_services_give_503);

async fn unreachable_services_give_503(mode: Replication) {
    let mut cluster = Cluster::start(Options {
        replicas: 1,
        failover_ms: 1_000,
        ..Options::in_mode(mode)
    })
    .await;
    cluster.kill("catalog");
    let (status, body) = cluster.get("/products/Slinky").await;
    assert_eq!((status, &body["error"]["code"]), (503, &json!(503)));
    let (status, body) = cluster.order("Slinky", 1, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!(503)),
        "{body}"
    );

    // The leader keeps trying to buy for 3 s after the front-end gave up (and would
    // then place the order: stock it asked for must become an order); the catalog
    // comes back only after that, so this order was never placed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_service("catalog").await;
    cluster.kill("order1");
    let (status, body) = cluster.order("Slinky", 1, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!(503)),
        "{body}"
    );
    let (status, _) = cluster.get("/orders/0").await;
    assert_eq!(status, 503);
    assert_eq!(cluster.catalog_quantity("Slinky").await, 100);
}
