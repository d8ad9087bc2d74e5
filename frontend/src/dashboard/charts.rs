//! The dashboard's charts of the last minute (throughput and latency), drawn as
//! inline SVG.

use std::fmt::Write as _;

use super::count;
use crate::monitor::{Sample, HISTORY};

/// The last minute: orders and lookups per second, and their mean latency.
pub(super) fn charts(history: &[Sample]) -> String {
    let mut out = String::new();
    chart(
        &mut out,
        "orders/s",
        "",
        &[("orders", history.iter().map(|s| s.orders_per_s).collect())],
    );
    chart(
        &mut out,
        "lookups/s",
        "",
        &[("lookups", history.iter().map(|s| s.lookups_per_s).collect())],
    );
    chart(
        &mut out,
        "mean latency",
        " ms",
        &[
            ("orders", history.iter().map(|s| s.order_ms).collect()),
            ("lookups", history.iter().map(|s| s.lookup_ms).collect()),
        ],
    );
    out
}

/// One small line chart over the last [`HISTORY`] samples, newest on the right, with
/// each series' latest value in the caption.
fn chart(out: &mut String, title: &str, unit: &str, series: &[(&str, Vec<Option<f64>>)]) {
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0_f64, |a, b| a.max(*b));
    let top = nice_ceiling(top);
    let _ = write!(out, "<figure class=\"chart\"><figcaption>{title}");
    for (name, values) in series {
        let latest = values.iter().rev().flatten().next();
        let shown = latest.map_or("–".to_string(), |v| format_value(*v, unit));
        let _ = write!(out, " <span class=\"s-{name}\">{name} {shown}</span>");
    }
    let width = HISTORY - 1;
    let _ = write!(
        out,
        "</figcaption><svg viewBox=\"0 0 {width} 40\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"{title}, last minute\">"
    );
    for (name, values) in series {
        // Samples are right-aligned: the newest is always at the right edge.
        let offset = HISTORY.saturating_sub(values.len());
        let mut points = String::new();
        let mut flush = |points: &mut String| {
            if !points.is_empty() {
                let _ = write!(out, "<polyline class=\"s-{name}\" points=\"{points}\"/>");
                points.clear();
            }
        };
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => {
                    let y = 40.0 - v / top * 38.0;
                    let _ = write!(points, "{},{y:.1} ", i + offset);
                }
                None => flush(&mut points),
            }
        }
        flush(&mut points);
    }
    let _ = write!(
        out,
        "</svg><div class=\"axis\"><span>−60 s</span><span>max {}</span></div></figure>",
        format_value(top, unit)
    );
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    let mut step = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if v <= m * step {
                return m * step;
            }
        }
        step *= 10.0;
    }
}

pub(super) fn format_value(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        count(v.round() as u64)
    } else if v < 10.0 {
        format!("{v:.2}{unit}")
    } else {
        format!("{v:.0}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.5), 2.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(4200.0), 5000.0);
        assert_eq!(nice_ceiling(5001.0), 10000.0);
    }

    #[test]
    fn a_gap_in_the_samples_breaks_the_line() {
        let mut out = String::new();
        chart(
            &mut out,
            "t",
            "",
            &[("x", vec![Some(1.0), None, Some(2.0), Some(2.0)])],
        );
        assert_eq!(out.matches("<polyline").count(), 2, "{out}");
    }
}
