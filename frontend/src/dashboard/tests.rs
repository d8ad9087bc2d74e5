//! The `dashboard` module's tests.

use super::*;

#[test]
fn text_is_escaped_for_html() {
    assert_eq!(
        Esc(r#"<a href="x">Tom & Jerry's</a>"#).to_string(),
        "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
    );
    assert_eq!(Esc("Tux").to_string(), "Tux");
}

#[test]
fn counts_have_thousands_separators() {
    assert_eq!(count(0), "0");
    assert_eq!(count(999), "999");
    assert_eq!(count(1000), "1,000");
    assert_eq!(count(1234567), "1,234,567");
}

#[test]
fn chart_tops_are_round() {
    assert_eq!(nice_ceiling(0.0), 1.0);
    assert_eq!(nice_ceiling(1.5), 2.0);
    assert_eq!(nice_ceiling(3.0), 5.0);
    assert_eq!(nice_ceiling(4200.0), 5000.0);
    assert_eq!(nice_ceiling(5001.0), 10000.0);
}

#[test]
fn only_changed_panels_are_sent_again() {
    let first = Panels {
        summary: "a".into(),
        feed: "f".into(),
        ..Panels::default()
    };
    let all: serde_json::Value = serde_json::from_str(&first.changed_since(None)).expect("json");
    assert_eq!(all.as_object().map(|o| o.len()), Some(6));
    let second = Panels {
        feed: "g".into(),
        ..first.clone()
    };
    assert_eq!(second.changed_since(Some(&first)), r#"{"feed":"g"}"#);
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
