//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), in
//! colour only on a terminal (not in `run.sh`'s log files or a container's log).
//!
//! openraft narrates every election and replication step at `info`; its messages
//! show from `warn` up unless `RUST_LOG` names `openraft` itself.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let spec = if spec.contains("openraft") {
        spec
    } else {
        format!("{spec},openraft=warn")
    };
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
