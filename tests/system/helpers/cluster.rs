//! A cluster of real processes: the service binaries as children on free loopback
//! ports, each with its sled directory in a temp dir; started, signalled (SIGKILL,
//! SIGSTOP/SIGCONT, SIGTERM) and killed when dropped, with their logs kept.
//!
//! Names, ports, data directories and command lines come from
//! [`common::topology`], as they do for `run.sh`; the test's own settings are added
//! as flags.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::topology::{Kind, Ports, Topology};

use super::build::bin_dir;
use super::ports::free_ports;
use super::Options;

/// A running cluster. Dropping it kills every process.
pub struct Cluster {
    pub(super) dir: tempfile::TempDir,
    pub opts: Options,
    pub token: String,
    pub(super) topology: Topology,
    pub(super) children: HashMap<String, Child>,
    pub(super) extra_env: HashMap<String, Vec<(String, String)>>,
    pub http: reqwest::Client,
}

impl Cluster {
    /// Starts catalog, replicas and front-end and waits until an order can be placed.
    pub async fn start(opts: Options) -> Cluster {
        let mut cluster = Cluster::new(opts);
        cluster.start_all().await;
        cluster
    }

    /// Starts catalog, replicas and front-end of a [`Cluster::new`] (with whatever
    /// [`Cluster::set_env`] gave them) and waits until an order can be placed.
    pub async fn start_all(&mut self) {
        self.start_catalogs().await;
        for id in 1..=self.opts.replicas {
            self.spawn(&format!("order{id}"));
        }
        for id in 1..=self.opts.replicas {
            self.wait_healthy(&format!("order{id}")).await;
        }
        for name in self.frontends() {
            self.start_service(&name).await;
        }
        if self.opts.balancer {
            self.start_service("lb").await;
        }
    }

    /// A cluster with nothing started yet.
    pub fn new(opts: Options) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalogs = usize::from(opts.catalog_replicas.max(1));
        let frontends = usize::from(opts.frontends.max(1));
        let balancer = usize::from(opts.balancer);
        let free = free_ports(frontends + catalogs + opts.replicas as usize + balancer);
        let ports = Ports {
            frontends: free[..frontends].to_vec(),
            catalogs: free[frontends..frontends + catalogs].to_vec(),
            orders: free[frontends + catalogs..free.len() - balancer].to_vec(),
            balancer: opts.balancer.then(|| free[free.len() - 1]),
        };
        let topology = Topology::new("127.0.0.1", &ports, opts.replication).expect("topology");
        std::fs::create_dir_all(dir.path().join("logs")).expect("log dir");
        Cluster {
            dir,
            opts,
            token: format!("test-token-{}", std::process::id()),
            topology,
            children: HashMap::new(),
            extra_env: HashMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        }
    }

    /// The catalog's name, or its replicas' (`catalog1` …).
    pub fn catalogs(&self) -> Vec<String> {
        self.topology
            .of_kind(Kind::Catalog)
            .map(|s| s.name.clone())
            .collect()
    }

    /// The front-end's name, or its several ones' (`frontend1` …).
    pub fn frontends(&self) -> Vec<String> {
        self.topology
            .of_kind(Kind::Frontend)
            .map(|s| s.name.clone())
            .collect()
    }

    /// The front-end the helpers talk to: the only one, or the first.
    pub fn frontend(&self) -> String {
        self.frontends().swap_remove(0)
    }

    /// The catalogs (or catalog replicas) this cluster started and has not killed.
    pub fn running_catalogs(&self) -> Vec<String> {
        let mut names = self.catalogs();
        names.retain(|name| self.children.contains_key(name));
        names
    }

    pub fn port(&self, service: &str) -> u16 {
        self.topology
            .service(service)
            .unwrap_or_else(|e| panic!("{e}"))
            .port
    }

    /// Where `service` keeps its data (under the cluster's temp dir).
    pub fn data_dir(&self, service: &str) -> PathBuf {
        let service = self
            .topology
            .service(service)
            .unwrap_or_else(|e| panic!("{e}"));
        self.topology
            .data_dir(service, self.dir.path())
            .unwrap_or_else(|| panic!("{} keeps no data", service.name))
    }

    /// Whether `service`'s data directory was set aside by a rebuild (kept beside the
    /// new one as `<dir>.damaged-<time>`).
    pub fn set_aside(&self, service: &str) -> bool {
        let dir = self.data_dir(service);
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let prefix = format!("{}.damaged-", name.unwrap_or_default());
        std::fs::read_dir(dir.parent().expect("data root"))
            .expect("data root")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
    }

    pub fn url(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}", self.port(service))
    }

    /// Sets an environment variable for the next starts of `service`.
    pub fn set_env(&mut self, service: &str, key: &str, value: &str) {
        let env = self.extra_env.entry(service.to_string()).or_default();
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    }

    pub fn clear_env(&mut self, service: &str) {
        self.extra_env.remove(service);
    }

    /// Starts `service` without waiting for it.
    pub fn spawn(&mut self, service: &str) {
        assert!(
            !self.children.contains_key(service),
            "{service} is already running"
        );
        let svc = self
            .topology
            .service(service)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = self.topology.command(svc, bin_dir(), self.dir.path());
        let opts = &self.opts;
        match svc.kind {
            Kind::Catalog => {
                let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/toys.json");
                cmd.arg("--seed-file")
                    .arg(opts.seed_file.clone().unwrap_or(shipped));
                cmd.arg("--initial-stock")
                    .arg(opts.initial_stock.to_string());
                cmd.arg("--restock-amount")
                    .arg(opts.restock_amount.to_string());
                cmd.arg("--restock-period-ms")
                    .arg(opts.restock_period_ms.to_string());
            }
            Kind::Order => {}
            Kind::Balancer => {
                let servers = self.dir.path().join("lb-servers.cfg");
                std::fs::write(&servers, self.topology.balancer_servers()).expect("lb servers");
                let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg");
                cmd.arg("-f").arg(config).arg("-f").arg(servers);
            }
            Kind::Frontend => {
                cmd.arg("--cache").arg(opts.cache.to_string());
                cmd.arg("--cache-capacity")
                    .arg(opts.cache_capacity.to_string());
                cmd.arg("--failover-ms").arg(opts.failover_ms.to_string());
                cmd.env(
                    "FRONTEND_TEST_FILL_DELAY_MS",
                    opts.fill_delay_ms.to_string(),
                );
            }
        }
        cmd.env("TOYSTORE_CLUSTER_TOKEN", &self.token)
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1");
        if let (Some(window), false) = (self.opts.key_retention, svc.kind == Kind::Frontend) {
            cmd.env("TOYSTORE_KEY_RETENTION", window);
        }
        for (k, v) in self.extra_env.get(service).into_iter().flatten() {
            cmd.env(k, v);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(service))
            .expect("open log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {service}: {e}"));
        self.children.insert(service.to_string(), child);
    }

    /// Starts `service` and waits until it is healthy.
    pub async fn start_service(&mut self, service: &str) {
        self.spawn(service);
        self.wait_healthy(service).await;
    }

    /// SIGKILLs `service` (a crash: no shutdown code runs) and reaps it.
    pub fn kill(&mut self, service: &str) {
        let mut child = self
            .children
            .remove(service)
            .unwrap_or_else(|| panic!("{service} is not running"));
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();
    }

    /// Stalls `service` with SIGSTOP (it keeps its sockets but answers nothing).
    pub fn pause(&self, service: &str) {
        self.signal(service, "-STOP");
    }

    /// Resumes a paused `service` with SIGCONT.
    pub fn resume(&self, service: &str) {
        self.signal(service, "-CONT");
    }

    /// Asks `service` to shut down gracefully (SIGTERM); see [`Cluster::wait_exit`].
    pub fn terminate(&self, service: &str) {
        self.signal(service, "-TERM");
    }

    pub(super) fn signal(&self, service: &str, signal: &str) {
        let pid = self
            .children
            .get(service)
            .unwrap_or_else(|| panic!("{service} is not running"))
            .id();
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {service}");
    }

    /// Whether the process of `service` is still alive.
    pub fn is_running(&mut self, service: &str) -> bool {
        match self.children.get_mut(service) {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until `service` exits by itself (e.g. an injected crash) and forgets it.
    pub async fn wait_exit(&mut self, service: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.is_running(service) {
            assert!(Instant::now() < deadline, "{service} did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(mut child) = self.children.remove(service) {
            let _ = child.wait();
        }
    }

    pub(super) fn log_path(&self, service: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{service}.log"))
    }

    /// The whole log of a service.
    pub fn log_text(&self, service: &str) -> String {
        std::fs::read_to_string(self.log_path(service)).unwrap_or_default()
    }

    /// Tail of a service's log (for failure messages).
    pub fn log_tail(&self, service: &str) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path(service)) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let names: Vec<String> = self.children.keys().cloned().collect();
        for name in names {
            self.kill(&name);
        }
        if std::thread::panicking() {
            for s in self.topology.names() {
                eprintln!("----- {s} log (tail) -----\n{}", self.log_tail(s));
            }
        }
    }
}
