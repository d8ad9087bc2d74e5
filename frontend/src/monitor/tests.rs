//! The `monitor` module's tests.

use super::*;
use common::domain::OrderNumber;
use common::wire::Role;

fn status(id: u32, role: Role, ready: bool, epoch: u64, orders: u64) -> ReplicaStatus {
    ReplicaStatus {
        failure: None,
        id: ReplicaId(id),
        mode: Replication::PrimaryBackup,
        role,
        ready,
        epoch: Epoch(epoch),
        leader: None,
        last_order: orders.checked_sub(1).map(OrderNumber),
        last_epoch: None,
        orders,
        digest: String::new(),
        commit: None,
        lagging: Vec::new(),
        term: None,
        commit_index: None,
        applied_index: None,
    }
}

fn snapshot(leader: Option<(ReplicaId, Epoch)>, replicas: Vec<ReplicaRow>) -> Snapshot {
    Snapshot {
        mode: Replication::PrimaryBackup,
        leader,
        replicas,
        catalog: CatalogState::default(),
        frontends: Vec::new(),
        cache: CacheView {
            enabled: true,
            capacity: 10,
            entries: Vec::new(),
            events: Vec::new(),
            next: 0,
        },
        cache_stats: CacheStats {
            enabled: true,
            capacity: 10,
            size: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
            invalidations: 0,
            leased: true,
            lease_expiries: 0,
        },
        flashes: Vec::new(),
        history: Vec::new(),
        feed: Vec::new(),
        cache_feed: Vec::new(),
    }
}

fn replicas() -> Replicas {
    let url = |p| reqwest::Url::parse(&format!("http://127.0.0.1:{p}")).expect("url");
    Replicas(vec![
        (ReplicaId(3), url(3)),
        (ReplicaId(1), url(1)),
        (ReplicaId(2), url(2)),
    ])
}

#[test]
fn rows_are_in_id_order_with_their_distance_from_the_leader() {
    let statuses = vec![
        (ReplicaId(3), status(3, Role::Leader, true, 2, 10)),
        (ReplicaId(1), status(1, Role::Follower, true, 2, 7)),
    ];
    let rows = rows(&replicas(), statuses);
    let seen: Vec<(u32, bool, Option<u64>)> = rows
        .iter()
        .map(|r| (r.id.get(), r.status.is_some(), r.behind))
        .collect();
    assert_eq!(
        seen,
        vec![(1, true, Some(3)), (2, false, None), (3, true, Some(0))]
    );
}

#[test]
fn a_replica_that_goes_down_comes_back_and_catches_up_makes_three_events_and_no_more() {
    let mut catching_up = HashSet::new();
    let all = |follower: Option<ReplicaStatus>, behind| {
        snapshot(
            Some((ReplicaId(3), Epoch(2))),
            vec![
                ReplicaRow {
                    id: ReplicaId(2),
                    status: follower,
                    behind,
                },
                ReplicaRow {
                    id: ReplicaId(3),
                    status: Some(status(3, Role::Leader, true, 2, 10)),
                    behind: Some(0),
                },
            ],
        )
    };
    let up = all(Some(status(2, Role::Follower, true, 2, 10)), Some(0));
    let down = all(None, None);
    let back = all(Some(status(2, Role::Follower, false, 2, 4)), Some(6));
    let caught_up = all(Some(status(2, Role::Follower, true, 2, 10)), Some(0));

    assert_eq!(changes(&up, &up, &mut catching_up), vec![]);
    assert_eq!(
        changes(&up, &down, &mut catching_up),
        vec![(FeedKind::Down, "order2 is down".to_string())]
    );
    assert_eq!(
        changes(&down, &back, &mut catching_up),
        vec![(FeedKind::Up, "order2 is up, 6 orders behind".to_string())]
    );
    assert_eq!(changes(&back, &back, &mut catching_up), vec![]);
    assert_eq!(
        changes(&back, &caught_up, &mut catching_up),
        vec![(
            FeedKind::CaughtUp,
            "order2 caught up (10 orders)".to_string()
        )]
    );
    assert_eq!(changes(&caught_up, &caught_up, &mut catching_up), vec![]);

    // Back already in step: one line says both.
    assert_eq!(
        changes(&down, &caught_up, &mut HashSet::new()),
        vec![(
            FeedKind::Up,
            "order2 is up and caught up (10 orders)".to_string()
        )]
    );

    // A ready follower a few orders behind (orders in flight) is not news.
    let in_flight = all(Some(status(2, Role::Follower, true, 2, 8)), Some(2));
    assert_eq!(changes(&caught_up, &in_flight, &mut catching_up), vec![]);
    assert_eq!(changes(&in_flight, &caught_up, &mut catching_up), vec![]);
}

#[test]
fn a_new_leader_and_a_restock_are_news() {
    let mut before = snapshot(Some((ReplicaId(3), Epoch(1))), Vec::new());
    let mut after = snapshot(Some((ReplicaId(2), Epoch(2))), Vec::new());
    let toy = |quantity| CatalogProduct {
        name: "Tux".into(),
        price: 1.0,
        quantity,
        version: common::domain::Version(0),
    };
    before.catalog = CatalogState {
        up: true,
        products: vec![toy(0)],
        health: None,
        replicas: Vec::new(),
    };
    after.catalog = CatalogState {
        up: true,
        products: vec![toy(100)],
        health: None,
        replicas: Vec::new(),
    };
    assert_eq!(
        changes(&before, &after, &mut HashSet::new()),
        vec![
            (FeedKind::Leader, "order2 leads (epoch 2)".to_string()),
            (FeedKind::Restock, "Tux restocked: 0 → 100".to_string()),
        ]
    );
}

#[test]
fn many_cache_events_of_a_kind_make_one_line() {
    let event = |seq, kind, name: &str| CacheEvent {
        seq,
        at_ms: 0,
        kind,
        name: name.into(),
    };
    let mut events = vec![event(0, CacheEventKind::Evicted, "tux")];
    for (i, name) in ["a", "b", "a", "c"].iter().enumerate() {
        events.push(event(i as u64 + 1, CacheEventKind::Invalidated, name));
    }
    events.push(event(9, CacheEventKind::Filled, "tux"));
    assert_eq!(
        cache_lines(&events),
        vec![
            (FeedKind::Evicted, "cache: tux evicted".to_string()),
            (
                FeedKind::Invalidated,
                "cache: 4 entries invalidated (a, b, c)".to_string()
            ),
        ]
    );
}

#[test]
fn rates_come_from_the_difference_of_two_readings_of_each_front_end() {
    let served = |lookups, lookup_ms: u64, orders, order_ms: u64| {
        Some(Served {
            lookups,
            lookup_us: lookup_ms * 1000,
            orders,
            order_us: order_ms * 1000,
        })
    };
    let before = [
        served(10, 100, 0, 0),
        served(0, 0, 5, 50),
        served(7, 7, 7, 7),
    ];
    // The second one went down, the third restarted (its counters began again).
    let after = [served(30, 140, 0, 0), None, served(1, 1, 1, 1)];
    let (each, sum) = rates(&before, &after, 0.5);
    assert_eq!(
        each[0],
        Sample {
            lookups_per_s: Some(40.0),
            orders_per_s: Some(0.0),
            lookup_ms: Some(2.0),
            order_ms: None,
        }
    );
    assert_eq!(each[1], Sample::default());
    assert_eq!(each[2], Sample::default());
    assert_eq!(sum, each[0]);

    // Two front-ends: their rates add up, their latencies are weighted by count.
    let before = [served(0, 0, 0, 0), served(0, 0, 0, 0)];
    let after = [served(10, 10, 1, 10), served(30, 90, 3, 10)];
    let (_, sum) = rates(&before, &after, 1.0);
    assert_eq!(
        sum,
        Sample {
            lookups_per_s: Some(40.0),
            orders_per_s: Some(4.0),
            lookup_ms: Some(2.5),
            order_ms: Some(5.0),
        }
    );
    // Metrics off everywhere: nothing measured.
    assert_eq!(rates(&[None], &[None], 0.5).1, Sample::default());
}

fn frontend(name: &str, up: bool) -> FrontendRow {
    FrontendRow {
        name: name.to_string(),
        this: name == "frontend1",
        url: None,
        health: up.then(|| FrontendHealth {
            service: "frontend".into(),
            leader: Some(ReplicaId(1)),
            epoch: Some(Epoch(1)),
            cache: snapshot(None, Vec::new()).cache_stats,
            name: name.to_string(),
            served: None,
        }),
        rates: Sample::default(),
    }
}

#[test]
fn front_ends_going_down_and_coming_back_are_news() {
    let mut catching_up = HashSet::new();
    let mut before = snapshot(None, Vec::new());
    before.frontends = vec![frontend("frontend1", true), frontend("frontend2", true)];
    let mut after = before.clone();
    after.frontends[1] = frontend("frontend2", false);
    assert_eq!(
        changes(&before, &after, &mut catching_up),
        [(FeedKind::Down, "frontend2 is down".to_string())]
    );
    assert_eq!(
        changes(&after, &before, &mut catching_up),
        [(FeedKind::Up, "frontend2 is up".to_string())]
    );
    assert!(changes(&before, &before, &mut catching_up).is_empty());
}
