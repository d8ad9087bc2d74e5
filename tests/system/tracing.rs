//! Request ids: one `x-request-id` followed through every service's log.

use std::time::{Duration, Instant};

use common::wire::Replication;
use serde_json::json;

use crate::helpers::{in_both_modes, Cluster, Options};

in_both_modes!(an_orders_request_id_is_in_every_services_log);

async fn an_orders_request_id_is_in_every_services_log(mode: Replication) {
    let cluster = Cluster::start(Options::in_mode(mode)).await;
    let id = format!("demo-{}", std::process::id());
    let resp = cluster
        .http
        .post(format!("{}/orders", cluster.url("frontend")))
        .header("x-request-id", &id)
        .json(&json!({"name": "Tux", "quantity": 1}))
        .send()
        .await
        .expect("order");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some(id.as_str())
    );

    let services = ["frontend", "catalog", "order1", "order2", "order3"];
    // Followers in Raft mode apply the order shortly after it is acknowledged.
    let deadline = Instant::now() + Duration::from_secs(5);
    let missing = loop {
        let missing: Vec<&str> = services
            .into_iter()
            .filter(|s| !cluster.log_text(s).contains(&id))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(missing.is_empty(), "{id} is not in the log of {missing:?}");
}
