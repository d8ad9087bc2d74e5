//! What a scale run writes: its section of `PERFORMANCE.md` (which section, by
//! [`Marks`]; the figures against their targets; the footprint table) and its plot.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use super::{Chunk, Footprint, ScalePlan, CHUNK};
use crate::bench::{today, CatchUp};
use crate::plot::register_font;
use crate::ClientError;
use common::wire::Replication;

/// Where a mode's results go: the markers around its section of `PERFORMANCE.md`,
/// its heading and its plot.
pub struct Marks {
    pub begin: &'static str,
    pub end: &'static str,
    title: &'static str,
    pub(super) plot: &'static str,
}

/// The [`Marks`] of `mode`'s scale results, or, with a replicated catalog (of either
/// mode), of those with three catalog replicas.
impl Marks {
    /// The begin and end marks, for [`with_section`] and [`section_of`].
    pub fn bounds(&self) -> (&'static str, &'static str) {
        (self.begin, self.end)
    }
}

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

/// Resident memory allowed per service.
const RSS_TARGET_MIB: f64 = 150.0;
/// Disk allowed per order per replica.
const DISK_TARGET: f64 = 250.0;
/// Start to ready of a replica that is not behind.
const RESTART_TARGET: Duration = Duration::from_millis(500);
/// Orders per second of a catching-up replica.
const CATCH_UP_TARGET: f64 = 50_000.0;

/// Orders/s of each step: every chunk that started in it, weighted by its length.
pub(super) fn steps(chunks: &[Chunk], step: u64) -> Vec<(u64, f64)> {
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

pub(super) fn report(
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

/// `doc` with its section between `bounds` (begin and end marks, e.g. a scale
/// section's [`Marks::bounds`]) replaced by `section` (or `section` appended).
pub fn with_section(doc: &str, section: &str, (begin, end): (&str, &str)) -> String {
    match (doc.find(begin), doc.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{section}{}", &doc[..b], &doc[e + end.len()..])
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

/// The section of `doc` between `bounds`, marks included, if it has one (for the
/// plain bench to keep).
pub fn section_of<'a>(doc: &'a str, (begin, end): (&str, &str)) -> Option<&'a str> {
    let b = doc.find(begin)?;
    let e = doc[b..].find(end)? + b;
    Some(&doc[b..e + end.len()])
}

/// Orders/s (each chunk a point, each step a bar) against stored orders.
pub(super) fn draw(path: &Path, chunks: &[Chunk], step: u64) -> Result<(), ClientError> {
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
    use crate::bench::WrkResult;

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
            with_section(&doc, &section, pb.bounds()),
            format!("# Performance\n\n{section}\n\n{old_raft}\n\ntail\n")
        );
        assert_eq!(
            with_section("# Performance\n", &section, pb.bounds()),
            format!("# Performance\n\n{section}\n")
        );
        assert_eq!(
            section_of(&doc, pb.bounds()),
            Some(format!("{}\nold\n{}", pb.begin, pb.end).as_str())
        );
        assert_eq!(section_of(&doc, raft.bounds()), Some(old_raft.as_str()));
        assert_eq!(section_of("# Performance", pb.bounds()), None);
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
