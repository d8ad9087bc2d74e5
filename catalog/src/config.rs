//! Typed configuration of the catalog service (flags and environment variables).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use common::config::{
    parse_replicas, parse_urls, EdgeArgs, PeerArgs, Replicas, StorageArgs, TokenArgs, Urls,
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

    /// Replicated catalog: rebuild this replica from its peers. Its data directory is
    /// moved aside (to `<dir>.damaged-<unix seconds>`); it starts empty, rejoins the
    /// group as a learner (both other replicas must be up), takes the log or a
    /// snapshot, and votes again once caught up. A lone catalog has no peers to
    /// rebuild from: it refuses.
    #[arg(long, env = "CATALOG_REBUILD")]
    pub rebuild: bool,

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
    pub edge: EdgeArgs,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub retention: RetentionArgs,
}

impl Config {
    /// Refuses stock settings whose totals could overflow: `toys` toys at the initial
    /// stock, plus every one of them restocked at every round for a century, must
    /// stay within `u64` (the catalog's totals and each toy's stock are `u64`s; a sum
    /// that no longer fits would be a number nobody sold or stocked).
    pub fn check_stock(&self, toys: usize) -> Result<(), String> {
        const CENTURY_MS: u128 = 100 * 365 * 24 * 60 * 60 * 1000;
        let toys = toys as u128;
        let rounds = CENTURY_MS / u128::from(self.restock_period_ms.max(1));
        let total =
            toys * u128::from(self.initial_stock) + toys * u128::from(self.restock_amount) * rounds;
        if total > u128::from(u64::MAX) {
            return Err(format!(
                "CATALOG_INITIAL_STOCK ({}) and CATALOG_RESTOCK_AMOUNT ({}) every \
                 {} ms for {toys} toys could take the stock totals past {} within a \
                 century of restocks; lower them",
                self.initial_stock,
                self.restock_amount,
                self.restock_period_ms,
                u64::MAX
            ));
        }
        Ok(())
    }

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
            _ if self.rebuild => Err("--rebuild needs a replicated catalog (--id and --peers): \
                 a lone catalog has no peers to rebuild from; restore its directory from a copy"
                .into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        let base = ["catalog", "--cluster-token", "t"];
        Config::try_parse_from(base.into_iter().chain(args.iter().copied())).expect("flags parse")
    }

    #[test]
    fn stock_settings_whose_totals_could_overflow_are_refused() {
        // The defaults and the experiments' settings fit for any seed file size.
        config(&[]).check_stock(24).expect("defaults");
        config(&["--initial-stock", "1000000"])
            .check_stock(24)
            .expect("a million");
        // 24 toys at 10^18 each are more than u64 holds.
        let err = config(&["--initial-stock", "1000000000000000000"])
            .check_stock(24)
            .expect_err("overflows");
        assert!(
            err.contains("CATALOG_INITIAL_STOCK (1000000000000000000)"),
            "{err}"
        );
        // A billion units every millisecond for a century is too.
        let fast = config(&["--restock-amount", "1000000000", "--restock-period-ms", "1"]);
        assert!(fast.check_stock(24).is_err());
        assert!(fast.check_stock(0).is_ok());
    }
}
