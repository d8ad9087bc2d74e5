//! What the evaluation and the chaos experiment need from a cluster: one of their own,
//! started, restarted, crashed and stopped through `run.sh` (on its own ports and data
//! directory, so it never touches the cluster you started yourself), and the replicas'
//! and catalog's figures.

use std::path::PathBuf;

use std::time::{Duration, Instant};

use common::client::{CatalogClient, ClusterClient, OrderClient};
use common::config::Replicas;
use common::domain::{OrderNumber, ReplicaId};
use common::topology::{Kind, Ports, Topology, TopologyError};
use common::wire::{
    CacheStats, FrontendHealth, OrderRecord, ReplicaStatus, Replication, Role, StockTotals,
};
use reqwest::Url;

use crate::ClientError;

/// A cluster of the experiment's own, driven by `run.sh`.
#[derive(Debug, Clone)]
pub struct RunSh {
    pub script: PathBuf,
    /// Its services, ports (the default layout moved to a base of the experiment's,
    /// [`Ports::from_base`]) and replication mode.
    pub topology: Topology,
    /// Data directory (wiped by [`RunSh::fresh_start`]).
    pub data_dir: PathBuf,
    /// Stock of every toy, so that the experiment does not just sell out.
    pub initial_stock: u64,
}

impl RunSh {
    /// The cluster `script` runs on the default layout moved to `port_base`, with
    /// `catalogs` catalog replicas (1: the single catalog).
    pub fn new(
        script: PathBuf,
        (port_base, catalogs): (u16, u16),
        data_dir: PathBuf,
        initial_stock: u64,
        replication: Replication,
    ) -> Result<RunSh, ClientError> {
        let topology = Ports::from_base(port_base)
            .and_then(|ports| ports.with_catalogs(catalogs))
            .and_then(|ports| Topology::new("127.0.0.1", &ports, replication))
            .map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(RunSh {
            script,
            topology,
            data_dir,
            initial_stock,
        })
    }

    /// The same cluster in mode `replication`, with its data in `data_dir`.
    pub fn in_mode(
        &self,
        replication: Replication,
        data_dir: PathBuf,
    ) -> Result<RunSh, ClientError> {
        self.relaid(Ok(self.ports()), replication, data_dir)
    }

    /// The same cluster with `catalogs` catalog replicas (1: the single catalog), with
    /// its data in `data_dir`.
    pub fn with_catalogs(&self, catalogs: u16, data_dir: PathBuf) -> Result<RunSh, ClientError> {
        let ports = self.ports().with_catalogs(catalogs);
        self.relaid(ports, self.replication(), data_dir)
    }

    /// The same cluster with `frontends` front-ends ([`Ports::with_frontends`]) and,
    /// with `balancer`, HAProxy in front of them on that port, with its data in
    /// `data_dir`.
    pub fn with_frontends(
        &self,
        frontends: u16,
        balancer: Option<u16>,
        data_dir: PathBuf,
    ) -> Result<RunSh, ClientError> {
        let ports = self
            .ports()
            .with_frontends(frontends)
            .map(|ports| Ports { balancer, ..ports });
        self.relaid(ports, self.replication(), data_dir)
    }

    /// The same cluster on `ports` in mode `replication`, with its data in `data_dir`.
    fn relaid(
        &self,
        ports: Result<Ports, TopologyError>,
        replication: Replication,
        data_dir: PathBuf,
    ) -> Result<RunSh, ClientError> {
        let topology = ports
            .and_then(|ports| Topology::new("127.0.0.1", &ports, replication))
            .map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(RunSh {
            topology,
            data_dir,
            ..self.clone()
        })
    }

    /// How the order replicas agree.
    pub fn replication(&self) -> Replication {
        self.topology.replication()
    }

    /// Each service's port, as `run.sh` is told them.
    fn ports(&self) -> Ports {
        self.topology.ports().clone()
    }

    /// A replicated catalog's replicas by name (`catalog1` …; empty for the single
    /// catalog).
    pub fn catalog_replicas(&self) -> Vec<String> {
        self.topology
            .of_kind(Kind::Catalog)
            .filter(|s| s.replica.is_some())
            .map(|s| s.name.clone())
            .collect()
    }

    /// The process id of `service`, from run.sh's PID file (if it runs).
    pub fn pid(&self, service: &str) -> Option<u32> {
        std::fs::read_to_string(self.data_dir.join("run").join(format!("{service}.pid")))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    pub fn frontend_url(&self) -> Url {
        self.topology.frontend_url()
    }

    /// Wipes the data directory and starts the whole cluster.
    pub async fn fresh_start(&self) -> Result<(), ClientError> {
        self.run(&["stop"], &[]).await?;
        if self.data_dir.exists() {
            std::fs::remove_dir_all(&self.data_dir).map_err(ClientError::file(&self.data_dir))?;
        }
        let ports: Vec<String> = self
            .topology
            .services()
            .iter()
            .map(|s| format!("{} {}", s.name, s.port))
            .collect();
        println!(
            "starting a cluster ({} replication) on ports {} with data in {}",
            self.replication(),
            ports.join(", "),
            self.data_dir.display()
        );
        self.run(&[], &[]).await
    }

    /// An inspector of this cluster (the token is the one `run.sh` created).
    pub fn inspector(&self) -> Result<Inspector, ClientError> {
        let path = self.data_dir.join("cluster.token");
        let token = std::fs::read_to_string(&path).map_err(ClientError::file(&path))?;
        Inspector::new(
            self.topology.replicas(),
            self.topology.catalog_urls(),
            self.frontend_url(),
            token.trim(),
        )
    }

    /// Runs `run.sh <args>` with extra environment variables; fails with its output.
    pub async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Result<(), ClientError> {
        self.run_output(args, env).await.map(|_| ())
    }

    /// [`RunSh::run`], returning what it printed.
    pub async fn run_output(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<String, ClientError> {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(&self.script)
            .args(args)
            .stdin(std::process::Stdio::null());
        cmd.env("TOYSTORE_DATA_DIR", &self.data_dir)
            .envs(self.ports().env())
            .env("CATALOG_INITIAL_STOCK", self.initial_stock.to_string())
            .env("TOYSTORE_REPLICATION", self.replication().to_string())
            .env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.map_err(|e| {
            ClientError::Other(format!("cannot run {}: {e}", self.script.display()))
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(ClientError::Other(format!(
                "{} {} failed:\n{}{}",
                self.script.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }
}

/// Read access to the services' internal figures.
pub struct Inspector {
    replicas: Replicas,
    orders: OrderClient,
    catalog: CatalogClient,
    frontend: Url,
    http: reqwest::Client,
}

impl Inspector {
    /// The cluster of order `replicas`, the catalog at `catalogs` (its replicas' URLs
    /// if replicated) and the front-end at `frontend`.
    pub fn new(
        replicas: Replicas,
        catalogs: Vec<Url>,
        frontend: Url,
        token: &str,
    ) -> Result<Self, ClientError> {
        let cluster = ClusterClient::new(token, Default::default())
            .map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(Inspector {
            replicas,
            orders: OrderClient::new(cluster.clone()),
            catalog: CatalogClient::replicated(cluster, catalogs),
            frontend,
            http: reqwest::Client::new(),
        })
    }

    pub fn replica_ids(&self) -> Vec<ReplicaId> {
        let mut ids = self.replicas.ids_descending();
        ids.reverse();
        ids
    }

    /// Status of every replica that answers.
    pub async fn statuses(&self) -> Vec<ReplicaStatus> {
        let mut out = Vec::new();
        for (_, url) in &self.replicas.0 {
            if let Ok(s) = self.orders.status(url).await {
                out.push(s);
            }
        }
        out
    }

    /// The replica that leads at the highest epoch, if any.
    pub async fn leader(&self) -> Option<ReplicaId> {
        self.statuses()
            .await
            .into_iter()
            .filter(|s| s.role == Role::Leader && s.ready)
            .max_by_key(|s| s.epoch)
            .map(|s| s.id)
    }

    /// Waits until every replica is up, ready and reports the same digest, and no
    /// leader still counts a follower as lagging (a primary-backup leader acknowledges
    /// without a lagging follower until it has synced back: a fault then would meet a
    /// store that has not healed yet).
    pub async fn converged(
        &self,
        timeout: Duration,
    ) -> Result<Vec<ReplicaStatus>, Vec<ReplicaStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            let all = self.statuses().await;
            let same = all.len() == self.replicas.0.len()
                && all.iter().all(|s| {
                    s.ready
                        && s.lagging.is_empty()
                        && s.digest == all[0].digest
                        && s.orders == all[0].orders
                        && s.last_order == all[0].last_order
                });
            if same {
                return Ok(all);
            }
            if Instant::now() > deadline {
                return Err(all);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The index (in configuration order) of the catalog replica that leads, if one
    /// answers as leader (`None` for the single catalog).
    pub async fn catalog_leader(&self) -> Option<usize> {
        let urls = self.catalog.replicas();
        if urls.len() < 2 {
            return None;
        }
        for (i, url) in urls.iter().enumerate() {
            let health = self.catalog.health_of(url, Duration::from_secs(1)).await;
            if health.is_ok_and(|h| h.group.is_some_and(|g| g.role == Role::Leader)) {
                return Some(i);
            }
        }
        None
    }

    /// Waits until every catalog replica is ready and reports the same digest;
    /// answers it, or what each reported when time ran out.
    pub async fn catalogs_converged(&self, timeout: Duration) -> Result<String, Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut digests = Vec::new();
            for url in self.catalog.replicas() {
                digests.push(
                    match self.catalog.health_of(url, Duration::from_secs(1)).await {
                        Ok(h) if h.ready => h.digest,
                        Ok(_) => format!("{url}: not ready"),
                        Err(e) => format!("{url}: {e}"),
                    },
                );
            }
            if digests.windows(2).all(|w| w[0] == w[1]) {
                return Ok(digests.pop().unwrap_or_default());
            }
            if Instant::now() > deadline {
                return Err(digests);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The catalog's stock totals: a replicated catalog's leader's, or (while none
    /// leads) those of the first replica that answers.
    pub async fn stock_totals(&self) -> Result<StockTotals, ClientError> {
        let urls = self.catalog.replicas();
        let leader = self.catalog_leader().await.and_then(|i| urls.get(i));
        let mut last = None;
        for url in leader.into_iter().chain(urls) {
            match self.catalog.totals_of(url).await {
                Ok(totals) => return Ok(totals),
                Err(e) => last = Some(e),
            }
        }
        Err(ClientError::peer("catalog totals")(last.unwrap_or(
            common::client::PeerError::Unreachable("no catalog configured".into()),
        )))
    }

    /// Every order replica `id` holds, in number order (with keys and epochs).
    pub async fn orders_of(&self, id: ReplicaId) -> Result<Vec<OrderRecord>, ClientError> {
        let url = self
            .replicas
            .url(id)
            .ok_or_else(|| ClientError::Other(format!("no replica {id}")))?;
        let mut out: Vec<OrderRecord> = Vec::new();
        loop {
            let from = match out.last() {
                Some(r) => match r.number.next() {
                    Some(next) => next,
                    None => return Ok(out),
                },
                None => OrderNumber(0),
            };
            let page = self
                .orders
                .log_page(url, from, 1000)
                .await
                .map_err(ClientError::peer(format!("reading orders of replica {id}")))?;
            if page.entries.is_empty() {
                return Ok(out);
            }
            out.extend(page.entries);
        }
    }

    /// Units ordered and number of orders, read from replica `id`'s whole history.
    pub async fn ordered_units(&self, id: ReplicaId) -> Result<(u64, u64), ClientError> {
        let orders = self.orders_of(id).await?;
        Ok((orders.iter().map(|r| r.quantity).sum(), orders.len() as u64))
    }

    /// The front-end's `GET /health`.
    pub async fn frontend_health(&self) -> Result<FrontendHealth, ClientError> {
        let url = common::client::endpoint(&self.frontend, &["health"]);
        self.http
            .get(url)
            .send()
            .await
            .map_err(ClientError::http("front-end health"))?
            .json()
            .await
            .map_err(ClientError::http("front-end health"))
    }

    /// The front-end's cache figures (`hits`, `misses`, ...).
    pub async fn cache_stats(&self) -> Result<CacheStats, ClientError> {
        Ok(self.frontend_health().await?.cache)
    }
}
