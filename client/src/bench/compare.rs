//! Comparisons on one cluster, each setting measured in turn with the same load:
//! metrics off and on, dashboard viewers and none (both alternating on the
//! benchmark's cluster), and one front-end against two and against HAProxy in front
//! of two (on a fresh cluster of their own).

use std::path::Path;
use std::time::Duration;

use lab::cluster::RunSh;
use reqwest::Url;

use super::report::{cost_row, ratio_row, Row};
use super::{err, front_url, wrk, wrk_spread, WrkResult};
use crate::ClientError;

/// Cached lookups (64 connections) and orders (32 clients) in setting 0 and setting 1
/// of an A/B comparison, alternating, twice each; the better run of each setting
/// counts (one pair alone was as likely to show this shared machine's drift as the
/// difference measured). `set(i)` puts the cluster in setting `i` and returns what
/// must live while it is measured.
async fn alternating<F, Fut, G>(
    lookup: &str,
    orders: &str,
    script: &Path,
    d: u64,
    mut set: F,
) -> Result<([WrkResult; 2], [WrkResult; 2]), ClientError>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<G, ClientError>>,
{
    let best = |a: WrkResult, b: WrkResult| if b.rps > a.rps { b } else { a };
    let mut get = [WrkResult::default(); 2];
    let mut order = [WrkResult::default(); 2];
    for round in 0..4 {
        let i = round % 2;
        let held = set(i).await?;
        wrk(lookup, 64, 1, None).await?;
        get[i] = best(get[i], wrk(lookup, 64, d, None).await?);
        wrk(orders, 32, 1, Some(script)).await?;
        order[i] = best(order[i], wrk(orders, 32, d, Some(script)).await?);
        drop(held);
    }
    Ok((get, order))
}

/// Cached lookups (64 connections) and orders (32 clients) with every service's
/// metrics off (`TOYSTORE_METRICS=off`) and on, alternating twice; the better run of
/// each setting counts.
pub(super) async fn metrics_overhead(
    rs: &RunSh,
    lookup: &str,
    script: &Path,
    d: u64,
) -> Result<[Row; 2], ClientError> {
    let orders = front_url(&rs.frontend_url(), "orders");
    let (get, order) = alternating(lookup, &orders, script, d, |i| async move {
        let setting = ["off", "on"][i];
        println!("lookups and orders with metrics {setting}");
        for svc in rs.topology.names() {
            rs.run(&["restart", svc], &[("TOYSTORE_METRICS", setting)])
                .await?;
        }
        Ok(())
    })
    .await?;
    let ([get_off, get_on], [order_off, order_on]) = (get, order);
    let row = |what: &str, on, off| ratio_row(what.into(), on, off, 0.95, "metrics off");
    Ok([
        row(
            "GET /products/Tux, cache on, 64 conns: metrics on vs off",
            get_on,
            get_off,
        ),
        row(
            "POST /orders, 32 clients: metrics on vs off",
            order_on,
            order_off,
        ),
    ])
}

/// Dashboard viewers open while `dashboard_overhead` measures.
pub const VIEWERS: usize = 10;

/// Cached lookups (64 connections) and orders (32 clients) with [`VIEWERS`] streams of
/// `/dashboard/events` open and with none, alternating twice; the better run of each
/// setting counts. (The dashboard's poll of the cluster runs either way: it is one
/// per front-end, not one per viewer.)
pub(super) async fn dashboard_overhead(
    rs: &RunSh,
    lookup: &str,
    script: &Path,
    d: u64,
) -> Result<[Row; 2], ClientError> {
    let orders = front_url(&rs.frontend_url(), "orders");
    let events = front_url(&rs.frontend_url(), "dashboard/events");
    let http = reqwest::Client::new();
    let (http, events) = (&http, &events);
    let (get, order) = alternating(lookup, &orders, script, d, |i| async move {
        let viewers = [0, VIEWERS][i];
        println!("lookups and orders with {viewers} dashboard viewers");
        // Dropped after the round, which ends their streams.
        let mut watching = tokio::task::JoinSet::new();
        for _ in 0..viewers {
            let mut stream = http.get(events).send().await.map_err(err)?;
            // Connected and served: the first event holds every panel.
            stream.chunk().await.map_err(err)?;
            watching.spawn(async move { while let Ok(Some(_)) = stream.chunk().await {} });
        }
        Ok(watching)
    })
    .await?;
    let ([get_alone, get_watched], [order_alone, order_watched]) = (get, order);
    let row = |what, watched, alone| ratio_row(what, watched, alone, 0.95, "no viewer");
    Ok([
        row(
            format!("GET /products/Tux, cache on, 64 conns: {VIEWERS} dashboard viewers vs none"),
            get_watched,
            get_alone,
        ),
        row(
            format!("POST /orders, 32 clients: {VIEWERS} dashboard viewers vs none"),
            order_watched,
            order_alone,
        ),
    ])
}

/// Starts `rs` (two front-ends, the balancer) afresh and measures cached lookups (64
/// connections) and orders (32 clients) three ways: all to the first front-end, half
/// to each, and all through the balancer. Each twice, round after round; the better
/// run counts. Rows: both front-ends and the balancer against the one front-end
/// (orders with both held to 0.9 ×: a second front-end must not slow orders down;
/// the rest are costs, shown).
pub(super) async fn frontends_compared(
    rs: &RunSh,
    script: &Path,
    d: u64,
) -> Result<[Row; 4], ClientError> {
    rs.fresh_start().await?;
    let fronts: Vec<Url> = rs.topology.frontend_urls();
    let lb = rs
        .topology
        .service("lb")
        .map(|s| rs.topology.url(s))
        .map_err(err)?;
    let each = |path: &str| -> Vec<String> { fronts.iter().map(|f| front_url(f, path)).collect() };
    let (lookups, orders) = (each("products/Tux"), each("orders"));
    let (lb_lookup, lb_orders) = (front_url(&lb, "products/Tux"), front_url(&lb, "orders"));
    let best = |a: WrkResult, b: WrkResult| if b.rps > a.rps { b } else { a };
    // [one front-end, both, the balancer]
    let mut get = [WrkResult::default(); 3];
    let mut order = [WrkResult::default(); 3];
    for round in 0..2 {
        println!(
            "lookups and orders: one front-end, two, the balancer (round {})",
            round + 1
        );
        for (i, (lookup, orders, spread)) in [
            (&lookups[..1], &orders[..1], 1),
            (&lookups[..], &orders[..], 2),
            (
                std::slice::from_ref(&lb_lookup),
                std::slice::from_ref(&lb_orders),
                1,
            ),
        ]
        .into_iter()
        .enumerate()
        {
            wrk_spread(lookup, 64 / spread, 1, None).await?;
            get[i] = best(get[i], wrk_spread(lookup, 64 / spread, d, None).await?);
            wrk_spread(orders, 32 / spread, 1, Some(script)).await?;
            order[i] = best(
                order[i],
                wrk_spread(orders, 32 / spread, d, Some(script)).await?,
            );
        }
    }
    let converged = rs
        .inspector()?
        .converged(Duration::from_secs(30))
        .await
        .map_err(|_| err("replicas did not converge"));
    rs.run(&["stop"], &[]).await?;
    converged?;
    let [get_one, get_two, get_lb] = get;
    let [order_one, order_two, order_lb] = order;
    Ok([
        cost_row(
            "GET /products/Tux, cache on, 64 conns: two front-ends (32 each) vs one".into(),
            get_two,
            get_one,
        ),
        cost_row(
            "GET /products/Tux, cache on, 64 conns: through HAProxy vs one front-end".into(),
            get_lb,
            get_one,
        ),
        ratio_row(
            "POST /orders, 32 clients: two front-ends (16 each) vs one".into(),
            order_two,
            order_one,
            0.9,
            "one front-end",
        ),
        cost_row(
            "POST /orders, 32 clients: through HAProxy vs one front-end".into(),
            order_lb,
            order_one,
        ),
    ])
}
