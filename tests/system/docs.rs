//! The docs page (`GET /docs`), rendered by a real headless Chromium that can reach no
//! host but 127.0.0.1. (The description's contents and the page's routes are tested
//! in-process, in tests/handlers; its validation as OpenAPI 3.1 and the fuzzing
//! against it are in `.ci/fuzz-api`.)

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::{Cluster, Options};

/// The public paths, each of which Swagger UI must draw.
const PATHS: [&str; 7] = [
    "/products",
    "/products/{name}",
    "/orders",
    "/orders/{number}",
    "/health",
    "/cache",
    "/metrics",
];

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
    for path in PATHS {
        assert!(
            dom.contains(&format!("data-path=\"{path}\"")),
            "{path} is not on the rendered page; Chromium said: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(dom.contains("toystore"), "the title is missing");
}
