//! The machine's tests: a snapshot read long after it was taken — while buys replace
//! keys it holds and add keys it must not — installed and followed by the entries
//! since, leaves a replica exactly where one that applied them all stands.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::domain::{IdempotencyKey, ToyName};
use common::wire::BuyRequest;

use super::*;
use crate::store::{BuyOutcome, SeedToy};

fn entry(index: u64, change: Change) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(change),
    }
}

/// Buys of one unit each, as (toy, key, the buy's own cutoff), at `time`.
fn buys(time: u64, key_cutoff: u64, buys: &[(&str, &str, u64)]) -> Change {
    Change::Buys {
        buys: buys
            .iter()
            .map(|(toy, key, valid_from)| BuyRequest {
                name: ToyName::new(*toy).expect("name"),
                quantity: 1,
                key: IdempotencyKey::new(*key).expect("key"),
                request_id: None,
                valid_from: *valid_from,
            })
            .collect(),
        time,
        key_cutoff,
    }
}

fn seed() -> Change {
    let toy = |name: &str| SeedToy {
        name: ToyName::new(name).expect("name"),
        price: 1.0,
    };
    Change::Seed {
        toys: vec![toy("Tux"), toy("Fox")],
        stock: 20,
    }
}

fn machine() -> (tempfile::TempDir, Machine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    (dir, Machine::open(store).expect("machine"))
}

async fn apply(machine: &mut Machine, entries: Vec<Entry>) -> Vec<Applied> {
    machine.apply(entries).await.expect("apply")
}

/// Every unit sold, as applying reported it: a repeated buy sells none.
fn sold(applied: &[Applied]) -> usize {
    applied
        .iter()
        .map(|a| match a {
            Applied::Buys(outcomes) => outcomes
                .iter()
                .filter(|o| matches!(o, Ok(BuyOutcome::Applied(_))))
                .count(),
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn a_snapshot_read_late_holds_the_keys_of_its_index() {
    let (_a_dir, mut a) = machine();
    // Up to index 3: keys k1..k4, none expired (cutoff 0).
    let before = vec![
        entry(1, seed()),
        entry(2, buys(100, 0, &[("Tux", "k1", 0), ("Fox", "k2", 0)])),
        entry(3, buys(200, 0, &[("Tux", "k3", 0), ("Fox", "k4", 0)])),
    ];
    apply(&mut a, before.clone()).await;
    let snapshot = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    assert_eq!(snapshot.meta.last_log_id.map(|id| id.index), Some(3));

    // Since: k4 repeated, then bought again by a buy whose own cutoff has it expired;
    // k5 first bought after the snapshot and then repeated; k1 bought again once the
    // machine's cutoff passed it, k3 (made at 200) repeated.
    let since = vec![
        entry(4, buys(300, 0, &[("Fox", "k4", 0), ("Tux", "k5", 0)])),
        entry(5, buys(400, 0, &[("Fox", "k4", 250), ("Tux", "k5", 0)])),
        entry(6, buys(500, 150, &[("Tux", "k1", 0), ("Tux", "k3", 0)])),
    ];
    let replies = apply(&mut a, since.clone()).await;
    assert_eq!(sold(&replies), 3, "k5, k4 again, k1 again");
    // The pruner stops at the snapshot's cutoff (0), not the machine's (150).
    assert_eq!(Machine::prune_cutoff(&a.store).expect("cutoff"), 0);

    // Read now, installed on an empty replica, followed by the entries since.
    let mut bytes = Vec::new();
    let mut data = snapshot.snapshot;
    data.read_to_end(&mut bytes).await.expect("read");
    let (_b_dir, mut b) = installed(&snapshot.meta, &bytes).await;

    // Installed, it is what a replica that applied up to index 3 holds.
    let (_c_dir, mut c) = machine();
    apply(&mut c, before).await;
    assert_eq!(b.store.digest().ok(), c.store.digest().ok());
    assert_eq!(
        b.store.keys_at(3, 0).expect("keys"),
        c.store.keys_at(3, 0).expect("keys")
    );

    assert_eq!(apply(&mut b, since).await, replies);
    assert_eq!(b.store.digest().ok(), a.store.digest().ok());
    assert_eq!(b.store.totals().ok(), a.store.totals().ok());
    assert_eq!(
        b.store.keys_at(6, 150).expect("keys"),
        a.store.keys_at(6, 150).expect("keys")
    );
}

/// Installs `bytes` of the snapshot of `meta` on a new replica.
async fn installed(
    meta: &SnapshotMeta<NodeId, Node>,
    bytes: &[u8],
) -> (tempfile::TempDir, Machine) {
    let (dir, mut machine) = machine();
    let mut received = machine.begin_receiving_snapshot().await.expect("begin");
    received.write_all(bytes).await.expect("write");
    machine
        .install_snapshot(meta, received)
        .await
        .expect("install");
    (dir, machine)
}

#[tokio::test]
async fn a_snapshot_an_earlier_version_kept_whole_is_still_sent_whole() {
    /// How the earlier version stored it.
    #[derive(Serialize)]
    struct Whole {
        id: String,
        key_cutoff: u64,
        restock_round: u64,
        image: Vec<u8>,
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut a = Machine::open(store.clone()).expect("machine");
    let before = vec![
        entry(1, seed()),
        entry(2, buys(100, 0, &[("Tux", "k1", 0), ("Fox", "k2", 0)])),
    ];
    apply(&mut a, before).await;
    let meta = a.take_snapshot().await.expect("snapshot");
    let whole = Whole {
        id: meta.snapshot_id.clone(),
        key_cutoff: 0,
        restock_round: 0,
        image: consensus::codec::to_bytes(&store.whole_image().expect("image")).expect("encode"),
    };
    let whole = consensus::codec::to_bytes(&whole).expect("encode");
    store
        .write(|tx| {
            tx.remove_meta(SNAPSHOT_HEAD)?;
            tx.set_meta(WHOLE_SNAPSHOT, &whole)?;
            Ok(())
        })
        .expect("write");

    // Opened by this version, and read after k1 was bought again (a buy's own cutoff).
    let mut a = Machine::open(store.clone()).expect("machine");
    assert!(store.meta(WHOLE_SNAPSHOT).expect("meta").is_none());
    let since = vec![entry(
        3,
        buys(300, 0, &[("Tux", "k1", 200), ("Fox", "k2", 0)]),
    )];
    let replies = apply(&mut a, since.clone()).await;
    assert_eq!(sold(&replies), 1, "k1 again; k2 repeated");
    let current = a
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("a snapshot");
    let mut bytes = Vec::new();
    let mut data = current.snapshot;
    data.read_to_end(&mut bytes).await.expect("read");
    let (_b_dir, mut b) = installed(&current.meta, &bytes).await;
    assert_eq!(apply(&mut b, since).await, replies);
    assert_eq!(b.store.digest().ok(), a.store.digest().ok());
}

#[tokio::test]
async fn a_newer_snapshot_lets_the_pruner_on_and_an_older_one_is_no_longer_read() {
    let (_dir, mut a) = machine();
    apply(
        &mut a,
        vec![
            entry(1, seed()),
            entry(2, buys(100, 0, &[("Tux", "k1", 0)])),
        ],
    )
    .await;
    let old = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    apply(&mut a, vec![entry(3, buys(300, 200, &[("Fox", "k2", 0)]))]).await;
    assert_eq!(Machine::prune_cutoff(&a.store).expect("cutoff"), 0);
    a.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    assert_eq!(Machine::prune_cutoff(&a.store).expect("cutoff"), 200);
    assert_eq!(a.store.prune_keys(200, 100).expect("prune"), 1, "k1");

    let mut data = old.snapshot;
    let read = data.read_to_end(&mut Vec::new()).await;
    assert!(read.is_err(), "an overtaken snapshot was read: {read:?}");
}
