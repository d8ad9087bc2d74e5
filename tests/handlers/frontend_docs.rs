//! The API's description (`GET /openapi.json`) and the docs page's routes. (The page
//! rendered in a real browser is a system test; validation as OpenAPI 3.1 and fuzzing
//! against it are in `.ci/fuzz-api`.)

use common::wire::Replication;

use crate::stack::{get, Stack};

/// Every public operation, as the description must list it.
const OPERATIONS: [(&str, &str); 7] = [
    ("get", "/products"),
    ("get", "/products/{name}"),
    ("post", "/orders"),
    ("get", "/orders/{number}"),
    ("get", "/health"),
    ("get", "/cache"),
    ("get", "/metrics"),
];

#[tokio::test]
async fn the_description_lists_every_public_operation_and_header() {
    let s = Stack::start(Replication::PrimaryBackup, 100).await;
    let reply = s.get("/openapi.json").await;
    assert_eq!(reply.status, 200);
    let api = &reply.json;
    assert!(
        api["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        api["openapi"]
    );
    let paths = api["paths"].as_object().expect("paths");
    let described: usize = paths
        .values()
        .map(|p| p.as_object().map_or(0, |m| m.len()))
        .sum();
    assert_eq!(described, OPERATIONS.len(), "{:?}", paths.keys());
    for (method, path) in OPERATIONS {
        let op = &api["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not described");
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "x-request-id" && p["in"] == "header"),
            "{method} {path} lacks x-request-id"
        );
        for (status, reply) in op["responses"].as_object().expect("responses") {
            assert!(
                reply["headers"]["x-request-id"].is_object(),
                "{method} {path} {status} lacks the x-request-id reply header"
            );
        }
    }
    let order = &api["paths"]["/orders"]["post"];
    assert!(order["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key")));
    for status in ["200", "400", "404", "409", "422", "503"] {
        assert!(
            order["responses"][status].is_object(),
            "POST /orders {status}"
        );
    }
    assert_eq!(
        api["components"]["schemas"]["ErrorBody"]["required"],
        serde_json::json!(["error"])
    );
}

#[tokio::test]
async fn docs_redirects_to_its_directory_which_serves_the_page() {
    let s = Stack::start(Replication::PrimaryBackup, 100).await;
    let redirect = crate::stack::call(&s.frontend, get("/docs")).await;
    assert_eq!(redirect.status, 308);
    assert_eq!(
        redirect
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/docs/")
    );
    let page = s.get("/docs/").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("swagger-ui"), "{}", page.text);
}
