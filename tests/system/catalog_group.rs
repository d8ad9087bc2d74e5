//! A replicated catalog (three catalog replicas in a Raft group): eight clients order
//! and look up through the loss of its leader without a failure, no stock change is
//! lost or made twice, the replicas end with the same stock, and with two of them
//! down orders get 503 until one is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::wire::Replication;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::helpers::{eventually, in_both_modes, Cluster, Options};

in_both_modes!(orders_flow_through_the_loss_of_the_catalog_leader);

/// Eight clients look toys up and order them, each order with a key of its own,
/// until `stop`; each answers the units it ordered and every failure it saw.
fn load(cluster: &Cluster, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<(u64, Vec<String>)>> {
    const TOYS: [&str; 4] = ["Tux", "Fox", "Uno", "Chess"];
    (0..8)
        .map(|client| {
            let (http, base, stop) = (cluster.http.clone(), cluster.url("frontend"), stop.clone());
            tokio::spawn(async move {
                let (mut units, mut failures) = (0, Vec::new());
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let toy = TOYS[(client + i) % TOYS.len()];
                    let looked = http.get(format!("{base}/products/{toy}")).send().await;
                    match looked.map(|r| r.status().as_u16()) {
                        Ok(200) => {}
                        other => failures.push(format!("lookup of {toy}: {other:?}")),
                    }
                    let ordered = http
                        .post(format!("{base}/orders"))
                        .header("idempotency-key", format!("load-{client}-{i}"))
                        .json(&json!({"name": toy, "quantity": 1}))
                        .send()
                        .await;
                    match ordered.map(|r| r.status().as_u16()) {
                        Ok(200) => units += 1,
                        other => failures.push(format!("order of {toy}: {other:?}")),
                    }
                    i += 1;
                }
                (units, failures)
            })
        })
        .collect()
}

async fn orders_flow_through_the_loss_of_the_catalog_leader(mode: Replication) {
    let mut cluster = Cluster::start(Options {
        catalog_replicas: 3,
        initial_stock: 1_000_000,
        failover_ms: 8_000,
        ..Options::in_mode(mode)
    })
    .await;

    // The leader crashes while clients order and look up: none sees a failure.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&cluster, &stop);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leader = cluster.catalog_leader().await;
    cluster.kill(&leader);
    let killed = Instant::now();
    let new_leader = cluster.catalog_leader().await;
    assert_ne!(new_leader, leader);
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "no new catalog leader within 5 s"
    );
    // Its first act toward the front-end: every toy's version, so nothing its
    // predecessor failed to push stays cached.
    let announced = crate::helpers::eventually(Duration::from_secs(5), || async {
        cluster
            .log_text(&new_leader)
            .contains("leading: announced every toy's version")
    })
    .await;
    assert!(announced, "{new_leader} did not announce the versions");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut units = 0;
    for client in clients {
        let (ordered, failures) = client.await.expect("client task");
        assert!(failures.is_empty(), "clients saw failures: {failures:?}");
        units += ordered;
    }
    assert!(units > 0, "no order was placed");

    // The two left hold the same stock, and it adds up: every unit sold is in an
    // order, nothing was taken twice.
    let digest = cluster.catalogs_converged().await;
    for name in cluster.catalogs() {
        if name == leader {
            continue;
        }
        let t = cluster.catalog_totals(&name).await;
        assert_eq!(t.initial + t.restocked - t.sold, t.current, "{name}: {t:?}");
        assert_eq!(t.sold, units, "{name} sold what the orders hold");
    }
    // The crashed leader comes back, and reports ready only once it has caught up
    // (it restarts believing it still leads, with its own vote of the old term).
    cluster.start_service(&leader).await;
    let back = cluster.catalog_health(&leader).await.map(|h| h.digest);
    assert_eq!(
        back.as_deref(),
        Some(digest.as_str()),
        "{leader} reported ready before it caught up"
    );

    // Two replicas down: no majority, orders get 503 and take nothing.
    let others: Vec<String> = cluster
        .catalogs()
        .into_iter()
        .filter(|c| *c != leader)
        .collect();
    for name in &others {
        cluster.kill(name);
    }
    let (status, body) = cluster.order("Tux", 1, Some("no-majority")).await;
    assert_eq!(status, 503, "{body}");
    // One back: a majority again, and orders flow. The refused order, sent again
    // with its key, is placed once: its buy may have reached the lone replica's log
    // and been committed since, and then it is not taken a second time.
    cluster.start_service(&others[0]).await;
    let (status, body) = cluster.order("Tux", 1, Some("no-majority")).await;
    assert_eq!(status, 200, "{body}");
    cluster.order_ok("Tux", 1).await;
    units += 2;
    let leader = cluster.catalog_leader().await;
    let t = cluster.catalog_totals(&leader).await;
    assert_eq!(t.sold, units, "each order took its stock once: {t:?}");
}

/// What the catalog group does is the same in either order mode; this runs in one.
#[tokio::test]
async fn a_catalog_replica_far_behind_catches_up_from_a_snapshot_and_restocks_go_on() {
    let mut cluster = Cluster::new(Options {
        replicas: 1,
        catalog_replicas: 3,
        initial_stock: 3,
        restock_amount: 10,
        restock_period_ms: 300,
        ..Options::default()
    });
    // A snapshot every few entries, so a replica that misses a few needs one.
    for name in cluster.catalogs() {
        cluster.set_env(&name, "CATALOG_RAFT_SNAPSHOT_ENTRIES", "3");
    }
    cluster.start_all().await;
    let leader = cluster.catalog_leader().await;
    let behind = cluster
        .catalogs()
        .into_iter()
        .find(|c| *c != leader)
        .unwrap_or_default();
    cluster.kill(&behind);

    // Sell Tux out and wait for the group to restock it, then sell more.
    cluster.order_ok("Tux", 3).await;
    let mut sold = 3;
    let restocked = crate::helpers::eventually(Duration::from_secs(10), || async {
        cluster.catalog_quantity("Tux").await == 10
    })
    .await;
    assert!(restocked, "Tux was not restocked");
    for toy in ["Fox", "Uno", "Chess", "Clue", "Tux", "Fox", "Uno", "Chess"] {
        cluster.order_ok(toy, 1).await;
        sold += 1;
    }

    // The leader crashes too: the third replica leads, with the one that was behind.
    cluster.start_service(&behind).await;
    let digest = cluster.catalogs_converged().await;
    assert!(
        cluster
            .log_text(&behind)
            .contains("installed a catalog snapshot"),
        "{behind} caught up without a snapshot"
    );
    cluster.kill(&leader);
    cluster.order_ok("Whale", 3).await;
    sold += 3;
    let restocked = crate::helpers::eventually(Duration::from_secs(10), || async {
        cluster.catalog_quantity("Whale").await == 10
    })
    .await;
    assert!(
        restocked,
        "Whale was not restocked after the leader changed"
    );
    assert_ne!(cluster.catalogs_converged().await, digest);

    for name in cluster.running_catalogs() {
        let t = cluster.catalog_totals(&name).await;
        assert_eq!(t.initial + t.restocked - t.sold, t.current, "{name}: {t:?}");
        assert_eq!(t.sold, sold, "{name}: {t:?}");
        assert_eq!(t.restocked % 10, 0, "whole rounds only: {t:?}");
    }
}

/// SIGSTOP of the catalog leader: orders go on through a new leader, and the resumed
/// ex-leader, which still believes it leads, takes nothing of what reaches it (the
/// requests its clients gave up on) and catches up.
#[tokio::test]
async fn a_paused_catalog_leader_is_replaced_and_takes_nothing_once_resumed() {
    let cluster = Cluster::start(Options {
        replicas: 1,
        catalog_replicas: 3,
        failover_ms: 8_000,
        ..Options::default()
    })
    .await;
    cluster.order_ok("Tux", 1).await;
    let leader = cluster.catalog_leader().await;
    cluster.pause(&leader);
    let paused = std::time::Instant::now();
    let mut units = 1;
    for _ in 0..5 {
        cluster.order_ok("Fox", 1).await;
        units += 1;
    }
    let new_leader = cluster.catalog_leader().await;
    assert_ne!(new_leader, leader);
    // The front-end's lease poll leaves the stalled leader within a poll, so once the
    // lease held before the stall has surely run out (2 s), the front-end holds one
    // again, from the new leader, while the old one is still stalled.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(paused.elapsed())).await;
    let leased = eventually(Duration::from_secs(4), || async {
        cluster.frontend_health().await.cache.leased
    })
    .await;
    assert!(
        leased && paused.elapsed() < Duration::from_secs(10),
        "no lease from the new leader {new_leader} while {leader} was stalled"
    );
    // Stalled for 10 s in all: many election timeouts and request timeouts.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(paused.elapsed())).await;
    cluster.resume(&leader);

    cluster.order_ok("Tux", 1).await;
    units += 1;
    cluster.catalogs_converged().await;
    for name in cluster.catalogs() {
        let t = cluster.catalog_totals(&name).await;
        assert_eq!(
            t.sold, units,
            "{name}: every order took its stock once: {t:?}"
        );
        assert_eq!(t.initial + t.restocked - t.sold, t.current, "{name}: {t:?}");
    }
}

/// `--rebuild` of a catalog replica: its directory is set aside, it rejoins the group
/// as a learner, takes a snapshot, and votes again: with the leader then gone, its
/// vote and the third replica's elect the next leader, and the stock adds up.
#[tokio::test]
async fn a_rebuilt_catalog_replica_takes_a_snapshot_and_votes_again() {
    let mut cluster = Cluster::new(Options {
        replicas: 1,
        catalog_replicas: 3,
        ..Options::default()
    });
    for name in cluster.catalogs() {
        cluster.set_env(&name, "CATALOG_RAFT_SNAPSHOT_ENTRIES", "3");
    }
    cluster.start_all().await;
    let leader = cluster.catalog_leader().await;
    let rebuilt = cluster
        .catalogs()
        .into_iter()
        .find(|c| *c != leader)
        .unwrap_or_default();
    let mut sold = 0;
    for toy in ["Tux", "Fox", "Uno", "Chess", "Clue"] {
        cluster.order_ok(toy, 1).await;
        sold += 1;
    }

    cluster.kill(&rebuilt);
    cluster.set_env(&rebuilt, "CATALOG_REBUILD", "true");
    cluster.start_service(&rebuilt).await;
    cluster.clear_env(&rebuilt);
    cluster.catalogs_converged().await;
    let log = cluster.log_text(&rebuilt);
    assert!(
        log.contains("installed a catalog snapshot") && log.contains("rebuilt: a voting member"),
        "{rebuilt} did not rejoin through a snapshot:\n{}",
        cluster.log_tail(&rebuilt)
    );
    assert!(
        cluster.set_aside(&rebuilt),
        "the old directory was not kept"
    );

    cluster.kill(&leader);
    for toy in ["Whale", "Tux"] {
        cluster.order_ok(toy, 1).await;
        sold += 1;
    }
    cluster.catalogs_converged().await;
    for name in cluster.running_catalogs() {
        let t = cluster.catalog_totals(&name).await;
        assert_eq!(t.initial + t.restocked - t.sold, t.current, "{name}: {t:?}");
        assert_eq!(t.sold, sold, "{name}: {t:?}");
    }
}
