//! Two front-ends behind HAProxy (`deploy/haproxy.cfg`): one front-end is killed while
//! clients order and look up through the balancer's one address, and nothing is lost,
//! doubled or refused for good. Needs HAProxy (CI installs Debian's; elsewhere the
//! test is skipped unless `TOYSTORE_REQUIRE_LB` is set).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::wire::Replication;
use serde_json::{json, Value};

use crate::helpers::{in_both_modes, Cluster, Options};

in_both_modes!(killing_a_frontend_behind_the_balancer_loses_no_order);

/// Whether HAProxy can run here (or the test must: `TOYSTORE_REQUIRE_LB`).
pub(crate) fn haproxy_present() -> bool {
    let found = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if !found {
        assert!(
            std::env::var_os("TOYSTORE_REQUIRE_LB").is_none(),
            "the balancer test cannot run: HAProxy is not installed"
        );
        eprintln!("skipped: HAProxy is not installed");
    }
    found
}

/// One client's request, sent again with the same key as a browser or an SDK would
/// (on a connection error, 502 or 503), up to 20 times: its final status and body,
/// and how many tries it took.
async fn with_retries(
    http: &reqwest::Client,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) -> (u16, Value, u32) {
    let mut tries = 0;
    loop {
        tries += 1;
        let (status, body) = match request(http).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                (status, resp.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!(e.to_string())),
        };
        if !matches!(status, 0 | 502 | 503) || tries == 20 {
            return (status, body, tries);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn killing_a_frontend_behind_the_balancer_loses_no_order(mode: Replication) {
    if !haproxy_present() {
        return;
    }
    let mut cluster = Cluster::start(Options {
        frontends: 2,
        balancer: true,
        initial_stock: 100_000,
        ..Options::in_mode(mode)
    })
    .await;
    let lb = cluster.url("lb");
    let (placed, retried) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let until = Instant::now() + Duration::from_secs(4);
    let mut clients = Vec::new();
    for client in 0..8 {
        let (http, lb) = (cluster.http.clone(), lb.clone());
        let (placed, retried) = (placed.clone(), retried.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < until {
                let key = format!("lb-{client}-{n}");
                let order = |http: &reqwest::Client| {
                    http.post(format!("{lb}/orders"))
                        .header("Idempotency-Key", &key)
                        .json(&json!({"name": "Tux", "quantity": 1}))
                };
                let (status, body, tries) = with_retries(&http, order).await;
                assert_eq!(status, 200, "order {key} after {tries} tries: {body}");
                let lookup = |http: &reqwest::Client| http.get(format!("{lb}/products/Tux"));
                let (status, body, more) = with_retries(&http, lookup).await;
                assert_eq!(status, 200, "a lookup after {more} tries: {body}");
                placed.fetch_add(1, Ordering::SeqCst);
                retried.fetch_add((tries + more - 2) as usize, Ordering::SeqCst);
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.kill("frontend1");
    for client in clients {
        client.await.expect("a client failed");
    }
    // By now the balancer has marked the dead front-end down: every request goes to
    // the live one at the first try.
    for _ in 0..40 {
        let resp = cluster.http.get(format!("{lb}/products/Tux")).send().await;
        let status = resp.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(status, 200, "a lookup through the balancer, once");
    }
    assert!(
        cluster.log_text("lb").contains("frontend1 is DOWN"),
        "the balancer did not mark frontend1 down"
    );
    let placed = placed.load(Ordering::SeqCst) as u64;
    eprintln!(
        "{placed} orders, {} requests sent again",
        retried.load(Ordering::SeqCst)
    );

    // Every order once: as many stored as placed, and as much stock sold.
    cluster.converged().await;
    let leader = cluster.frontend_health_of("frontend2").await.leader;
    let leader = leader.expect("frontend2 knows the leader").get();
    assert_eq!(cluster.replica(leader).await["orders"], json!(placed));
    let sold = cluster.catalog_totals("catalog").await.sold;
    assert_eq!(sold, placed, "units sold against orders placed");
}
