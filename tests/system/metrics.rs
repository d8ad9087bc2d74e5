//! `GET /metrics` on every service: Prometheus text whose counters move and whose
//! histograms fill as clients use the store.

use std::time::{Duration, Instant};

use common::wire::Replication;

use crate::helpers::{in_both_modes, Cluster, Options};

in_both_modes!(
    metrics_move_as_clients_use_the_store,
    a_paused_followers_lag_shows_then_clears,
);

pub(crate) use common::metrics::sum;

pub(crate) async fn scrape(cluster: &Cluster, service: &str) -> String {
    let resp = cluster
        .http
        .get(format!("{}/metrics", cluster.url(service)))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(kind.starts_with("text/plain"), "content type {kind}");
    resp.text().await.expect("metrics text")
}

async fn metrics_move_as_clients_use_the_store(mode: Replication) {
    let cluster = Cluster::start(Options::in_mode(mode)).await;
    let lookups = |text: &str| {
        sum(
            text,
            "http_requests_total",
            &[("method", "GET"), ("status", "200")],
        )
    };
    let before = lookups(&scrape(&cluster, "frontend").await);
    for _ in 0..5 {
        cluster.quantity("Tux").await;
    }
    for _ in 0..3 {
        cluster.order_ok("Uno", 1).await;
    }

    let front = scrape(&cluster, "frontend").await;
    assert!(lookups(&front) >= before + 5.0, "{front}");
    assert!(sum(&front, "cache_hits_total", &[]) >= 1.0, "{front}");
    assert!(sum(&front, "cache_misses_total", &[]) >= 1.0, "{front}");
    assert!(sum(&front, "leader_changes_total", &[]) >= 1.0, "{front}");
    let orders = [("route", "/orders"), ("method", "POST")];
    assert_eq!(
        sum(&front, "http_request_duration_seconds_count", &orders),
        3.0,
        "{front}"
    );
    assert!(
        sum(&front, "http_request_duration_seconds_bucket", &orders) > 0.0,
        "the histogram has buckets: {front}"
    );

    let leader = cluster.leader().await;
    let replica = scrape(&cluster, &format!("order{leader}")).await;
    assert!(
        sum(&replica, "buyer_batch_size_count", &[]) >= 1.0,
        "{replica}"
    );
    let batches = match mode {
        Replication::PrimaryBackup => "writer_batch_size_count",
        Replication::Raft => "raft_entry_size_count",
    };
    assert!(sum(&replica, batches, &[]) >= 1.0, "{replica}");
    assert_eq!(sum(&replica, "replica_leader", &[]), 1.0, "{replica}");

    let catalog = scrape(&cluster, "catalog").await;
    assert!(
        sum(&catalog, "group_flush_seconds_count", &[]) >= 1.0,
        "{catalog}"
    );
    assert!(
        sum(
            &catalog,
            "invalidation_pushes_total",
            &[("outcome", "sent")]
        ) >= 1.0,
        "{catalog}"
    );
}

/// The leader's lag gauge for one follower: orders behind in primary-backup mode, log
/// entries behind in raft mode.
async fn lag(cluster: &Cluster, leader: u32, follower: u32, mode: Replication) -> Option<f64> {
    let name = match mode {
        Replication::PrimaryBackup => "follower_lag_orders",
        Replication::Raft => "follower_lag_entries",
    };
    // The raft leader sets its gauges when asked for its status.
    let _ = cluster.get_from(&format!("order{leader}"), "/health").await;
    let text = scrape(cluster, &format!("order{leader}")).await;
    let label = format!("follower=\"{follower}\"");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&label))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// Waits up to 10 s for the lag to satisfy `ok`; returns the last value seen.
async fn lag_until(
    cluster: &Cluster,
    (leader, follower): (u32, u32),
    mode: Replication,
    ok: impl Fn(f64) -> bool,
) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = lag(cluster, leader, follower, mode).await;
        if seen.is_some_and(&ok) || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_paused_followers_lag_shows_then_clears(mode: Replication) {
    let cluster = Cluster::start(Options::in_mode(mode)).await;
    cluster.order_ok("Tux", 1).await;
    let (leader, follower) = (cluster.leader().await, cluster.follower().await);
    let pair = (leader, follower);
    let seen = lag_until(&cluster, pair, mode, |v| v == 0.0).await;
    assert_eq!(seen, Some(0.0), "a follower in step shows no lag");

    let name = format!("order{follower}");
    cluster.pause(&name);
    for _ in 0..5 {
        cluster.order_ok("Uno", 1).await;
    }
    let seen = lag_until(&cluster, pair, mode, |v| v >= 5.0).await;
    assert!(
        seen.is_some_and(|v| v >= 5.0),
        "paused follower's lag: {seen:?}"
    );

    cluster.resume(&name);
    let seen = lag_until(&cluster, pair, mode, |v| v == 0.0).await;
    assert_eq!(seen, Some(0.0), "the lag clears once the follower is back");
}
