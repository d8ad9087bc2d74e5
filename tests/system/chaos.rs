//! The crash experiment as users run it — `client chaos` driving `run.sh` — in a
//! short version: replicas (the leader among them) are SIGKILLed while five client
//! sessions order, and every check must pass.

use std::path::Path;
use std::process::Command;

use crate::helpers::{bin_dir, free_port_base};

#[tokio::test]
async fn a_short_chaos_run_passes_every_check() {
    let bins = bin_dir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = tempfile::tempdir().expect("temp dir");
    let base = free_port_base().to_string();
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let target = bins.parent().expect("target dir");
    let env = |cmd: &mut Command| {
        cmd.env("TOYSTORE_PROFILE", profile)
            .env("TOYSTORE_BUILD", "0")
            .env("CARGO_TARGET_DIR", target)
            .env("TOYSTORE_START_TIMEOUT", "60");
    };
    let mut chaos = Command::new(bins.join("client"));
    chaos
        .args([
            "chaos",
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
            "--port-base",
            &base,
        ])
        .arg("--data-dir")
        .arg(data.path().join("cluster"))
        .arg("--run-sh")
        .arg(root.join("run.sh"));
    env(&mut chaos);
    let output = tokio::task::spawn_blocking(move || chaos.output())
        .await
        .expect("join")
        .expect("run the client");

    // Whatever happened, leave no process behind.
    let mut stop = Command::new("bash");
    stop.arg(root.join("run.sh"))
        .arg("stop")
        .env("TOYSTORE_DATA_DIR", data.path().join("cluster"));
    env(&mut stop);
    let _ = stop.output();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "chaos failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("4 replicas killed"), "{stdout}");
}
