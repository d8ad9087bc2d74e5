//! Idempotency keys are kept for a window (`--key-retention`), then forgotten: a retry
//! within it is the first order, one after it a new order that takes stock again, and
//! no order is ever written without its stock.

use std::time::{Duration, Instant};

use common::wire::Replication;
use serde_json::Value;

use crate::helpers::{eventually, in_both_modes, Cluster, Options};

in_both_modes!(
    keys_are_kept_for_their_window_and_then_make_new_orders,
    a_catalog_that_keeps_keys_longer_never_lets_an_order_skip_its_stock,
);

/// The catalog's window; the replicas keep keys twice as long (window plus margin).
const WINDOW: Duration = Duration::from_secs(3);

async fn keys_are_kept_for_their_window_and_then_make_new_orders(mode: Replication) {
    let mut cluster = Cluster::start(Options {
        key_retention: Some("3s"),
        ..Options::in_mode(mode)
    })
    .await;
    let number = |body: &Value| body["data"]["order_number"].as_u64();

    // Within the window: the same order, and a different order under the key is 422.
    let (status, first) = cluster.order("Tux", 1, Some("k")).await;
    assert_eq!(status, 200, "{first}");
    let placed = Instant::now();
    let (_, again) = cluster.order("Tux", 1, Some("k")).await;
    assert_eq!(number(&again), number(&first), "{again}");
    let (status, other) = cluster.order("Tux", 2, Some("k")).await;
    assert_eq!(status, 422, "{other}");
    assert_eq!(cluster.catalog_quantity("Tux").await, 99);

    // After the catalog's window (the replicas still hold the key): a new order, whose
    // stock the catalog takes again; retries of it are that order.
    tokio::time::sleep((placed + WINDOW + Duration::from_millis(300)) - Instant::now()).await;
    let (status, second) = cluster.order("Tux", 1, Some("k")).await;
    assert_eq!(status, 200, "{second}");
    let renewed = Instant::now();
    assert_ne!(number(&second), number(&first), "{second}");
    assert_eq!(cluster.catalog_quantity("Tux").await, 98);
    let (_, again) = cluster.order("Tux", 1, Some("k")).await;
    assert_eq!(number(&again), number(&second), "{again}");

    // With the catalog down, a held key is still answered (the buyer tries the catalog
    // for about 3 s first)...
    cluster.kill("catalog");
    let (status, held) = cluster.order("Tux", 1, Some("k")).await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(number(&held), number(&second));
    // ...but not if the replicas forget it meanwhile: sent 1.5 s before they do, this
    // one is held when it arrives and expired when the writer gets it. It must be
    // refused, not written without its stock.
    let forgotten = renewed + 2 * WINDOW;
    tokio::time::sleep((forgotten - Duration::from_millis(1500)) - Instant::now()).await;
    let (status, refused) = cluster.order("Tux", 1, Some("k")).await;
    assert_eq!(status, 503, "{refused}");
    assert!(Instant::now() > forgotten);
    cluster.start_service("catalog").await;
    let (status, third) = cluster.order("Tux", 1, Some("k")).await;
    assert_eq!(status, 200, "{third}");
    assert!(number(&third) > number(&second), "{third}");
    assert_eq!(cluster.catalog_quantity("Tux").await, 97);

    // Every replica holds the same three orders, and the pruners have run.
    cluster.converged().await;
    let leader = cluster.leader().await;
    assert_eq!(cluster.replica(leader).await["orders"], 3);
    for service in ["catalog".to_string(), format!("order{leader}")] {
        let pruned = eventually(Duration::from_secs(5), || async {
            expired_keys(&cluster, &service).await > 0.0
        })
        .await;
        assert!(pruned, "{service} dropped no expired key");
    }
}

/// `idempotency_keys_expired_total` of `service` (0 before its first prune).
async fn expired_keys(cluster: &Cluster, service: &str) -> f64 {
    let text = crate::metrics::scrape(cluster, service).await;
    crate::metrics::sum(&text, "idempotency_keys_expired_total", &[])
}

/// The replicas' window is what a client sees; a catalog configured to keep keys
/// longer must not answer "bought before" for a key the replicas have forgotten, or the
/// new order would be stored without its stock being taken.
async fn a_catalog_that_keeps_keys_longer_never_lets_an_order_skip_its_stock(mode: Replication) {
    let mut cluster = Cluster::new(Options {
        key_retention: Some("1s"),
        ..Options::in_mode(mode)
    });
    cluster.set_env("catalog", "TOYSTORE_KEY_RETENTION", "1h");
    cluster.start_all().await;
    let number = |body: &Value| body["data"]["order_number"].as_u64();
    let (status, first) = cluster.order("Tux", 1, Some("k")).await;
    assert_eq!(status, 200, "{first}");
    // The replicas keep the key for 2 s (1 s and as long again).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, second) = cluster.order("Tux", 1, Some("k")).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(number(&second), number(&first), "{second}");
    // Two orders, two units taken.
    assert_eq!(cluster.catalog_quantity("Tux").await, 98);
    cluster.converged().await;
}
