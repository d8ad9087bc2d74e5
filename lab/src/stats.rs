//! Latency samples and their summary (mean, p50, p99, max), and error counts by kind.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The three request types a session makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `GET /products/<name>`
    Query,
    /// `POST /orders`
    Order,
    /// `GET /orders/<n>` (read-back at the end of a session)
    Lookup,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Query, Kind::Order, Kind::Lookup];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Query => "query",
            Kind::Order => "order",
            Kind::Lookup => "lookup",
        }
    }
}

/// Latency samples of one request type, in microseconds: an HDR histogram with three
/// significant digits (a percentile is within 0.1% of the sample's value), so a long
/// run's memory stays the same and merging sessions is cheap.
#[derive(Debug, Clone)]
pub struct Samples(Histogram<u64>);

impl Default for Samples {
    fn default() -> Self {
        // Three significant digits is a valid precision (1 to 5 are), and the
        // histogram grows to any value recorded.
        Samples(Histogram::new(3).expect("a valid precision"))
    }
}

impl Samples {
    pub fn record(&mut self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // `record` grows the histogram to the value; it fails only past the largest
        // value any histogram can hold, which then counts as that.
        if self.0.record(micros).is_err() {
            self.0.saturating_record(micros);
        }
    }

    pub fn merge(&mut self, other: Samples) {
        // Adding fails only for a histogram that cannot grow; this one can.
        let _ = self.0.add(&other.0);
    }

    pub fn summary(&self) -> Summary {
        let h = &self.0;
        let ms = |micros: u64| micros as f64 / 1000.0;
        Summary {
            count: h.len(),
            mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// Summary of one request type's latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>7} req  mean {:>7.3} ms  p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>8.3} ms",
            self.count, self.mean_ms, self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

/// Everything a set of sessions measured.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub latencies: BTreeMap<Kind, Samples>,
    /// Failures as the client saw them, by "request type: kind" (e.g. `order: 503`).
    pub errors: BTreeMap<String, u64>,
    /// Orders refused for lack of stock (409): expected when toys sell out.
    pub sold_out: u64,
    /// Orders placed and acknowledged.
    pub orders: u64,
    /// Orders whose read-back did not match what was ordered.
    pub mismatches: Vec<String>,
}

impl Record {
    /// The markdown table of latencies per request kind (for the reports).
    pub fn latency_table(&self) -> String {
        let mut md = String::from(
            "| request | count | mean ms | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n",
        );
        for kind in Kind::ALL {
            let s = self.summary(kind);
            md.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                kind.label(),
                s.count,
                s.mean_ms,
                s.p50_ms,
                s.p99_ms,
                s.max_ms
            ));
        }
        md
    }

    pub fn latency(&mut self, kind: Kind, took: Duration) {
        self.latencies.entry(kind).or_default().record(took);
    }

    pub fn error(&mut self, kind: Kind, what: impl fmt::Display) {
        *self
            .errors
            .entry(format!("{}: {what}", kind.label()))
            .or_default() += 1;
    }

    pub fn merge(&mut self, other: Record) {
        for (k, s) in other.latencies {
            self.latencies.entry(k).or_default().merge(s);
        }
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.sold_out += other.sold_out;
        self.orders += other.orders;
        self.mismatches.extend(other.mismatches);
    }

    pub fn summary(&self, kind: Kind) -> Summary {
        self.latencies
            .get(&kind)
            .cloned()
            .unwrap_or_default()
            .summary()
    }

    pub fn failures(&self) -> u64 {
        self.errors.values().sum()
    }

    /// A human-readable report.
    pub fn print(&self) {
        for kind in Kind::ALL {
            println!("  {:<7}{}", kind.label(), self.summary(kind));
        }
        println!(
            "  orders placed {}, refused as sold out {}, read back wrong {}",
            self.orders,
            self.sold_out,
            self.mismatches.len()
        );
        if self.errors.is_empty() {
            println!("  client-visible failures: none");
        } else {
            println!("  client-visible failures:");
            for (what, n) in &self.errors {
                println!("    {n:>6}  {what}");
            }
        }
        for m in self.mismatches.iter().take(10) {
            println!("  mismatch: {m}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let mut s = Samples::default();
        for ms in 1..=100u64 {
            s.record(Duration::from_millis(ms));
        }
        let sum = s.summary();
        let near = |got: f64, want: f64| (got - want).abs() <= want / 1000.0;
        assert_eq!(sum.count, 100);
        assert!(near(sum.p50_ms, 50.0), "{sum:?}");
        assert!(near(sum.p99_ms, 99.0), "{sum:?}");
        assert!(near(sum.max_ms, 100.0), "{sum:?}");
        assert!(near(sum.mean_ms, 50.5), "{sum:?}");
        // Below two milliseconds every microsecond is its own bucket.
        let mut fast = Samples::default();
        for micros in [250u64, 900, 1_700] {
            fast.record(Duration::from_micros(micros));
        }
        assert_eq!((fast.summary().p50_ms, fast.summary().max_ms), (0.9, 1.7));
    }

    #[test]
    fn an_empty_summary_is_zero() {
        assert_eq!(Samples::default().summary().count, 0);
        assert_eq!(Samples::default().summary().p99_ms, 0.0);
    }

    #[test]
    fn records_merge() {
        let mut a = Record::default();
        a.latency(Kind::Query, Duration::from_millis(1));
        a.error(Kind::Order, "503");
        let mut b = Record::default();
        b.latency(Kind::Query, Duration::from_millis(3));
        b.error(Kind::Order, "503");
        b.orders = 2;
        a.merge(b);
        assert_eq!(a.summary(Kind::Query).count, 2);
        assert_eq!(a.errors["order: 503"], 2);
        assert_eq!((a.orders, a.failures()), (2, 2));
    }
}
