//! The public REST contract: shapes, errors, idempotency, tokens.

use common::wire::Replication;
use serde_json::json;

use crate::helpers::{in_both_modes, Cluster, Options};

// Every test here runs in both replication modes.
in_both_modes!(
    products_orders_and_order_reads_have_the_spec_shapes,
    a_trailing_slash_is_accepted_but_an_empty_name_is_not,
    a_whole_quantity_written_as_a_decimal_is_that_quantity,
    names_match_case_insensitively_and_may_be_url_encoded,
    bad_input_gets_json_errors_and_changes_nothing,
    a_retried_order_with_the_same_key_is_applied_once,
    internal_endpoints_refuse_requests_without_the_token,
    unreachable_services_give_503,
);

async fn products_orders_and_order_reads_have_the_spec_shapes(mode: Replication) {
    let cluster = Cluster::start(Options::in_mode(mode)).await;

    let (status, body) = cluster.get("/products/Tux").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": {"name": "Tux", "price": 15.99, "quantity": 100}})
    );

    let (status, body) = cluster.order("Tux", 2, None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"data": {"order_number": 0}}));
    let (_, body) = cluster.order("Whale", 1, None).await;
    assert_eq!(body, json!({"data": {"order_number": 1}}));

    let (status, body) = cluster.get("/orders/0").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": {"number": 0, "name": "Tux", "quantity": 2}})
    );

    let (status, body) = cluster.get("/products").await;
    assert_eq!(status, 200);
    let all = body["data"].as_array().expect("list");
    assert!(all.len() >= 20);
    assert!(all.contains(&json!({"name": "Tux", "price": 15.99, "quantity": 98})));

    let (status, body) = cluster.get("/health").await;
    assert_eq!(status, 200);
    if mode == Replication::PrimaryBackup {
        assert_eq!(body["leader"], json!(3));
    } else {
        assert!(body["leader"].is_u64(), "{body}");
    }
    for field in ["enabled", "capacity", "size", "hits", "misses", "evictions"] {
        assert!(
            body["cache"].get(field).is_some(),
            "cache figure {field} missing"
        );
    }
}

async fn a_trailing_slash_is_accepted_but_an_empty_name_is_not(mode: Replication) {
    let cluster = Cluster::start(Options {
        replicas: 1,
        ..Options::in_mode(mode)
    })
    .await;
    let (status, body) = cluster.get("/products/Tux/").await;
    assert_eq!((status, &body["data"]["name"]), (200, &json!("Tux")));
    let (status, body) = cluster.get("/products/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"].as_array().is_some_and(|all| all.len() >= 20));

    let resp = cluster
        .http
        .post(format!("{}/orders/", cluster.url("frontend")))
        .json(&json!({"name": "Tux", "quantity": 1}))
        .send()
        .await
        .expect("POST /orders/");
    assert_eq!(resp.status().as_u16(), 200);
    let (status, body) = cluster.get("/orders/0/").await;
    assert_eq!((status, &body["data"]["number"]), (200, &json!(0)));

    for path in ["/products//", "/orders//"] {
        let (status, body) = cluster.get(path).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!(404)),
            "{path}"
        );
    }
}

async fn a_whole_quantity_written_as_a_decimal_is_that_quantity(mode: Replication) {
    let cluster = Cluster::start(Options {
        replicas: 1,
        ..Options::in_mode(mode)
    })
    .await;
    let order = |body: &'static str| {
        cluster
            .http
            .post(format!("{}/orders", cluster.url("frontend")))
            .body(body)
            .send()
    };
    let resp = order(r#"{"name": "Tux", "quantity": 2.0}"#)
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 200);
    let (status, placed) = cluster.get("/orders/0").await;
    assert_eq!(status, 200, "{placed}");
    assert_eq!(placed["data"]["quantity"], 2);
    let resp = order(r#"{"name": "Tux", "quantity": 1.5}"#)
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(cluster.catalog_quantity("Tux").await, 98);
}

async fn names_match_case_insensitively_and_may_be_url_encoded(mode: Replication) {
    let cluster = Cluster::start(Options {
        replicas: 1,
        ..Options::in_mode(mode)
    })
    .await;
    let (status, body) = cluster.get("/products/rubik's%20cUBE").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["name"], "Rubik's Cube");
    let (status, body) = cluster.get("/products/Rubik%27s%20Cube").await;
    assert_eq!(
        (status, &body["data"]["name"]),
        (200, &json!("Rubik's Cube"))
    );
    let (status, body) = cluster.get("/products/etch%20a%20sketch").await;
    assert_eq!(
        (status, &body["data"]["name"]),
        (200, &json!("Etch A Sketch"))
    );

    let (status, body) = cluster.order("mr. potato head", 1, None).await;
    assert_eq!(status, 200, "{body}");
    let n = body["data"]["order_number"].as_u64().expect("number");
    let (_, body) = cluster.get(&format!("/orders/{n}")).await;
    assert_eq!(
        body["data"]["name"], "Mr. Potato Head",
        "orders keep the canonical name"
    );
}

async fn bad_input_gets_json_errors_and_changes_nothing(mode: Replication) {
    let cluster = Cluster::start(Options {
        replicas: 1,
        initial_stock: 5,
        ..Options::in_mode(mode)
    })
    .await;
    let url = format!("{}/orders", cluster.url("frontend"));
    let post = |body: &'static str| {
        let req = cluster
            .http
            .post(url.clone())
            .body(body)
            .header("content-type", "application/json");
        async move {
            let resp = req.send().await.expect("POST");
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>()
                    .await
                    .expect("JSON error body"),
            )
        }
    };
    let cases: &[(&str, u16)] = &[
        ("not json", 400),
        ("", 400),
        ("{\"name\": \"Tux\"}", 400),
        ("{\"quantity\": 1}", 400),
        ("{\"name\": \"Tux\", \"quantity\": 0}", 400),
        ("{\"name\": \"Tux\", \"quantity\": -1}", 400),
        ("{\"name\": \"Tux\", \"quantity\": 1.5}", 400),
        ("{\"name\": \"Tux\", \"quantity\": \"1\"}", 400),
        ("{\"name\": \"\", \"quantity\": 1}", 400),
        ("{\"name\": 7, \"quantity\": 1}", 400),
        ("[1, 2]", 400),
        ("{\"name\": \"Unicorn\", \"quantity\": 1}", 404),
        ("{\"name\": \"Tux\", \"quantity\": 6}", 409),
        (
            "{\"name\": \"Tux\", \"quantity\": 18446744073709551615}",
            409,
        ),
    ];
    for (body, want) in cases {
        let (status, json) = post(body).await;
        assert_eq!(status, *want, "body {body:?} → {json}");
        assert_eq!(json["error"]["code"], json!(want), "body {body:?} → {json}");
        assert!(json["error"]["message"].is_string());
    }

    for (path, want) in [
        ("/orders/abc", 400),
        ("/orders/-1", 400),
        ("/orders/1.5", 400),
        ("/orders/0", 404),
        ("/orders/99999999999999999999999", 400),
        ("/products/Unicorn", 404),
        ("/nowhere", 404),
    ] {
        let (status, json) = cluster.get(path).await;
        assert_eq!(
            (status, &json["error"]["code"]),
            (want, &json!(want)),
            "{path} → {json}"
        );
    }

    // Dot names, sent as written: an HTTP client library would resolve them as path
    // segments first (`/products/%2E` → `/products/`, which is the list).
    for path in ["/products/%2E", "/products/%2E%2E"] {
        assert_eq!(raw_get_status(&cluster, path).await, 404, "{path}");
    }

    let big = format!("{{\"name\": \"{}\", \"quantity\": 1}}", "x".repeat(20_000));
    let resp = cluster
        .http
        .post(url.clone())
        .body(big)
        .send()
        .await
        .expect("POST");
    assert!(resp.status().is_client_error());
    let json: serde_json::Value = resp.json().await.expect("JSON error");
    assert!(json["error"]["code"].is_number());

    let resp = cluster
        .http
        .post(url.clone())
        .header("Idempotency-Key", "has space")
        .body("{\"name\": \"Tux\", \"quantity\": 1}")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 400);

    // Nothing above changed anything.
    assert_eq!(cluster.catalog_quantity("Tux").await, 5);
    assert_eq!(cluster.get("/orders/0").await.0, 404);
    assert_eq!(cluster.replica(1).await["orders"], json!(0));
}

async fn a_retried_order_with_the_same_key_is_applied_once(mode: Replication) {
    let cluster = Cluster::start(Options::in_mode(mode)).await;
    let (s1, first) = cluster.order("Barbie", 3, Some("client-key-1")).await;
    let (s2, again) = cluster.order("barbie", 3, Some("client-key-1")).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first, again);
    assert_eq!(cluster.catalog_quantity("Barbie").await, 97);

    let (status, body) = cluster.order("Barbie", 4, Some("client-key-1")).await;
    assert_eq!(
        status, 422,
        "a key reused for another order is refused: {body}"
    );
    assert_eq!(cluster.catalog_quantity("Barbie").await, 97);

    let (_, other) = cluster.order("Barbie", 3, Some("client-key-2")).await;
    assert_ne!(other["data"]["order_number"], first["data"]["order_number"]);
    assert_eq!(cluster.catalog_quantity("Barbie").await, 94);
}

async fn internal_endpoints_refuse_requests_without_the_token(mode: Replication) {
    let cluster = Cluster::start(Options {
        replicas: 2,
        ..Options::in_mode(mode)
    })
    .await;
    let http = &cluster.http;
    let attempts = [
        (
            cluster.url("catalog") + "/internal/buy",
            json!({"name": "Tux", "quantity": 5, "key": "k"}),
        ),
        (
            cluster.url("catalog") + "/internal/buy-batch",
            json!([{"name": "Tux", "quantity": 5, "key": "k2"}]),
        ),
        (
            cluster.url("frontend") + "/internal/invalidate",
            json!({"name": "Tux", "version": 99}),
        ),
        (
            cluster.url("order2") + "/orders",
            json!({"name": "Tux", "quantity": 5, "key": "k"}),
        ),
    ];
    // The replicas' own messages, in the mode's protocol.
    let protocol = match mode {
        Replication::PrimaryBackup => [
            (
                cluster.url("order1") + "/internal/leader",
                json!({"leader_id": 1, "epoch": 99}),
            ),
            (
                cluster.url("order1") + "/internal/replicate",
                json!({"leader_id": 2, "epoch": 99, "prev": null,
                       "entries": [{"number": 0, "name": "Tux", "quantity": 5, "key": "k", "epoch": 99}]}),
            ),
        ],
        Replication::Raft => [
            (cluster.url("order1") + "/internal/raft/vote", json!({})),
            (cluster.url("order1") + "/internal/raft/append", json!({})),
        ],
    };
    for (url, body) in attempts.into_iter().chain(protocol) {
        for token in [None, Some("wrong-token")] {
            let mut req = http.post(&url).json(&body);
            if let Some(t) = token {
                req = req.header(common::TOKEN_HEADER, t);
            }
            let resp = req.send().await.expect("POST");
            assert_eq!(
                resp.status().as_u16(),
                401,
                "{url} accepted token {token:?}"
            );
            let json: serde_json::Value = resp.json().await.expect("JSON error");
            assert_eq!(json["error"]["code"], json!(401));
        }
    }
    assert_eq!(cluster.catalog_quantity("Tux").await, 100);
    for id in [1, 2] {
        let r = cluster.replica(id).await;
        assert_eq!(
            (r["orders"].clone(), r["epoch"].clone()),
            (json!(0), json!(1))
        );
    }
    if mode == Replication::PrimaryBackup {
        assert_eq!(cluster.frontend_health().await.leader, Some(2));
    }

    // With the token, malformed internal requests get the JSON error shape too.
    let resp = http
        .get(cluster.url("order1") + "/internal/log?from=minus-one")
        .header(common::TOKEN_HEADER, &cluster.token)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 400);
    let json: serde_json::Value = resp.json().await.expect("JSON error");
    assert_eq!(json["error"]["code"], json!(400));
}

async fn unreachable_services_give_503(mode: Replication) {
    let mut cluster = Cluster::start(Options {
        replicas: 1,
        failover_ms: 1_000,
        ..Options::in_mode(mode)
    })
    .await;
    cluster.kill("catalog");
    let (status, body) = cluster.get("/products/Slinky").await;
    assert_eq!((status, &body["error"]["code"]), (503, &json!(503)));
    let (status, body) = cluster.order("Slinky", 1, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!(503)),
        "{body}"
    );

    cluster.start_service("catalog").await;
    cluster.kill("order1");
    let (status, body) = cluster.order("Slinky", 1, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!(503)),
        "{body}"
    );
    let (status, _) = cluster.get("/orders/0").await;
    assert_eq!(status, 503);
    assert_eq!(cluster.catalog_quantity("Slinky").await, 100);
}

/// The status of `GET <path>` on the front-end, with the path sent byte for byte.
async fn raw_get_status(cluster: &Cluster, path: &str) -> u16 {
    use std::io::{Read, Write};
    let port = cluster.port("frontend");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.write_all(request.as_bytes()).expect("send");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read");
        reply
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    })
    .await
    .expect("join")
}
