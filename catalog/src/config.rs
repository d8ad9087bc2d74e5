//! Typed configuration of the catalog service (flags and environment variables).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use common::config::{parse_url, PeerArgs, StorageArgs, TokenArgs};
use common::retention::RetentionArgs;
use reqwest::Url;

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

    /// Front-end base URL that receives cache invalidations.
    #[arg(long, env = "CATALOG_FRONTEND_URL", default_value = "http://127.0.0.1:8080",
          value_parser = parse_url)]
    pub frontend_url: Url,

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
}
