//! Where an order's time goes: the mean of each stage an order passes, from the
//! services' own histograms (`/metrics`: each one's `_sum` and `_count`), read before
//! and after a measurement.
//!
//! A stage that works in batches (a buy batch, a write batch, a log entry) is timed
//! once per batch, so its mean is a batch's; the "per order" column says how many
//! batches an order shared (1 with one client; 0.1 when ten orders shared each). The
//! stages nest and overlap (the leader's whole `POST /orders` holds the buy and the
//! write; the local flush and the followers' round trips run at the same time), so
//! the rows are not meant to add up: each says what one step took.

use std::collections::HashMap;
use std::fmt::Write as _;

use common::topology::Kind;
use lab::cluster::RunSh;

/// One stage: what it is, which services record it, and its histogram (a metric
/// name, and a label that must be present, if any).
struct Stage {
    what: &'static str,
    kind: Kind,
    name: &'static str,
    label: &'static str,
}

const fn stage(what: &'static str, kind: Kind, name: &'static str, label: &'static str) -> Stage {
    Stage {
        what,
        kind,
        name,
        label,
    }
}

const DURATION: &str = "http_request_duration_seconds";

/// The stages in the order an order meets them; a mode's run shows those its
/// services recorded.
const STAGES: &[Stage] = &[
    stage(
        "front-end: `POST /orders`, whole",
        Kind::Frontend,
        DURATION,
        r#"route="/orders",method="POST""#,
    ),
    stage(
        "leader: `POST /orders`, whole",
        Kind::Order,
        DURATION,
        r#"route="/orders",method="POST""#,
    ),
    stage(
        "leader: waiting for a buy batch",
        Kind::Order,
        "batch_wait_seconds",
        r#"batcher="buyer""#,
    ),
    stage(
        "leader: a buy batch at the catalog, round trip",
        Kind::Order,
        "buyer_batch_seconds",
        "",
    ),
    stage(
        "catalog: a buy batch handled",
        Kind::Catalog,
        DURATION,
        r#"route="/internal/buy-batch""#,
    ),
    stage(
        "catalog: its flush",
        Kind::Catalog,
        "group_flush_seconds",
        "",
    ),
    stage(
        "catalog leader: waiting for a log entry",
        Kind::Catalog,
        "batch_wait_seconds",
        r#"batcher="raft proposer""#,
    ),
    stage(
        "catalog leader: an entry committed and applied",
        Kind::Catalog,
        "catalog_raft_commit_seconds",
        "",
    ),
    stage(
        "catalog follower: a Raft message handled",
        Kind::Catalog,
        DURATION,
        r#"route="/internal/catalog-raft/{kind}""#,
    ),
    stage(
        "leader: waiting for a write batch",
        Kind::Order,
        "batch_wait_seconds",
        r#"batcher="order writer""#,
    ),
    stage(
        "leader: a write batch (its flush and the followers', at once)",
        Kind::Order,
        "writer_batch_seconds",
        "",
    ),
    stage(
        "leader: its own flush",
        Kind::Order,
        "writer_flush_seconds",
        "",
    ),
    stage(
        "leader: a follower's round trip",
        Kind::Order,
        "replicate_seconds",
        "",
    ),
    stage(
        "follower: a batch handled (stored and flushed)",
        Kind::Order,
        DURATION,
        r#"route="/internal/replicate""#,
    ),
    stage(
        "leader: waiting for a log entry",
        Kind::Order,
        "batch_wait_seconds",
        r#"batcher="raft proposer""#,
    ),
    stage(
        "leader: an entry committed and applied",
        Kind::Order,
        "raft_commit_seconds",
        "",
    ),
    stage(
        "follower: a Raft message handled",
        Kind::Order,
        DURATION,
        r#"route="/internal/raft/{kind}""#,
    ),
];

/// Every service's histogram sums and counts at one moment, added up per kind of
/// service: `(kind, name, labels)` → `(sum, count)`.
#[derive(Default)]
pub(crate) struct Scrape(HashMap<(Kind, String, String), (f64, f64)>);

/// Reads every service's `/metrics`; a service that does not answer adds nothing.
pub(crate) async fn scrape(rs: &RunSh) -> Scrape {
    let http = reqwest::Client::new();
    let mut out = Scrape::default();
    for service in rs.topology.services() {
        let url = format!("{}metrics", rs.topology.url(service));
        let Ok(reply) = http.get(&url).send().await else {
            continue;
        };
        let Ok(text) = reply.text().await else {
            continue;
        };
        out.add(service.kind, &text);
    }
    out
}

impl Scrape {
    /// Adds the `_sum` and `_count` lines of one service's metrics text.
    fn add(&mut self, kind: Kind, text: &str) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let (name, sum) = if let Some(n) = name.strip_suffix("_sum") {
                (n, true)
            } else if let Some(n) = name.strip_suffix("_count") {
                (n, false)
            } else {
                continue;
            };
            let cell = self
                .0
                .entry((kind, name.to_string(), labels.to_string()))
                .or_default();
            if sum {
                cell.0 += value;
            } else {
                cell.1 += value;
            }
        }
    }

    /// A stage's sum and count, over every series of its kind, name and label.
    fn total(&self, stage: &Stage) -> (f64, f64) {
        self.0
            .iter()
            .filter(|((kind, name, labels), _)| {
                *kind == stage.kind && name == stage.name && labels.contains(stage.label)
            })
            .fold((0.0, 0.0), |(s, c), (_, (sum, count))| (s + sum, c + count))
    }
}

/// A stage's mean over a measurement, and how many times it ran per order.
#[derive(Debug, Clone, Copy)]
struct Mean {
    ms: f64,
    per_order: f64,
}

/// The stages of one measurement: its mean per stage, `None` where the stage did not
/// run.
pub(crate) struct Breakdown(Vec<Option<Mean>>);

impl Breakdown {
    /// The stages between two scrapes, over `orders` orders placed meanwhile.
    pub(crate) fn between(before: &Scrape, after: &Scrape, orders: f64) -> Self {
        Breakdown(
            STAGES
                .iter()
                .map(|stage| {
                    let (s0, c0) = before.total(stage);
                    let (s1, c1) = after.total(stage);
                    let count = c1 - c0;
                    (count > 0.0 && orders > 0.0).then(|| Mean {
                        ms: (s1 - s0) / count * 1000.0,
                        per_order: count / orders,
                    })
                })
                .collect(),
        )
    }
}

/// The report's table for one run: the stages either measurement saw, with one
/// client's means and 32 clients' means and batches per order.
pub(crate) fn table(one: &Breakdown, many: &Breakdown) -> String {
    let mut md = String::from(
        "| stage | 1 client: mean ms | 32 clients: mean ms | 32 clients: times per order |\n\
         |---|---|---|---|\n",
    );
    for (i, stage) in STAGES.iter().enumerate() {
        let (a, b) = (one.0[i], many.0[i]);
        if a.is_none() && b.is_none() {
            continue;
        }
        let ms = |m: Option<Mean>| m.map_or("-".into(), |m| format!("{:.3}", m.ms));
        let per = b.map_or("-".into(), |m| format!("{:.2}", m.per_order));
        let _ = writeln!(md, "| {} | {} | {} | {per} |", stage.what, ms(a), ms(b));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# TYPE buyer_batch_seconds histogram
buyer_batch_seconds_bucket{le="0.001"} 1
buyer_batch_seconds_sum 0.5
buyer_batch_seconds_count 100
http_request_duration_seconds_sum{route="/internal/replicate",method="POST"} 1
http_request_duration_seconds_count{route="/internal/replicate",method="POST"} 10
"#;

    const AFTER: &str = r#"buyer_batch_seconds_sum 1.5
buyer_batch_seconds_count 600
http_request_duration_seconds_sum{route="/internal/replicate",method="POST"} 2
http_request_duration_seconds_count{route="/internal/replicate",method="POST"} 510
"#;

    fn mean(b: &Breakdown, what: &str) -> Option<Mean> {
        let i = STAGES.iter().position(|s| s.what == what).expect("a stage");
        b.0[i]
    }

    #[test]
    fn a_stage_is_its_sums_and_counts_between_two_scrapes_over_every_service_of_its_kind() {
        let (mut before, mut after) = (Scrape::default(), Scrape::default());
        before.add(Kind::Order, BEFORE);
        after.add(Kind::Order, AFTER);
        // A second follower's figures add to the first's.
        before.add(Kind::Order, "http_request_duration_seconds_count{route=\"/internal/replicate\",method=\"POST\"} 0\n");
        after.add(Kind::Order, "http_request_duration_seconds_sum{route=\"/internal/replicate\",method=\"POST\"} 1\nhttp_request_duration_seconds_count{route=\"/internal/replicate\",method=\"POST\"} 500\n");
        let b = Breakdown::between(&before, &after, 1000.0);

        let buy = mean(&b, "leader: a buy batch at the catalog, round trip").expect("buys");
        assert!((buy.ms - 2.0).abs() < 1e-9, "1 s over 500 batches: {buy:?}");
        assert!((buy.per_order - 0.5).abs() < 1e-9);
        let handled = mean(&b, "follower: a batch handled (stored and flushed)").expect("batches");
        assert!(
            (handled.ms - 2.0).abs() < 1e-9,
            "2 s over 1000 batches: {handled:?}"
        );
        // Recorded by no service of its kind: absent, and left out of the table.
        assert!(mean(&b, "catalog: its flush").is_none());
        let md = table(&b, &b);
        assert!(
            md.contains(
                "| leader: a buy batch at the catalog, round trip | 2.000 | 2.000 | 0.50 |"
            ),
            "{md}"
        );
        assert!(!md.contains("catalog: its flush"), "{md}");
    }
}
