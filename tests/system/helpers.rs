//! Starts real toystore clusters for tests: the service binaries as child processes
//! on free loopback ports, each with its sled directory in a temp dir, and kills them
//! with SIGKILL when a test asks (and when the cluster is dropped).

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::wire::{CacheStats, CatalogHealth, FrontendHealth, ReplicaStatus, Replication};
use serde_json::{json, Value};

/// Settings of a test cluster.
#[derive(Clone)]
pub struct Options {
    /// Number of order replicas (ids 1..=n).
    pub replicas: u32,
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

/// Makes each named test body — an `async fn(Replication)` of the enclosing module —
/// a test in both replication modes: `<module>::primary_backup::<name>` and
/// `<module>::raft::<name>`.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod primary_backup {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(common::wire::Replication::PrimaryBackup).await
                }
            )*
        }
        mod raft {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(common::wire::Replication::Raft).await
                }
            )*
        }
    };
}
pub(crate) use in_both_modes;

impl Default for Options {
    fn default() -> Self {
        Options {
            replicas: 3,
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

/// Builds the service binaries (and the client) once per test process; returns their
/// directory.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/system-<hash> → target/<profile> → target
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile directory")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target directory");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--bins"])
            .args([
                "-p", "catalog", "-p", "order", "-p", "frontend", "-p", "client",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("run cargo build for the service binaries");
        assert!(status.success(), "building the service binaries failed");
        profile_dir
    })
}

/// Sets what `run.sh` needs to start this test process's builds of the binaries
/// (without building again), with its data in `data`.
fn run_sh_env(cmd: &mut Command, data: &Path) {
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let target = bin_dir().parent().expect("target dir");
    cmd.env("TOYSTORE_PROFILE", profile)
        .env("TOYSTORE_BUILD", "0")
        .env("CARGO_TARGET_DIR", target)
        .env("TOYSTORE_START_TIMEOUT", "60")
        .env("TOYSTORE_DATA_DIR", data);
}

/// `client <command>` driving a cluster of its own through `run.sh`, with its data
/// in `data` and ports from `port_base` (see [`free_port_base`]).
pub fn client_with_run_sh(command: &str, data: &Path, port_base: u16) -> Command {
    let mut cmd = Command::new(bin_dir().join("client"));
    cmd.arg(command)
        .arg("--port-base")
        .arg(port_base.to_string())
        .arg("--data-dir")
        .arg(data)
        .arg("--run-sh")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("run.sh"));
    run_sh_env(&mut cmd, data);
    cmd
}

/// Stops whatever a [`client_with_run_sh`] command left running in `data`.
pub fn stop_run_sh(data: &Path) {
    let mut stop = Command::new("bash");
    stop.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("run.sh"))
        .arg("stop");
    run_sh_env(&mut stop, data);
    let _ = stop.output();
}

/// Ports handed to test services come from below the kernel's ephemeral range
/// (32768 and up on Linux), so no outgoing connection or `bind(0)` elsewhere can take
/// one between the moment it is chosen and the moment the child binds it.
const PORTS: std::ops::Range<u16> = 10_000..32_000;

/// Takes the next `n` consecutive ports that are free now, from a cursor shared by
/// every test of this process (so concurrent tests never get the same ones) and
/// starting at an offset derived from the process id (so test binaries that run at
/// the same time start far apart).
fn take_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static CURSOR: AtomicU16 = AtomicU16::new(0);
    let span = PORTS.end - PORTS.start;
    let _ = CURSOR.compare_exchange(
        0,
        (std::process::id() % u32::from(span / 100)) as u16 * 100 + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span / n {
        let offset = CURSOR.fetch_add(n, Ordering::SeqCst) % (span - n);
        let base = PORTS.start + offset;
        if (base..base + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} free consecutive ports in {PORTS:?}");
}

/// A port base B whose ports B+80, B+81 and B+91..=93 (run.sh's layout) are free.
pub fn free_port_base() -> u16 {
    take_ports(94)
}

/// `n` free loopback ports (see [`take_ports`]).
fn free_ports(n: usize) -> Vec<u16> {
    let base = take_ports(n as u16);
    (base..base + n as u16).collect()
}

/// A running cluster. Dropping it kills every process.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub opts: Options,
    pub token: String,
    ports: HashMap<String, u16>,
    children: HashMap<String, Child>,
    extra_env: HashMap<String, Vec<(String, String)>>,
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
        self.start_service("catalog").await;
        for id in 1..=self.opts.replicas {
            self.spawn(&format!("order{id}"));
        }
        for id in 1..=self.opts.replicas {
            self.wait_healthy(&format!("order{id}")).await;
        }
        self.start_service("frontend").await;
    }

    /// A cluster with nothing started yet.
    pub fn new(opts: Options) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let names: Vec<String> = ["frontend", "catalog"]
            .into_iter()
            .map(String::from)
            .chain((1..=opts.replicas).map(|i| format!("order{i}")))
            .collect();
        let ports = names.iter().cloned().zip(free_ports(names.len())).collect();
        std::fs::create_dir_all(dir.path().join("logs")).expect("log dir");
        Cluster {
            dir,
            opts,
            token: format!("test-token-{}", std::process::id()),
            ports,
            children: HashMap::new(),
            extra_env: HashMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        }
    }

    pub fn port(&self, service: &str) -> u16 {
        self.ports[service]
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

    fn replicas_arg(&self) -> String {
        (1..=self.opts.replicas)
            .map(|i| format!("{i}={}", self.url(&format!("order{i}"))))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts `service` without waiting for it.
    pub fn spawn(&mut self, service: &str) {
        assert!(
            !self.children.contains_key(service),
            "{service} is already running"
        );
        let bins = bin_dir();
        let data = self.dir.path().join(service);
        let listen = format!("127.0.0.1:{}", self.port(service));
        let mut cmd = if service == "catalog" {
            let mut c = Command::new(bins.join("catalog"));
            c.arg("--listen").arg(&listen).arg("--data-dir").arg(&data);
            let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/toys.json");
            c.arg("--seed-file")
                .arg(self.opts.seed_file.clone().unwrap_or(shipped));
            c.arg("--frontend-url").arg(self.url("frontend"));
            c.arg("--initial-stock")
                .arg(self.opts.initial_stock.to_string());
            c.arg("--restock-amount")
                .arg(self.opts.restock_amount.to_string());
            c.arg("--restock-period-ms")
                .arg(self.opts.restock_period_ms.to_string());
            c
        } else if let Some(id) = service.strip_prefix("order") {
            let mut c = Command::new(bins.join("order"));
            c.arg("--id").arg(id).arg("--listen").arg(&listen);
            c.arg("--data-dir").arg(&data);
            c
        } else {
            let mut c = Command::new(bins.join("frontend"));
            c.arg("--listen").arg(&listen);
            c.arg("--cache").arg(self.opts.cache.to_string());
            c.arg("--cache-capacity")
                .arg(self.opts.cache_capacity.to_string());
            c.arg("--failover-ms")
                .arg(self.opts.failover_ms.to_string());
            c.env(
                "FRONTEND_TEST_FILL_DELAY_MS",
                self.opts.fill_delay_ms.to_string(),
            );
            c
        };
        cmd.env("TOYSTORE_REPLICATION", self.opts.replication.to_string())
            .env("TOYSTORE_CLUSTER_TOKEN", &self.token)
            .env("TOYSTORE_CATALOG_URL", self.url("catalog"))
            .env("TOYSTORE_REPLICAS", self.replicas_arg())
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1");
        if let (Some(window), false) = (self.opts.key_retention, service == "frontend") {
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

    fn signal(&self, service: &str, signal: &str) {
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

    /// POST with the cluster token to an internal endpoint: (status, JSON body).
    pub async fn post_internal(&self, service: &str, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url(service)))
            .header(common::TOKEN_HEADER, &self.token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} on {service}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// GET with the cluster token on an internal endpoint: (status, JSON body).
    pub async fn get_internal(&self, service: &str, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url(service)))
            .header(common::TOKEN_HEADER, &self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {service}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
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

    fn log_path(&self, service: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{service}.log"))
    }

    /// Waits until `service` answers its health check as healthy.
    pub async fn wait_healthy(&mut self, service: &str) {
        let url = format!("{}/health", self.url(service));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(resp) = self.http.get(&url).send().await {
                let ok = match service {
                    // Ready to serve when it has a leader and has heard from the
                    // catalog (its cache lease is current).
                    "frontend" => resp.json::<FrontendHealth>().await.is_ok_and(|h| {
                        (h.leader.is_some() || self.opts.replicas == 0) && h.cache.leased
                    }),
                    "catalog" => resp.json::<CatalogHealth>().await.is_ok_and(|h| h.ready),
                    _ => resp.json::<ReplicaStatus>().await.is_ok_and(|s| s.ready),
                };
                if ok {
                    return;
                }
            }
            assert!(self.is_running(service), "{service} exited during start-up");
            assert!(
                Instant::now() < deadline,
                "{service} did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET on the front-end: (status, JSON body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_from("frontend", path).await
    }

    /// GET on any service: (status, JSON body).
    pub async fn get_from(&self, service: &str, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url(service)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {service}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POST /orders on the front-end with an optional idempotency key.
    pub async fn order(&self, name: &str, quantity: u64, key: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/orders", self.url("frontend")))
            .json(&json!({"name": name, "quantity": quantity}));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = req.send().await.expect("POST /orders");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POST /orders on the front-end in a task of its own (for orders that wait on a
    /// fault): its (status, JSON body) when it ends.
    pub fn order_in_background(
        &self,
        name: &str,
        quantity: u64,
    ) -> tokio::task::JoinHandle<(u16, Value)> {
        let req = self
            .http
            .post(format!("{}/orders", self.url("frontend")))
            .json(&json!({"name": name, "quantity": quantity}));
        tokio::spawn(async move {
            let resp = req.send().await.expect("POST /orders");
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        })
    }

    /// Places an order that must succeed; returns its number.
    pub async fn order_ok(&self, name: &str, quantity: u64) -> u64 {
        let (status, body) = self.order(name, quantity, None).await;
        assert_eq!(status, 200, "order failed: {body}");
        body["data"]["order_number"].as_u64().expect("order number")
    }

    /// The quantity of a toy, read through the front-end.
    pub async fn quantity(&self, name: &str) -> u64 {
        let (status, body) = self.get(&format!("/products/{name}")).await;
        assert_eq!(status, 200, "lookup of {name} failed: {body}");
        body["data"]["quantity"].as_u64().expect("quantity")
    }

    /// The quantity of a toy, read from the catalog itself.
    pub async fn catalog_quantity(&self, name: &str) -> u64 {
        let (status, body) = self.get_from("catalog", &format!("/products/{name}")).await;
        assert_eq!(status, 200, "catalog lookup of {name} failed: {body}");
        body["data"]["quantity"].as_u64().expect("quantity")
    }

    /// The front-end's `GET /health`, typed.
    pub async fn frontend_health(&self) -> FrontendHealth {
        let url = format!("{}/health", self.url("frontend"));
        let resp = self.http.get(url).send().await.expect("GET /health");
        resp.json().await.expect("the front-end's health body")
    }

    /// The front-end's cache figures.
    pub async fn cache_stats(&self) -> CacheStats {
        self.frontend_health().await.cache
    }

    /// The leader the front-end uses now (waits up to 10 s for it to know one).
    pub async fn leader(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = self.frontend_health().await.leader {
                return id;
            }
            assert!(Instant::now() < deadline, "the front-end knows no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A replica that is not the front-end's leader.
    pub async fn follower(&self) -> u32 {
        let leader = self.leader().await;
        (1..=self.opts.replicas)
            .find(|id| *id != leader)
            .expect("a follower")
    }

    /// `GET /health` of replica `id`.
    pub async fn replica(&self, id: u32) -> Value {
        self.get_from(&format!("order{id}"), "/health").await.1
    }

    /// Waits until every running replica is ready and all report the same digest and
    /// last order; returns that digest.
    pub async fn converged(&mut self) -> String {
        let ids: Vec<u32> = (1..=self.opts.replicas)
            .filter(|i| self.children.contains_key(&format!("order{i}")))
            .collect();
        let mut last = Vec::new();
        for _ in 0..200 {
            last.clear();
            for &id in &ids {
                last.push(self.replica(id).await);
            }
            let first = &last[0];
            if last.iter().all(|s| {
                s["ready"] == json!(true)
                    && s["digest"] == first["digest"]
                    && s["last_order"] == first["last_order"]
                    && s["orders"] == first["orders"]
            }) {
                return first["digest"].as_str().unwrap_or_default().to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("replicas did not converge: {last:#?}");
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
            let mut services: Vec<String> = self.ports.keys().cloned().collect();
            services.sort();
            for s in services {
                eprintln!("----- {s} log (tail) -----\n{}", self.log_tail(&s));
            }
        }
    }
}

/// Polls `check` until it returns true or `timeout` passes; returns whether it did.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
