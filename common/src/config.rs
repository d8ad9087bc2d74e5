//! Parsing helpers for the services' command-line configuration.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use crate::domain::ReplicaId;

/// Timeouts of calls to other services, the same flags on every service. The
/// defaults suit one machine or a LAN; docs/DEPLOY.md says which to raise elsewhere.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct PeerArgs {
    /// Timeout of opening a connection to another service, in ms.
    #[arg(long, env = "TOYSTORE_CONNECT_TIMEOUT_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_ms: u64,

    /// Timeout of one ordinary call to another service (catalog lookups and buys,
    /// order reads, invalidation pushes), in ms.
    #[arg(long, env = "TOYSTORE_REQUEST_TIMEOUT_MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,

    /// How long the front-end waits for the leader to place an order, in ms.
    #[arg(long, env = "TOYSTORE_ORDER_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub order_timeout_ms: u64,

    /// Timeout of fetching one page of history from a peer (catch-up), in ms.
    #[arg(long, env = "TOYSTORE_PAGE_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub page_timeout_ms: u64,
}

impl PeerArgs {
    pub fn timeouts(&self) -> crate::client::PeerTimeouts {
        crate::client::PeerTimeouts {
            connect: Duration::from_millis(self.connect_timeout_ms),
            request: Duration::from_millis(self.request_timeout_ms),
            order: Duration::from_millis(self.order_timeout_ms),
            page: Duration::from_millis(self.page_timeout_ms),
        }
    }
}

/// The bounds of a service's HTTP edge, the same flags on every service (see
/// [`crate::serve`]).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct EdgeArgs {
    /// Time a client has to send a request's head, and how long a kept-alive
    /// connection may sit idle, in ms (then the connection is closed).
    #[arg(long, env = "TOYSTORE_HEADER_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,

    /// Connections served at once; a connection past them is answered 503 (JSON) and
    /// closed. Keep it under the open-file limit (`ulimit -n`).
    #[arg(long, env = "TOYSTORE_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
}

impl EdgeArgs {
    pub fn edge(&self) -> crate::serve::Edge {
        crate::serve::Edge {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// The sled database's settings (the catalog and the replicas).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct StorageArgs {
    /// sled's page cache for this service's database, in MiB (memory use grows up to
    /// about this much with the stored data; sled's own default is 1024).
    #[arg(long, env = "TOYSTORE_SLED_CACHE_MB", default_value_t = crate::storage::DEFAULT_CACHE_MB,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub sled_cache_mb: u64,
}

/// Where a service gets the cluster token: on the command line (or its variable), or
/// from a file, so that it need not appear in a process listing or an environment.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// Shared secret required on internal endpoints (or use --cluster-token-file).
    #[arg(long, env = "TOYSTORE_CLUSTER_TOKEN", value_parser = parse_token,
          hide_env_values = true, required_unless_present = "cluster_token_file",
          conflicts_with = "cluster_token_file")]
    pub cluster_token: Option<String>,

    /// File whose first line is the cluster token.
    #[arg(long, env = "TOYSTORE_CLUSTER_TOKEN_FILE")]
    pub cluster_token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token, read from its file if one is given.
    pub fn resolve(&self) -> Result<String, String> {
        if let Some(token) = &self.cluster_token {
            return Ok(token.clone());
        }
        let Some(path) = &self.cluster_token_file else {
            return Err("give --cluster-token or --cluster-token-file".into());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the cluster token file {}: {e}", path.display()))?;
        parse_token(text.lines().next().unwrap_or_default().trim())
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The default replica set: ids 1-3 on 127.0.0.1:8091-8093.
pub const DEFAULT_REPLICAS: &str =
    "1=http://127.0.0.1:8091,2=http://127.0.0.1:8092,3=http://127.0.0.1:8093";

/// A list of order replicas: `1=http://127.0.0.1:8091,2=http://127.0.0.1:8092`.
#[derive(Debug, Clone, PartialEq)]
pub struct Replicas(pub Vec<(ReplicaId, Url)>);

impl Replicas {
    /// Address of replica `id`.
    pub fn url(&self, id: ReplicaId) -> Option<&Url> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, u)| u)
    }

    /// Ids from highest to lowest (the order of leader selection).
    pub fn ids_descending(&self) -> Vec<ReplicaId> {
        let mut ids: Vec<ReplicaId> = self.0.iter().map(|(i, _)| *i).collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }
}

/// clap value parser for [`Replicas`].
pub fn parse_replicas(s: &str) -> Result<Replicas, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, url) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: expected ID=URL"))?;
        let id: ReplicaId = id
            .trim()
            .parse()
            .map_err(|_| format!("`{id}`: replica id must be a number"))?;
        let url = parse_url(url.trim())?;
        if out.iter().any(|(i, _)| *i == id) {
            return Err(format!("replica id {id} is listed twice"));
        }
        out.push((id, url));
    }
    if out.is_empty() {
        return Err("at least one replica is needed".into());
    }
    Ok(Replicas(out))
}

/// One or more base URLs: `http://127.0.0.1:8081,http://127.0.0.1:8082` (the
/// replicas of a replicated catalog, or the one catalog).
#[derive(Debug, Clone, PartialEq)]
pub struct Urls(pub Vec<Url>);

/// clap value parser for [`Urls`]: comma-separated, at least one, none twice.
pub fn parse_urls(s: &str) -> Result<Urls, String> {
    let mut out: Vec<Url> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let url = parse_url(part)?;
        if out.contains(&url) {
            return Err(format!("`{part}` is listed twice"));
        }
        out.push(url);
    }
    if out.is_empty() {
        return Err("at least one URL is needed".into());
    }
    Ok(Urls(out))
}

/// clap value parser for a base URL such as `http://127.0.0.1:8081`.
pub fn parse_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("`{s}`: {e}"))?;
    if url.scheme() == "https" {
        return Err(format!(
            "`{s}`: TLS is not built in; use http:// on a private network or behind a \
             TLS proxy (see docs/DESIGN.md, \"Running on several hosts\")"
        ));
    }
    if url.scheme() != "http" {
        return Err(format!("`{s}`: only http:// URLs are supported"));
    }
    if url.cannot_be_a_base() {
        return Err(format!("`{s}`: not a base URL"));
    }
    Ok(url)
}

/// clap value parser for the cluster token: non-empty, printable ASCII.
pub fn parse_token(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the cluster token must be non-empty printable ASCII".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").expect("write");
        let args = TokenArgs {
            cluster_token: None,
            cluster_token_file: Some(file.clone()),
        };
        assert_eq!(args.resolve().as_deref(), Ok("s3cret"));
        std::fs::write(&file, "\n").expect("write");
        assert!(args.resolve().is_err());
        let missing = TokenArgs {
            cluster_token: None,
            cluster_token_file: Some(dir.path().join("none")),
        };
        assert!(missing.resolve().is_err());
    }

    #[test]
    fn replicas_parse_and_sort_by_id() {
        let r = parse_replicas("1=http://127.0.0.1:8091, 3=http://127.0.0.1:8093,2=http://h:1")
            .expect("valid list");
        assert_eq!(r.ids_descending(), [3, 2, 1].map(ReplicaId));
        assert_eq!(
            r.url(ReplicaId(3)).map(|u| u.as_str()),
            Some("http://127.0.0.1:8093/")
        );
    }

    #[test]
    fn bad_replica_lists_are_refused() {
        assert!(parse_replicas("").is_err());
        assert!(parse_replicas("x=http://a").is_err());
        assert!(parse_replicas("1=ftp://a").is_err());
        assert!(parse_replicas("1=https://a").is_err());
        assert!(parse_url("https://a").is_err_and(|e| e.contains("TLS")));
        assert!(parse_replicas("1=http://a,1=http://b").is_err());
        assert!(parse_replicas("http://a").is_err());
    }
}
