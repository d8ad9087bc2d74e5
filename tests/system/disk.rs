//! A replica's own storage failing under it:
//! - a full disk (its data directory a tmpfs of its own, filled up while orders flow):
//!   the replica stops for good (it exits, saying why) instead of failing every batch
//!   it is sent, orders flow on without it, and once the space is freed and it is
//!   started again it catches up with nothing lost. Needs root (mount); CI runs as root
//!   and sets `TOYSTORE_REQUIRE_NETNS=1`, so there it cannot be skipped.
//! - a damaged database file: the replica never panics at start (it serves, or refuses
//!   naming the directory and the remedy), and `--rebuild` brings it back from its
//!   peers with nothing lost.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::wire::Replication;
use serde_json::json;

use crate::helpers::{eventually, in_both_modes, root_or_skip, Cluster, Options};

in_both_modes!(
    a_replica_whose_disk_fills_stops_and_orders_flow_on,
    a_damaged_replica_store_is_refused_by_name_and_rebuilt_from_its_peers,
);

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size_mb: u64) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs at {}", path.display());
        Tmpfs(path.to_path_buf())
    }

    /// Fills the file system to the last byte with a file of its own; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while file.write(&chunk).is_ok_and(|n| n > 0) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Places `n` orders one after another, each of which must succeed; returns how
/// many orders a second that was.
async fn place(cluster: &Cluster, n: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        let (status, body) = cluster.order("Tux", 1, None).await;
        assert_eq!(status, 200, "an order failed: {body}");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn a_replica_whose_disk_fills_stops_and_orders_flow_on(mode: Replication) {
    if !root_or_skip("the disk-full test", "mount") {
        return;
    }
    let mut cluster = Cluster::new(Options {
        initial_stock: 100_000,
        ..Options::in_mode(mode)
    });
    // order2 follows: order3 leads in primary-backup (the highest id), and order1 is
    // the one that starts the Raft group.
    let full = "order2";
    let disk = Tmpfs::mount(&cluster.data_dir(full), 64);
    cluster.start_all().await;
    let mut placed = 100;
    let before = place(&cluster, placed).await;

    let filler = disk.fill();
    // Every order is still answered 200 while the full replica fails and drops out.
    let full_rate = place(&cluster, 400).await;
    placed += 400;
    eprintln!("orders/s with every disk free: {before:.0}; with order2's full: {full_rate:.0}");
    // It stopped for good, saying why, instead of failing each batch it was sent.
    cluster.wait_exit(full, Duration::from_secs(30)).await;
    let log = cluster.log_text(full);
    assert!(
        log.contains("storage failed") || log.contains("the Raft core stopped"),
        "order2 exited without saying its storage failed:\n{}",
        cluster.log_tail(full)
    );
    place(&cluster, 100).await;
    placed += 100;

    // Space freed and started again: it catches up, and no acknowledged order is lost.
    std::fs::remove_file(filler).expect("free the space");
    cluster.start_service(full).await;
    cluster.converged().await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            cluster.replica(2).await["orders"] == json!(placed)
        })
        .await,
        "order2 holds {} orders, {placed} were acknowledged",
        cluster.replica(2).await["orders"]
    );
    // Stock adds up: every unit sold is in a stored order (one Tux each), none twice.
    assert_eq!(cluster.catalog_totals("catalog").await.sold, placed as u64);
    place(&cluster, 10).await;
}

async fn a_damaged_replica_store_is_refused_by_name_and_rebuilt_from_its_peers(mode: Replication) {
    let mut cluster = Cluster::start(Options {
        initial_stock: 100_000,
        ..Options::in_mode(mode)
    })
    .await;
    let mut placed = 300;
    place(&cluster, placed).await;
    // A follower's database file is damaged every 32 KiB.
    let id = cluster.follower().await;
    let damaged = format!("order{id}");
    let damaged = damaged.as_str();
    cluster.kill(damaged);
    let dir = cluster.data_dir(damaged);
    let file = dir.join("db");
    let len = std::fs::metadata(&file).expect("db file").len();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open db");
    for at in (4096..len).step_by(32 * 1024) {
        f.seek(SeekFrom::Start(at)).expect("seek");
        f.write_all(&[0xa5; 16]).expect("damage");
    }
    drop(f);

    // Started as it is: it refuses, naming the directory and the remedy, or it serves
    // the same history as its peers. It never dies of a panic.
    cluster.spawn(damaged);
    let health = format!("{}/health", cluster.url(damaged));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if !cluster.is_running(damaged) {
            let log = cluster.log_text(damaged);
            assert!(
                log.contains("is damaged") && log.contains(&dir.display().to_string()),
                "{damaged} exited without naming its damaged store:\n{}",
                cluster.log_tail(damaged)
            );
            assert!(!log.contains("panicked"), "{}", cluster.log_tail(damaged));
            cluster.wait_exit(damaged, Duration::from_secs(1)).await;
            eprintln!("{damaged} refused its damaged store");
            break;
        }
        let ready = match cluster.http.get(&health).send().await {
            Ok(reply) => reply.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        };
        if ready.is_some_and(|h| h["ready"] == json!(true)) {
            cluster.converged().await;
            eprintln!("{damaged} served its damaged store, with its peers' digest");
            cluster.kill(damaged);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{damaged} neither refused nor served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    place(&cluster, 50).await;
    placed += 50;

    // Rebuilt: the damaged directory is set aside, and the history comes from the
    // peers (in Raft mode after rejoining the group as a learner).
    cluster.set_env(damaged, "ORDER_REBUILD", "true");
    cluster.start_service(damaged).await;
    cluster.clear_env(damaged);
    cluster.converged().await;
    assert_eq!(cluster.replica(id).await["orders"], json!(placed));
    assert!(
        cluster.set_aside(damaged),
        "the damaged directory was not kept beside the new one"
    );
    place(&cluster, 10).await;
    placed += 10;

    // A full member again: with the leader gone, the rebuilt replica and the third
    // one carry the orders (in Raft mode, the rebuilt one's vote elects the leader).
    let leader = cluster.leader().await;
    cluster.kill(&format!("order{leader}"));
    place(&cluster, 20).await;
    placed += 20;
    cluster.start_service(&format!("order{leader}")).await;
    cluster.converged().await;
    for replica in 1..=3 {
        assert_eq!(cluster.replica(replica).await["orders"], json!(placed));
    }
    assert_eq!(cluster.catalog_totals("catalog").await.sold, placed as u64);
}
