//! The public REST contract through the front-end (in-process, with a catalog and one
//! replica on port 0): shapes, trailing slashes, names, quantities, errors that change
//! nothing, idempotency keys, the token.

use axum::body::Body;
use axum::http::Request;
use common::wire::Replication;
use serde_json::json;

use crate::stack::{call, in_both_modes, post, Stack};

in_both_modes!(
    products_orders_and_reads_have_the_spec_shapes,
    a_retried_order_with_the_same_key_is_applied_once,
);

async fn products_orders_and_reads_have_the_spec_shapes(mode: Replication) {
    let s = Stack::start(mode, 100).await;
    let reply = s.get("/products/Tux").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json,
        json!({"data": {"name": "Tux", "price": 15.99, "quantity": 100}})
    );

    let placed = s.order("Tux", 2, None).await;
    assert_eq!(
        placed.parts(),
        (200, &json!({"data": {"order_number": 0}})),
        "{}",
        placed.text
    );
    let placed = s.order("Whale", 1, None).await;
    assert_eq!(placed.json, json!({"data": {"order_number": 1}}));

    let read = s.get("/orders/0").await;
    assert_eq!(
        read.parts(),
        (
            200,
            &json!({"data": {"number": 0, "name": "Tux", "quantity": 2}})
        )
    );

    let list = s.get("/products").await;
    let all = list.json["data"].as_array().expect("a list");
    assert!(all.len() >= 20);
    assert!(all.contains(&json!({"name": "Tux", "price": 15.99, "quantity": 98})));

    let health = s.get("/health").await;
    assert_eq!(health.json["leader"], 1, "{}", health.text);
    for field in ["enabled", "capacity", "size", "hits", "misses", "evictions"] {
        assert!(
            health.json["cache"].get(field).is_some(),
            "cache figure {field} missing"
        );
    }
}

#[tokio::test]
async fn a_trailing_slash_is_accepted() {
    let s = Stack::start(Replication::PrimaryBackup, 100).await;
    let one = s.get("/products/Tux/").await;
    assert_eq!(
        (one.status.as_u16(), &one.json["data"]["name"]),
        (200, &json!("Tux"))
    );
    let all = s.get("/products/").await;
    assert!(
        all.json["data"].as_array().is_some_and(|a| a.len() >= 20),
        "{}",
        all.text
    );
    let placed = call(
        &s.frontend,
        post("/orders/", r#"{"name": "Tux", "quantity": 1}"#, None),
    )
    .await;
    assert_eq!(placed.status, 200, "{}", placed.text);
    let read = s.get("/orders/0/").await;
    assert_eq!(
        (read.status.as_u16(), &read.json["data"]["number"]),
        (200, &json!(0))
    );
}

#[tokio::test]
async fn an_empty_name_or_number_is_404() {
    let s = Stack::start(Replication::PrimaryBackup, 100).await;
    for path in ["/products//", "/orders//"] {
        s.get(path).await.assert_error(404, path);
    }
}

#[tokio::test]
async fn dot_names_sent_as_written_are_404() {
    // An HTTP client library would resolve them as path segments first
    // (`/products/%2E` → `/products/`, the list); in-process they arrive as written.
    let s = Stack::start(Replication::PrimaryBackup, 100).await;
    for path in ["/products/%2E", "/products/%2E%2E"] {
        s.get(path).await.assert_error(404, path);
    }
}

#[tokio::test]
async fn a_whole_quantity_written_as_a_decimal_is_that_quantity() {
    let s = Stack::start(Replication::PrimaryBackup, 100).await;
    let placed = s.post_order(r#"{"name": "Tux", "quantity": 2.0}"#).await;
    assert_eq!(placed.status, 200, "{}", placed.text);
    let read = s.get("/orders/0").await;
    assert_eq!(read.json["data"]["quantity"], 2, "{}", read.text);
    assert_eq!(s.catalog_quantity("Tux").await, 98);
}

#[tokio::test]
async fn names_match_case_insensitively_and_may_be_url_encoded() {
    let s = Stack::start(Replication::PrimaryBackup, 100).await;
    for (path, name) in [
        ("/products/rubik's%20cUBE", "Rubik's Cube"),
        ("/products/Rubik%27s%20Cube", "Rubik's Cube"),
        ("/products/etch%20a%20sketch", "Etch A Sketch"),
    ] {
        let reply = s.get(path).await;
        assert_eq!(
            (reply.status.as_u16(), &reply.json["data"]["name"]),
            (200, &json!(name)),
            "{path}"
        );
    }
}

#[tokio::test]
async fn orders_keep_the_canonical_name() {
    let s = Stack::start(Replication::PrimaryBackup, 100).await;
    let placed = s.order("mr. potato head", 1, None).await;
    assert_eq!(placed.status, 200, "{}", placed.text);
    let n = placed.json["data"]["order_number"]
        .as_u64()
        .expect("number");
    let read = s.get(&format!("/orders/{n}")).await;
    assert_eq!(read.json["data"]["name"], "Mr. Potato Head");
}

#[tokio::test]
async fn malformed_order_bodies_are_400_and_change_nothing() {
    let s = Stack::start(Replication::PrimaryBackup, 5).await;
    for body in [
        "not json",
        "",
        r#"{"name": "Tux"}"#,
        r#"{"quantity": 1}"#,
        r#"{"name": "Tux", "quantity": 0}"#,
        r#"{"name": "Tux", "quantity": -1}"#,
        r#"{"name": "Tux", "quantity": 1.5}"#,
        r#"{"name": "Tux", "quantity": "1"}"#,
        r#"{"name": "", "quantity": 1}"#,
        r#"{"name": 7, "quantity": 1}"#,
        "[1, 2]",
    ] {
        s.post_order(body).await.assert_error(400, body);
    }
    assert_eq!(s.catalog_quantity("Tux").await, 5);
    assert_eq!(s.replica_orders().await, 0);
}

#[tokio::test]
async fn an_unknown_toy_is_404_and_too_many_is_409() {
    let s = Stack::start(Replication::PrimaryBackup, 5).await;
    s.post_order(r#"{"name": "Unicorn", "quantity": 1}"#)
        .await
        .assert_error(404, "Unicorn");
    s.post_order(r#"{"name": "Tux", "quantity": 6}"#)
        .await
        .assert_error(409, "6 of 5");
    s.post_order(r#"{"name": "Tux", "quantity": 18446744073709551615}"#)
        .await
        .assert_error(409, "u64::MAX of 5");
    assert_eq!(s.catalog_quantity("Tux").await, 5);
    assert_eq!(s.replica_orders().await, 0);
}

/// Quantities are read from the number's text: one beyond u64 is a 400 that names
/// the limit (never a number the client did not send), and a whole number written
/// with a fraction or an exponent is that number.
#[tokio::test]
async fn quantities_beyond_the_limit_are_400_and_whole_decimals_are_placed() {
    let s = Stack::start(Replication::PrimaryBackup, 5).await;
    for body in [
        r#"{"name": "Tux", "quantity": 18446744073709551616}"#,
        r#"{"name": "Tux", "quantity": 1e300}"#,
        r#"{"name": "Tux", "quantity": 1e20}"#,
    ] {
        let reply = s.post_order(body).await;
        reply.assert_error(400, body);
        assert_eq!(
            reply.json["error"]["message"], "quantity must be at most 18446744073709551615",
            "{body}"
        );
    }
    assert_eq!(s.catalog_quantity("Tux").await, 5);
    assert_eq!(s.replica_orders().await, 0);
    for (body, units) in [
        (r#"{"name": "Tux", "quantity": 1.0}"#, 1),
        (r#"{"name": "Tux", "quantity": 2e0}"#, 2),
        (r#"{"name": "Tux", "quantity": 10E-1}"#, 1),
    ] {
        let placed = s.post_order(body).await;
        assert_eq!(placed.status, 200, "{body} → {}", placed.text);
        let n = placed.json["data"]["order_number"]
            .as_u64()
            .expect("number");
        let read = s.get(&format!("/orders/{n}")).await;
        assert_eq!(read.json["data"]["quantity"], units, "{body}");
    }
    assert_eq!(s.catalog_quantity("Tux").await, 1);
}

#[tokio::test]
async fn bad_order_numbers_are_400_and_unknown_ones_404() {
    let s = Stack::start(Replication::PrimaryBackup, 5).await;
    for (path, want) in [
        ("/orders/abc", 400),
        ("/orders/-1", 400),
        ("/orders/1.5", 400),
        ("/orders/99999999999999999999999", 400),
        ("/orders/0", 404),
        ("/products/Unicorn", 404),
        ("/nowhere", 404),
    ] {
        s.get(path).await.assert_error(want, path);
    }
}

#[tokio::test]
async fn a_huge_body_gets_a_json_client_error() {
    let s = Stack::start(Replication::PrimaryBackup, 5).await;
    let big = format!("{{\"name\": \"{}\", \"quantity\": 1}}", "x".repeat(20_000));
    let reply = s.post_order(&big).await;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    assert!(reply.json["error"]["code"].is_number(), "{}", reply.text);
    assert_eq!(s.catalog_quantity("Tux").await, 5);
}

#[tokio::test]
async fn an_unusable_idempotency_key_is_400() {
    let s = Stack::start(Replication::PrimaryBackup, 5).await;
    s.order("Tux", 1, Some("has space"))
        .await
        .assert_error(400, "key with a space");
    assert_eq!(s.catalog_quantity("Tux").await, 5);
}

async fn a_retried_order_with_the_same_key_is_applied_once(mode: Replication) {
    let s = Stack::start(mode, 100).await;
    let first = s.order("Barbie", 3, Some("client-key-1")).await;
    let again = s.order("barbie", 3, Some("client-key-1")).await;
    assert_eq!(
        (first.status.as_u16(), again.status.as_u16()),
        (200, 200),
        "{} / {}",
        first.text,
        again.text
    );
    assert_eq!(first.json, again.json);
    assert_eq!(s.catalog_quantity("Barbie").await, 97);
    let other = s.order("Barbie", 3, Some("client-key-2")).await;
    assert_ne!(
        other.json["data"]["order_number"],
        first.json["data"]["order_number"]
    );
    assert_eq!(s.catalog_quantity("Barbie").await, 94);
}

#[tokio::test]
async fn a_key_reused_for_another_order_is_422_and_takes_nothing() {
    let s = Stack::start(Replication::PrimaryBackup, 100).await;
    assert_eq!(s.order("Barbie", 3, Some("k")).await.status, 200);
    s.order("Barbie", 4, Some("k"))
        .await
        .assert_error(422, "reused key");
    assert_eq!(s.catalog_quantity("Barbie").await, 97);
}

#[tokio::test]
async fn the_invalidation_endpoint_refuses_a_missing_or_wrong_token() {
    let s = Stack::start(Replication::PrimaryBackup, 100).await;
    let body = json!({"name": "Tux", "version": 99}).to_string();
    for token in [None, Some("wrong-token")] {
        call(
            &s.frontend,
            post("/internal/invalidate", body.clone(), token),
        )
        .await
        .assert_error(401, &format!("{token:?}"));
    }
}

#[tokio::test]
async fn every_reply_carries_a_request_id() {
    let s = Stack::start(Replication::PrimaryBackup, 100).await;
    let lookup = |id: Option<&str>| {
        let mut req = Request::get("/products/Tux");
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req.body(Body::empty()).expect("request")
    };
    let id_of = |reply: &crate::stack::Reply| {
        reply
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let given = call(&s.frontend, lookup(Some("lookup-7"))).await;
    assert_eq!(id_of(&given).as_deref(), Some("lookup-7"));
    // No id, or an unusable one: the front-end makes one, different each time.
    let made = id_of(&call(&s.frontend, lookup(None)).await).expect("a made id");
    let replaced = id_of(&call(&s.frontend, lookup(Some("has space"))).await).expect("an id");
    assert!(!made.is_empty() && made != replaced && replaced != "has space");
    // Errors and unknown paths carry it too.
    let lost = Request::get("/no/such/path")
        .header("x-request-id", "lost-1")
        .body(Body::empty())
        .expect("request");
    let reply = call(&s.frontend, lost).await;
    assert_eq!(reply.status, 404);
    assert_eq!(id_of(&reply).as_deref(), Some("lost-1"));
}

/// Orders sent twice at once with one key (a client's retry racing its first try)
/// make one order: both answers name it, and its stock is taken once.
async fn orders_sent_twice_at_once_make_one_order(mode: Replication) {
    const KEYS: u64 = 60;
    let s = Stack::start(mode, 1000).await;
    let s = &s;
    let pairs = (0..KEYS).map(|i| async move {
        let key = format!("twice-{i}");
        let (first, second) =
            tokio::join!(s.order("Tux", 2, Some(&key)), s.order("Tux", 2, Some(&key)));
        (key, first, second)
    });
    for (key, first, second) in futures_util::future::join_all(pairs).await {
        assert_eq!(
            (first.status.as_u16(), second.status.as_u16()),
            (200, 200),
            "{key}: {} / {}",
            first.text,
            second.text
        );
        assert_eq!(first.json, second.json, "{key} made two orders");
    }
    assert_eq!(s.catalog_quantity("Tux").await, 1000 - 2 * KEYS);
    assert_eq!(s.replica_orders().await, KEYS);
}

mod twice_at_once {
    use common::wire::Replication;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn primary_backup() {
        super::orders_sent_twice_at_once_make_one_order(Replication::PrimaryBackup).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raft() {
        super::orders_sent_twice_at_once_make_one_order(Replication::Raft).await
    }
}
