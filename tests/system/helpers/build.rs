//! The binaries under test, built once per test process, and `run.sh` driven with
//! them (for tests of the client's commands).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds the service binaries (and `run.sh`'s launcher and the client) once per test
/// process; returns their directory.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/system-<hash> → target/<profile> → target
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile directory")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target directory");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--bins"])
            .args([
                "-p", "catalog", "-p", "order", "-p", "frontend", "-p", "launcher", "-p", "client",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("run cargo build for the service binaries");
        assert!(status.success(), "building the service binaries failed");
        profile_dir
    })
}

/// Sets what `run.sh` needs to start this test process's builds of the binaries
/// (without building again), with its data in `data`.
fn run_sh_env(cmd: &mut Command, data: &Path) {
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let target = bin_dir().parent().expect("target dir");
    cmd.env("TOYSTORE_PROFILE", profile)
        .env("TOYSTORE_BUILD", "0")
        .env("CARGO_TARGET_DIR", target)
        .env("TOYSTORE_START_TIMEOUT", "60")
        .env("TOYSTORE_DATA_DIR", data);
}

/// `client <command>` driving a cluster of its own through `run.sh`, with its data
/// in `data` and ports from `port_base` (see [`free_port_base`]).
pub fn client_with_run_sh(command: &str, data: &Path, port_base: u16) -> Command {
    let mut cmd = Command::new(bin_dir().join("client"));
    cmd.arg(command)
        .arg("--port-base")
        .arg(port_base.to_string())
        .arg("--data-dir")
        .arg(data)
        .arg("--run-sh")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("run.sh"));
    run_sh_env(&mut cmd, data);
    cmd
}

/// Stops whatever a [`client_with_run_sh`] command left running in `data`.
pub fn stop_run_sh(data: &Path) {
    let mut stop = Command::new("bash");
    stop.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("run.sh"))
        .arg("stop");
    run_sh_env(&mut stop, data);
    let _ = stop.output();
}
