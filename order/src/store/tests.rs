//! The store's tests: layout, figures, keys, pruning, reopening.

use common::domain::{Epoch, OrderNumber, ReplicaId};

use super::*;
use common::domain::{IdempotencyKey, ToyName};

fn rec(number: u64, epoch: u64, key: &str) -> OrderRecord {
    OrderRecord {
        number: OrderNumber(number),
        name: ToyName::new("Tux").expect("name"),
        quantity: 1,
        key: IdempotencyKey::new(key).expect("key"),
        epoch: Epoch(epoch),
        time: 1_000 + number,
    }
}

/// `rec` stored at `time`.
fn at(number: u64, key: &str, time: u64) -> OrderRecord {
    OrderRecord {
        time,
        ..rec(number, 1, key)
    }
}

/// The figures the store keeps: (digest, count).
fn figures(store: &Store) -> (u64, u64) {
    let digest = u64::from_str_radix(&store.digest(), 16).expect("hex");
    (digest, store.count())
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    (dir, store)
}

#[test]
fn appended_orders_are_found_by_number_and_key() {
    let (_dir, store) = open();
    store
        .append(&[rec(0, 1, "a"), rec(1, 1, "b")])
        .expect("append");
    assert_eq!(
        store.order(OrderNumber(1)).expect("read"),
        Some(rec(1, 1, "b"))
    );
    assert_eq!(store.by_key("a", 0).expect("read"), Some(rec(0, 1, "a")));
    assert_eq!(store.last().expect("read"), Some(rec(1, 1, "b")));
    assert_eq!(store.count(), 2);
}

#[test]
fn a_conflicting_entry_replaces_the_divergent_tail() {
    let (_dir, store) = open();
    store
        .append(&[rec(0, 1, "a"), rec(1, 1, "b"), rec(2, 1, "c")])
        .expect("append");
    let change = store.append(&[rec(1, 2, "x")]).expect("append");
    assert_eq!(change.removed, vec![rec(1, 1, "b"), rec(2, 1, "c")]);
    assert_eq!(store.last().expect("read"), Some(rec(1, 2, "x")));
    assert_eq!(store.by_key("b", 0).expect("read"), None);
    assert_eq!(store.by_key("c", 0).expect("read"), None);
    assert_eq!(store.count(), 2);
}

#[test]
fn re_sending_held_entries_changes_nothing() {
    let (_dir, store) = open();
    store
        .append(&[rec(0, 1, "a"), rec(1, 1, "b")])
        .expect("append");
    let digest = store.digest();
    let change = store
        .append(&[rec(0, 1, "a"), rec(1, 1, "b")])
        .expect("append");
    assert_eq!(change, Change::default());
    assert_eq!(store.digest(), digest);
}

#[test]
fn the_digest_depends_on_content_not_on_history() {
    let (_d1, one) = open();
    let (_d2, two) = open();
    one.append(&[rec(0, 1, "a"), rec(1, 1, "b")])
        .expect("append");
    two.append(&[rec(0, 1, "a"), rec(1, 1, "zz")])
        .expect("append");
    assert_ne!(one.digest(), two.digest());
    two.append(&[rec(1, 1, "b")]).expect("replace");
    assert_eq!(one.digest(), two.digest());
    two.truncate_after(Some(OrderNumber(0))).expect("truncate");
    one.truncate_after(Some(OrderNumber(0))).expect("truncate");
    assert_eq!(one.digest(), two.digest());
    assert_eq!(one.count(), 1);
}

#[test]
fn figures_are_rebuilt_on_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let digest = {
        let store = Store::open(dir.path()).expect("open");
        store
            .append(&[rec(0, 1, "a"), rec(1, 1, "b")])
            .expect("append");
        store.set_epoch(Epoch(7), ReplicaId(2)).expect("epoch");
        store.digest()
    };
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.digest(), digest);
    assert_eq!(store.count(), 2);
    assert_eq!(
        store.epoch().expect("epoch"),
        (Epoch(7), Some(ReplicaId(2)))
    );
}

#[test]
fn the_stored_figures_always_match_the_orders() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        store
            .append(&[rec(0, 1, "a"), rec(1, 1, "b"), rec(2, 1, "c")])
            .expect("append");
        store.append(&[rec(1, 2, "x")]).expect("replace the tail");
        store
            .truncate_after(Some(OrderNumber(0)))
            .expect("truncate");
        store
            .add_with_meta(&[rec(1, 3, "y"), rec(2, 3, "z")], &[])
            .expect("add");
    }
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(figures(&store), store.walk().expect("walk"));
    assert_eq!(store.count(), 3);
}

#[test]
fn figures_stay_right_while_meta_is_written_concurrently() {
    // Raft's snapshot builder writes `meta` while the state machine adds orders;
    // the figures used to be read before and stored after each commit, so a
    // concurrent meta write could put stale figures back.
    let (_dir, store) = open();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for n in 0..2000u64 {
                store
                    .add_with_meta(&[rec(n, 1, &format!("k{n}"))], &[])
                    .expect("add");
            }
        })
    };
    for i in 0..2000u64 {
        store
            .set_meta(&[(b"snapshot-ish", i.to_be_bytes().to_vec())])
            .expect("meta");
    }
    writer.join().expect("writer");
    assert_eq!(figures(&store), store.walk().expect("walk"));
    assert_eq!(store.count(), 2000);
}

#[test]
fn a_database_without_figures_is_walked_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        store
            .append(&[rec(0, 1, "a"), rec(1, 1, "b")])
            .expect("append");
        store.meta.remove(META_FIGURES).expect("forget the figures");
    }
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.count(), 2);
    assert!(store.meta(META_FIGURES).expect("meta").is_some());
}

#[test]
fn a_key_expires_with_its_order_s_time() {
    let (_dir, store) = open();
    store
        .append(&[at(0, "a", 100), at(1, "b", 200)])
        .expect("append");
    assert_eq!(store.by_key("a", 100).expect("read"), Some(at(0, "a", 100)));
    assert_eq!(store.by_key("a", 101).expect("read"), None);
    assert!(store.by_key("b", 101).expect("read").is_some());
    // The order itself is kept: only its key expires.
    assert_eq!(
        store.order(OrderNumber(0)).expect("read"),
        Some(at(0, "a", 100))
    );
}

#[test]
fn pruning_drops_expired_keys_oldest_first_in_batches() {
    let (_dir, store) = open();
    let orders: Vec<OrderRecord> = (0..10).map(|n| at(n, &format!("k{n}"), n * 10)).collect();
    store.append(&orders).expect("append");
    // Orders 0..=4 are older than 50; two per call.
    assert_eq!(store.prune_keys(50, 2).expect("prune"), 2);
    assert_eq!(store.prune_keys(50, 2).expect("prune"), 2);
    assert_eq!(store.prune_keys(50, 2).expect("prune"), 1);
    assert_eq!(store.prune_keys(50, 2).expect("prune"), 0);
    assert_eq!(store.keys.len(), 5);
    for n in 0..10 {
        let held = store.by_key(&format!("k{n}"), 0).expect("read").is_some();
        assert_eq!(held, n >= 5, "k{n}");
    }
    // Expiry is by time, so the figures and the orders do not change.
    assert_eq!(store.count(), 10);
    assert_eq!(figures(&store), store.walk().expect("walk"));
}

#[test]
fn pruning_keeps_a_key_that_a_newer_order_took_over() {
    let (_dir, store) = open();
    // Key "k" was used again after it expired: the index names the newer order.
    store
        .append(&[at(0, "k", 10), at(1, "k", 100)])
        .expect("append");
    assert_eq!(store.prune_keys(50, 10).expect("prune"), 1);
    assert_eq!(store.by_key("k", 50).expect("read"), Some(at(1, "k", 100)));
}

#[test]
fn orders_written_over_pruned_ones_are_pruned_again() {
    let (_dir, store) = open();
    store
        .append(&[at(0, "a", 10), at(1, "b", 20), at(2, "c", 30)])
        .expect("append");
    assert_eq!(store.prune_keys(100, 10).expect("prune"), 3);
    // A new leader's history replaces orders 1 and 2, with old times too.
    store
        .truncate_after(Some(OrderNumber(0)))
        .expect("truncate");
    store
        .append(&[OrderRecord {
            epoch: Epoch(2),
            ..at(1, "x", 40)
        }])
        .expect("append");
    assert!(store.by_key("x", 0).expect("read").is_some());
    assert_eq!(store.prune_keys(100, 10).expect("prune"), 1);
    assert_eq!(store.by_key("x", 0).expect("read"), None);
}

#[test]
fn a_database_of_the_earlier_layout_is_rewritten_once() {
    #[derive(serde::Serialize)]
    struct Old<'a>(u64, &'a str, u64, &'a str, u64);
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = sled::open(dir.path()).expect("open");
        let orders = db.open_tree("orders").expect("tree");
        let keys = db.open_tree("keys").expect("tree");
        for (n, key) in [(0u64, "a"), (1, "0196f1c2-7d3e-7a41-9b2c-5e8f00a1b2c3")] {
            let bytes = bincode::serde::encode_to_vec(
                Old(n, "Tux", 2, key, 1),
                bincode::config::standard(),
            )
            .expect("encode");
            orders.insert(n.to_be_bytes(), bytes).expect("insert");
            keys.insert(key.as_bytes(), &n.to_be_bytes())
                .expect("insert");
        }
        db.flush().expect("flush");
    }
    let before = common::retention::now_ms();
    let store = Store::open(dir.path()).expect("upgrade");
    assert_eq!(store.count(), 2);
    assert_eq!(figures(&store), store.walk().expect("walk"));
    let held = store
        .by_key("0196f1c2-7d3e-7a41-9b2c-5e8f00a1b2c3", before)
        .expect("read")
        .expect("kept for a window from the upgrade");
    assert_eq!(
        (held.number, held.name.as_str(), held.quantity),
        (OrderNumber(1), "Tux", 2)
    );
    assert!(store.by_key("a", before).expect("read").is_some());
    let names = store.db.tree_names();
    assert!(!names
        .iter()
        .any(|n| n.as_ref() == b"orders" || n.as_ref() == b"keys"));
    drop(store);
    let again = Store::open(dir.path()).expect("reopen");
    assert_eq!(again.count(), 2);
}

#[test]
fn a_database_of_another_layout_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        store.append(&[rec(0, 1, "a")]).expect("append");
        store.meta.insert(META_FORMAT, b"9").expect("mark");
        store.db.flush().expect("flush");
    }
    match Store::open(dir.path()) {
        Err(OrderError::Config(why)) => assert!(why.contains("layout 9"), "{why}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a database of another layout was opened"),
    }
}
