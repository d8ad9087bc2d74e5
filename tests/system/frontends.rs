//! Several front-ends over one cluster (primary-backup, where the front-ends choose
//! the order leader): they follow one leader rather than outbid each other, agree on
//! a new one after the leader is killed, and two leaders can never hold one epoch.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{bin_dir, eventually, Cluster, Options};

/// The highest epoch any running replica reports.
async fn epoch(cluster: &Cluster, replicas: &[u32]) -> u64 {
    let mut highest = 0;
    for id in replicas {
        highest = highest.max(cluster.replica(*id).await["epoch"].as_u64().unwrap_or(0));
    }
    highest
}

/// The names of the cluster's first two front-ends.
fn first_two(cluster: &Cluster) -> [String; 2] {
    let names = cluster.frontends();
    [names[0].clone(), names[1].clone()]
}

/// The leader and epoch every front-end names, if they all name the same ones.
async fn agree(cluster: &Cluster) -> Option<(u32, u64)> {
    let mut seen = None;
    for name in cluster.frontends() {
        let health = cluster.frontend_health_of(&name).await;
        let this = (health.leader?.get(), health.epoch?.get());
        if seen.is_some_and(|s| s != this) {
            return None;
        }
        seen = Some(this);
    }
    seen
}

#[tokio::test]
async fn two_frontends_follow_one_leader_and_agree_on_the_next() {
    let mut cluster = Cluster::start(Options {
        frontends: 2,
        failover_ms: 8_000,
        initial_stock: 100_000,
        ..Options::default()
    })
    .await;
    let [first, second] = first_two(&cluster);
    let agreed = eventually(Duration::from_secs(5), || async {
        agree(&cluster).await.is_some()
    })
    .await;
    assert!(agreed, "the two front-ends name different leaders");
    // Each names itself in its replies and its health.
    for name in [&first, &second] {
        let reply = cluster
            .http
            .get(format!("{}/products/Tux", cluster.url(name)))
            .send()
            .await
            .expect("lookup");
        assert_eq!(reply.headers()["x-served-by"], name.as_str());
        assert_eq!(&cluster.frontend_health_of(name).await.name, name);
    }
    let before = epoch(&cluster, &[1, 2, 3]).await;

    // Orders through both, for longer than a few watcher rounds: nobody re-promotes.
    let until = Instant::now() + Duration::from_secs(3);
    let mut placed = 0;
    while Instant::now() < until {
        for frontend in [&first, &second] {
            let (status, body) = cluster.order_via(frontend, "Tux", 1, None).await;
            assert_eq!(status, 200, "through {frontend}: {body}");
            placed += 1;
        }
    }
    assert_eq!(
        epoch(&cluster, &[1, 2, 3]).await,
        before,
        "the front-ends moved the epoch while the leader was fine"
    );

    // The leader dies: both front-ends go on with one new leader, every order placed.
    let (leader, _) = agree(&cluster).await.expect("one leader");
    cluster.kill(&format!("order{leader}"));
    let alive: Vec<u32> = (1..=3).filter(|id| *id != leader).collect();
    let mut orders = Vec::new();
    for i in 0..10 {
        let frontend = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let key = format!("after-kill-{i}");
        orders.push(cluster.order_in_background_via(&frontend, "Fox", 1, Some(&key)));
    }
    for order in orders {
        let (status, body) = order.await.expect("order task");
        assert_eq!(status, 200, "{body}");
        placed += 1;
    }
    let agreed = eventually(Duration::from_secs(5), || async {
        agree(&cluster).await.is_some_and(|(l, _)| l != leader)
    })
    .await;
    assert!(agreed, "the front-ends do not agree on a new leader");
    let after = epoch(&cluster, &alive).await;
    assert!(
        after <= before + 2,
        "one failover took the epoch from {before} to {after}"
    );
    cluster.converged().await;
    assert_eq!(cluster.replica(alive[0]).await["orders"], json!(placed));
}

#[tokio::test]
async fn two_leaders_cannot_hold_one_epoch() {
    let cluster = Cluster::start(Options::default()).await;
    cluster.order_ok("Tux", 1).await;
    let next = epoch(&cluster, &[1, 2, 3]).await + 1;
    let notice = |leader: u32| json!({"leader_id": leader, "epoch": next});

    // Two front-ends choose at once, each its own leader for the same new epoch:
    // order2 and order1 hear of leader 2 first, then order3 and order1 of leader 3.
    // Whichever claim reaches a replica first is the only one it takes (order2's own
    // promotion may already have told order3).
    for replica in ["order2", "order1"] {
        let (status, body) = cluster
            .post_internal(replica, "/internal/leader", &notice(2))
            .await;
        assert_eq!(status, 200, "{replica}: {body}");
    }
    let (to3, body) = cluster
        .post_internal("order3", "/internal/leader", &notice(3))
        .await;
    assert!(to3 == 200 || to3 == 409, "order3: {to3} {body}");
    let (status, body) = cluster
        .post_internal("order1", "/internal/leader", &notice(3))
        .await;
    assert_eq!(
        status, 409,
        "order1 took a second leader for epoch {next}: {body}"
    );

    // Each claimed leader takes an order: at most one is acknowledged.
    let order = |key: &str| json!({"name": "Tux", "quantity": 1, "key": key});
    let (to2, body2) = cluster
        .post_internal("order2", "/orders", &order("via-2"))
        .await;
    let (to3, body3) = cluster
        .post_internal("order3", "/orders", &order("via-3"))
        .await;
    assert!(
        !(to2 == 200 && to3 == 200),
        "both leaders of epoch {next} acknowledged: {body2} {body3}"
    );
}

/// `client run` given both front-ends: one is killed mid-run, and the client goes on
/// through the other — every lookup and order answered, every order placed once.
#[tokio::test]
async fn the_client_fails_over_to_the_next_frontend_with_the_same_key() {
    let mut cluster = Cluster::start(Options {
        frontends: 2,
        initial_stock: 100_000,
        ..Options::default()
    })
    .await;
    let urls = format!("{},{}", cluster.url("frontend1"), cluster.url("frontend2"));
    let client = std::process::Command::new(bin_dir().join("client"))
        .args(["--url", &urls, "run", "--sessions", "4", "--p", "0.8"])
        .args(["--iterations", "400"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the client");
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.kill("frontend1");
    let out = tokio::task::spawn_blocking(move || client.wait_with_output())
        .await
        .expect("wait")
        .expect("the client's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the client saw failures:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let placed: u64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("orders placed "))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no order count in:\n{stdout}"));
    assert!(placed > 0, "{stdout}");
    cluster.converged().await;
    let leader = cluster.frontend_health_of("frontend2").await.leader;
    let leader = leader.expect("frontend2 knows the leader").get();
    assert_eq!(
        cluster.replica(leader).await["orders"],
        json!(placed),
        "orders stored against orders the client placed"
    );
}

/// The quantity of `toy` as front-end `frontend` serves it (from its cache or not).
async fn quantity_via(cluster: &Cluster, frontend: &str, toy: &str) -> u64 {
    let (status, body) = cluster
        .get_from(frontend, &format!("/products/{toy}"))
        .await;
    assert_eq!(status, 200, "lookup through {frontend}: {body}");
    body["data"]["quantity"].as_u64().expect("quantity")
}

/// 1,000 orders through one front-end, each followed by lookups through both: the
/// ordering front-end shows the new stock at once (read-your-writes), the other one
/// within the lease bound (2 s), however it learns of it (push or poll). The largest
/// staleness is printed.
#[tokio::test]
async fn a_purchase_through_one_frontend_reaches_the_other_within_the_lease() {
    let cluster = Cluster::start(Options {
        frontends: 2,
        initial_stock: 100_000,
        ..Options::default()
    })
    .await;
    let [first, second] = first_two(&cluster);
    let lease = Duration::from_secs(2);
    let mut expected = quantity_via(&cluster, &first, "Tux").await;
    let (mut stale_reads, mut largest) = (0u32, Duration::ZERO);
    for _ in 0..1_000 {
        let (status, body) = cluster.order_via(&first, "Tux", 1, None).await;
        assert_eq!(status, 200, "{body}");
        let acked = Instant::now();
        expected -= 1;
        assert_eq!(
            quantity_via(&cluster, &first, "Tux").await,
            expected,
            "read-your-writes through {first}"
        );
        loop {
            let seen = quantity_via(&cluster, &second, "Tux").await;
            assert!(seen >= expected, "{second} shows {seen}, below {expected}");
            if seen == expected {
                break;
            }
            stale_reads += 1;
            assert!(
                acked.elapsed() < lease,
                "{second} still showed {seen} for {expected} after the lease"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        largest = largest.max(acked.elapsed());
    }
    eprintln!("1000 pairs: largest staleness at {second} {largest:?}, {stale_reads} stale reads");
}
