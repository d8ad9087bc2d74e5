//! Durability under SIGKILL, and restocking.

use std::time::Duration;

use common::wire::Replication;
use serde_json::json;

use crate::helpers::{eventually, in_both_modes, Cluster, Options};

// Every test here runs in both replication modes.
in_both_modes!(
    acknowledged_orders_and_stock_survive_kill_9,
    sold_out_toys_are_restocked_durably,
);

async fn acknowledged_orders_and_stock_survive_kill_9(mode: Replication) {
    let mut cluster = Cluster::start(Options {
        replicas: 1,
        ..Options::in_mode(mode)
    })
    .await;
    let mut placed = Vec::new();
    for i in 0..20u64 {
        let toy = if i % 2 == 0 { "Uno" } else { "Chess" };
        placed.push((cluster.order_ok(toy, 1 + i % 3).await, toy, 1 + i % 3));
    }
    // Crash both stores right after the last acknowledgement.
    cluster.kill("order1");
    cluster.kill("catalog");
    cluster.start_service("catalog").await;
    cluster.start_service("order1").await;

    let sold = |toy: &str| -> u64 { placed.iter().filter(|p| p.1 == toy).map(|p| p.2).sum() };
    assert_eq!(cluster.catalog_quantity("Uno").await, 100 - sold("Uno"));
    assert_eq!(cluster.catalog_quantity("Chess").await, 100 - sold("Chess"));
    for (number, toy, quantity) in &placed {
        let (status, body) = cluster.get(&format!("/orders/{number}")).await;
        assert_eq!(status, 200, "order {number} lost: {body}");
        assert_eq!(
            body["data"],
            json!({"number": number, "name": toy, "quantity": quantity})
        );
    }
    let totals = cluster.replica(1).await;
    assert_eq!(totals["orders"], json!(20));
    assert_eq!(totals["last_order"], json!(19));

    // Numbering continues after the crash, without reusing a number.
    assert_eq!(cluster.order_ok("Uno", 1).await, 20);
}

async fn sold_out_toys_are_restocked_durably(mode: Replication) {
    let mut cluster = Cluster::start(Options {
        replicas: 1,
        initial_stock: 3,
        restock_amount: 7,
        restock_period_ms: 300,
        ..Options::in_mode(mode)
    })
    .await;
    cluster.order_ok("Frisbee", 3).await;
    // Readers may see the restock a moment before it is flushed; the catalog logs
    // "restocked" once it is durable, and only then does a crash have to keep it.
    assert!(
        eventually(Duration::from_secs(5), || async {
            cluster.log_tail("catalog").contains("restocked")
        })
        .await,
        "Frisbee was not restocked"
    );
    assert_eq!(cluster.catalog_quantity("Frisbee").await, 7);
    assert_eq!(
        cluster.catalog_quantity("Twister").await,
        3,
        "toys in stock are left alone"
    );

    cluster.kill("catalog");
    cluster.start_service("catalog").await;
    assert_eq!(
        cluster.catalog_quantity("Frisbee").await,
        7,
        "the restock survives a crash"
    );
    let (_, totals) = {
        let resp = cluster
            .http
            .get(cluster.url("catalog") + "/internal/totals")
            .header(common::TOKEN_HEADER, &cluster.token)
            .send()
            .await
            .expect("totals");
        (
            resp.status(),
            resp.json::<serde_json::Value>().await.expect("json"),
        )
    };
    let t = &totals["data"];
    let (initial, restocked, sold, current) = (
        t["initial"].as_u64().expect("initial"),
        t["restocked"].as_u64().expect("restocked"),
        t["sold"].as_u64().expect("sold"),
        t["current"].as_u64().expect("current"),
    );
    assert_eq!((restocked, sold), (7, 3));
    assert_eq!(initial + restocked - sold, current, "stock adds up");
}
