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

#[test]
fn a_replicated_catalog_shows_each_replica_like_the_order_replicas() {
    use common::domain::{LogIndex, ReplicaId, Term};
    use common::wire::GroupStatus;
    let replica = |id, role, applied| CatalogHealth {
        service: "catalog".into(),
        ready: true,
        restock_period_ms: 10_000,
        next_restock_ms: 5_000,
        digest: format!("digest-{applied}"),
        group: Some(GroupStatus {
            id: ReplicaId(id),
            role,
            term: Term(4),
            leader: Some(ReplicaId(2)),
            commit_index: Some(LogIndex(12)),
            applied_index: Some(LogIndex(applied)),
        }),
    };
    let mut out = String::new();
    catalog_replicas(
        &mut out,
        &[
            Some(replica(1, Role::Follower, 9)),
            Some(replica(2, Role::Leader, 12)),
            None,
        ],
    );
    assert!(
        out.contains(r#"data-catalog="catalog1" data-role="follower""#),
        "{out}"
    );
    assert!(
        out.contains(r#"data-catalog="catalog2" data-role="leader""#),
        "{out}"
    );
    assert!(
        out.contains(r#"data-catalog="catalog3" data-role="down""#),
        "{out}"
    );
    // catalog1 has applied 9 of the leader's 12 committed entries.
    assert!(out.contains("<td>9</td><td class=\"mono\" title=\"digest-9\">digest-9</td><td><strong>3</strong></td>"), "{out}");
}
