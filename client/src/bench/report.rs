//! The benchmark's report: one row per measurement (a ratio to its baseline where
//! there is one, and whether it meets its target), written as `PERFORMANCE.md`.

use std::fmt::Write as _;

use super::{BenchPlan, WrkResult};

/// One row of the report.
pub(super) struct Row {
    pub(super) what: String,
    pub(super) ours: WrkResult,
    pub(super) base: Option<WrkResult>,
    /// The ratio column compares p50 latencies (ours ÷ base, lower is better), not
    /// requests/s (ours ÷ base, higher is better).
    pub(super) by_latency: bool,
    pub(super) target: String,
    pub(super) met: Option<bool>,
}

/// A row comparing `ours` with `base`: met when `ours` makes at least `at_least` ×
/// the requests/s of `base` (`of`, in the target's words) with no error reply.
pub(super) fn ratio_row(
    what: String,
    ours: WrkResult,
    base: WrkResult,
    at_least: f64,
    of: &str,
) -> Row {
    let ratio = if base.rps > 0.0 {
        ours.rps / base.rps
    } else {
        0.0
    };
    Row {
        what,
        ours,
        base: Some(base),
        by_latency: false,
        target: format!("≥ {at_least} × {of}"),
        met: Some(ratio >= at_least && ours.non_2xx == 0),
    }
}

/// A row comparing `ours` with `base` with no target: a cost shown, not held to.
pub(super) fn cost_row(what: String, ours: WrkResult, base: WrkResult) -> Row {
    Row {
        what,
        ours,
        base: Some(base),
        by_latency: false,
        target: "-".into(),
        met: None,
    }
}

pub(super) fn report(
    plan: &BenchPlan,
    rows: &[Row],
    durable: &str,
    catch_up: &str,
    seconds: f64,
) -> String {
    let mut md = String::from("# Performance\n\n");
    let _ = writeln!(
        md,
        "Measured on {} by `{}` on this project's 2-core machine ({seconds:.0} s, {} s per \
         measurement, `wrk` as the load generator for both sides of each ratio, sharing \
         the two cores with the services). Release build, three order replicas. Every order \
         is flushed on the catalog, and, before its reply, on all three replicas in \
         primary-backup mode or on a majority (two of three) in raft mode. Lookups are of \
         `Tux`; orders are of one unit of a random toy.\n",
        today(),
        plan.command,
        plan.duration
    );
    let _ = writeln!(md, "| measurement | toystore req/s | p50 ms | p99 ms | baseline req/s | baseline p50 ms | baseline p99 ms | ratio | target | met |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let (b_rps, b50, b99, ratio) = match r.base {
            Some(b) => (
                format!("{:.0}", b.rps),
                format!("{:.3}", b.p50_ms),
                format!("{:.3}", b.p99_ms),
                match r.by_latency {
                    true if b.p50_ms > 0.0 => format!("p50 {:.2}×", r.ours.p50_ms / b.p50_ms),
                    false if b.rps > 0.0 => format!("{:.2}", r.ours.rps / b.rps),
                    _ => "-".into(),
                },
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.3} | {:.3} | {b_rps} | {b50} | {b99} | {ratio} | {} | {} |",
            r.what,
            r.ours.rps,
            r.ours.p50_ms,
            r.ours.p99_ms,
            r.target,
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            }
        );
    }
    let errors: u64 = rows.iter().map(|r| r.ours.non_2xx).sum();
    // Where the readings written by hand go (`keep_readings` puts them back).
    let _ = writeln!(md, "\n{}\n{}", READINGS.0, READINGS.1);
    let _ = writeln!(
        md,
        "\nNon-2xx replies during the run: {errors}. {durable}\n"
    );
    let _ = writeln!(
        md,
        "Baselines: `client baseline` — a bare axum server answering the same body as a \
         cached lookup, and a bare axum proxy hop forwarding to it over one pooled reqwest \
         client (`client/src/baseline.rs`). The floor rows (`client/src/bench/floor.rs`): \
         one sled insert and flush by a lone writer on the services' file system, a bare \
         two-hop proxy chain (`wrk` → proxy → proxy → server) at one connection, and from \
         them the floor of an order, the chain's p50 plus two flushes' (an order has two \
         durable stages in sequence); each one-client order row's ratio is its p50 over \
         that floor, each 32-client order row's its orders/s over the bare proxy hop's \
         requests/s at 32 connections. Re-run with `{}` (it installs nothing: `wrk` \
         must be on the PATH, e.g. `apt-get install -y wrk`). Numbers on this shared \
         2-core machine vary by about ±15% from run to run.\n",
        plan.command
    );
    md.push_str(catch_up);
    md.push_str(NOTES);
    md
}

/// The marks around the paragraphs that read a run's table, written by hand: a new
/// run keeps them (to be brought up to date by whoever reads the new numbers).
pub(super) const READINGS: (&str, &str) = (
    "<!-- readings: written by hand, kept by `client bench` -->",
    "<!-- /readings -->",
);

/// `new` with each section of `old` that a run keeps in place of its own: the
/// readings, and the scale sections (`client bench --scale` writes those).
pub(super) fn keep_sections(new: &str, old: &str) -> String {
    let scale = crate::scale::every_marks().map(|marks| marks.bounds());
    let mut md = new.to_string();
    for bounds in std::iter::once(READINGS).chain(scale) {
        if let Some(section) = crate::scale::section_of(old, bounds) {
            md = crate::scale::with_section(&md, section, bounds);
        }
    }
    md
}

/// What makes the numbers what they are (design, not measurements).
const NOTES: &str = "## Where the time goes\n\n\
- **Cached lookups** are answered from memory with a body serialized once, when the \
  entry was filled: the front-end does the same work as the bare server plus a \
  validation, a lowercase and an LRU touch under a short mutex.\n\
- **Uncached lookups** add one keep-alive round trip to the catalog (one pooled \
  `reqwest` client, `TCP_NODELAY`) and a sled read: the same shape as the bare proxy \
  hop.\n\
- **An order** waits for three durable writes in sequence: the catalog's buy, then \
  the leader's write and the followers' writes (those two run at the same time). Each \
  is a sled flush, i.e. a `sync_file_range` on this machine's virtual disk, a few \
  hundred microseconds each. With one client that chain is the latency.\n\
- **Under load** every stage batches: the leader's buyer task sends all queued orders \
  to the catalog in one request (one transaction, one flush there), its writer stores \
  all bought orders in one transaction and replicates them in one request per \
  follower (one flush each), and the catalog pushes the invalidations that piled up \
  in one request. The buyer and the writer work on different batches at the same \
  time. `RUST_LOG=order=debug` logs each batch's size and duration.\n\
- **The limit at 32 clients** is the two cores: five services, the load generator \
  and the kernel's loopback networking share them; a system-wide profile (`perf \
  record -a`) during the order benchmark shows about half of all CPU time in the \
  kernel (loopback TCP, futex wake-ups, context switches) and about a tenth in \
  malloc/free (sled allocates on every write). A different allocator (mimalloc) and \
  batching the front-end's requests to the leader as well were tried and measured; \
  neither helped, so neither is in.\n\
- **Raft mode** adds work per order and per round: each replica writes an order \
  twice (the log entry, then the order when the entry is applied), followers learn of \
  each commit in a further message, and openraft passes every entry through several \
  tasks before the leader answers. Bought orders are put into log entries of up to \
  1024 with at most two entries in flight; `RUST_LOG=order=debug` logs each entry's \
  size and commit time (at 32 clients here: about 5 orders an entry, 4 ms to commit).\n";

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
pub(crate) fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_report_keeps_the_readings_and_the_scale_sections_of_the_old_one() {
        let (begin, end) = crate::scale::every_marks()[0].bounds();
        let readings = |text: &str| format!("{}\n{text}\n{}", READINGS.0, READINGS.1);
        let scale = format!("{begin}\nscale run\n{end}");
        let new = format!("table 2\n{}\nafter 2", readings(""));
        let old = format!("table 1\n{}\nafter 1\n\n{scale}", readings("read by hand"));
        assert_eq!(
            keep_sections(&new, &old),
            format!(
                "table 2\n{}\nafter 2\n\n{scale}\n",
                readings("read by hand")
            )
        );
        assert_eq!(keep_sections(&new, "nothing kept"), new);
    }

    #[test]
    fn a_ratio_row_is_met_at_its_factor_without_errors() {
        let at = |rps, non_2xx| WrkResult {
            rps,
            non_2xx,
            ..WrkResult::default()
        };
        let row = ratio_row("x".into(), at(95.0, 0), at(100.0, 0), 0.95, "metrics off");
        assert_eq!(row.target, "≥ 0.95 × metrics off");
        assert_eq!(row.met, Some(true));
        assert_eq!(
            ratio_row("x".into(), at(94.0, 0), at(100.0, 0), 0.95, "b").met,
            Some(false)
        );
        assert_eq!(
            ratio_row("x".into(), at(99.0, 1), at(100.0, 0), 0.95, "b").met,
            Some(false)
        );
    }
}
