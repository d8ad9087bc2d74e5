//! The crash experiment as users run it — `client chaos` driving `run.sh` — in a
//! short version: replicas (the leader among them) are SIGKILLed while five client
//! sessions order, and every check must pass; and the multi-host run with kills,
//! pauses, partitions and full disks.

use std::path::Path;
use std::process::Command;

use common::wire::Replication;

use crate::helpers::{
    bin_dir, client_with_run_sh, free_port_base, in_both_modes, root_or_skip, stop_run_sh,
};

in_both_modes!(a_short_chaos_run_passes_every_check);

async fn a_short_chaos_run_passes_every_check(mode: Replication) {
    let stdout = short_chaos_run(mode, 1).await;
    assert!(stdout.contains("4 replicas killed"), "{stdout}");
}

/// The same with a replicated catalog: every other kill is of a catalog replica.
#[tokio::test]
async fn a_short_chaos_run_with_a_replicated_catalog_passes_every_check() {
    let stdout = short_chaos_run(Replication::PrimaryBackup, 3).await;
    assert!(
        stdout.contains("4 replicas killed: 2 catalog replicas, 2 order replicas"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the 3 catalog replicas hold the same stock"),
        "{stdout}"
    );
}

/// `client chaos` with four kills (two of the leader) on a cluster of its own with
/// `catalogs` catalog replicas; fails unless every check passed; answers its output.
async fn short_chaos_run(mode: Replication, catalogs: u16) -> String {
    let data = tempfile::tempdir().expect("temp dir");
    let cluster = data.path().join("cluster");
    let mut chaos = client_with_run_sh("chaos", &cluster, free_port_base());
    chaos.args(["--catalog-replicas", &catalogs.to_string()]);
    chaos
        .args([
            "--kills",
            "4",
            "--leader-kills",
            "2",
            "--interval-ms",
            "800",
        ])
        .args([
            "--down-ms",
            "300",
            "--initial-stock",
            "100000",
            "--replication",
            &mode.to_string(),
        ]);
    let output = tokio::task::spawn_blocking(move || chaos.output())
        .await
        .expect("join")
        .expect("run the client");
    // Whatever happened, leave no process behind.
    stop_run_sh(&cluster);

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "chaos failed:\n{stdout}\n{stderr}"
    );
    stdout.into_owned()
}

/// The multi-host run (`client chaos --hosts`) in a short version, in both replication
/// modes one after the other (the namespaces have fixed names): seven network
/// namespaces set up by following docs/DEPLOY.md (two front-ends behind a load
/// balancer host), and a nemesis that kills, pauses and partitions the leader, a
/// front-end and the catalog and fills a replica's disk, then runs the two schedules
/// primary-backup admits can lose orders (in Raft mode they must lose none); then
/// nine hosts with three catalog replicas, whose leader and a follower are killed,
/// paused, isolated and given a full disk and whose leader is cut from its followers,
/// with no request left unanswered. Every check must pass. Needs root (CI runs as root and sets
/// `TOYSTORE_REQUIRE_NETNS=1`, so there it cannot be skipped).
#[tokio::test]
async fn a_short_multi_host_chaos_run_passes_every_check() {
    if !root_or_skip("the multi-host chaos test", "network namespaces") {
        return;
    }
    for mode in ["primary-backup", "raft"] {
        multi_host_chaos_passes(mode, 1, 8).await;
    }
    multi_host_chaos_passes("primary-backup", 3, 16).await;
}

/// A run in `mode` with `catalogs` catalog replicas and `faults` faults (and, with
/// one catalog, the two lossy schedules).
async fn multi_host_chaos_passes(mode: &str, catalogs: u16, faults: usize) {
    // Two front-ends behind HAProxy where it is installed (CI installs it and sets
    // TOYSTORE_REQUIRE_LB); one front-end elsewhere.
    let haproxy = std::path::Path::new("/usr/sbin/haproxy").exists();
    assert!(
        haproxy || std::env::var_os("TOYSTORE_REQUIRE_LB").is_none(),
        "the multi-host chaos test needs HAProxy"
    );
    let frontends = if haproxy { 2 } else { 1 };
    let bins = bin_dir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().expect("temp dir");
    let mut chaos = Command::new(bins.join("client"));
    chaos
        .args([
            "chaos",
            "--hosts",
            "--faults",
            &faults.to_string(),
            "--sessions",
            "3",
            "--replication",
            mode,
            "--catalog-replicas",
            &catalogs.to_string(),
            "--frontends",
            &frontends.to_string(),
        ])
        .args(if catalogs == 1 { &["--lossy"][..] } else { &[] })
        .args(["--interval-ms", "1000", "--down-ms", "2000"])
        .arg("--guide")
        .arg(root.join("docs/DEPLOY.md"))
        .arg("--seed-file")
        .arg(root.join("data/toys.json"))
        .arg("--bin-dir")
        .arg(bins)
        .arg("--work-dir")
        .arg(work.path().join("hosts"));
    let output = tokio::task::spawn_blocking(move || chaos.output())
        .await
        .expect("join")
        .expect("run the client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "chaos --hosts ({mode}, {catalogs} catalogs) failed:\n{stdout}\n{stderr}"
    );
    let all = faults + if catalogs == 1 { 2 } else { 0 };
    assert!(
        stdout.contains(&format!("{all} of {all} faults applied")),
        "{stdout}"
    );
    // A replica's disk was filled (and it stopped, or served on).
    assert!(
        stdout.lines().any(|l| l.contains("fill the disk of order")),
        "no full disk: {stdout}"
    );
    // Read-your-writes was checked through the front-end that took each order; with
    // two behind the load balancer, one was killed and one paused.
    assert!(stdout.contains("[ok] read-your-writes: 0 of"), "{stdout}");
    for kind in ["kill", "pause"].into_iter().filter(|_| frontends > 1) {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("{kind} frontend")) && l.contains("(frontend)")),
            "no {kind} of a front-end: {stdout}"
        );
    }
    if catalogs > 1 {
        // Each of kill, pause and isolate hit the catalog's leader and a follower.
        for kind in ["kill", "pause", "isolate"] {
            for target in ["(catalog)", "(catalog-follower)"] {
                assert!(
                    stdout
                        .lines()
                        .any(|l| l.contains(&format!("{kind} catalog")) && l.contains(target)),
                    "no {kind} of the {target}: {stdout}"
                );
            }
        }
        assert!(stdout.contains("cut catalog leader"), "{stdout}");
        assert!(
            stdout.contains("fill the disk of catalog"),
            "no full disk of a catalog replica: {stdout}"
        );
        assert!(
            stdout.contains("catalog replicas hold the same stock"),
            "{stdout}"
        );
    }
}
