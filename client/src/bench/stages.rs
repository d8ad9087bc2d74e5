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

use std::fmt::Write as _;

use common::topology::Kind;
use lab::cluster::RunSh;

/// One stage: what it is, which services record it, and its histogram (a metric
/// name, and the labels its samples must have).
struct Stage {
    what: &'static str,
    kind: Kind,
    name: &'static str,
    labels: &'static [(&'static str, &'static str)],
}

const fn stage(
    what: &'static str,
    kind: Kind,
    name: &'static str,
    labels: &'static [(&'static str, &'static str)],
) -> Stage {
    Stage {
        what,
        kind,
        name,
        labels,
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
        &[("route", "/orders"), ("method", "POST")],
    ),
    stage(
        "leader: `POST /orders`, whole",
        Kind::Order,
        DURATION,
        &[("route", "/orders"), ("method", "POST")],
    ),
    stage(
        "leader: waiting for a buy batch",
        Kind::Order,
        "batch_wait_seconds",
        &[("batcher", "buyer")],
    ),
    stage(
        "leader: a buy batch at the catalog, round trip",
        Kind::Order,
        "buyer_batch_seconds",
        &[],
    ),
    stage(
        "catalog: a buy batch handled",
        Kind::Catalog,
        DURATION,
        &[("route", "/internal/buy-batch")],
    ),
    stage(
        "catalog: its flush",
        Kind::Catalog,
        "group_flush_seconds",
        &[],
    ),
    stage(
        "catalog leader: waiting for a log entry",
        Kind::Catalog,
        "batch_wait_seconds",
        &[("batcher", "raft proposer")],
    ),
    stage(
        "catalog leader: an entry committed and applied",
        Kind::Catalog,
        "catalog_raft_commit_seconds",
        &[],
    ),
    stage(
        "catalog follower: a Raft message handled",
        Kind::Catalog,
        DURATION,
        &[("route", "/internal/catalog-raft/{kind}")],
    ),
    stage(
        "leader: waiting for a write batch",
        Kind::Order,
        "batch_wait_seconds",
        &[("batcher", "order writer")],
    ),
    stage(
        "leader: a write batch (its flush and the followers', at once)",
        Kind::Order,
        "writer_batch_seconds",
        &[],
    ),
    stage(
        "leader: its own flush",
        Kind::Order,
        "writer_flush_seconds",
        &[],
    ),
    stage(
        "leader: a follower's round trip",
        Kind::Order,
        "replicate_seconds",
        &[],
    ),
    stage(
        "follower: a batch handled (stored and flushed)",
        Kind::Order,
        DURATION,
        &[("route", "/internal/replicate")],
    ),
    stage(
        "leader: waiting for a log entry",
        Kind::Order,
        "batch_wait_seconds",
        &[("batcher", "raft proposer")],
    ),
    stage(
        "leader: an entry committed and applied",
        Kind::Order,
        "raft_commit_seconds",
        &[],
    ),
    stage(
        "follower: a Raft message handled",
        Kind::Order,
        DURATION,
        &[("route", "/internal/raft/{kind}")],
    ),
];

/// Every service's metrics text at one moment, with its kind of service.
#[derive(Default)]
pub(crate) struct Scrape(Vec<(Kind, String)>);

/// Reads every service's `/metrics` through `http`; a service that does not answer
/// adds nothing.
pub(crate) async fn scrape(http: &reqwest::Client, rs: &RunSh) -> Scrape {
    let mut out = Scrape::default();
    for service in rs.topology.services() {
        let url = format!("{}metrics", rs.topology.url(service));
        let Ok(reply) = http.get(&url).send().await else {
            continue;
        };
        let Ok(text) = reply.text().await else {
            continue;
        };
        out.0.push((service.kind, text));
    }
    out
}

impl Scrape {
    /// A stage's histogram sum and count, over every service of its kind.
    fn total(&self, stage: &Stage) -> (f64, f64) {
        let of = |suffix: &str| -> f64 {
            let name = format!("{}{suffix}", stage.name);
            self.0
                .iter()
                .filter(|(kind, _)| *kind == stage.kind)
                .map(|(_, text)| common::metrics::sum(text, &name, stage.labels))
                .sum()
        };
        (of("_sum"), of("_count"))
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
        before.0.push((Kind::Order, BEFORE.into()));
        after.0.push((Kind::Order, AFTER.into()));
        // A second follower's figures add to the first's.
        let replicate = r#"{route="/internal/replicate",method="POST"}"#;
        before.0.push((
            Kind::Order,
            format!("http_request_duration_seconds_count{replicate} 0\n"),
        ));
        after.0.push((
            Kind::Order,
            format!(
                "http_request_duration_seconds_sum{replicate} 1\n\
                 http_request_duration_seconds_count{replicate} 500\n"
            ),
        ));
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
