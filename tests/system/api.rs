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

/// A catalog whose stock totals could overflow (24 toys at 10^18 units each) refuses
/// to start, naming the setting, and seeds nothing.
#[tokio::test]
async fn a_catalog_whose_totals_could_overflow_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(crate::helpers::bin_dir().join("catalog"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--initial-stock",
            "1000000000000000000",
        ])
        .arg("--seed-file")
        .arg(root.join("data/toys.json"))
        .arg("--data-dir")
        .arg(dir.path().join("catalog"))
        .env("TOYSTORE_CLUSTER_TOKEN", "test-token")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run the catalog");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "it started:\n{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("CATALOG_INITIAL_STOCK (1000000000000000000)"),
        "{stdout}{stderr}"
    );
}
