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
    assert_eq!(all.as_object().map(|o| o.len()), Some(7));
    let second = Panels {
        feed: "g".into(),
        ..first.clone()
    };
    assert_eq!(second.changed_since(Some(&first)), r#"{"feed":"g"}"#);
}

#[test]
fn a_replica_that_stopped_for_good_says_why() {
    let status = |failure: Option<&str>, ready| -> ReplicaStatus {
        serde_json::from_value(serde_json::json!({
            "id": 2, "role": "follower", "ready": ready, "epoch": 3, "leader": 3,
            "last_order": null, "last_epoch": null, "orders": 0, "digest": "0",
            "failure": failure,
        }))
        .expect("status")
    };
    assert_eq!(ready_cell(&status(None, true)), "yes");
    assert_eq!(ready_cell(&status(None, false)), "no");
    assert_eq!(
        ready_cell(&status(Some("storage failed: <No space left>"), false)),
        r#"<span title="storage failed: &lt;No space left&gt;">failed</span>"#
    );
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

#[test]
fn every_front_end_has_a_row_with_its_leader_cache_lease_and_rates() {
    use crate::monitor::{FrontendRow, Sample};
    use common::domain::{Epoch, ReplicaId};
    use common::wire::{CacheStats, FrontendHealth};
    let health = |leased| FrontendHealth {
        service: "frontend".into(),
        leader: Some(ReplicaId(2)),
        epoch: Some(Epoch(7)),
        cache: CacheStats {
            enabled: true,
            capacity: 10,
            size: 4,
            hits: 0,
            misses: 0,
            evictions: 0,
            invalidations: 0,
            leased,
            lease_expiries: 0,
        },
        name: String::new(),
        served: None,
    };
    let rows = [
        FrontendRow {
            name: "frontend1".into(),
            this: false,
            url: Some("http://127.0.0.1:8080".into()),
            health: None,
            rates: Sample::default(),
        },
        FrontendRow {
            name: "frontend2".into(),
            this: true,
            url: None,
            health: Some(health(false)),
            rates: Sample {
                lookups_per_s: Some(1234.4),
                orders_per_s: Some(0.0),
                ..Sample::default()
            },
        },
    ];
    let out = frontends::frontends(&rows, Replication::PrimaryBackup);
    assert!(
        out.contains(r#"<tr data-frontend="frontend1" class="down"><td>frontend1</td><td>http://127.0.0.1:8080</td><td colspan="5">down"#),
        "{out}"
    );
    assert!(
        out.contains(
            r#"<tr data-frontend="frontend2" class="up this"><td>frontend2</td><td>this page</td><td>order2 (epoch 7)</td><td>4 of 10</td><td><strong>expired</strong></td><td>1,234</td><td>0</td></tr>"#
        ),
        "{out}"
    );
}
