//! The follower's and the leader notice's rules, on one replica whose peers never
//! answer.

use super::*;
use axum::http::StatusCode;
use common::client::ClusterClient;
use common::domain::{Epoch, OrderNumber, ReplicaId};
use common::domain::{IdempotencyKey, ToyName};
use common::wire::LogPos;

fn rec(number: u64, epoch: u64) -> OrderRecord {
    OrderRecord {
        number: OrderNumber(number),
        name: ToyName::new("Tux").expect("name"),
        quantity: 1,
        key: IdempotencyKey::new(format!("k{number}-{epoch}")).expect("key"),
        epoch: Epoch(epoch),
        time: 1,
    }
}

/// A replica with no peers, caught up (so ready), holding `orders`.
async fn replica(orders: &[OrderRecord]) -> (tempfile::TempDir, Replica) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.append(orders).expect("append");
    let client = OrderClient::new(ClusterClient::new("t", Default::default()).expect("client"));
    // Replicas 2 and 3 are the leaders the tests' batches name; nothing listens at
    // their address (port 9, discard), so contacting them fails at once.
    let nowhere = Url::parse("http://127.0.0.1:9").expect("url");
    let peers = vec![(ReplicaId(2), nowhere.clone()), (ReplicaId(3), nowhere)];
    let replica = Replica::new(
        ReplicaId(1),
        store,
        peers,
        client,
        Timeouts::default(),
        &common::tasks::Tasks::new(),
    )
    .expect("replica");
    replica.catch_up().await;
    (dir, replica)
}

fn heartbeat(epoch: u64, prev: Option<&OrderRecord>) -> Replicate {
    Replicate {
        leader_id: ReplicaId(2),
        epoch: Epoch(epoch),
        prev: prev.map(LogPos::from),
        entries: Vec::new(),
        commit: None,
        request_ids: Vec::new(),
    }
}

#[tokio::test]
async fn a_heartbeat_drops_an_older_leaders_tail() {
    let (_dir, replica) = replica(&[rec(0, 1), rec(1, 1), rec(2, 1)]).await;
    replica
        .on_replicate(heartbeat(2, Some(&rec(0, 1))))
        .await
        .expect("heartbeat");
    assert_eq!(replica.store().count(), 1);
    assert_eq!(replica.store().last().expect("read"), Some(rec(0, 1)));
}

#[tokio::test]
async fn a_heartbeat_keeps_what_the_leader_has() {
    let (_dir, replica) = replica(&[rec(0, 1), rec(1, 2)]).await;
    replica
        .on_replicate(heartbeat(2, Some(&rec(1, 2))))
        .await
        .expect("heartbeat");
    assert_eq!(replica.store().count(), 2);
}

#[tokio::test]
async fn a_deposed_leaders_batch_is_refused_and_changes_nothing() {
    let (_dir, replica) = replica(&[rec(0, 1)]).await;
    replica
        .on_replicate(heartbeat(3, Some(&rec(0, 1))))
        .await
        .expect("newer leader");
    let stale = Replicate {
        leader_id: ReplicaId(3),
        epoch: Epoch(2),
        prev: Some(LogPos::from(&rec(0, 1))),
        entries: vec![rec(1, 2)],
        commit: None,
        request_ids: Vec::new(),
    };
    assert!(matches!(
        replica.on_replicate(stale).await,
        Err(OrderError::StaleEpoch {
            mine: Epoch(3),
            theirs: Epoch(2)
        })
    ));
    assert_eq!(replica.store().count(), 1);
    assert_eq!(replica.leadership().epoch, Epoch(3));
}

#[tokio::test]
async fn a_batch_that_follows_is_appended() {
    let (_dir, replica) = replica(&[rec(0, 1)]).await;
    let batch = Replicate {
        leader_id: ReplicaId(2),
        epoch: Epoch(1),
        prev: Some(LogPos::from(&rec(0, 1))),
        entries: vec![rec(1, 1), rec(2, 1)],
        commit: None,
        request_ids: Vec::new(),
    };
    let persisted = replica.on_replicate(batch).await.expect("append");
    assert_eq!(persisted.last_order, Some(OrderNumber(2)));
    assert_eq!(replica.store().count(), 3);
}

#[tokio::test]
async fn a_notice_naming_an_unknown_replica_or_an_absurd_epoch_changes_nothing() {
    let (_dir, replica) = replica(&[rec(0, 1)]).await;
    let before = replica.leadership();
    for notice in [
        LeaderNotice {
            leader_id: ReplicaId(9),
            epoch: Epoch(2),
        },
        LeaderNotice {
            leader_id: ReplicaId(2),
            epoch: Epoch(u64::MAX),
        },
        LeaderNotice {
            leader_id: ReplicaId(2),
            epoch: Epoch(MAX_EPOCH_STEP + 1),
        },
    ] {
        assert!(matches!(
            replica.on_notice(notice).await,
            Err(OrderError::BadRequest(_))
        ));
    }
    assert_eq!(replica.leadership(), before);
    assert_eq!(replica.store().epoch().expect("epoch"), (Epoch(0), None));
}

#[tokio::test]
async fn a_batch_from_an_unreachable_leader_that_does_not_follow_changes_nothing() {
    let (_dir, replica) = replica(&[rec(0, 1)]).await;
    let before = replica.leadership();
    let batch = Replicate {
        leader_id: ReplicaId(2),
        epoch: Epoch(5),
        prev: Some(LogPos::from(&rec(3, 4))),
        entries: vec![rec(4, 5)],
        commit: Some(OrderNumber(4)),
        request_ids: Vec::new(),
    };
    let refused = replica.on_replicate(batch).await;
    assert!(matches!(refused, Err(OrderError::Peer(_))), "{refused:?}");
    assert_eq!(
        refused.map_err(|e| e.status()).err(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(replica.leadership(), before);
    assert_eq!(replica.store().count(), 1);
    assert_eq!(replica.commit(), None);
}

#[tokio::test]
async fn malformed_batches_are_refused_before_anything_changes() {
    let (_dir, replica) = replica(&[rec(0, 1)]).await;
    let base = Replicate {
        leader_id: ReplicaId(2),
        epoch: Epoch(2),
        prev: Some(LogPos::from(&rec(0, 1))),
        entries: vec![rec(1, 2)],
        commit: None,
        request_ids: Vec::new(),
    };
    let bad = [
        Replicate {
            leader_id: ReplicaId(1),
            ..base.clone()
        },
        Replicate {
            leader_id: ReplicaId(7),
            ..base.clone()
        },
        Replicate {
            entries: vec![rec(2, 2)],
            ..base.clone()
        },
        Replicate {
            entries: vec![rec(1, 3)],
            ..base.clone()
        },
        Replicate {
            entries: vec![rec(1, 2), rec(3, 2)],
            ..base.clone()
        },
        Replicate {
            epoch: Epoch(u64::MAX),
            entries: vec![],
            ..base.clone()
        },
    ];
    for batch in bad {
        assert!(matches!(
            replica.on_replicate(batch).await,
            Err(OrderError::BadRequest(_))
        ));
    }
    assert_eq!(replica.leadership().epoch, Epoch(0));
    assert_eq!(replica.store().count(), 1);
}

#[tokio::test]
async fn a_follower_learns_the_commit_index_up_to_what_it_holds() {
    let (_dir, replica) = replica(&[rec(0, 1)]).await;
    let batch = Replicate {
        leader_id: ReplicaId(2),
        epoch: Epoch(1),
        prev: Some(LogPos::from(&rec(0, 1))),
        entries: vec![rec(1, 1)],
        commit: Some(OrderNumber(0)),
        request_ids: Vec::new(),
    };
    replica.on_replicate(batch).await.expect("append");
    assert_eq!(replica.commit(), Some(OrderNumber(0)));
    let ahead = Replicate {
        leader_id: ReplicaId(2),
        epoch: Epoch(1),
        prev: Some(LogPos::from(&rec(1, 1))),
        entries: vec![],
        commit: Some(OrderNumber(9)),
        request_ids: Vec::new(),
    };
    replica.on_replicate(ahead).await.expect("heartbeat");
    assert_eq!(replica.commit(), Some(OrderNumber(1)));
}
