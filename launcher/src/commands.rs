//! The commands of `./run.sh`, on the cluster its environment describes.
//!
//! `up` starts the catalog and the replicas together, waits until each is healthy,
//! then starts the front-ends (which need a leader to be healthy), then the load
//! balancer if one is asked for (`TOYSTORE_LB=haproxy`). Every start checks
//! first that the service is not running already and that its port is free, and
//! shows the end of the service's log when it exits during start-up.

use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::topology::{Kind, Service};

use crate::health::{get_health, port_busy};
use crate::process::{self, alive, Files};
use crate::settings::var;
use crate::{LaunchError, Settings};

/// Peer addresses a user may set to run services elsewhere (docs/DESIGN.md,
/// "Running on several hosts"); when set, they win over the topology's.
const KEPT: [&str; 4] = [
    "TOYSTORE_CATALOG_URL",
    "TOYSTORE_REPLICAS",
    "CATALOG_FRONTEND_URL",
    "TOYSTORE_FRONTEND_URLS",
];

/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A cluster as `run.sh` sees it.
pub struct Cluster {
    settings: Settings,
    files: Files,
}

impl Cluster {
    pub fn new(settings: Settings) -> Cluster {
        let files = Files::new(&settings.data);
        Cluster { settings, files }
    }

    fn service(&self, name: &str) -> Result<&Service, LaunchError> {
        Ok(self.settings.topology.service(name)?)
    }

    /// Starts every service and waits until all are healthy; prints the URLs.
    pub fn up(&self) -> Result<(), LaunchError> {
        let topology = &self.settings.topology;
        let of = |kinds: &[Kind]| -> Vec<&Service> {
            let services = topology.services().iter();
            services.filter(|s| kinds.contains(&s.kind)).collect()
        };
        let stages = [
            of(&[Kind::Catalog, Kind::Order]),
            of(&[Kind::Frontend]),
            of(&[Kind::Balancer]),
        ];
        for stage in stages {
            let mut children = Vec::new();
            for service in stage {
                children.push((service, self.start_one(service, &[])?));
            }
            for (service, child) in &mut children {
                self.wait_healthy(service, child.as_mut())?;
            }
        }
        self.print_urls();
        Ok(())
    }

    /// Starts `name` (if it is not running) and waits until it is healthy.
    pub fn start(&self, name: &str) -> Result<(), LaunchError> {
        let service = self.service(name)?;
        let mut child = self.start_one(service, &[])?;
        self.wait_healthy(service, child.as_mut())
    }

    pub fn stop(&self, name: &str) -> Result<(), LaunchError> {
        self.stop_one(self.service(name)?)
    }

    /// Stops the balancer and the front-ends first (so clients get a clear refusal,
    /// not a 503 from a half-stopped cluster), then the replicas, then the catalog
    /// they buy from.
    /// Services started with another layout in the same data directory (a
    /// different `TOYSTORE_CATALOG_REPLICAS`) are stopped too, and named.
    pub fn stop_all(&self) -> Result<(), LaunchError> {
        for kind in [Kind::Balancer, Kind::Frontend, Kind::Order, Kind::Catalog] {
            for service in self.settings.topology.of_kind(kind) {
                self.stop_one(service)?;
            }
        }
        for stray in self.strays() {
            println!(
                "{} runs from another layout of this data directory",
                stray.name
            );
            self.stop_one(&stray)?;
        }
        Ok(())
    }

    /// Running services of this data directory that this layout does not name.
    fn strays(&self) -> Vec<Service> {
        let known = self.settings.topology.names();
        let mut strays = self.files.strays(&known);
        strays.retain(|s| self.files.running_pid(s).is_some());
        strays
    }

    /// Stops a replica (an order replica, or one of a replicated catalog's) if it runs
    /// and starts it with `--rebuild`: its data directory is set aside and it takes
    /// its whole history from its peers before it reports ready.
    pub fn rebuild(&self, name: &str) -> Result<(), LaunchError> {
        let service = self.service(name)?;
        let flag = match service.kind {
            Kind::Order => "ORDER_REBUILD",
            Kind::Catalog if service.replica.is_some() => "CATALOG_REBUILD",
            _ => return Err(LaunchError::NotRebuildable(name.to_string())),
        };
        self.stop_one(service)?;
        let mut child = self.start_one(service, &[(flag, "true")])?;
        self.wait_healthy(service, child.as_mut())
    }

    pub fn restart(&self, name: &str) -> Result<(), LaunchError> {
        let service = self.service(name)?;
        self.stop_one(service)?;
        let mut child = self.start_one(service, &[])?;
        self.wait_healthy(service, child.as_mut())
    }

    /// SIGKILLs `name` and waits until it is gone.
    pub fn kill(&self, name: &str) -> Result<(), LaunchError> {
        let service = self.service(name)?;
        let pid = self
            .files
            .running_pid(service)
            .ok_or_else(|| LaunchError::NotRunning(name.to_string()))?;
        process::signal(pid, "KILL")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            if Instant::now() > deadline {
                return Err(LaunchError::Unkillable {
                    service: name.to_string(),
                    pid,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.files.clear(service);
        println!("killed {name} (SIGKILL, pid {pid})");
        Ok(())
    }

    /// One line per service: running or not, its PID, URL and `/health`.
    pub fn status(&self) -> Result<(), LaunchError> {
        let topology = &self.settings.topology;
        for service in topology.services() {
            let name = &service.name;
            match self.files.running_pid(service) {
                None => println!("{name:<9} stopped"),
                Some(pid) => {
                    let health = get_health(topology.host(), service.port)
                        .unwrap_or_else(|| "(no answer)".into());
                    println!(
                        "{name:<9} running  pid {pid:<7} http://{}  {health}",
                        topology.listen(service)
                    );
                }
            }
        }
        for stray in self.strays() {
            let pid = self.files.running_pid(&stray).unwrap_or_default();
            println!(
                "{:<9} running  pid {pid:<7} (started with another layout: run every \
                 command with the TOYSTORE_CATALOG_REPLICAS it was started with)",
                stray.name
            );
        }
        Ok(())
    }

    /// Follows `name`'s log (this process becomes `tail -f`).
    pub fn logs(&self, name: &str) -> Result<(), LaunchError> {
        let log = self.files.log_file(self.service(name)?);
        let source = Command::new("tail")
            .args(["-n", "50", "-f"])
            .arg(&log)
            .exec();
        Err(LaunchError::Run {
            program: "tail".into(),
            source,
        })
    }

    /// Starts `service` unless it runs; the child, when this call started it.
    fn start_one(
        &self,
        service: &Service,
        extra: &[(&str, &str)],
    ) -> Result<Option<Child>, LaunchError> {
        let name = &service.name;
        if let Some(pid) = self.files.running_pid(service) {
            println!("{name} already running (pid {pid})");
            return Ok(None);
        }
        let host = self.settings.topology.host();
        if port_busy(host, service.port) {
            return Err(LaunchError::PortInUse {
                service: name.clone(),
                port: service.port,
                host: host.to_string(),
                var: match service.kind {
                    Kind::Balancer => "TOYSTORE_LB_PORT".into(),
                    _ => format!("{}_PORT", name.to_uppercase()),
                },
            });
        }
        let mut cmd = self.command(service)?;
        cmd.envs(extra.iter().copied());
        let child = self.files.spawn(service, cmd)?;
        println!(
            "started {name} (pid {}, port {}, log {})",
            child.id(),
            service.port,
            self.settings.show(&self.files.log_file(service))
        );
        Ok(Some(child))
    }

    /// The command line of `service`: the topology's, with the peer addresses the
    /// user set, the seed file, the cluster token and quiet colourless logs.
    fn command(&self, service: &Service) -> Result<Command, LaunchError> {
        let s = &self.settings;
        let mut cmd = s.topology.command(service, &s.bin_dir, &s.data);
        if service.kind == Kind::Balancer {
            return self.balancer(service, cmd);
        }
        for name in KEPT {
            if let Some(value) = var(name) {
                cmd.env(name, value);
            }
        }
        if var("CATALOG_SEED_FILE").is_none() {
            cmd.env("CATALOG_SEED_FILE", s.root.join("data").join("toys.json"));
        }
        if var("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.env("NO_COLOR", "1")
            .env("TOYSTORE_CLUSTER_TOKEN", self.token()?);
        Ok(cmd)
    }

    /// HAProxy's command: `deploy/haproxy.cfg` and the server list of this layout,
    /// written to `<data>/lb/servers.cfg` first.
    fn balancer(&self, service: &Service, topology: Command) -> Result<Command, LaunchError> {
        let s = &self.settings;
        let program = which(service.kind.binary()).ok_or(LaunchError::Setting {
            var: "TOYSTORE_LB",
            expected: "set only where HAProxy is installed (Debian: apt-get install haproxy)",
            value: "haproxy".into(),
        })?;
        let mut cmd = Command::new(program);
        for (key, value) in topology.get_envs() {
            if let Some(value) = value {
                cmd.env(key, value);
            }
        }
        let dir = s
            .topology
            .data_dir(service, &s.data)
            .unwrap_or(s.data.join("lb"));
        std::fs::create_dir_all(&dir).map_err(LaunchError::file(&dir))?;
        let servers = dir.join("servers.cfg");
        std::fs::write(&servers, s.topology.balancer_servers())
            .map_err(LaunchError::file(&servers))?;
        cmd.arg("-f")
            .arg(s.root.join("deploy").join("haproxy.cfg"))
            .arg("-f")
            .arg(servers);
        Ok(cmd)
    }

    /// The cluster token in `<data>/cluster.token`, made (24 random bytes, hex,
    /// readable by the owner only) on first use.
    fn token(&self) -> Result<String, LaunchError> {
        let path = self.settings.data.join("cluster.token");
        if let Ok(token) = std::fs::read_to_string(&path) {
            if !token.trim().is_empty() {
                return Ok(token.trim().to_string());
            }
        }
        std::fs::create_dir_all(&self.settings.data)
            .map_err(LaunchError::file(&self.settings.data))?;
        let mut bytes = [0u8; 24];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(LaunchError::file("/dev/urandom"))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(token.as_bytes()))
            .map_err(LaunchError::file(&path))?;
        Ok(token)
    }

    /// Waits until `service` reports healthy; fails, showing the end of its log, if
    /// it exits first.
    fn wait_healthy(
        &self,
        service: &Service,
        child: Option<&mut Child>,
    ) -> Result<(), LaunchError> {
        let host = self.settings.topology.host();
        let log = self.files.log_file(service);
        let deadline = Instant::now() + self.settings.start_timeout;
        // Without a child of ours (it was running already), its PID file says which.
        let pid = self.files.running_pid(service);
        let mut child = child;
        loop {
            if get_health(host, service.port).is_some_and(|body| service.kind.healthy(&body)) {
                return Ok(());
            }
            let exited = match child.as_mut() {
                Some(child) => !matches!(child.try_wait(), Ok(None)),
                None => !pid.is_some_and(alive),
            };
            if exited {
                eprintln!("--- last lines of {}:", self.settings.show(&log));
                eprintln!("{}", process::tail(&log, 20));
                return Err(LaunchError::ExitedAtStart {
                    service: service.name.clone(),
                });
            }
            if Instant::now() > deadline {
                return Err(LaunchError::NotHealthy {
                    service: service.name.clone(),
                    log: self.settings.show(&log).into(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_GRACE`].
    fn stop_one(&self, service: &Service) -> Result<(), LaunchError> {
        let name = &service.name;
        let Some(pid) = self.files.running_pid(service) else {
            self.files.clear(service);
            return Ok(());
        };
        process::signal(pid, "TERM")?;
        let deadline = Instant::now() + STOP_GRACE;
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive(pid) {
            println!("{name} did not stop in 10 s; killing it");
            process::signal(pid, "KILL")?;
        }
        self.files.clear(service);
        println!("stopped {name}");
        Ok(())
    }

    fn print_urls(&self) {
        let t = &self.settings.topology;
        let url = |s: &Service| format!("http://{}", t.listen(s));
        let frontend = t
            .of_kind(Kind::Frontend)
            .map(url)
            .collect::<Vec<_>>()
            .join("  ");
        let catalog = t
            .of_kind(Kind::Catalog)
            .map(url)
            .collect::<Vec<_>>()
            .join("  ");
        let orders: Vec<String> = t.of_kind(Kind::Order).map(url).collect();
        let first = t
            .of_kind(Kind::Frontend)
            .next()
            .map(url)
            .unwrap_or_default();
        println!("toystore is up ({} replication):", t.replication());
        println!("  front-end   {frontend}   (try: curl {first}/products/Tux)");
        if let Some(lb) = t.of_kind(Kind::Balancer).next() {
            println!(
                "  balancer    {}   (HAProxy: one address for every front-end)",
                url(lb)
            );
        }
        println!("  dashboard   {first}/dashboard   (the live view, in a browser)");
        println!("  catalog     {catalog}");
        println!("  order1..{}   {}", orders.len(), orders.join("  "));
        println!(
            "data and logs in {}/; stop with ./run.sh stop",
            self.settings.show(&self.settings.data)
        );
    }
}

/// Where `program` is: on `PATH`, or in `/usr/sbin` (where Debian puts HAProxy, and
/// which a user's `PATH` may lack).
fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
