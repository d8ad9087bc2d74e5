//! Three replicas: failover, catch-up, divergent-tail repair and whole-cluster
//! restarts, with SIGKILL, in both replication modes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::wire::Replication;
use serde_json::json;

use crate::helpers::{eventually, in_both_modes, Cluster, Options};

in_both_modes!(
    killing_the_leader_while_clients_order_fails_no_request,
    a_restarted_follower_catches_up_before_it_is_ready,
    a_leader_that_crashed_before_replicating_drops_its_unacknowledged_order,
    a_leader_crash_mid_request_is_invisible_to_the_client,
    killing_every_replica_at_once_loses_no_acknowledged_order,
);

const TOYS: [&str; 4] = ["Tux", "LEGO", "Rubik's Cube", "Play-Doh"];

/// Reads every order back through the front-end and checks it.
async fn verify_all(cluster: &Cluster, placed: &[(u64, &str, u64)]) {
    let numbers: HashSet<u64> = placed.iter().map(|p| p.0).collect();
    assert_eq!(numbers.len(), placed.len(), "order numbers are unique");
    for (number, toy, quantity) in placed {
        let (status, body) = cluster.get(&format!("/orders/{number}")).await;
        assert_eq!(status, 200, "acknowledged order {number} lost: {body}");
        assert_eq!(
            body["data"],
            json!({"number": number, "name": toy, "quantity": quantity})
        );
    }
}

/// A three-replica cluster whose leader aborts right after storing its first batch,
/// before any follower has it; returns the cluster and that leader's id. In
/// primary-backup mode the leader is order3 (the highest id); in raft mode order1,
/// which founds the group and is elected before order3 starts.
async fn start_with_faulty_leader(mode: Replication) -> (Cluster, u32) {
    let mut cluster = Cluster::new(Options::in_mode(mode));
    let faulty = match mode {
        Replication::PrimaryBackup => 3,
        Replication::Raft => 1,
    };
    cluster.set_env(
        &format!("order{faulty}"),
        "ORDER_FAULT",
        "crash-before-replicate",
    );
    cluster.start_service("catalog").await;
    // order1 and order2 first (a raft replica is ready only with a majority), then
    // order3.
    for id in [1, 2] {
        cluster.spawn(&format!("order{id}"));
    }
    for id in [1, 2] {
        cluster.wait_healthy(&format!("order{id}")).await;
    }
    cluster.start_service("order3").await;
    cluster.start_service("frontend").await;
    assert_eq!(cluster.leader().await, faulty, "the faulty replica leads");
    (cluster, faulty)
}

async fn killing_the_leader_while_clients_order_fails_no_request(mode: Replication) {
    let mut cluster = Cluster::start(Options {
        initial_stock: 100_000,
        ..Options::in_mode(mode)
    })
    .await;
    let acked = Arc::new(AtomicUsize::new(0));
    let url = cluster.url("frontend");
    let mut clients = Vec::new();
    for c in 0..4usize {
        let (http, url, acked) = (cluster.http.clone(), url.clone(), acked.clone());
        clients.push(tokio::spawn(async move {
            let mut placed = Vec::new();
            for i in 0..40usize {
                let toy = TOYS[(c + i) % TOYS.len()];
                let quantity = 1 + (i % 3) as u64;
                let resp = http
                    .post(format!("{url}/orders"))
                    .json(&json!({"name": toy, "quantity": quantity}))
                    .send()
                    .await
                    .expect("the front-end answers");
                let status = resp.status().as_u16();
                let body: serde_json::Value = resp.json().await.expect("json");
                assert_eq!(status, 200, "client {c} saw a failure: {body}");
                placed.push((
                    body["data"]["order_number"].as_u64().expect("number"),
                    toy,
                    quantity,
                ));
                acked.fetch_add(1, Ordering::SeqCst);
            }
            placed
        }));
    }
    assert!(
        eventually(Duration::from_secs(30), || async {
            acked.load(Ordering::SeqCst) >= 40
        })
        .await
    );
    let leader = cluster.leader().await;
    if mode == Replication::PrimaryBackup {
        assert_eq!(leader, 3, "the highest id leads");
    }
    cluster.kill(&format!("order{leader}"));

    let mut placed = Vec::new();
    for client in clients {
        placed.extend(client.await.expect("client task"));
    }
    assert_eq!(placed.len(), 160);
    let next = cluster.leader().await;
    assert_ne!(next, leader);
    if mode == Replication::PrimaryBackup {
        assert_eq!(next, 2, "the highest id left leads");
    }
    verify_all(&cluster, &placed).await;

    cluster.start_service(&format!("order{leader}")).await;
    cluster.converged().await;
    assert_eq!(cluster.replica(leader).await["orders"], json!(160));
    for toy in TOYS {
        let sold: u64 = placed.iter().filter(|p| p.1 == toy).map(|p| p.2).sum();
        assert_eq!(
            cluster.catalog_quantity(toy).await,
            100_000 - sold,
            "stock of {toy} adds up"
        );
    }
}

async fn a_restarted_follower_catches_up_before_it_is_ready(mode: Replication) {
    let mut cluster = Cluster::start(Options::in_mode(mode)).await;
    let mut placed = Vec::new();
    for i in 0..5u64 {
        placed.push((cluster.order_ok("Uno", 1 + i % 2).await, "Uno", 1 + i % 2));
    }
    let follower = cluster.follower().await;
    let name = format!("order{follower}");
    cluster.kill(&name);
    for i in 0..30u64 {
        placed.push((
            cluster.order_ok("Chess", 1 + i % 2).await,
            "Chess",
            1 + i % 2,
        ));
    }
    cluster.start_service(&name).await;
    // Ready means caught up: it holds everything at once, without a new order.
    let status = cluster.replica(follower).await;
    assert_eq!(
        (status["orders"].clone(), status["last_order"].clone()),
        (json!(35), json!(34))
    );
    let digest = cluster.converged().await;

    // And it keeps following the leader afterwards.
    placed.push((cluster.order_ok("Uno", 1).await, "Uno", 1));
    let after = cluster.converged().await;
    assert_ne!(digest, after);
    assert_eq!(cluster.replica(follower).await["orders"], json!(36));
    verify_all(&cluster, &placed).await;
}

async fn a_leader_that_crashed_before_replicating_drops_its_unacknowledged_order(
    mode: Replication,
) {
    let (mut cluster, faulty) = start_with_faulty_leader(mode).await;
    let name = format!("order{faulty}");

    // An order sent straight to the leader (so no front-end retries it): the leader
    // takes the stock, stores order 0 and dies before any follower has it.
    let resp = cluster
        .http
        .post(cluster.url(&name) + "/orders")
        .header(common::TOKEN_HEADER, &cluster.token)
        .json(&json!({"name": "Twister", "quantity": 2, "key": "lost-ack"}))
        .send()
        .await;
    assert!(resp.is_err() || !resp.expect("response").status().is_success());
    cluster.wait_exit(&name, Duration::from_secs(5)).await;
    assert_eq!(
        cluster.catalog_quantity("Twister").await,
        98,
        "the catalog took the stock once"
    );

    // The front-end fails over; order 0 goes to another order on the new leader.
    let other = cluster.order_ok("Bubbles", 1).await;
    assert_eq!(other, 0);
    let next = cluster.leader().await;
    assert_ne!(next, faulty);
    if mode == Replication::PrimaryBackup {
        assert_eq!(next, 2, "the highest id left leads");
    }

    // The old leader comes back (without the fault): its order 0 is replaced.
    cluster.clear_env(&name);
    cluster.start_service(&name).await;
    cluster.converged().await;
    let (_, zero) = cluster.get_from(&name, "/orders/0").await;
    assert_eq!(zero["data"]["name"], json!("Bubbles"));
    assert_eq!(cluster.replica(faulty).await["orders"], json!(1));

    // The client retries its request with the same key: one order, stock taken once.
    let (status, body) = cluster.order("Twister", 2, Some("lost-ack")).await;
    assert_eq!(status, 200, "{body}");
    let number = body["data"]["order_number"].as_u64().expect("number");
    let (status, again) = cluster.order("Twister", 2, Some("lost-ack")).await;
    assert_eq!(
        (status, again["data"]["order_number"].as_u64()),
        (200, Some(number))
    );
    assert_eq!(
        cluster.catalog_quantity("Twister").await,
        98,
        "no second stock change"
    );
    cluster.converged().await;
    assert_eq!(cluster.replica(next).await["orders"], json!(2));
}

async fn a_leader_crash_mid_request_is_invisible_to_the_client(mode: Replication) {
    let (mut cluster, faulty) = start_with_faulty_leader(mode).await;
    let name = format!("order{faulty}");

    let (status, body) = cluster.order("Jump Rope", 3, Some("retry-me")).await;
    assert_eq!(status, 200, "the client did not notice the crash: {body}");
    let number = body["data"]["order_number"].as_u64().expect("number");
    cluster.wait_exit(&name, Duration::from_secs(5)).await;
    assert_eq!(
        cluster.catalog_quantity("Jump Rope").await,
        97,
        "stock taken once"
    );

    cluster.clear_env(&name);
    cluster.start_service(&name).await;
    cluster.converged().await;
    let (status, again) = cluster.order("Jump Rope", 3, Some("retry-me")).await;
    assert_eq!(
        (status, again["data"]["order_number"].as_u64()),
        (200, Some(number))
    );
    assert_eq!(cluster.catalog_quantity("Jump Rope").await, 97);
    for id in 1..=3 {
        assert_eq!(
            cluster.replica(id).await["orders"],
            json!(1),
            "replica {id}"
        );
    }
}

async fn killing_every_replica_at_once_loses_no_acknowledged_order(mode: Replication) {
    let mut cluster = Cluster::start(Options::in_mode(mode)).await;
    let mut placed = Vec::new();
    for i in 0..25u64 {
        let toy = TOYS[i as usize % TOYS.len()];
        placed.push((cluster.order_ok(toy, 1).await, toy, 1));
    }
    for id in 1..=3 {
        cluster.kill(&format!("order{id}"));
    }
    for id in 1..=3 {
        cluster.spawn(&format!("order{id}"));
    }
    for id in 1..=3 {
        cluster.wait_healthy(&format!("order{id}")).await;
    }
    verify_all(&cluster, &placed).await;
    placed.push((cluster.order_ok("Tux", 2).await, "Tux", 2));
    assert_eq!(placed.last().map(|p| p.0), Some(25), "numbering continues");
    cluster.converged().await;
    for id in 1..=3 {
        assert_eq!(
            cluster.replica(id).await["orders"],
            json!(26),
            "replica {id}"
        );
    }
    verify_all(&cluster, &placed).await;
}
