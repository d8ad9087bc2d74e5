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

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plotters::prelude::*;

use crate::bench::{catch_up, today, wrk, CatchUp, WrkResult, ORDER_SCRIPT};
use crate::plot::register_font;
use crate::ClientError;
use common::domain::ReplicaId;
use common::wire::Replication;
use lab::cluster::{Inspector, RunSh};

/// Where a mode's results go: the markers around its section of `PERFORMANCE.md`,
/// its heading and its plot.
pub struct Marks {
    pub begin: &'static str,
    pub end: &'static str,
    title: &'static str,
    plot: &'static str,
}

/// The [`Marks`] of `mode`'s scale results, or, with a replicated catalog (of either
/// mode), of those with three catalog replicas.
pub fn marks(mode: Replication, catalogs: usize) -> Marks {
    if catalogs > 1 {
        return Marks {
            begin:
                "<!-- scale catalogs: written by `client bench --scale --catalog-replicas 3` -->",
            end: "<!-- /scale catalogs -->",
            title: "Scale with three catalog replicas",
            plot: "scale-catalogs.png",
        };
    }
    match mode {
        Replication::PrimaryBackup => Marks {
            begin: "<!-- scale: written by `client bench --scale` -->",
            end: "<!-- /scale -->",
            title: "Scale",
            plot: "scale.png",
        },
        Replication::Raft => Marks {
            begin: "<!-- scale raft: written by `client bench --scale --replication raft` -->",
            end: "<!-- /scale raft -->",
            title: "Scale in raft mode",
            plot: "scale-raft.png",
        },
    }
}

/// Every scale section's [`Marks`] (for the plain bench to keep them all).
pub fn every_marks() -> [Marks; 3] {
    [
        marks(Replication::PrimaryBackup, 1),
        marks(Replication::Raft, 1),
        marks(Replication::PrimaryBackup, 3),
    ]
}

/// Longest `wrk` run while growing (each run is one point of the plot).
const CHUNK: u64 = 10;
/// Resident memory allowed per service.
const RSS_TARGET_MIB: f64 = 150.0;
/// Disk allowed per order per replica.
const DISK_TARGET: f64 = 250.0;
/// Start to ready of a replica that is not behind.
const RESTART_TARGET: Duration = Duration::from_millis(500);
/// Orders per second of a catching-up replica.
const CATCH_UP_TARGET: f64 = 50_000.0;

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
    std::fs::write(&path, with_section(&old, &section, &marks))
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
    let started = Instant::now();
    let args = ["start", name.as_str()];
    let start = rs.run(&args, &[]);
    let ready = async {
        loop {
            let statuses = inspector.statuses().await;
            if statuses.iter().any(|s| s.id == id && s.ready) {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (started_ok, ready) = tokio::join!(start, ready);
    started_ok?;
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

/// Orders/s of each step: every chunk that started in it, weighted by its length.
fn steps(chunks: &[Chunk], step: u64) -> Vec<(u64, f64)> {
    let mut out: Vec<(u64, f64, f64)> = Vec::new(); // (step start, orders, seconds)
    for c in chunks {
        let start = c.before / step * step;
        let placed = c.result.rps * c.seconds as f64;
        match out.last_mut() {
            Some(last) if last.0 == start => {
                last.1 += placed;
                last.2 += c.seconds as f64;
            }
            _ => out.push((start, placed, c.seconds as f64)),
        }
    }
    out.into_iter()
        .map(|(start, placed, secs)| (start, placed / secs.max(1.0)))
        .collect()
}

fn yes_no(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}

fn report(
    plan: &ScalePlan,
    chunks: &[Chunk],
    footprints: &[Footprint],
    restart: Duration,
    caught_up: &CatchUp,
    stored: u64,
    took: Duration,
) -> String {
    let marks = marks(
        plan.run_sh.replication(),
        plan.run_sh.catalog_replicas().len(),
    );
    let mut md = String::new();
    let _ = writeln!(md, "{}\n## {}\n", marks.begin, marks.title);
    let _ = writeln!(
        md,
        "Measured on {} by `{}` ({:.0} s): a fresh cluster ({}) grown to {} \
         orders by 32 `wrk` clients ordering one unit of a random toy, in runs of at most \
         {CHUNK} s; then each service's footprint, a follower's restart, and a follower's \
         catch-up after {} missed orders.\n",
        today(),
        plan.command,
        took.as_secs_f64(),
        match plan.run_sh.catalog_replicas().len() {
            0 | 1 => plan.run_sh.replication().to_string(),
            n => format!(
                "{} replication, {n} catalog replicas",
                plan.run_sh.replication()
            ),
        },
        stored,
        plan.catch_up,
    );
    let _ = writeln!(
        md,
        "![orders/s against stored orders](img/{})\n",
        marks.plot
    );

    let steps = steps(chunks, plan.step);
    let fastest = steps.iter().map(|s| s.1).fold(0.0, f64::max);
    let slowest = steps.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    let spread = if fastest > 0.0 {
        slowest / fastest
    } else {
        0.0
    };
    md.push_str("| stored orders | orders/s |\n|---|---|\n");
    for (start, rate) in &steps {
        let _ = writeln!(md, "| {start}–{} | {rate:.0} |", start + plan.step);
    }

    // The largest disk per order of the services named `prefix`….
    let per_order = |prefix: &str| {
        footprints
            .iter()
            .filter(|f| f.service.starts_with(prefix))
            .map(|f| f.disk_bytes as f64 / stored.max(1) as f64)
            .fold(0.0, f64::max)
    };
    let (per_order, catalog_per_order) = (per_order("order"), per_order("catalog"));
    let rss_max = footprints
        .iter()
        .filter_map(|f| f.rss_mib)
        .fold(0.0, f64::max);
    let catch_up_rate = caught_up.missed as f64 / caught_up.seconds.max(0.001);

    md.push_str("\n| figure | measured | target | met |\n|---|---|---|---|\n");
    let _ = writeln!(
        md,
        "| orders/s, slowest step ÷ fastest | {spread:.2} ({slowest:.0} / {fastest:.0}) | ≥ 0.90 | {} |",
        yes_no(spread >= 0.9)
    );
    let _ = writeln!(
        md,
        "| disk per order per replica (largest replica) | {per_order:.0} bytes | ≤ {DISK_TARGET:.0} bytes | {} |",
        yes_no(per_order <= DISK_TARGET)
    );
    let _ = writeln!(
        md,
        "| disk per order, catalog (largest replica) | {catalog_per_order:.0} bytes | ≤ {DISK_TARGET:.0} bytes | {} |",
        yes_no(catalog_per_order <= DISK_TARGET)
    );
    let _ = writeln!(
        md,
        "| resident memory, largest service | {rss_max:.0} MiB | ≤ {RSS_TARGET_MIB:.0} MiB | {} |",
        yes_no(rss_max <= RSS_TARGET_MIB)
    );
    let _ = writeln!(
        md,
        "| follower not behind, start to ready | {:.0} ms | ≤ {} ms | {} |",
        restart.as_secs_f64() * 1000.0,
        RESTART_TARGET.as_millis(),
        yes_no(restart <= RESTART_TARGET)
    );
    let _ = writeln!(
        md,
        "| catch-up of {} missed orders | {:.1} s ({catch_up_rate:.0} orders/s) | ≥ {CATCH_UP_TARGET:.0} orders/s | {} |",
        caught_up.missed,
        caught_up.seconds,
        yes_no(catch_up_rate >= CATCH_UP_TARGET)
    );

    md.push_str("\n| service | resident memory | disk | disk per order |\n|---|---|---|---|\n");
    for f in footprints {
        let per = if f.service.starts_with("order") || f.service.starts_with("catalog") {
            format!("{:.0} bytes", f.disk_bytes as f64 / stored.max(1) as f64)
        } else {
            "-".into()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} MB | {per} |",
            f.service,
            f.rss_mib.map_or("?".to_string(), |m| format!("{m:.0} MiB")),
            f.disk_bytes as f64 / 1e6,
        );
    }
    let _ = writeln!(
        md,
        "\nMemory and disk are read at {stored} orders, after the growth, from `/proc/<pid>/status` \
         (`VmRSS`) and the blocks allocated under each data directory. The restart time is from \
         `run.sh start` until the replica's `/health` says ready (polled every 10 ms); the catch-up \
         time is `run.sh start` until ready, with the orders missed counted by the leader.\n\n{}",
        marks.end
    );
    md
}

/// `doc` with its scale section replaced by `section` (or `section` appended).
pub fn with_section(doc: &str, section: &str, marks: &Marks) -> String {
    match (doc.find(marks.begin), doc.find(marks.end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{section}{}", &doc[..b], &doc[e + marks.end.len()..])
        }
        _ => {
            let mut out = doc.trim_end().to_string();
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(section);
            out.push('\n');
            out
        }
    }
}

/// The scale section of `doc`, if it has one (for the plain bench to keep).
pub fn section_of<'a>(doc: &'a str, marks: &Marks) -> Option<&'a str> {
    let b = doc.find(marks.begin)?;
    let e = doc[b..].find(marks.end)? + b;
    Some(&doc[b..e + marks.end.len()])
}

/// Orders/s (each chunk a point, each step a bar) against stored orders.
fn draw(path: &Path, chunks: &[Chunk], step: u64) -> Result<(), ClientError> {
    use crate::plot::err as plot_err;
    register_font();
    let root = BitMapBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let x_max = chunks.iter().map(|c| c.after).max().unwrap_or(1) as f64 / 1000.0;
    let y_max = chunks.iter().map(|c| c.result.rps).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption("orders/s as the store grows", ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max * 1.02, 0f64..y_max)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("orders stored (thousands)")
        .y_desc("orders/s (32 clients)")
        .draw()
        .map_err(plot_err)?;
    let blue = RGBColor(31, 119, 180);
    let grey = RGBColor(150, 150, 150);
    for (start, rate) in steps(chunks, step) {
        let (x0, x1) = (start as f64 / 1000.0, (start + step) as f64 / 1000.0);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x1.min(x_max), rate)],
                grey.mix(0.25).filled(),
            )))
            .map_err(plot_err)?;
    }
    let points: Vec<(f64, f64)> = chunks
        .iter()
        .map(|c| ((c.before + c.after) as f64 / 2000.0, c.result.rps))
        .collect();
    chart
        .draw_series(LineSeries::new(points.clone(), blue.stroke_width(2)))
        .map_err(plot_err)?
        .label("each run (≤ 10 s)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], blue.stroke_width(2)));
    chart
        .draw_series(points.iter().map(|&p| Circle::new(p, 3, blue.filled())))
        .map_err(plot_err)?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            grey.mix(0.25).filled(),
        )))
        .map_err(plot_err)?
        .label(format!("mean of each {}k-order step", step / 1000))
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 18, y + 5)], grey.mix(0.4).filled())
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_s_section_is_replaced_or_appended() {
        let [pb, raft, _] = every_marks();
        let section = format!("{}\nnew\n{}", pb.begin, pb.end);
        let old_raft = format!("{}\nraft\n{}", raft.begin, raft.end);
        let doc = format!(
            "# Performance\n\n{}\nold\n{}\n\n{old_raft}\n\ntail\n",
            pb.begin, pb.end
        );
        assert_eq!(
            with_section(&doc, &section, &pb),
            format!("# Performance\n\n{section}\n\n{old_raft}\n\ntail\n")
        );
        assert_eq!(
            with_section("# Performance\n", &section, &pb),
            format!("# Performance\n\n{section}\n")
        );
        assert_eq!(
            section_of(&doc, &pb),
            Some(format!("{}\nold\n{}", pb.begin, pb.end).as_str())
        );
        assert_eq!(section_of(&doc, &raft), Some(old_raft.as_str()));
        assert_eq!(section_of("# Performance", &pb), None);
    }

    #[test]
    fn steps_weigh_their_runs_by_length() {
        let chunk = |before, rps, seconds| Chunk {
            before,
            after: before + 1,
            result: WrkResult {
                rps,
                ..WrkResult::default()
            },
            seconds,
        };
        let chunks = [
            chunk(0, 1000.0, 10),
            chunk(60_000, 3000.0, 5),
            chunk(100_000, 2000.0, 10),
        ];
        let steps = steps(&chunks, 100_000);
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].0, 0);
        assert!((steps[0].1 - 25_000.0 / 15.0).abs() < 1e-9, "{steps:?}");
        assert_eq!(steps[1], (100_000, 2000.0));
    }
}
