//! Typed configuration of an order replica (flags and environment variables).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use common::config::{parse_replicas, parse_token, parse_url, Replicas, DEFAULT_REPLICAS};
use reqwest::Url;

/// toystore order replica: stores orders and replicates them to its peers.
#[derive(Parser, Debug, Clone)]
#[command(name = "order", version)]
pub struct Config {
    /// This replica's id; must appear in --replicas.
    #[arg(long, env = "ORDER_ID")]
    pub id: u32,

    /// Address to listen on [default: the address of this id in --replicas].
    #[arg(long, env = "ORDER_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Directory of this replica's sled database [default: data/order<ID>].
    #[arg(long, env = "ORDER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Every replica as ID=URL, comma-separated (this one included).
    #[arg(long, env = "TOYSTORE_REPLICAS", default_value = DEFAULT_REPLICAS,
          value_parser = parse_replicas)]
    pub replicas: Replicas,

    /// Base URL of the catalog service.
    #[arg(long, env = "TOYSTORE_CATALOG_URL", default_value = "http://127.0.0.1:8081",
          value_parser = parse_url)]
    pub catalog_url: Url,

    /// Shared secret required on internal endpoints.
    #[arg(long, env = "TOYSTORE_CLUSTER_TOKEN", value_parser = parse_token, hide_env_values = true)]
    pub cluster_token: String,

    /// Test-only fault injection: `crash-before-replicate` makes a leader abort right
    /// after storing a batch locally, before any follower has it.
    #[arg(long, env = "ORDER_FAULT", hide = true)]
    pub fault: Option<Fault>,
}

/// Faults that tests can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    CrashBeforeReplicate,
}

impl Config {
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

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("data/order{}", self.id)))
    }

    /// Every other replica.
    pub fn peers(&self) -> Vec<(u32, Url)> {
        self.replicas
            .0
            .iter()
            .filter(|(id, _)| *id != self.id)
            .cloned()
            .collect()
    }
}
