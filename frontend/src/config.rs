//! Typed configuration of the front-end (flags and environment variables).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use common::config::{
    parse_replicas, parse_urls, EdgeArgs, PeerArgs, Replicas, TokenArgs, Urls, DEFAULT_REPLICAS,
};
use common::wire::Replication;

/// toystore front-end: the public REST API, the product cache and leader selection.
#[derive(Parser, Debug, Clone)]
#[command(name = "frontend", version)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FRONTEND_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Base URL of the catalog service; of each of its replicas (comma-separated)
    /// when it is replicated.
    #[arg(long, env = "TOYSTORE_CATALOG_URL", default_value = "http://127.0.0.1:8081",
          value_parser = parse_urls)]
    pub catalog_url: Urls,

    /// This front-end's name in the cluster (shown on the dashboard and in `/health`).
    #[arg(long, env = "FRONTEND_NAME", default_value = "frontend")]
    pub name: String,

    /// Every front-end's base URL, this one's included, comma-separated, in order:
    /// with several, the i-th is named `frontend<i>` and the dashboard shows each.
    /// Unset (the default): this one alone.
    #[arg(long, env = "TOYSTORE_FRONTEND_URLS", value_parser = parse_urls)]
    pub frontend_urls: Option<Urls>,

    /// Every order replica as ID=URL, comma-separated.
    #[arg(long, env = "TOYSTORE_REPLICAS", default_value = DEFAULT_REPLICAS,
          value_parser = parse_replicas)]
    pub replicas: Replicas,

    /// Cache product lookups (true/false).
    #[arg(long, env = "FRONTEND_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub cache: bool,

    /// Most toys held in the cache (least recently used ones are evicted).
    #[arg(long, env = "FRONTEND_CACHE_CAPACITY", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_capacity: u64,

    /// How long cached entries stay valid after the catalog was last heard from, in ms.
    /// No cached quantity is ever served staler than this.
    #[arg(long, env = "FRONTEND_CACHE_LEASE_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_lease_ms: u64,

    /// How often the front-end polls the catalog's versions to renew the lease, in ms
    /// (must be shorter than the lease).
    #[arg(long, env = "FRONTEND_CATALOG_POLL_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub catalog_poll_ms: u64,

    /// How long a request may spend failing over between order replicas, in ms.
    #[arg(long, env = "FRONTEND_FAILOVER_MS", default_value_t = 20_000)]
    pub failover_ms: u64,

    /// Timeout of one status check of an order replica, in ms.
    #[arg(long, env = "FRONTEND_STATUS_TIMEOUT_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub status_timeout_ms: u64,

    /// How often the leader's health is checked, in ms (two failed checks in a row
    /// replace it).
    #[arg(long, env = "FRONTEND_HEALTH_INTERVAL_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub health_interval_ms: u64,

    /// How long a replica made leader may take to catch up with its peers, in ms.
    #[arg(long, env = "FRONTEND_PROMOTION_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub promotion_timeout_ms: u64,

    /// How the order replicas agree: `primary-backup` (this front-end chooses the
    /// leader) or `raft` (they elect one; this front-end finds it). Must match the
    /// replicas'.
    #[arg(long, env = "TOYSTORE_REPLICATION", value_enum, default_value_t = Replication::PrimaryBackup)]
    pub replication: Replication,

    #[command(flatten)]
    pub token: TokenArgs,

    #[command(flatten)]
    pub peer: PeerArgs,

    #[command(flatten)]
    pub edge: EdgeArgs,

    /// Test-only: wait this long between reading a toy from the catalog and caching it,
    /// to make the fill/invalidation race deterministic.
    #[arg(
        long,
        env = "FRONTEND_TEST_FILL_DELAY_MS",
        hide = true,
        default_value_t = 0
    )]
    pub test_fill_delay_ms: u64,
}

impl Config {
    /// Checks what clap cannot check field by field.
    pub fn validate(&self) -> Result<(), String> {
        if self.catalog_poll_ms >= self.cache_lease_ms {
            return Err(format!(
                "--catalog-poll-ms ({}) must be shorter than --cache-lease-ms ({})",
                self.catalog_poll_ms, self.cache_lease_ms
            ));
        }
        Ok(())
    }

    pub fn cache_lease(&self) -> Duration {
        Duration::from_millis(self.cache_lease_ms)
    }

    pub fn catalog_poll(&self) -> Duration {
        Duration::from_millis(self.catalog_poll_ms)
    }

    pub fn leader_timing(&self) -> crate::leader::Timing {
        crate::leader::Timing {
            budget: Duration::from_millis(self.failover_ms),
            status: Duration::from_millis(self.status_timeout_ms),
            interval: Duration::from_millis(self.health_interval_ms),
            promotion: Duration::from_millis(self.promotion_timeout_ms),
        }
    }
}
