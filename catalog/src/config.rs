//! Typed configuration of the catalog service (flags and environment variables).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use common::config::{
    parse_replicas, parse_urls, PeerArgs, Replicas, StorageArgs, TokenArgs, Urls,
};
use common::domain::ReplicaId;
use common::retention::RetentionArgs;

/// toystore catalog service: the toys, their stock, and periodic restocking.
#[derive(Parser, Debug, Clone)]
#[command(name = "catalog", version)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CATALOG_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// Directory of the catalog's sled database (created if missing).
    #[arg(long, env = "CATALOG_DATA_DIR", default_value = "data/catalog")]
    pub data_dir: PathBuf,

    /// JSON seed file with the toys; read only when the database is empty.
    #[arg(long, env = "CATALOG_SEED_FILE", default_value = "data/toys.json")]
    pub seed_file: PathBuf,

    /// Stock of every toy when the catalog is first seeded.
    #[arg(long, env = "CATALOG_INITIAL_STOCK", default_value_t = 100)]
    pub initial_stock: u64,

    /// Quantity a sold-out toy is restocked to.
    #[arg(long, env = "CATALOG_RESTOCK_AMOUNT", default_value_t = 100)]
    pub restock_amount: u64,

    /// How often sold-out toys are restocked, in milliseconds.
    #[arg(long, env = "CATALOG_RESTOCK_PERIOD_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub restock_period_ms: u64,

    /// Front-end base URLs that receive cache invalidations, comma-separated: every
    /// front-end of the cluster.
    #[arg(long = "frontend-url", env = "CATALOG_FRONTEND_URL",
          default_value = "http://127.0.0.1:8080", value_parser = parse_urls)]
    pub frontend_urls: Urls,

    /// Replicated catalog: this replica's id among `--peers`.
    #[arg(long, env = "CATALOG_ID", requires = "peers")]
    pub id: Option<ReplicaId>,

    /// Replicated catalog: every catalog replica (this one too) as ID=URL,
    /// comma-separated. With it the replicas form a Raft group; without it the
    /// catalog runs alone.
    #[arg(long, env = "CATALOG_PEERS", value_parser = parse_replicas, requires = "id")]
    pub peers: Option<Replicas>,

    /// Replicated catalog: how often the leader sends heartbeats, in ms.
    #[arg(long, env = "CATALOG_RAFT_HEARTBEAT_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub raft_heartbeat_ms: u64,

    /// Replicated catalog: shortest election timeout, in ms (each is drawn between
    /// this and twice it); must exceed the heartbeat.
    #[arg(long, env = "CATALOG_RAFT_ELECTION_MS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub raft_election_ms: u64,

    /// Replicated catalog: how long a change may wait for a majority, in ms.
    #[arg(long, env = "CATALOG_COMMIT_TIMEOUT_MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub commit_timeout_ms: u64,

    /// Replicated catalog: log entries between snapshots; as many are kept when the
    /// log is purged. A replica further behind installs a snapshot. Taking one copies
    /// only the toys and counters (the keys are read when a peer needs them), but the
    /// key pruner waits for the next one, so keys may outlive the retention by up to
    /// this many entries (see docs/DESIGN.md, "The replicated catalog").
    #[arg(long, env = "CATALOG_RAFT_SNAPSHOT_ENTRIES", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub raft_snapshot_entries: u64,

    #[command(flatten)]
    pub token: TokenArgs,

    #[command(flatten)]
    pub peer: PeerArgs,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub retention: RetentionArgs,
}

impl Config {
    pub fn restock_period(&self) -> Duration {
        Duration::from_millis(self.restock_period_ms)
    }

    /// A replicated catalog's id and members, or `None` for the single catalog;
    /// refuses an id that is not among the members.
    pub fn group(&self) -> Result<Option<(ReplicaId, Replicas)>, String> {
        match (self.id, &self.peers) {
            (Some(id), Some(peers)) => {
                if peers.url(id).is_none() {
                    return Err(format!("--id {id} is not one of --peers"));
                }
                Ok(Some((id, peers.clone())))
            }
            _ => Ok(None),
        }
    }

    /// The group's timing.
    pub fn group_settings(&self) -> consensus::Settings {
        let election = Duration::from_millis(self.raft_election_ms);
        consensus::Settings {
            heartbeat: Duration::from_millis(self.raft_heartbeat_ms),
            election,
            commit: Duration::from_millis(self.commit_timeout_ms),
            read: election,
            snapshot_entries: self.raft_snapshot_entries,
        }
    }
}
