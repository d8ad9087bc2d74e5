//! The benchmark: toystore against bare baselines on this machine, in one run, with
//! one load generator (`wrk`) for both sides of every ratio.
//!
//! 1. Cached `GET /products/Tux` on the front-end vs a bare axum server answering the
//!    same body, at 8 and 64 connections.
//! 2. The same lookup with the cache off vs a bare axum proxy hop to that server.
//! 3. The floor of an order (`floor`): one sled insert and flush, and a bare
//!    two-hop proxy chain; and the bare proxy hop at 32 connections.
//! 4. `POST /orders` through the whole system (three replicas, every order durable on
//!    all of them before its reply): latency with 1 client, throughput with 32; then
//!    the same on a fresh cluster in the other replication mode (Raft: durable on a
//!    majority), and the ratio of the two modes' throughput; then the first mode
//!    again with three catalog replicas (a Raft group; one catalog if the cluster
//!    has three), and the ratio of the two catalog settings' throughput.
//! 5. What metrics cost: cached lookups and orders with every service's metrics off
//!    and on (`TOYSTORE_METRICS`), alternating twice.
//! 6. What watching costs: the same with [`VIEWERS`] dashboard streams open and with
//!    none, alternating twice.
//! 7. Several front-ends: on a fresh cluster with two front-ends and HAProxy in front,
//!    cached lookups and orders sent to one front-end, spread over both, and through
//!    the balancer (`frontends_compared`).
//!
//! Writes the table to `PERFORMANCE.md` in the output directory (keeping the section
//! that `bench --scale`, [`crate::scale`], writes there).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::domain::ReplicaId;
use common::wire::Replication;
use reqwest::Url;

mod compare;
mod floor;
mod report;
mod stages;
mod wrk;

use crate::ClientError;
pub use compare::VIEWERS;
use compare::{dashboard_overhead, frontends_compared, metrics_overhead};
use lab::cluster::RunSh;
pub(crate) use report::today;
use report::{ratio_row, report, Row};
pub use wrk::{parse_wrk, wrk, wrk_spread, WrkResult};

/// Settings of a benchmark run.
pub struct BenchPlan {
    pub run_sh: RunSh,
    /// The bare server listens here, the proxy hop in front of it on the next port,
    /// the second proxy of the floor's chain three ports up (two up is the balancer's).
    pub baseline_port: u16,
    /// Seconds per measurement.
    pub duration: u64,
    /// The `client` executable, to start the baselines with.
    pub client_exe: PathBuf,
    /// Orders a follower misses before its catch-up is timed (0: not measured).
    pub catch_up: u64,
    pub out: PathBuf,
    pub command: String,
}

/// wrk script: orders of one unit of a random toy (spread, like real traffic).
pub(crate) const ORDER_SCRIPT: &str = r#"
local toys = {"Tux", "Fox", "Python", "Whale", "Elephant", "Dolphin", "Barbie", "LEGO",
  "Uno", "Clue", "Chess", "Bubbles", "Frisbee", "Twister", "Slinky", "Rubik's Cube",
  "Etch A Sketch", "Lincoln Logs", "Jack-in-the-box", "Jump Rope", "Play-Doh",
  "Teddy Bear", "Mr. Potato Head", "Hot Wheels"}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = '{"name": "' .. toys[math.random(#toys)] .. '", "quantity": 1}'
  return wrk.format(nil, nil, nil, body)
end
"#;

fn err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Other(e.to_string())
}

/// A baseline server process; killed when dropped.
struct Baseline(tokio::process::Child);

impl Baseline {
    async fn start(exe: &Path, port: u16, upstream: Option<&str>) -> Result<Self, ClientError> {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(["baseline", "--listen", &format!("127.0.0.1:{port}")]);
        if let Some(u) = upstream {
            cmd.args(["--upstream", u]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(err)?;
        let url = format!("http://127.0.0.1:{port}/products/Tux");
        for _ in 0..100 {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(Baseline(child));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(err(format!("baseline on port {port} did not start")))
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

pub async fn run(plan: BenchPlan) -> Result<(), ClientError> {
    let started = std::time::Instant::now();
    // Needed only at the end: say so before the first minute is spent.
    if !crate::haproxy_installed() {
        return Err(err(
            "client bench measures two front-ends behind HAProxy: install it first \
             (Debian: apt-get install haproxy)",
        ));
    }
    let rs = &plan.run_sh;
    let front = rs.frontend_url();
    let lookup = front_url(&front, "products/Tux");
    let base_port = plan.baseline_port;
    let proxy_port = plan.baseline_port + 1;
    let bare = Baseline::start(&plan.client_exe, base_port, None).await?;
    let bare_url = format!("http://127.0.0.1:{base_port}/products/Tux");
    let hop = Baseline::start(&plan.client_exe, proxy_port, Some(&bare_url)).await?;
    let hop_url = format!("http://127.0.0.1:{proxy_port}/products/Tux");
    let d = plan.duration;
    let mut rows = Vec::new();

    println!("cached lookups vs the bare server");
    rs.run(&["restart", "frontend"], &[("FRONTEND_CACHE", "true")])
        .await?;
    for c in [8, 64] {
        wrk(&lookup, c, 1, None).await?; // warm-up: fill the cache, open connections
        let ours = wrk(&lookup, c, d, None).await?;
        let base = wrk(&bare_url, c, d, None).await?;
        rows.push(ratio_row(
            format!("GET /products/Tux, cache on, {c} conns vs bare server"),
            ours,
            base,
            0.7,
            "baseline",
        ));
    }

    println!("uncached lookups vs the bare proxy hop");
    rs.run(&["restart", "frontend"], &[("FRONTEND_CACHE", "false")])
        .await?;
    for c in [8, 64] {
        wrk(&lookup, c, 1, None).await?;
        let ours = wrk(&lookup, c, d, None).await?;
        let base = wrk(&hop_url, c, d, None).await?;
        rows.push(ratio_row(
            format!("GET /products/Tux, cache off, {c} conns vs bare proxy hop"),
            ours,
            base,
            0.7,
            "baseline",
        ));
    }
    println!("the floor: a sled flush, a two-hop proxy chain; the proxy hop at 32 conns");
    let chain_port = plan.baseline_port + 3;
    let chain = Baseline::start(&plan.client_exe, chain_port, Some(&hop_url)).await?;
    let chain_url = format!("http://127.0.0.1:{chain_port}/products/Tux");
    wrk(&chain_url, 1, 1, None).await?;
    let floor = floor::Floor {
        flush: floor::sled_flush(&sibling(&rs.data_dir, "floor"), d).await?,
        chain: wrk(&chain_url, 1, d, None).await?,
        transaction: floor::sled_transaction_flush(&sibling(&rs.data_dir, "floor"), d).await?,
    };
    let hop_32 = wrk(&hop_url, 32, d, None).await?;
    drop((bare, hop, chain));
    rows.extend(floor_rows(&floor));
    rs.run(&["restart", "frontend"], &[("FRONTEND_CACHE", "true")])
        .await?;

    let script = std::env::temp_dir().join(format!("toystore-order-{}.lua", std::process::id()));
    std::fs::write(&script, ORDER_SCRIPT).map_err(err)?;
    // What metrics cost: the same lookups and orders with every service's metrics off,
    // then on again.
    rows.extend(metrics_overhead(rs, &lookup, &script, d).await?);
    rows.extend(dashboard_overhead(rs, &lookup, &script, d).await?);

    // Orders in the cluster's own mode, then in the other one (a fresh cluster on the
    // same ports, with its own data directory).
    let first = orders(rs, &script, d, plan.catch_up).await;
    let other = rs.in_mode(
        match rs.replication() {
            Replication::PrimaryBackup => Replication::Raft,
            Replication::Raft => Replication::PrimaryBackup,
        },
        PathBuf::from(format!("{}-{}", rs.data_dir.display(), "other")),
    )?;
    // Then the first mode again with the other catalog setting (three replicas if the
    // cluster has one catalog, else one), for the price of a replicated catalog.
    let catalogs = match rs.catalog_replicas().len() {
        0 => 3,
        _ => 1,
    };
    let regrouped = rs.with_catalogs(
        catalogs,
        PathBuf::from(format!("{}-catalogs", rs.data_dir.display())),
    )?;
    let second = match first {
        Ok(_) => {
            rs.run(&["stop"], &[]).await?;
            on_fresh(&other, &script, d, plan.catch_up).await
        }
        Err(_) => Err(err("not measured")),
    };
    let third = match second {
        Ok(_) => on_fresh(&regrouped, &script, d, 0).await,
        Err(_) => Err(err("not measured")),
    };
    // Last, two front-ends and the balancer (its port is free once the baselines
    // are gone).
    let spread = rs.with_frontends(
        2,
        Some(plan.baseline_port + 2),
        PathBuf::from(format!("{}-frontends", rs.data_dir.display())),
    )?;
    let fourth = match third {
        Ok(_) => frontends_compared(&spread, &script, d).await,
        Err(_) => Err(err("not measured")),
    };
    let _ = std::fs::remove_file(&script);
    let (first, second, third, fourth) = (first?, second?, third?, fourth?);
    let mut durable = String::new();
    let mut caught_up = String::new();
    for m in [&first, &second, &third] {
        rows.extend(order_rows(m, &floor, hop_32));
        let _ = write!(
            durable,
            "After the {} run all three replicas held the same {} orders (digest {}). ",
            m.label(),
            m.orders,
            m.digest
        );
        if let Some(c) = &m.catch_up {
            let _ = writeln!(
                caught_up,
                "| {} | {} | {:.1} | {:.0} |",
                m.mode,
                c.missed,
                c.seconds,
                c.missed as f64 / c.seconds.max(0.001)
            );
        }
    }
    let mut catch_up_md = String::new();
    if !caught_up.is_empty() {
        catch_up_md.push_str(&format!(
            "## Catch-up\n\nA follower was killed, at least {} orders were placed \
             without it (32 clients), and it was started again: seconds from start to \
             ready, which in both modes means it holds everything the leader had \
             committed (primary-backup: pages of orders from its peers; raft: a snapshot \
             of the orders, then the log since).\n\n\
             | mode | orders missed | seconds to ready | orders/s |\n|---|---|---|---|\n{caught_up}\n",
            plan.catch_up
        ));
    }
    if [&first, &second].iter().any(|m| m.cpu.all.is_some()) {
        let _ = writeln!(
            catch_up_md,
            "## CPU per order\n\nµs of CPU that one order cost during the 32-client order \
             measurement, read from `/proc` around it (`client/src/cpu.rs`): each \
             service's process, all of the machine's busy time (`wrk` and the kernel's own \
             work included), and what the two cores could give one order at that rate. The \
             leader is the replica that spends the most.\n\n{}",
            crate::cpu::header(&first.cpu)
        );
        for m in [&first, &second] {
            let _ = writeln!(
                catch_up_md,
                "{}",
                crate::cpu::row(&m.mode.to_string(), &m.cpu)
            );
        }
        catch_up_md.push('\n');
    }
    if third.cpu.all.is_some() {
        let _ = writeln!(
            catch_up_md,
            "The same in {} mode with {}:\n\n{}\n{}\n",
            third.mode,
            third.catalogs_named(),
            crate::cpu::header(&third.cpu),
            crate::cpu::row(&third.label(), &third.cpu)
        );
    }
    let _ = writeln!(
        catch_up_md,
        "## Where an order's time goes\n\nThe mean of each stage an order passed during the \
         order measurements, from the services' own histograms (`/metrics`, read before and \
         after each; `client/src/bench/stages.rs`). A stage that works in batches is timed \
         once per batch, and the last column says how many batches an order shared (0.10: \
         ten orders a batch). Stages nest and overlap (the leader's whole `POST /orders` holds \
         the rest; its own flush and the followers' round trips run at once), so the rows do \
         not add up: each says what one step took.\n"
    );
    for m in [&first, &second, &third] {
        let _ = writeln!(
            catch_up_md,
            "**{}**:\n\n{}",
            m.label(),
            stages::table(&m.stages[0], &m.stages[1])
        );
    }
    let (pb, raft) = match first.mode {
        Replication::PrimaryBackup => (&first, &second),
        Replication::Raft => (&second, &first),
    };
    rows.push(ratio_row(
        "POST /orders, 32 clients: raft vs primary-backup".into(),
        raft.many,
        pb.many,
        0.7,
        "primary-backup",
    ));
    let (one, group) = match third.catalogs {
        1 => (&third, &first),
        _ => (&first, &third),
    };
    rows.push(ratio_row(
        format!(
            "POST /orders ({}), 32 clients: {} catalog replicas vs one catalog",
            group.mode, group.catalogs
        ),
        group.many,
        one.many,
        0.75,
        "one catalog",
    ));

    rows.extend(fourth);

    let md = report(
        &plan,
        &rows,
        &durable,
        &catch_up_md,
        started.elapsed().as_secs_f64(),
    );
    print!("{md}");
    let path = plan.out.join("PERFORMANCE.md");
    // The readings written by hand, and the scale sections (`client bench --scale`'s):
    // keep them.
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let md = report::keep_sections(&md, &old);
    std::fs::write(&path, md).map_err(|e| err(format!("{}: {e}", path.display())))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Orders through the whole system in one replication mode.
struct Orders {
    mode: Replication,
    /// Catalog replicas (1: the single catalog).
    catalogs: usize,
    /// One client: the latency.
    one: WrkResult,
    /// 32 clients: the throughput.
    many: WrkResult,
    /// 32 clients: what one order cost each process, in µs of CPU.
    cpu: crate::cpu::PerOrder,
    /// Where an order's time went, with one client and with 32.
    stages: [stages::Breakdown; 2],
    /// What the replicas held afterwards.
    orders: u64,
    digest: String,
    /// A follower's catch-up after missing many orders.
    catch_up: Option<CatchUp>,
}

impl Orders {
    /// The run's name in the report: its mode, and its catalogs if replicated.
    fn label(&self) -> String {
        match self.catalogs {
            1 => self.mode.to_string(),
            _ => format!("{}, {}", self.mode, self.catalogs_named()),
        }
    }

    fn catalogs_named(&self) -> String {
        match self.catalogs {
            1 => "one catalog".into(),
            n => format!("{n} catalog replicas"),
        }
    }
}

/// Starts `rs` afresh, measures its orders (see [`orders`]) and stops it.
async fn on_fresh(rs: &RunSh, script: &Path, d: u64, missed: u64) -> Result<Orders, ClientError> {
    rs.fresh_start().await?;
    let measured = orders(rs, script, d, missed).await;
    rs.run(&["stop"], &[]).await?;
    measured
}

/// How long a restarted follower took until ready (caught up).
pub(crate) struct CatchUp {
    /// Orders it missed while it was down.
    pub(crate) missed: u64,
    pub(crate) seconds: f64,
}

/// Kills a follower, places at least `n` orders without it (32 clients), restarts it
/// and times its start until ready — which in both modes means caught up.
pub(crate) async fn catch_up(rs: &RunSh, script: &Path, n: u64) -> Result<CatchUp, ClientError> {
    let inspector = rs.inspector()?;
    let mut leader = None;
    for _ in 0..50 {
        leader = inspector.leader().await;
        if leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leader = leader.ok_or_else(|| err("no leader to measure catch-up"))?;
    let follower = inspector
        .replica_ids()
        .into_iter()
        .find(|id| *id != leader)
        .ok_or_else(|| err("no follower"))?;
    let held = |statuses: &[common::wire::ReplicaStatus], id: ReplicaId| {
        statuses.iter().find(|s| s.id == id).map_or(0, |s| s.orders)
    };
    let before = held(&inspector.statuses().await, follower);
    let name = format!("order{follower}");
    rs.run(&["kill", &name], &[]).await?;
    println!("  {name} down; placing {n} orders without it");
    let url = front_url(&rs.frontend_url(), "orders");
    loop {
        let placed = held(&inspector.statuses().await, leader).saturating_sub(before);
        if placed >= n {
            break;
        }
        let left = n - placed;
        wrk(&url, 32, (left / 2000).clamp(1, 10), Some(script)).await?;
    }
    let missed = held(&inspector.statuses().await, leader).saturating_sub(before);
    let started = std::time::Instant::now();
    rs.run(&["start", &name], &[]).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!("  {name} caught up with {missed} orders in {seconds:.1} s");
    Ok(CatchUp { missed, seconds })
}

/// Measures orders on the cluster of `rs` (running) and checks that its replicas
/// converge afterwards.
async fn orders(rs: &RunSh, script: &Path, d: u64, missed: u64) -> Result<Orders, ClientError> {
    let catalogs = rs.catalog_replicas().len().max(1);
    println!(
        "orders through the whole system ({} replication, {} catalog replica{})",
        rs.replication(),
        catalogs,
        if catalogs == 1 { "" } else { "s" }
    );
    let url = front_url(&rs.frontend_url(), "orders");
    wrk(&url, 1, 1, Some(script)).await?; // warm-up
    let http = reqwest::Client::new();
    let start = stages::scrape(&http, rs).await;
    let one = wrk(&url, 1, d, Some(script)).await?;
    let middle = stages::scrape(&http, rs).await;
    let before = crate::cpu::sample(rs);
    let many = wrk(&url, 32, d, Some(script)).await?;
    let cpu = crate::cpu::per_order(&before, &crate::cpu::sample(rs), many.rps * d as f64);
    let end = stages::scrape(&http, rs).await;
    let stages = [
        stages::Breakdown::between(&start, &middle, one.rps * d as f64),
        stages::Breakdown::between(&middle, &end, many.rps * d as f64),
    ];
    let catch_up = match missed {
        0 => None,
        n => Some(catch_up(rs, script, n).await?),
    };
    let replicas = rs
        .inspector()?
        .converged(Duration::from_secs(30))
        .await
        .map_err(|_| err("replicas did not converge"))?;
    if catalogs > 1 {
        rs.inspector()?
            .catalogs_converged(Duration::from_secs(30))
            .await
            .map_err(|digests| err(format!("catalogs did not converge: {digests:?}")))?;
    }
    Ok(Orders {
        mode: rs.replication(),
        catalogs,
        one,
        many,
        cpu,
        stages,
        orders: replicas[0].orders,
        digest: replicas[0].digest.clone(),
        catch_up,
    })
}

/// The report's rows for the floor.
fn floor_rows(floor: &floor::Floor) -> [Row; 4] {
    let row = |what: &str, ours| Row {
        what: what.into(),
        ours,
        base: None,
        by_latency: false,
        target: "-".into(),
        met: None,
    };
    [
        row("floor: sled insert + flush, one writer", floor.flush),
        row("floor: two-hop proxy chain, 1 conn", floor.chain),
        row(
            "floor of an order: the chain + two flushes (p50)",
            floor.order(),
        ),
        row(
            "beside the floor: sled two-tree transaction + flush, one writer",
            floor.transaction,
        ),
    ]
}

/// The report's rows for one mode's orders: the one-client p50 against the floor of
/// an order, the 32-client orders/s against the bare proxy hop at 32 connections.
fn order_rows(m: &Orders, floor: &floor::Floor, hop_32: WrkResult) -> [Row; 2] {
    let (latency, throughput) = match m.mode {
        Replication::PrimaryBackup if m.catalogs == 1 => (
            (
                "p50 ≤ 1.5 ms".to_string(),
                Some(m.one.p50_ms <= 1.5 && m.one.non_2xx == 0),
            ),
            (
                "≥ 5,000 orders/s".to_string(),
                Some(m.many.rps >= 5000.0 && m.many.non_2xx == 0),
            ),
        ),
        _ => (("-".to_string(), None), ("-".to_string(), None)),
    };
    [
        Row {
            what: format!("POST /orders ({}), 1 client: p50 vs the floor", m.label()),
            ours: m.one,
            base: Some(floor.order()),
            by_latency: true,
            target: latency.0,
            met: latency.1,
        },
        Row {
            what: format!(
                "POST /orders ({}), 32 clients: orders/s vs bare proxy hop",
                m.label()
            ),
            ours: m.many,
            base: Some(hop_32),
            by_latency: false,
            target: throughput.0,
            met: throughput.1,
        },
    ]
}

/// `dir`'s sibling named `<dir's name>-<suffix>`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!("-{suffix}"));
    dir.with_file_name(name)
}

fn front_url(front: &Url, path: &str) -> String {
    format!("{}{path}", front.as_str())
}
