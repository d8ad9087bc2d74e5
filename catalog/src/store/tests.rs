//! The `store` module's tests.

use common::domain::IdempotencyKey;

use super::*;

fn toys() -> Vec<SeedToy> {
    vec![
        SeedToy {
            name: ToyName::new("Tux").expect("name"),
            price: 15.99,
        },
        SeedToy {
            name: ToyName::new("Rubik's Cube").expect("name"),
            price: 12.99,
        },
    ]
}

fn buy(name: &str, quantity: u64, key: &str) -> BuyRequest {
    BuyRequest {
        name: ToyName::new(name).expect("name"),
        quantity,
        key: IdempotencyKey::new(key).expect("key"),
        request_id: None,
        valid_from: 0,
    }
}

/// Tux as an earlier layout stored it, with `quantity` left at `version`.
fn stored_tux(quantity: u64, version: u64) -> StoredProduct {
    StoredProduct {
        name: ToyName::new("Tux").expect("name"),
        price_cents: 1599,
        quantity,
        version,
    }
}

async fn seeded() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    assert!(store.seed_if_empty(&toys(), 10).await.expect("seed"));
    (dir, store)
}

#[tokio::test]
async fn lookups_ignore_case_and_keep_the_canonical_name() {
    let (_dir, store) = seeded().await;
    let p = store.product("rUBIK'S cube").expect("read").expect("found");
    assert_eq!(p.name, "Rubik's Cube");
    assert_eq!(p.price_cents, 1299);
    assert!(store.product("Rubiks Cube").expect("read").is_none());
}

#[tokio::test]
async fn seeding_happens_only_once() {
    let (_dir, store) = seeded().await;
    store.buy(&buy("tux", 3, "k")).await.expect("buy");
    assert!(!store.seed_if_empty(&toys(), 10).await.expect("seed"));
    assert_eq!(
        store.product("Tux").expect("read").expect("found").quantity,
        7
    );
}

#[tokio::test]
async fn a_buy_takes_stock_and_bumps_the_version() {
    let (_dir, store) = seeded().await;
    let out = store.buy(&buy("tux", 3, "k1")).await.expect("buy");
    assert_eq!(
        out,
        BuyOutcome::Applied(BuyReply {
            name: ToyName::new("Tux").expect("name"),
            quantity: 3,
            version: Version(2),
            repeated: false,
        })
    );
    let p = store.product("Tux").expect("read").expect("found");
    assert_eq!((p.quantity, p.version), (7, 2));
}

#[tokio::test]
async fn a_repeated_key_changes_nothing() {
    let (_dir, store) = seeded().await;
    store.buy(&buy("Tux", 3, "k1")).await.expect("buy");
    let again = store.buy(&buy("Tux", 3, "k1")).await.expect("buy again");
    assert!(matches!(again, BuyOutcome::Repeated(ref r) if r.version == Version(2)));
    assert_eq!(
        store.product("Tux").expect("read").expect("found").quantity,
        7
    );
    let other = store.buy(&buy("Tux", 4, "k1")).await;
    assert!(matches!(other, Err(CatalogError::KeyReused(_))));
}

#[tokio::test]
async fn insufficient_stock_and_unknown_toys_change_nothing() {
    let (_dir, store) = seeded().await;
    let err = store.buy(&buy("Tux", 11, "k1")).await;
    assert!(matches!(
        err,
        Err(CatalogError::InsufficientStock { available: 10, .. })
    ));
    let err = store.buy(&buy("Nope", 1, "k2")).await;
    assert!(matches!(err, Err(CatalogError::UnknownProduct(_))));
    let t = store.totals().expect("totals");
    assert_eq!((t.sold, t.current), (0, 20));
    // the failed key was not recorded, so it can still be used
    store.buy(&buy("Tux", 10, "k1")).await.expect("buy");
}

#[tokio::test]
async fn a_batch_applies_each_buy_on_its_own() {
    let (_dir, store) = seeded().await;
    let outcomes = store
        .buy_batch(&[
            buy("Tux", 4, "a"),
            buy("Tux", 7, "b"),  // only 6 left after the first: refused
            buy("Nope", 1, "c"), // unknown: refused
            buy("Tux", 4, "a"),  // repeated in the same batch
            buy("Tux", 6, "d"),
        ])
        .await
        .expect("batch");
    assert!(matches!(outcomes[0], Ok(BuyOutcome::Applied(ref r)) if r.version == Version(2)));
    assert!(matches!(
        outcomes[1],
        Err(CatalogError::InsufficientStock { available: 6, .. })
    ));
    assert!(matches!(outcomes[2], Err(CatalogError::UnknownProduct(_))));
    assert!(matches!(outcomes[3], Ok(BuyOutcome::Repeated(ref r)) if r.version == Version(2)));
    assert!(matches!(outcomes[4], Ok(BuyOutcome::Applied(ref r)) if r.version == Version(3)));
    let t = store.totals().expect("totals");
    assert_eq!((t.sold, t.current), (10, 10));
}

#[tokio::test]
async fn restock_refills_only_sold_out_toys_and_stock_adds_up() {
    let (_dir, store) = seeded().await;
    store.buy(&buy("Tux", 10, "k1")).await.expect("buy");
    store.buy(&buy("Rubik's Cube", 4, "k2")).await.expect("buy");
    let restocked = store.restock_sold_out(100).await.expect("restock");
    assert_eq!(restocked, vec![("Tux".to_string(), Version(3))]);
    let t = store.totals().expect("totals");
    assert_eq!(
        t,
        StockTotals {
            initial: 20,
            restocked: 100,
            sold: 14,
            current: 106
        }
    );
    assert_eq!(t.initial + t.restocked - t.sold, t.current);
}

#[test]
fn the_shipped_seed_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/toys.json");
    let toys = read_seed(&path).expect("valid seed");
    assert!(toys.len() >= 20);
    assert!(toys
        .iter()
        .any(|t| t.name.contains(' ') && t.name.contains('\'')));
}

#[tokio::test]
async fn a_key_is_kept_for_its_window_then_takes_stock_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let window = Duration::from_millis(300);
    let store = Store::open_with(dir.path(), 16, window).expect("open");
    store.seed_if_empty(&toys(), 10).await.expect("seed");
    store.buy(&buy("Tux", 1, "k")).await.expect("buy");
    let again = store
        .buy(&buy("Tux", 1, "k"))
        .await
        .expect("within the window");
    assert!(matches!(again, BuyOutcome::Repeated(ref r) if r.repeated && r.version == Version(2)));
    tokio::time::sleep(window + Duration::from_millis(50)).await;
    let after = store
        .buy(&buy("Tux", 1, "k"))
        .await
        .expect("after the window");
    assert!(matches!(after, BuyOutcome::Applied(ref r) if !r.repeated && r.version == Version(3)));
    let t = store.totals().expect("totals");
    assert_eq!((t.sold, t.current), (2, 18));
    // The pruner drops the first buy's entry and keeps the key's newer buy.
    let cutoff = common::retention::cutoff(common::retention::now_ms(), window);
    assert_eq!(store.prune_keys(cutoff, 10).expect("prune"), 1);
    assert_eq!((store.buys.len(), store.by_time.len()), (1, 1));
    let repeated = store.buy(&buy("Tux", 1, "k")).await.expect("repeat");
    assert!(matches!(repeated, BuyOutcome::Repeated(ref r) if r.version == Version(3)));
}

#[tokio::test]
async fn a_key_the_replicas_forgot_is_forgotten_here_too() {
    let (_dir, store) = seeded().await;
    store.buy(&buy("Tux", 1, "k")).await.expect("buy");
    let after = common::retention::now_ms() + 1;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let forgotten = BuyRequest {
        valid_from: after,
        ..buy("Tux", 1, "k")
    };
    let again = store.buy(&forgotten).await.expect("buy again");
    assert!(matches!(again, BuyOutcome::Applied(ref r) if r.version == Version(3)));
    // Its catalog-side window alone would have kept it.
    let kept = store.buy(&buy("Tux", 1, "k")).await.expect("repeat");
    assert!(matches!(kept, BuyOutcome::Repeated(ref r) if r.version == Version(3)));
}

#[tokio::test]
async fn pruning_drops_expired_keys_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.seed_if_empty(&toys(), 10).await.expect("seed");
    store.buy(&buy("Tux", 1, "old")).await.expect("buy");
    let between = common::retention::now_ms() + 1;
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.buy(&buy("Tux", 1, "new")).await.expect("buy");
    assert_eq!(store.prune_keys(between, 10).expect("prune"), 1);
    assert_eq!(store.prune_keys(between, 10).expect("prune"), 0);
    assert_eq!(store.buys.len(), 1);
    let new = store.buy(&buy("Tux", 1, "new")).await.expect("repeat");
    assert!(matches!(new, BuyOutcome::Repeated(_)));
    let old = store.buy(&buy("Tux", 1, "old")).await.expect("buy again");
    assert!(matches!(old, BuyOutcome::Applied(_)));
}

#[tokio::test]
async fn a_database_of_the_earlier_layout_keeps_its_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // What the earlier layout held: key → reply, no time, no marker.
        #[derive(Serialize)]
        struct Old<'a>(&'a str, u64, u64);
        let db = sled::open(dir.path()).expect("open");
        let tux = stored_tux(8, 2);
        let products = db.open_tree("products").expect("tree");
        products.insert(b"tux", encode(&tux)).expect("insert");
        let old = db.open_tree("applied").expect("tree");
        old.insert(b"k1", encode(&Old("Tux", 2, 2)))
            .expect("insert");
        db.flush().expect("flush");
    }
    let store = Store::open(dir.path()).expect("upgrade");
    let again = store.buy(&buy("tux", 2, "k1")).await.expect("repeat");
    assert!(matches!(again, BuyOutcome::Repeated(ref r) if r.version == Version(2)));
    assert!(!store
        .db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == b"applied"));
    assert_eq!(store.by_time.len(), 1);
}

#[tokio::test]
async fn a_database_with_a_time_entry_per_key_is_regrouped_by_millisecond() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = common::retention::now_ms();
    {
        // Format 2: (time, key) → log index [and the replaced buy], one entry a key.
        let db = sled::open(dir.path()).expect("open");
        let tux = stored_tux(5, 6);
        db.open_tree("products")
            .expect("tree")
            .insert(b"tux", encode(&tux))
            .expect("insert");
        let buys = db.open_tree("buys").expect("tree");
        let by_time = db.open_tree("buys_by_time").expect("tree");
        let entry = |time: u64, key: &[u8]| [&time.to_be_bytes()[..], key].concat();
        let stored = |key: &str, version: u64, time: u64| {
            let buy = StoredBuy {
                name: ToyName::new("Tux").expect("name"),
                quantity: 1,
                version,
                time,
            };
            let key = common::idkey::encode(key);
            buys.insert(key.as_slice(), encode(&buy)).expect("insert");
            key
        };
        // Two keys bought in one millisecond, one a millisecond later, one long ago.
        for (key, version, time, index) in [
            ("a", 2, now, 7u64),
            ("b", 3, now, 7),
            ("c", 4, now + 1, 8),
            ("old", 5, 1, 3),
        ] {
            let key = stored(key, version, time);
            by_time
                .insert(entry(time, &key), &index.to_be_bytes())
                .expect("insert");
        }
        db.open_tree("meta")
            .expect("tree")
            .insert(META_FORMAT, FORMAT_KEY_TIMES)
            .expect("insert");
        db.flush().expect("flush");
    }
    let store = Store::open(dir.path()).expect("regroup");
    assert!(!store
        .db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == b"buys_by_time"));
    assert_eq!(
        store.meta(META_FORMAT).expect("meta").as_deref(),
        Some(FORMAT)
    );
    assert_eq!(store.by_time.len(), 3, "one entry per millisecond");
    let held = store.keys_at(8, 2).expect("keys");
    let indexes: Vec<(u64, u64)> = held.iter().map(|k| (k.index, k.buy.version)).collect();
    assert_eq!(indexes, vec![(7, 2), (7, 3), (8, 4)]);
    let again = store.buy(&buy("Tux", 1, "b")).await.expect("repeat");
    assert!(matches!(again, BuyOutcome::Repeated(ref r) if r.version == Version(3)));
    assert_eq!(
        store.prune_keys(2, 10).expect("prune"),
        1,
        "the old key only"
    );
    assert_eq!(store.buys.len(), 3);
}

#[tokio::test]
async fn buys_of_one_millisecond_share_one_time_entry_and_keep_what_they_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    assert!(store.seed_if_empty(&toys(), 10).await.expect("seed"));
    let clock = |now, index| Clock {
        now,
        valid_from: now.saturating_sub(100),
        index,
    };
    // Buys of `keys`, in one transaction, at `now` from the entry at `index`.
    let buys = |keys: &[&str], now, index| {
        store
            .write(|tx| {
                for key in keys {
                    tx.buy(&buy("Tux", 1, key), clock(now, index))?
                        .map_err(ConflictableTransactionError::Abort)?;
                }
                Ok(())
            })
            .expect("buys")
    };
    buys(&["a", "b", "c"], 1_000, 5);
    buys(&["d"], 1_000, 6);
    assert_eq!(store.by_time.len(), 1);
    // "a" expired and bought again: its first buy stays readable at index 6.
    buys(&["a"], 2_000, 9);
    assert_eq!(store.by_time.len(), 2);
    let at_6: Vec<(Vec<u8>, u64)> = store
        .keys_at(6, 0)
        .expect("keys")
        .into_iter()
        .map(|k| (k.key, k.buy.version))
        .collect();
    let key = |k: &str| common::idkey::encode(k);
    assert_eq!(
        at_6,
        vec![(key("a"), 2), (key("b"), 3), (key("c"), 4), (key("d"), 5)]
    );
    let at_9 = store.keys_at(9, 0).expect("keys");
    assert_eq!(
        at_9.iter()
            .find(|k| k.key == key("a"))
            .map(|k| k.buy.version),
        Some(6)
    );
    assert_eq!(
        store.prune_keys(1_500, 2).expect("prune"),
        4,
        "a millisecond at a time"
    );
    assert_eq!(store.buys.len(), 1, "a's newer buy is kept");
}

/// Writes undecodable bytes where Tux's stock is kept: a damaged value, as a bad
/// page or a flipped bit leaves it.
fn damage_tux(store: &Store) {
    store
        .products
        .insert(lookup_key("Tux").as_bytes(), &[0xff; 3][..])
        .expect("damage");
}

#[tokio::test]
async fn a_damaged_toy_fails_only_the_buys_of_that_toy_in_a_batch() {
    let (_dir, store) = seeded().await;
    damage_tux(&store);
    let outcomes = store
        .buy_batch(&[
            buy("Rubik's Cube", 1, "k1"),
            buy("Tux", 1, "k2"),
            buy("Rubik's Cube", 2, "k3"),
        ])
        .await
        .expect("the batch is answered");
    assert!(
        matches!(outcomes[0], Ok(BuyOutcome::Applied(_))),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Err(CatalogError::Storage(_))),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], Ok(BuyOutcome::Applied(_))),
        "{outcomes:?}"
    );
    let cube = store.product("Rubik's Cube").expect("read").expect("found");
    assert_eq!((cube.quantity, cube.version), (7, 3));
    // The failed buy left nothing behind: its key is free, the sold total counts the
    // two buys made.
    assert!(store
        .buys
        .get(common::idkey::encode(
            &IdempotencyKey::new("k2").expect("key")
        ))
        .expect("read")
        .is_none());
    let sold = store
        .meta
        .get(META_SOLD)
        .expect("read")
        .map(|v| read_u64(&v));
    assert_eq!(sold, Some(3));
}

#[tokio::test]
async fn a_batch_whose_every_buy_touches_damage_fails_as_a_whole() {
    let (_dir, store) = seeded().await;
    damage_tux(&store);
    let failed = store
        .buy_batch(&[buy("Tux", 1, "k1"), buy("tux", 1, "k2")])
        .await;
    assert!(
        matches!(failed, Err(CatalogError::Storage(_))),
        "{failed:?}"
    );
    assert!(store.meta.get(META_SOLD).expect("read").is_none());
}
