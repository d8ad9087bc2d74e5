//! Durability under SIGKILL, and restocking.

use std::time::Duration;

use common::wire::Replication;
use serde_json::json;

use crate::helpers::{eventually, in_both_modes, Cluster, Options};

// Every test here runs in both replication modes with the single catalog, and with a
// replicated one (three replicas; its log is the same in either order mode).
in_both_modes!(
    acknowledged_orders_and_stock_survive_kill_9,
    sold_out_toys_are_restocked_durably,
);

mod replicated_catalog {
    use super::*;

    #[tokio::test]
    async fn acknowledged_orders_and_stock_survive_kill_9() {
        super::orders_and_stock_survive_kill_9(Replication::PrimaryBackup, 3).await
    }

    #[tokio::test]
    async fn sold_out_toys_are_restocked_durably() {
        super::restocks_survive_kill_9(Replication::PrimaryBackup, 3).await
    }
}

async fn acknowledged_orders_and_stock_survive_kill_9(mode: Replication) {
    orders_and_stock_survive_kill_9(mode, 1).await
}

async fn sold_out_toys_are_restocked_durably(mode: Replication) {
    restocks_survive_kill_9(mode, 1).await
}

/// Orders and stock survive SIGKILL of the order replica and of the catalog (every
/// catalog replica at once, with `catalogs` of them).
async fn orders_and_stock_survive_kill_9(mode: Replication, catalogs: u16) {
    let mut cluster = Cluster::start(Options {
        replicas: 1,
        catalog_replicas: catalogs,
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
    cluster.kill_catalogs();
    cluster.start_catalogs().await;
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

/// A restock survives SIGKILL of the catalog (of every catalog replica at once).
async fn restocks_survive_kill_9(mode: Replication, catalogs: u16) {
    let mut cluster = Cluster::start(Options {
        replicas: 1,
        catalog_replicas: catalogs,
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
            cluster.catalog_logged("restocked")
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

    cluster.kill_catalogs();
    cluster.start_catalogs().await;
    assert_eq!(
        cluster.catalog_quantity("Frisbee").await,
        7,
        "the restock survives a crash"
    );
    let leader = cluster.catalog_leader().await;
    let t = cluster.catalog_totals(&leader).await;
    assert_eq!((t.restocked, t.sold), (7, 3));
    assert_eq!(t.initial + t.restocked - t.sold, t.current, "stock adds up");
}
