//! The front-end cache: LRU, hits and misses, and coherence with the catalog.

use std::time::Duration;

use common::wire::Replication;
use serde_json::{json, Value};

use crate::helpers::{eventually, in_both_modes, Cluster, Options};

// Every test here runs in both replication modes.
in_both_modes!(
    repeated_lookups_hit_and_the_least_recently_used_toy_is_evicted,
    an_order_shows_at_once_and_a_restock_within_its_period,
    a_lookup_racing_an_invalidation_does_not_cache_the_old_quantity,
    with_the_cache_off_every_lookup_reaches_the_catalog,
);

/// The invalidation count once it has stopped changing for a while.
async fn settled_invalidations(cluster: &Cluster) -> u64 {
    let mut last = u64::MAX;
    let mut same = 0;
    while same < 8 {
        let now = cluster.cache_stats().await.invalidations;
        same = if now == last { same + 1 } else { 0 };
        last = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

async fn repeated_lookups_hit_and_the_least_recently_used_toy_is_evicted(mode: Replication) {
    let cluster = Cluster::start(Options {
        replicas: 1,
        cache_capacity: 3,
        ..Options::in_mode(mode)
    })
    .await;
    for _ in 0..3 {
        cluster.quantity("Tux").await;
    }
    let s = cluster.cache_stats().await;
    assert_eq!((s.hits, s.misses), (2, 1));

    for toy in ["Fox", "Whale"] {
        cluster.quantity(toy).await;
    }
    cluster.quantity("Tux").await; // Tux is now the most recently used
    cluster.quantity("Dolphin").await; // evicts Fox, the least recently used
    let s = cluster.cache_stats().await;
    assert_eq!((s.size, s.evictions), (3, 1));
    let misses = s.misses;
    cluster.quantity("Tux").await;
    assert_eq!(
        cluster.cache_stats().await.misses,
        misses,
        "Tux stayed cached"
    );
    cluster.quantity("Fox").await;
    assert_eq!(
        cluster.cache_stats().await.misses,
        misses + 1,
        "Fox was evicted"
    );

    for toy in ["LEGO", "Uno", "Clue", "Chess", "Bubbles", "Slinky"] {
        cluster.quantity(toy).await;
        assert!(cluster.cache_stats().await.size <= 3);
    }
}

async fn an_order_shows_at_once_and_a_restock_within_its_period(mode: Replication) {
    let cluster = Cluster::start(Options {
        replicas: 1,
        initial_stock: 4,
        restock_amount: 9,
        restock_period_ms: 500,
        ..Options::in_mode(mode)
    })
    .await;
    assert_eq!(cluster.quantity("Clue").await, 4);
    cluster.order_ok("Clue", 1).await;
    assert_eq!(
        cluster.quantity("Clue").await,
        3,
        "the ordering client sees its order at once"
    );
    cluster.order_ok("Clue", 3).await;
    assert_eq!(cluster.quantity("Clue").await, 0);
    assert!(
        eventually(Duration::from_millis(500 + 1_500), || async {
            cluster.quantity("Clue").await == 9
        })
        .await,
        "the restock reached the front-end's cache"
    );
}

async fn a_lookup_racing_an_invalidation_does_not_cache_the_old_quantity(mode: Replication) {
    // Every cache fill waits 700 ms after reading the catalog, so a stock change can
    // land in between, deterministically.
    let cluster = Cluster::start(Options {
        replicas: 1,
        fill_delay_ms: 700,
        ..Options::in_mode(mode)
    })
    .await;
    // The catalog announces every toy once at start; wait until those have arrived.
    let before = settled_invalidations(&cluster).await;
    let slow_lookup = {
        let (http, url) = (
            cluster.http.clone(),
            cluster.url("frontend") + "/products/Slinky",
        );
        tokio::spawn(async move {
            http.get(url)
                .send()
                .await
                .expect("GET")
                .json::<Value>()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another front-end's order, straight at the catalog: only the pushed
    // invalidation can tell this front-end about it.
    let resp = cluster
        .http
        .post(cluster.url("catalog") + "/internal/buy")
        .header(common::TOKEN_HEADER, &cluster.token)
        .json(&json!({"name": "Slinky", "quantity": 5, "key": "elsewhere-1"}))
        .send()
        .await
        .expect("buy");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        eventually(Duration::from_secs(2), || async {
            cluster.cache_stats().await.invalidations > before
        })
        .await,
        "the invalidation arrived while the lookup was still filling"
    );
    let old = slow_lookup.await.expect("join").expect("json");
    assert_eq!(
        old["data"]["quantity"],
        json!(100),
        "the racing lookup read before the buy"
    );
    assert_eq!(
        cluster.cache_stats().await.size,
        0,
        "its stale value was not cached"
    );
    assert_eq!(cluster.quantity("Slinky").await, 95);
    assert_eq!(cluster.quantity("Slinky").await, 95);
}

async fn with_the_cache_off_every_lookup_reaches_the_catalog(mode: Replication) {
    let cluster = Cluster::start(Options {
        replicas: 1,
        cache: false,
        ..Options::in_mode(mode)
    })
    .await;
    for _ in 0..5 {
        cluster.quantity("Hot Wheels").await;
    }
    let s = cluster.cache_stats().await;
    assert!(!s.enabled);
    assert_eq!((s.hits, s.misses, s.size), (0, 5, 0));
}

/// `GET /cache`: the entries in LRU order and the journal of what happened to them.
#[tokio::test]
async fn the_cache_view_shows_lru_order_and_the_journal() {
    let cluster = Cluster::start(Options::default()).await;
    for toy in ["Tux", "Fox", "Tux"] {
        cluster.quantity(toy).await;
    }
    let (status, view) = cluster.get("/cache").await;
    assert_eq!(status, 200, "{view}");
    let names: Vec<&str> = view["data"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["tux", "fox"], "most recently used first: {view}");

    cluster.order_ok("Fox", 1).await;
    let next = view["data"]["next"].as_u64().expect("next");
    let (_, newer) = cluster.get(&format!("/cache?after={next}")).await;
    let events: Vec<(&str, &str)> = newer["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| Some((e["kind"].as_str()?, e["name"].as_str()?)))
        .collect();
    assert_eq!(events, [("invalidated", "fox")], "{newer}");
    let (status, _) = cluster.get("/cache?after=-1").await;
    assert_eq!(status, 400);
}
