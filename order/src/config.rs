//! Typed configuration of an order replica (flags and environment variables).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use common::config::{
    parse_replicas, parse_urls, EdgeArgs, PeerArgs, Replicas, StorageArgs, TokenArgs, Urls,
    DEFAULT_REPLICAS,
};
use common::domain::ReplicaId;
use common::retention::RetentionArgs;
use common::wire::Replication;
use reqwest::Url;

use crate::raft::RaftSettings;

/// toystore order replica: stores orders and replicates them to its peers.
#[derive(Parser, Debug, Clone)]
#[command(name = "order", version)]
pub struct Config {
    /// This replica's id; must appear in --replicas.
    #[arg(long, env = "ORDER_ID")]
    pub id: ReplicaId,

    /// Address to listen on [default: the address of this id in --replicas].
    #[arg(long, env = "ORDER_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Directory of this replica's sled database [default: data/orderN for --id N,
    /// or data/orderN-raft in Raft mode].
    #[arg(long, env = "ORDER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Rebuild this replica from its peers: move its data directory aside (to
    /// `<dir>.damaged-<unix seconds>`) and start empty; it reports ready only once it
    /// has taken a ready peer's whole history, however long that takes. In Raft mode it
    /// rejoins the group as a learner first and needs both other replicas up.
    #[arg(long, env = "ORDER_REBUILD")]
    pub rebuild: bool,

    /// Every replica as ID=URL, comma-separated (this one included).
    #[arg(long, env = "TOYSTORE_REPLICAS", default_value = DEFAULT_REPLICAS,
          value_parser = parse_replicas)]
    pub replicas: Replicas,

    /// Base URL of the catalog service; of each of its replicas (comma-separated)
    /// when it is replicated.
    #[arg(long, env = "TOYSTORE_CATALOG_URL", default_value = "http://127.0.0.1:8081",
          value_parser = parse_urls)]
    pub catalog_url: Urls,

    #[command(flatten)]
    pub token: TokenArgs,

    #[command(flatten)]
    pub peer: PeerArgs,

    #[command(flatten)]
    pub edge: EdgeArgs,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub retention: RetentionArgs,

    /// How long the leader waits for a follower to store a batch before it stops
    /// waiting for it ("lagging") until it has synced back, in ms.
    #[arg(long, env = "ORDER_REPLICATE_TIMEOUT_MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub replicate_timeout_ms: u64,

    /// How often the leader sends followers a heartbeat (and probes lagging ones), in ms.
    #[arg(long, env = "ORDER_HEARTBEAT_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_ms: u64,

    /// Timeout of a status check of a peer (promotion, catch-up), in ms.
    #[arg(long, env = "ORDER_STATUS_TIMEOUT_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub status_timeout_ms: u64,

    /// How long a read of an order that is stored but not yet committed waits for the
    /// commit before it answers 404, in ms.
    #[arg(long, env = "ORDER_READ_WAIT_MS", default_value_t = 1_000)]
    pub read_wait_ms: u64,

    /// How the replicas agree on their history: `primary-backup` (the front-end
    /// chooses the leader) or `raft` (the replicas elect one; majority commit). Every
    /// replica and the front-end must use the same.
    #[arg(long, env = "TOYSTORE_REPLICATION", value_enum, default_value_t = Replication::PrimaryBackup)]
    pub replication: Replication,

    /// Raft mode: how often the leader sends heartbeats, in ms.
    #[arg(long, env = "ORDER_RAFT_HEARTBEAT_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub raft_heartbeat_ms: u64,

    /// Raft mode: shortest election timeout, in ms (each is drawn between this and
    /// twice it; a follower that heard a leader also waits out the leader's lease,
    /// twice this); must exceed the heartbeat.
    #[arg(long, env = "ORDER_RAFT_ELECTION_MS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub raft_election_ms: u64,

    /// Raft mode: log entries (each a batch of orders) between snapshots; as many
    /// are kept when the log is purged. A replica further behind installs a snapshot.
    #[arg(long, env = "ORDER_RAFT_SNAPSHOT_ENTRIES", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub raft_snapshot_entries: u64,

    /// Test-only fault injection: `crash-before-replicate` makes a leader abort right
    /// after storing a batch locally (raft: appending an entry of orders to its log),
    /// before any follower has it.
    #[arg(long, env = "ORDER_FAULT", hide = true)]
    pub fault: Option<Fault>,
}

/// Faults that tests can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    CrashBeforeReplicate,
}

/// The replica's timeouts, from its configuration.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub replicate: Duration,
    pub heartbeat: Duration,
    pub status: Duration,
    pub read_wait: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            replicate: Duration::from_secs(3),
            heartbeat: Duration::from_millis(500),
            status: Duration::from_millis(500),
            read_wait: Duration::from_secs(1),
        }
    }
}

impl Config {
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            replicate: Duration::from_millis(self.replicate_timeout_ms),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            status: Duration::from_millis(self.status_timeout_ms),
            read_wait: Duration::from_millis(self.read_wait_ms),
        }
    }

    /// How long this replica keeps an idempotency key: the catalog's window and a
    /// margin (`common::retention::replica_window`).
    pub fn key_window(&self) -> Duration {
        common::retention::replica_window(self.retention.key_retention)
    }

    /// The listen address: explicit, or taken from this id's URL.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        if let Some(addr) = self.listen {
            return Ok(addr);
        }
        let url = self
            .replicas
            .url(self.id)
            .ok_or_else(|| format!("replica id {} is not in --replicas", self.id))?;
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        format!("{host}:{port}")
            .parse()
            .map_err(|_| format!("cannot listen on {url}: give --listen an IP address"))
    }

    /// Raft mode's settings: its own flags, plus the replicate timeout (how long a
    /// batch waits for a majority) and the read wait.
    pub fn raft_settings(&self) -> RaftSettings {
        RaftSettings {
            group: consensus::Settings {
                heartbeat: Duration::from_millis(self.raft_heartbeat_ms),
                election: Duration::from_millis(self.raft_election_ms),
                commit: Duration::from_millis(self.replicate_timeout_ms),
                read: Duration::from_millis(self.read_wait_ms.max(1)),
                snapshot_entries: self.raft_snapshot_entries,
            },
            key_window: self.key_window(),
            fault: self.fault,
            rebuild: self.rebuild,
        }
    }

    /// The database directory: `data/order<ID>` in primary-backup mode and
    /// `data/order<ID>-raft` in Raft mode unless given (the modes' histories cannot
    /// share a database).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            PathBuf::from(match self.replication {
                Replication::PrimaryBackup => format!("data/order{}", self.id),
                Replication::Raft => format!("data/order{}-raft", self.id),
            })
        })
    }

    /// Every other replica.
    pub fn peers(&self) -> Vec<(ReplicaId, Url)> {
        self.replicas
            .0
            .iter()
            .filter(|(id, _)| *id != self.id)
            .cloned()
            .collect()
    }
}
