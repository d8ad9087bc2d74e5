//! `client bench --scale`: what a growing history costs.
//!
//! Grows a fresh cluster's store to a million orders (32 `wrk` clients, in chunks of at
//! most ten seconds) and reports, in one run:
//! - orders/s per 100k-order step, and their spread (target: flat within 10%);
//! - disk bytes per order of each replica, the catalog's (each catalog replica's) too;
//! - resident memory of every service;
//! - how long a follower that is not behind takes from start to ready;
//! - how fast a follower catches up after missing 100k orders.
//!
//! The results go into their own section of `PERFORMANCE.md` (between the [`Marks`]
//! of the replication mode, or of three catalog replicas; the plain `client bench`
//! keeps them all when it rewrites the rest), with a plot of throughput against stored
//! orders, `img/scale.png` (raft mode: `img/scale-raft.png`; three catalog replicas:
//! `img/scale-catalogs.png`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bench::{catch_up, wrk, CatchUp, WrkResult, ORDER_SCRIPT};
use crate::ClientError;
use common::domain::ReplicaId;
use lab::cluster::{Inspector, RunSh};

mod report;

use report::{draw, marks, report};
pub use report::{every_marks, section_of, with_section, Marks};

/// Longest `wrk` run while growing (each run is one point of the plot).
const CHUNK: u64 = 10;
/// Settings of a scale run.
pub struct ScalePlan {
    pub run_sh: RunSh,
    /// Orders to grow the store to.
    pub orders: u64,
    /// Orders per reported step.
    pub step: u64,
    /// Orders a follower misses before its catch-up is timed.
    pub catch_up: u64,
    /// Where `PERFORMANCE.md` and the plot (in `img/`) go.
    pub out: PathBuf,
    pub command: String,
}

/// One `wrk` run while growing.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// Orders stored when it started and when it ended.
    before: u64,
    after: u64,
    result: WrkResult,
    seconds: u64,
}

/// A service's footprint at the end of the growth.
struct Footprint {
    service: String,
    rss_mib: Option<f64>,
    disk_bytes: u64,
}

fn err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Other(e.to_string())
}

pub async fn run(plan: ScalePlan) -> Result<(), ClientError> {
    let started = Instant::now();
    let rs = &plan.run_sh;
    let inspector = rs.inspector()?;
    let script = std::env::temp_dir().join(format!("toystore-scale-{}.lua", std::process::id()));
    std::fs::write(&script, ORDER_SCRIPT).map_err(err)?;
    let result = measure(&plan, &inspector, &script).await;
    let _ = std::fs::remove_file(&script);
    let (chunks, footprints, restart, caught_up, stored) = result?;

    let marks = marks(rs.replication(), rs.catalog_replicas().len());
    let plot = plan.out.join("img").join(marks.plot);
    if let Some(dir) = plot.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    draw(&plot, &chunks, plan.step)?;
    let section = report(
        &plan,
        &chunks,
        &footprints,
        restart,
        &caught_up,
        stored,
        started.elapsed(),
    );
    print!("{section}");
    let path = plan.out.join("PERFORMANCE.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, with_section(&old, &section, marks.bounds()))
        .map_err(|e| err(format!("{}: {e}", path.display())))?;
    println!("wrote {} and {}", path.display(), plot.display());
    Ok(())
}

/// Everything a scale run measures.
type Measured = (Vec<Chunk>, Vec<Footprint>, Duration, CatchUp, u64);

async fn measure(
    plan: &ScalePlan,
    inspector: &Inspector,
    script: &Path,
) -> Result<Measured, ClientError> {
    let rs = &plan.run_sh;
    let orders_url = format!("{}orders", rs.frontend_url());
    let stored = || async { leader_orders(inspector).await };

    println!("growing the store to {} orders", plan.orders);
    let mut chunks = Vec::new();
    let mut now = stored().await?;
    wrk(&orders_url, 32, 1, Some(script)).await?; // warm-up
    while now < plan.orders {
        // Up to the next step boundary, at the last chunk's rate, so that steps are
        // measured apart.
        let to_boundary = plan.step - now % plan.step;
        let rate = chunks
            .last()
            .map_or(2_000.0, |c: &Chunk| c.result.rps.max(100.0));
        let seconds = ((to_boundary as f64 / rate).ceil() as u64).clamp(1, CHUNK);
        let result = wrk(&orders_url, 32, seconds, Some(script)).await?;
        let after = stored().await?;
        if result.non_2xx > 0 {
            return Err(err(format!(
                "{} orders failed while growing",
                result.non_2xx
            )));
        }
        chunks.push(Chunk {
            before: now,
            after,
            result,
            seconds,
        });
        println!("  {after:>8} orders stored, {:.0} orders/s", result.rps);
        now = after;
    }
    let stored_at_end = inspector
        .converged(Duration::from_secs(60))
        .await
        .map_err(|_| err("replicas did not converge after growing"))?[0]
        .orders;

    println!("footprint of every service");
    let footprints = footprints(rs);

    let follower = follower(inspector).await?;
    println!("restart of order{follower}, not behind");
    let restart = restart_to_ready(rs, inspector, follower).await?;
    println!(
        "  ready {:.0} ms after its start",
        restart.as_secs_f64() * 1000.0
    );

    println!("catch-up after {} missed orders", plan.catch_up);
    let caught_up = catch_up(rs, script, plan.catch_up).await?;
    inspector
        .converged(Duration::from_secs(60))
        .await
        .map_err(|_| err("replicas did not converge after the catch-up"))?;
    Ok((chunks, footprints, restart, caught_up, stored_at_end))
}

/// Orders held by the leader.
async fn leader_orders(inspector: &Inspector) -> Result<u64, ClientError> {
    let leader = inspector.leader().await.ok_or_else(|| err("no leader"))?;
    inspector
        .statuses()
        .await
        .into_iter()
        .find(|s| s.id == leader)
        .map(|s| s.orders)
        .ok_or_else(|| err("the leader did not answer"))
}

async fn follower(inspector: &Inspector) -> Result<ReplicaId, ClientError> {
    let leader = inspector.leader().await.ok_or_else(|| err("no leader"))?;
    inspector
        .replica_ids()
        .into_iter()
        .find(|id| *id != leader)
        .ok_or_else(|| err("no follower"))
}

/// Kills follower `id` (it is not behind) and times its start until it says it is
/// ready, polling its health every 10 ms while `run.sh start` runs.
async fn restart_to_ready(
    rs: &RunSh,
    inspector: &Inspector,
    id: ReplicaId,
) -> Result<Duration, ClientError> {
    let name = format!("order{id}");
    rs.run(&["kill", &name], &[]).await?;
    // run.sh refuses a port still in use; the killed replica's may be, for a moment.
    let port = rs.topology.service(&name).map_err(err)?.port;
    let free_by = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
        && Instant::now() < free_by
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let args = ["start", name.as_str()];
    let start = rs.run(&args, &[]);
    let ready = async {
        loop {
            let statuses = inspector.statuses().await;
            if statuses.iter().any(|s| s.id == id && s.ready) {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // A start that fails ends the wait (it would never be ready).
    let ((), ready) = tokio::try_join!(start, ready)?;
    Ok(ready)
}

/// Resident memory and disk of every service, from `run.sh`'s PID files and data
/// directories.
fn footprints(rs: &RunSh) -> Vec<Footprint> {
    rs.topology
        .services()
        .iter()
        .map(|service| Footprint {
            service: service.name.clone(),
            rss_mib: rs.pid(&service.name).and_then(rss_mib),
            disk_bytes: rs
                .topology
                .data_dir(service, &rs.data_dir)
                .map_or(0, |d| disk_usage(&d)),
        })
        .collect()
}

/// `VmRSS` of a process, in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Bytes allocated on disk under `dir` (as `du` counts them).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
