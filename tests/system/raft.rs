//! Raft mode's own promises: a stalled leader is replaced by an election and, when it
//! resumes, acknowledges nothing; without a majority nothing is acknowledged and
//! orders answer 503, and they flow again when a majority is back; a replica too far
//! behind for the log catches up by snapshot. (Partitions are in the multi-host chaos
//! test, `chaos::a_short_multi_host_chaos_run_passes_every_check`.)

use std::time::{Duration, Instant};

use common::wire::Replication;
use serde_json::json;

use crate::helpers::{Cluster, Options};

fn raft() -> Options {
    Options::in_mode(Replication::Raft)
}

#[tokio::test]
async fn a_paused_leader_is_replaced_within_3_s_and_acknowledges_nothing_after_it_resumes() {
    let mut cluster = Cluster::start(raft()).await;
    let first = cluster.order_ok("Tux", 1).await;
    let leader = cluster.leader().await;
    let name = format!("order{leader}");

    cluster.pause(&name);
    let paused = Instant::now();
    let second = cluster.order_ok("Tux", 1).await;
    assert!(
        paused.elapsed() < Duration::from_secs(3),
        "no order for {:?} after the leader stalled",
        paused.elapsed()
    );
    assert_eq!(second, first + 1);
    assert_ne!(cluster.leader().await, leader);

    cluster.resume(&name);
    // The ex-leader still believes it leads until it hears the new term; whatever it
    // does with an order sent straight to it, it cannot acknowledge it.
    let (status, body) = cluster
        .post_internal(
            &name,
            "/orders",
            &json!({"name": "Tux", "quantity": 1, "key": "after-resume"}),
        )
        .await;
    assert!(
        status == 421 || status == 503,
        "the resumed ex-leader answered an order: {status} {body}"
    );
    cluster.converged().await;
    assert_eq!(cluster.replica(leader).await["role"], json!("follower"));
    assert_eq!(cluster.replica(leader).await["orders"], json!(2));
}

#[tokio::test]
async fn without_a_majority_orders_get_503_and_flow_again_when_one_is_back() {
    let mut cluster = Cluster::start(Options {
        failover_ms: 3_000,
        ..raft()
    })
    .await;
    cluster.order_ok("Fox", 1).await;
    let leader = cluster.leader().await;
    let followers: Vec<u32> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        cluster.kill(&format!("order{id}"));
    }

    let asked = Instant::now();
    let (status, body) = cluster.order("Fox", 1, Some("no-majority")).await;
    assert_eq!(status, 503, "an order without a majority: {body}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the 503 took {:?}",
        asked.elapsed()
    );
    assert_eq!(
        cluster.replica(leader).await["orders"],
        json!(1),
        "nothing is applied without a majority"
    );

    // One follower back: a majority again. The client's retry (same key) succeeds,
    // and the stock was taken once.
    cluster
        .start_service(&format!("order{}", followers[0]))
        .await;
    let (status, body) = cluster.order("Fox", 1, Some("no-majority")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["order_number"], json!(1));
    assert_eq!(cluster.catalog_quantity("Fox").await, 98);
    cluster.order_ok("Fox", 1).await;
    cluster.converged().await;
}

#[tokio::test]
async fn a_replica_far_behind_catches_up_by_snapshot() {
    let mut cluster = Cluster::new(Options {
        initial_stock: 1_000,
        ..raft()
    });
    for id in 1..=3 {
        cluster.set_env(&format!("order{id}"), "ORDER_RAFT_SNAPSHOT_ENTRIES", "20");
    }
    cluster.start_service("catalog").await;
    for id in 1..=3 {
        cluster.spawn(&format!("order{id}"));
    }
    for id in 1..=3 {
        cluster.wait_healthy(&format!("order{id}")).await;
    }
    cluster.start_service("frontend").await;
    cluster.order_ok("Uno", 1).await;

    let follower = cluster.follower().await;
    let name = format!("order{follower}");
    cluster.kill(&name);
    // One order per log entry: the leader snapshots every 20 entries and keeps only
    // 20, so the follower's next entry is long gone from its log.
    for _ in 0..120 {
        cluster.order_ok("Chess", 1).await;
    }
    cluster.start_service(&name).await;
    let status = cluster.replica(follower).await;
    assert_eq!(status["orders"], json!(121), "ready means caught up");
    cluster.converged().await;
    assert!(
        cluster.log_text(&name).contains("installed a snapshot"),
        "the follower did not install a snapshot:\n{}",
        cluster.log_tail(&name)
    );
    // And it follows the log again afterwards.
    cluster.order_ok("Uno", 1).await;
    cluster.converged().await;
    assert_eq!(cluster.replica(follower).await["orders"], json!(122));
}

#[tokio::test]
async fn an_order_is_not_readable_before_a_majority_has_it() {
    let mut cluster = Cluster::start(Options {
        failover_ms: 30_000,
        ..raft()
    })
    .await;
    cluster.order_ok("Fox", 1).await;
    let leader = cluster.leader().await;
    let followers: Vec<String> = (1..=3)
        .filter(|id| *id != leader)
        .map(|id| format!("order{id}"))
        .collect();
    for f in &followers {
        cluster.pause(f);
    }
    let pending = cluster.order_in_background("Fox", 1);
    // The leader has the order in its log, not committed: order 1 is not shown.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = cluster
        .get_from(&format!("order{leader}"), "/orders/1")
        .await;
    assert_ne!(status, 200, "an uncommitted order was readable: {body}");
    assert_eq!(cluster.replica(leader).await["orders"], json!(1));

    for f in &followers {
        cluster.resume(f);
    }
    let (status, body) = pending.await.expect("order task");
    assert_eq!(status, 200, "{body}");
    let (status, body) = cluster.get("/orders/1").await;
    assert_eq!((status, &body["data"]["name"]), (200, &json!("Fox")));
    cluster.converged().await;
}

/// Raft's routes take bytes from peers: garbage, an empty body, an unknown kind or a
/// message of zeros (which may decode as a stale, term-0 message) is refused with the
/// JSON error (4xx), or answered as the stale message it is, never a 5xx or a crash;
/// without the token it is a 401. The order log and the catalog's group go on.
#[tokio::test]
async fn bad_raft_messages_are_refused_and_change_nothing() {
    let mut cluster = Cluster::start(Options {
        catalog_replicas: 3,
        ..raft()
    })
    .await;
    cluster.order_ok("Tux", 1).await;
    let send = |service: &'static str, path: String, body: Vec<u8>, token: bool| {
        let mut request = cluster
            .http
            .post(format!("{}{path}", cluster.url(service)))
            .header("content-type", "application/octet-stream")
            .body(body);
        if token {
            request = request.header(common::TOKEN_HEADER, &cluster.token);
        }
        async move {
            let resp = request.send().await.expect("a reply");
            let status = resp.status().as_u16();
            (status, resp.bytes().await.unwrap_or_default())
        }
    };
    for (service, route) in [
        ("order1", "/internal/raft"),
        ("catalog1", "/internal/catalog-raft"),
    ] {
        for (kind, body) in [
            ("append", b"\xff\xfe not bincode".to_vec()),
            ("vote", Vec::new()),
            ("snapshot", vec![0xff; 64]),
            ("nonsense", b"x".to_vec()),
        ] {
            let (status, reply) = send(service, format!("{route}/{kind}"), body, true).await;
            assert_eq!(status, 400, "{service} {kind}: {reply:?}");
            let error: serde_json::Value = serde_json::from_slice(&reply).expect("JSON error");
            assert_eq!(error["error"]["code"], 400, "{service} {kind}: {error}");
        }
        // Zeros may read as a vote of term 0: stale, answered and not granted.
        let (status, reply) = send(service, format!("{route}/vote"), vec![0; 256], true).await;
        assert!(
            status == 200 || status == 400,
            "{service} zeros: {status} {reply:?}"
        );
        let (status, _) = send(service, format!("{route}/append"), vec![0; 16], false).await;
        assert_eq!(status, 401, "{service} without the token");
    }
    // Nothing moved: the same leaders serve the next order, and every replica agrees.
    cluster.order_ok("Tux", 1).await;
    cluster.converged().await;
}
