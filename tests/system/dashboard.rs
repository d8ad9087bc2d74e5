//! The live dashboard: its page and stream over plain HTTP, its streams ending at
//! shutdown, and the page in a real browser through a failover.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::topology::Ports;
use common::wire::Replication;

use crate::helpers::{bin_dir, free_port_base, Cluster, Options};

/// Reads an SSE response until an event's data satisfies `want` (→ that data), or
/// gives up after `timeout`.
async fn read_until(
    resp: &mut reqwest::Response,
    timeout: Duration,
    want: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = String::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await.ok()?;
        buffer.push_str(&String::from_utf8_lossy(&chunk.ok()??));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            if let Ok(value) = serde_json::from_str(&data) {
                if want(&value) {
                    return Some(value);
                }
            }
        }
    }
}

fn panel<'a>(event: &'a serde_json::Value, id: &str) -> &'a str {
    event[id].as_str().unwrap_or("")
}

#[tokio::test]
async fn the_dashboard_shows_the_cluster_and_streams_what_changes() {
    let cluster = Cluster::start(Options::default()).await;
    let base = cluster.url("frontend");
    let leader = cluster.leader().await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    let root = plain.get(format!("{base}/")).send().await.expect("GET /");
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/dashboard");

    // The page is served with the cluster already in it (after the first poll).
    let deadline = Instant::now() + Duration::from_secs(5);
    let page = loop {
        let resp = plain
            .get(format!("{base}/dashboard"))
            .send()
            .await
            .expect("GET /dashboard");
        assert_eq!(resp.status(), 200);
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .to_string();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        let page = resp.text().await.expect("page");
        if page.contains(&format!("data-leader=\"{leader}\"")) {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "the page does not name order{leader} as leader:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(page.matches("data-replica=").count(), 3, "{page}");
    assert!(
        !page.contains(&cluster.token),
        "the page shows the cluster token"
    );
    for (asset, kind) in [("app.js", "text/javascript"), ("style.css", "text/css")] {
        let resp = plain
            .get(format!("{base}/dashboard/{asset}"))
            .send()
            .await
            .expect("asset");
        assert_eq!(resp.status(), 200, "{asset}");
        assert_eq!(resp.headers()["content-type"], kind);
    }

    // The stream sends every panel first, then what changes: a looked-up toy appears
    // in the cache's list, and the order placed shows in the feed's cache column.
    let mut stream = plain
        .get(format!("{base}/dashboard/events"))
        .send()
        .await
        .expect("GET /dashboard/events");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let first = read_until(&mut stream, Duration::from_secs(5), |_| true)
        .await
        .expect("a first event");
    for id in ["summary", "replicas", "catalog", "cache", "charts", "feed"] {
        assert!(
            first.get(id).is_some(),
            "the first event lacks {id}: {first}"
        );
    }
    let (status, _) = cluster.get("/products/Tux").await;
    assert_eq!(status, 200);
    read_until(&mut stream, Duration::from_secs(5), |e| {
        panel(e, "cache").contains(r#"data-name="tux""#)
    })
    .await
    .expect("the cache panel never listed tux");
    cluster.order_ok("Tux", 1).await;
    read_until(&mut stream, Duration::from_secs(5), |e| {
        panel(e, "feed").contains("cache: tux invalidated")
    })
    .await
    .expect("the feed never showed the invalidation of tux");
}

/// The `served-by` front-end named in a summary panel.
fn served_by(event: &serde_json::Value) -> Option<String> {
    let summary = panel(event, "summary");
    let start = summary.find("id=\"served-by\">")? + "id=\"served-by\">".len();
    let end = summary[start..].find('<')? + start;
    Some(summary[start..end].to_string())
}

/// Two front-ends behind HAProxy: the dashboard, viewed through the balancer, shows
/// both; when the one serving it is killed its stream ends, and reopened through the
/// balancer the page comes from the other one, which shows the dead one down.
#[tokio::test]
async fn the_dashboard_through_the_balancer_shows_every_front_end_and_outlives_one() {
    if !crate::balancer::haproxy_present() {
        return;
    }
    let mut cluster = Cluster::start(Options {
        frontends: 2,
        balancer: true,
        ..Options::default()
    })
    .await;
    let lb = cluster.url("lb");
    let open = |http: reqwest::Client| {
        let url = format!("{lb}/dashboard/events");
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match http.get(&url).send().await {
                    Ok(resp) if resp.status() == 200 => return resp,
                    other => assert!(
                        Instant::now() < deadline,
                        "no stream through the balancer: {other:?}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let both_up = |e: &serde_json::Value| {
        let rows = panel(e, "frontends");
        served_by(e).is_some()
            && rows.contains(r#"data-frontend="frontend1" class="up"#)
            && rows.contains(r#"data-frontend="frontend2" class="up"#)
    };
    let mut stream = open(cluster.http.clone()).await;
    let first = read_until(&mut stream, Duration::from_secs(5), both_up)
        .await
        .expect("the dashboard never showed both front-ends up");
    let serving = served_by(&first).expect("served by");
    let other = if serving == "frontend1" {
        "frontend2"
    } else {
        "frontend1"
    };
    assert!(
        panel(&first, "frontends")
            .contains(&format!(r#"data-frontend="{serving}" class="up this""#)),
        "{first}"
    );

    cluster.kill(&serving);
    // Its stream ends with it (nothing more arrives from a dead front-end).
    assert!(read_until(&mut stream, Duration::from_secs(5), |_| false)
        .await
        .is_none());
    let mut stream = open(cluster.http.clone()).await;
    let after = read_until(&mut stream, Duration::from_secs(5), |e| {
        panel(e, "frontends").contains(&format!(r#"data-frontend="{serving}" class="down"#))
    })
    .await
    .unwrap_or_else(|| panic!("the reopened dashboard never showed {serving} down"));
    assert_eq!(served_by(&after).as_deref(), Some(other), "{after}");
}

/// What the browser test needs: Node.js, playwright-core (`npm ci` in tests/browser)
/// and Chromium. CI installs them and sets `TOYSTORE_REQUIRE_BROWSER=1`, so there the
/// test cannot be skipped.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var_os("TOYSTORE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let script = root.join("tests/browser/dashboard.mjs");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = if !node_ok {
        Some("no node on PATH".to_string())
    } else if !root
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        Some("no playwright-core (run `npm ci --prefix tests/browser`)".to_string())
    } else if !chromium.exists() {
        Some(format!("no Chromium at {}", chromium.display()))
    } else {
        None
    };
    match missing {
        None => Some((script, chromium)),
        Some(why) => {
            assert!(
                std::env::var_os("TOYSTORE_REQUIRE_BROWSER").is_none(),
                "the browser test cannot run: {why}"
            );
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// What `run.sh` needs to run this test's binaries with data in `data` and the
/// default layout moved to `port_base` (as `client`'s clusters do).
fn run_sh_vars(data: &Path, port_base: u16, mode: Replication) -> Vec<(String, String)> {
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let target = bin_dir().parent().expect("target dir");
    let mut vars = Ports::from_base(port_base).expect("port base").env();
    for (var, value) in [
        ("TOYSTORE_PROFILE", profile.to_string()),
        ("TOYSTORE_BUILD", "0".to_string()),
        ("CARGO_TARGET_DIR", target.display().to_string()),
        ("TOYSTORE_START_TIMEOUT", "60".to_string()),
        ("TOYSTORE_DATA_DIR", data.display().to_string()),
        ("RUST_LOG", "warn".to_string()),
        ("TOYSTORE_REPLICATION", mode.to_string()),
    ] {
        vars.push((var.to_string(), value));
    }
    vars
}

fn run_sh(vars: &[(String, String)], command: &str) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("bash")
        .arg(root.join("run.sh"))
        .arg(command)
        .envs(vars.iter().cloned())
        .current_dir(root)
        .output()
        .expect("run run.sh")
}

/// Chromium, driven by playwright-core, watches `./run.sh kill <leader>` and the
/// restart (see tests/browser/dashboard.mjs for what it checks). Set
/// `DASHBOARD_SCREENSHOT=docs/img/dashboard.png` to keep a screenshot of the end (a
/// path relative to the repository's root).
#[tokio::test]
async fn the_dashboard_follows_a_failover_in_a_real_browser() {
    let Some(found) = in_browser(Replication::PrimaryBackup, Watch::LeaderKill).await else {
        return;
    };
    assert_eq!(found["replicas"], 3, "{found}");
    assert_ne!(found["leader"], found["new_leader"], "{found}");
}

/// The same in Raft mode, where the replicas elect the new leader themselves.
#[tokio::test]
async fn the_dashboard_follows_a_raft_election_in_a_real_browser() {
    let Some(found) = in_browser(Replication::Raft, Watch::LeaderKill).await else {
        return;
    };
    assert_eq!(found["replicas"], 3, "{found}");
    assert_ne!(found["leader"], found["new_leader"], "{found}");
}

/// Two front-ends behind HAProxy, the page opened through the balancer: the front-end
/// serving it is killed and the page goes on, live, from the other one.
#[tokio::test]
async fn the_dashboard_outlives_its_front_end_in_a_real_browser_behind_the_balancer() {
    if !crate::balancer::haproxy_present() {
        return;
    }
    let Some(found) = in_browser(Replication::PrimaryBackup, Watch::FrontendKill).await else {
        return;
    };
    assert_eq!(found["frontends"], 2, "{found}");
    assert_ne!(found["served_by"], found["then_served_by"], "{found}");
}

/// What the browser watches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// The order leader killed and restarted, the page on the one front-end.
    LeaderKill,
    /// Two front-ends behind the balancer, the page through it; the front-end serving
    /// it killed and restarted.
    FrontendKill,
}

/// Starts a cluster with `run.sh`, runs the browser script on it and returns its
/// findings (`None`: the tools are missing and the test may skip).
async fn in_browser(mode: Replication, watch: Watch) -> Option<serde_json::Value> {
    let (script, chromium) = browser_tools()?;
    let dir = tempfile::tempdir().expect("temp dir");
    let port_base = free_port_base();
    let mut vars = run_sh_vars(&dir.path().join("cluster"), port_base, mode);
    let ports = Ports::from_base(port_base).expect("port base");
    let mut url = format!("http://127.0.0.1:{}", ports.frontends[0]);
    if watch == Watch::FrontendKill {
        // Inside the span the base reserves: the second front-end on an unused port,
        // the balancer on the base itself (as 8000 is in the default layout).
        for (var, value) in [
            ("TOYSTORE_FRONTENDS", "2".to_string()),
            ("FRONTEND2_PORT", (port_base + 88).to_string()),
            ("TOYSTORE_LB", "haproxy".to_string()),
            ("TOYSTORE_LB_PORT", port_base.to_string()),
            ("WATCH", "frontend-kill".to_string()),
        ] {
            vars.retain(|(v, _)| v != var);
            vars.push((var.to_string(), value));
        }
        url = format!("http://127.0.0.1:{port_base}");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    let (up, out, took) = tokio::task::spawn_blocking(move || {
        let up = run_sh(&vars, "up");
        let started = Instant::now();
        // The script runs run.sh itself (kill, start), with the same variables.
        let out = up.status.success().then(|| {
            let mut node = Command::new("node");
            if mode != Replication::PrimaryBackup || watch != Watch::LeaderKill {
                // One screenshot: of the primary-backup failover.
                node.env_remove("DASHBOARD_SCREENSHOT");
            }
            node.arg(&script)
                .envs(vars.iter().cloned())
                .env("TOYSTORE_URL", &url)
                .env("RUN_SH", root.join("run.sh"))
                .env("TOYSTORE_CHROMIUM", &chromium)
                .current_dir(root)
                .output()
                .expect("run node")
        });
        run_sh(&vars, "stop");
        (up, out, started.elapsed())
    })
    .await
    .expect("join");
    let out =
        out.unwrap_or_else(|| panic!("run.sh up failed:\n{}", String::from_utf8_lossy(&up.stderr)));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser check failed after {took:?}:\n{stdout}\n{stderr}"
    );
    let found: serde_json::Value = serde_json::from_str(stdout.trim()).expect("findings");
    eprintln!("browser findings: {found}");
    Some(found)
}
