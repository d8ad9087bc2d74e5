//! Starts real toystore clusters for tests, one concern per file:
//!
//! - `cluster`: the processes — start, signal, kill, logs.
//! - `api`: what tests ask of a running cluster over HTTP.
//! - `waits`: bounded waits for health and for any condition.
//! - `ports`: free loopback ports.
//! - `build`: the binaries under test, and `run.sh` driven with them.

mod api;
mod build;
mod cluster;
mod ports;
mod waits;

use std::path::PathBuf;

use common::wire::Replication;

pub use build::{bin_dir, client_with_run_sh, stop_run_sh};
pub use cluster::Cluster;
pub use ports::free_port_base;
pub use waits::eventually;

pub(crate) use crate::modes::in_both_modes;

/// Whether a test that needs root (`what`: network namespaces, a mount) can run:
/// true as root; otherwise it is skipped with a line saying so, unless
/// `TOYSTORE_REQUIRE_NETNS` is set (CI runs as root and sets it), where that fails.
pub fn root_or_skip(test: &str, what: &str) -> bool {
    if chaos::netns::is_root() {
        return true;
    }
    assert!(
        std::env::var_os("TOYSTORE_REQUIRE_NETNS").is_none(),
        "{test} needs root"
    );
    eprintln!("skipped: {test} needs root ({what})");
    false
}

/// Settings of a test cluster.
#[derive(Clone)]
pub struct Options {
    /// Number of order replicas (ids 1..=n).
    pub replicas: u32,
    /// Number of catalog replicas: 1 is the single `catalog`; more are `catalog1` …
    /// in a Raft group.
    pub catalog_replicas: u16,
    /// Number of front-ends: 1 is `frontend`; more are `frontend1` … (the helpers
    /// that talk to "the front-end" use the first).
    pub frontends: u16,
    /// Run HAProxy (`deploy/haproxy.cfg`) in front of the front-ends, as `lb`.
    pub balancer: bool,
    pub cache: bool,
    pub cache_capacity: u64,
    pub initial_stock: u64,
    pub restock_amount: u64,
    pub restock_period_ms: u64,
    pub failover_ms: u64,
    pub fill_delay_ms: u64,
    /// The catalog's seed file [default: the shipped data/toys.json].
    pub seed_file: Option<PathBuf>,
    /// How the order replicas agree (the replicas and the front-end get it).
    pub replication: Replication,
    /// `--key-retention` of the catalog and the replicas [default: theirs, 24h].
    pub key_retention: Option<&'static str>,
}

impl Options {
    /// The defaults, in replication mode `mode`.
    pub fn in_mode(mode: Replication) -> Options {
        Options {
            replication: mode,
            ..Options::default()
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            replicas: 3,
            catalog_replicas: 1,
            frontends: 1,
            balancer: false,
            cache: true,
            cache_capacity: 10,
            initial_stock: 100,
            restock_amount: 100,
            restock_period_ms: 3_600_000,
            failover_ms: 20_000,
            fill_delay_ms: 0,
            seed_file: None,
            replication: Replication::PrimaryBackup,
            key_retention: None,
        }
    }
}
