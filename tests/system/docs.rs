//! The API's description (`GET /openapi.json`) and its docs page (`GET /docs`), the
//! latter rendered by a real headless Chromium that can reach no host but 127.0.0.1.
//! (Its validation as OpenAPI 3.1 and the fuzzing against it are in `.ci/fuzz-api`.)

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::{Cluster, Options};

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
    let cluster = Cluster::start(Options::default()).await;
    let (status, api) = cluster.get("/openapi.json").await;
    assert_eq!(status, 200);
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

/// Debian's Chromium, if installed (CI installs it and sets
/// `TOYSTORE_REQUIRE_BROWSER=1`, so there the test cannot be skipped).
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("TOYSTORE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("TOYSTORE_REQUIRE_BROWSER").is_none(),
        "no Chromium at {} (TOYSTORE_CHROMIUM names another)",
        path.display()
    );
    eprintln!("skipped: no Chromium at {}", path.display());
    None
}

#[tokio::test]
async fn the_docs_page_renders_with_no_network() {
    let Some(chromium) = chromium() else {
        return;
    };
    let cluster = Cluster::start(Options::default()).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let url = format!("{}/docs", cluster.url("frontend"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                // Every host but this machine's loopback is unresolvable: whatever the
                // page needs must come from the front-end itself.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=15000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .output()
    })
    .await
    .expect("join")
    .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    // Swagger UI draws one block per operation once it has loaded its scripts and the
    // description, all from the front-end.
    for (_, path) in OPERATIONS {
        assert!(
            dom.contains(&format!("data-path=\"{path}\"")),
            "{path} is not on the rendered page; Chromium said: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(dom.contains("toystore"), "the title is missing");
}

#[tokio::test]
async fn docs_redirects_to_its_directory() {
    let cluster = Cluster::start(Options::default()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = http
        .get(format!("{}/docs", cluster.url("frontend")))
        .send()
        .await
        .expect("GET /docs");
    assert_eq!(resp.status().as_u16(), 308);
    assert_eq!(
        resp.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/docs/")
    );
    let page = http
        .get(format!("{}/docs/", cluster.url("frontend")))
        .send()
        .await
        .expect("GET /docs/");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
}
