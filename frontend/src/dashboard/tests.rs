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
