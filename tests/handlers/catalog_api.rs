//! The catalog's routes alone: lookups, buys and their idempotency, totals, the token.

use serde_json::json;

use crate::stack::{self, call, get, get_internal, post, TOKEN};

struct Catalog {
    router: axum::Router,
    _app: catalog::App,
    _dir: tempfile::TempDir,
}

async fn catalog(stock: u64) -> Catalog {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = stack::catalog(dir.path(), stock, "http://127.0.0.1:9").await;
    Catalog {
        router: app.router(),
        _app: app,
        _dir: dir,
    }
}

impl Catalog {
    async fn quantity(&self, name: &str) -> u64 {
        let reply = call(&self.router, get(&format!("/products/{name}"))).await;
        reply.json["data"]["quantity"].as_u64().expect("quantity")
    }

    async fn buy(&self, body: serde_json::Value) -> stack::Reply {
        call(
            &self.router,
            post("/internal/buy", body.to_string(), Some(TOKEN)),
        )
        .await
    }

    /// Buys `quantity` of `name` for `key`, which must succeed.
    async fn buy_ok(&self, name: &str, quantity: u64, key: &str) {
        let reply = self
            .buy(json!({"name": name, "quantity": quantity, "key": key}))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

#[tokio::test]
async fn a_product_has_its_name_price_quantity_and_version() {
    let c = catalog(100).await;
    let reply = call(&c.router, get("/products/Tux")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let data = &reply.json["data"];
    assert_eq!(
        (&data["name"], &data["price"], &data["quantity"]),
        (&json!("Tux"), &json!(15.99), &json!(100))
    );
    assert!(data["version"].is_u64(), "{}", reply.text);
}

#[tokio::test]
async fn names_match_case_insensitively_and_may_be_url_encoded() {
    let c = catalog(100).await;
    for (path, name) in [
        ("/products/tUX", "Tux"),
        ("/products/rubik's%20cUBE", "Rubik's Cube"),
        ("/products/Rubik%27s%20Cube", "Rubik's Cube"),
        ("/products/etch%20a%20sketch", "Etch A Sketch"),
    ] {
        let reply = call(&c.router, get(path)).await;
        assert_eq!(reply.parts(), (200, &reply.json), "{path}");
        assert_eq!(reply.json["data"]["name"], name, "{path}");
    }
}

#[tokio::test]
async fn an_unknown_toy_is_404_in_the_error_shape() {
    let c = catalog(100).await;
    call(&c.router, get("/products/Unicorn"))
        .await
        .assert_error(404, "Unicorn");
}

#[tokio::test]
async fn the_list_holds_every_seeded_toy() {
    let c = catalog(7).await;
    let reply = call(&c.router, get("/products")).await;
    let all = reply.json["data"].as_array().expect("a list");
    assert_eq!(all.len(), 24);
    assert!(all.iter().all(|t| t["quantity"] == 7), "{}", reply.text);
}

#[tokio::test]
async fn a_buy_takes_stock_once_per_key() {
    let c = catalog(100).await;
    let buy = json!({"name": "tux", "quantity": 3, "key": "k-1"});
    let first = c.buy(buy.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["data"]["name"], "Tux");
    assert_eq!(first.json["data"]["repeated"], false);
    let again = c.buy(buy).await;
    assert_eq!(again.json["data"]["repeated"], true, "{}", again.text);
    assert_eq!(again.json["data"]["version"], first.json["data"]["version"]);
    assert_eq!(c.quantity("Tux").await, 97);
}

#[tokio::test]
async fn a_key_reused_for_another_buy_is_422_and_takes_nothing() {
    let c = catalog(100).await;
    c.buy_ok("Tux", 1, "k").await;
    c.buy(json!({"name": "Tux", "quantity": 2, "key": "k"}))
        .await
        .assert_error(422, "reused key");
    assert_eq!(c.quantity("Tux").await, 99);
}

#[tokio::test]
async fn a_buy_beyond_the_stock_is_409_and_takes_nothing() {
    let c = catalog(5).await;
    c.buy(json!({"name": "Tux", "quantity": 6, "key": "k"}))
        .await
        .assert_error(409, "6 of 5");
    c.buy(json!({"name": "Tux", "quantity": u64::MAX, "key": "k2"}))
        .await
        .assert_error(409, "u64::MAX of 5");
    assert_eq!(c.quantity("Tux").await, 5);
}

#[tokio::test]
async fn malformed_buys_are_400_and_take_nothing() {
    let c = catalog(5).await;
    for body in [
        json!({"name": "Tux", "quantity": 0, "key": "k"}),
        json!({"name": "Tux", "quantity": 1}),
        json!({"name": "Tux", "quantity": 1, "key": ""}),
        json!({"quantity": 1, "key": "k"}),
        json!([1, 2]),
    ] {
        c.buy(body.clone())
            .await
            .assert_error(400, &body.to_string());
    }
    let reply = call(&c.router, post("/internal/buy", "not json", Some(TOKEN))).await;
    reply.assert_error(400, "not json");
    assert_eq!(c.quantity("Tux").await, 5);
}

#[tokio::test]
async fn a_batch_answers_each_buy_on_its_own() {
    let c = catalog(5).await;
    let batch = json!([
        {"name": "Tux", "quantity": 2, "key": "a"},
        {"name": "Unicorn", "quantity": 1, "key": "b"},
        {"name": "Tux", "quantity": 9, "key": "c"},
    ]);
    let reply = call(
        &c.router,
        post("/internal/buy-batch", batch.to_string(), Some(TOKEN)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let results = reply.json["data"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{}", reply.text);
    assert_eq!(results[1]["error"]["code"], 404, "{}", reply.text);
    assert_eq!(results[2]["error"]["code"], 409, "{}", reply.text);
    assert_eq!(c.quantity("Tux").await, 3);
}

#[tokio::test]
async fn totals_add_up_after_buys() {
    let c = catalog(10).await;
    c.buy_ok("Uno", 4, "k").await;
    let reply = call(&c.router, get_internal("/internal/totals")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let t = &reply.json["data"];
    assert_eq!(t["initial"], 240, "{}", reply.text);
    assert_eq!(t["current"], 236, "{}", reply.text);
}

#[tokio::test]
async fn internal_routes_refuse_a_missing_or_wrong_token_and_change_nothing() {
    let c = catalog(100).await;
    for (path, body) in [
        (
            "/internal/buy",
            json!({"name": "Tux", "quantity": 5, "key": "k"}),
        ),
        (
            "/internal/buy-batch",
            json!([{"name": "Tux", "quantity": 5, "key": "k2"}]),
        ),
    ] {
        for token in [None, Some("wrong-token")] {
            call(&c.router, post(path, body.to_string(), token))
                .await
                .assert_error(401, &format!("{path} with {token:?}"));
        }
    }
    call(&c.router, get("/internal/totals"))
        .await
        .assert_error(401, "totals");
    assert_eq!(c.quantity("Tux").await, 100);
}
