//! Five hosts on one machine (seven with three catalog replicas, two more with two
//! front-ends and a load balancer): each service in a
//! Linux network namespace of its own, with its own address on a bridge, set up by
//! following `docs/DEPLOY.md` word for word, and faults a real network has —
//! crashes, stalls, partitions.
//!
//! - The bridge `tsbr0` (10.77.0.1/24, the address clients and the checker use) joins
//!   one veth pair per host; each namespace `ts-<host>` has its address on `eth0`.
//! - Names resolve through `/etc/netns/ts-<host>/hosts` (which `ip netns exec`
//!   mounts over `/etc/hosts`), filled with the guide's `/etc/hosts` block.
//! - A service is started by running, in its namespace and in a directory of its own,
//!   the guide's `# on every host` block and then its `# on <host>` block, in one
//!   `bash` in a process group of its own, so signals reach the service whatever
//!   bash does.
//! - A partition is silent, as a real one is: in each namespace a policy rule drops
//!   every packet *from* the other side (`ip rule ... blackhole`, ahead of the `local`
//!   table). Connections hang until their timeouts instead of failing at once.
//!
//! Needs root and iproute2. Everything is removed again by [`Lab::destroy`] (also on
//! drop), and left-overs of an earlier run are removed before a new one starts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::topology::{Ports, Topology};
use common::wire::Replication;

use reqwest::Url;

use lab::ClientError;

mod disk;
mod guide;

pub use guide::{Guide, Layout};

const BRIDGE: &str = "tsbr0";

const PREFIX: &str = "ts-";

/// The bridge's own address: where clients and the checker come from.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

fn err(what: impl std::fmt::Display) -> ClientError {
    ClientError::Other(what.to_string())
}

/// The five hosts and the services on them.
pub struct Lab {
    guide: Guide,
    /// The default topology with the guide's number of catalogs: what "healthy"
    /// means for each host's service.
    topology: Topology,
    /// Where each host's toystore directory lives (`<work>/<host>`).
    work: PathBuf,
    /// The host the guide makes the cluster token on.
    token_host: String,
    /// Directory with the service binaries (put first on each host's `PATH`).
    bin_dir: PathBuf,
    /// Running services: host → process group id (= the bash's pid).
    running: Mutex<BTreeMap<String, tokio::process::Child>>,
    /// Cut pairs (each direction's rule is added once).
    cuts: Mutex<BTreeSet<(String, String)>>,
    /// Extra environment of every service (settings the guide leaves at their
    /// defaults, e.g. a large initial stock for an experiment).
    env: Vec<(String, String)>,
    /// Data directories mounted on a tmpfs of their own ([`Lab::give_disks`]).
    disks: Mutex<Vec<PathBuf>>,
    /// For health checks.
    http: reqwest::Client,
}

/// Runs a command, failing with its output.
fn run(program: &str, args: &[&str]) -> Result<(), ClientError> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| err(format!("cannot run {program}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Adds or deletes (`verb`) the partition rule in namespace `ns` that drops every
/// packet from `source`.
fn rule(ns: &str, verb: &str, source: &str) -> Result<(), ClientError> {
    run(
        "ip",
        &[
            "-n",
            ns,
            "rule",
            verb,
            "pref",
            "10",
            "from",
            source,
            "blackhole",
        ],
    )
}

/// Runs `commands` (one `ip` command per line, without `ip`) in namespace `ns` with
/// one `ip -batch` process.
fn run_batch(ns: &str, commands: &str) -> Result<(), ClientError> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run ip: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(commands.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(format!(
            "ip -n {ns} -batch failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs a command whose failure does not matter (clean-up).
fn run_quietly(program: &str, args: &[&str]) {
    let _ = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn ns(host: &str) -> String {
    format!("{PREFIX}{host}")
}

impl Lab {
    /// Builds the hosts described by the guide at `guide_path` in `layout`, with each
    /// host's directory under `work` (wiped first), and runs the guide's set-up steps
    /// (the token, made on one host and copied to all; the catalog's seed file; the
    /// load balancer's `deploy/haproxy.cfg`, from beside the guide's directory).
    pub fn create(
        guide_path: &Path,
        layout: Layout,
        seed_file: &Path,
        bin_dir: &Path,
        work: &Path,
        env: Vec<(String, String)>,
    ) -> Result<Lab, ClientError> {
        if !is_root() {
            return Err(err("the multi-host lab needs root (network namespaces)"));
        }
        let guide = Guide::read(guide_path, layout)?;
        let topology = Ports::default()
            .with_catalogs(layout.catalogs)
            .and_then(|ports| ports.with_frontends(layout.frontends))
            .map(|ports| Ports {
                balancer: guide.balancer().and_then(|lb| guide.port(&lb)),
                ..ports
            })
            .and_then(|ports| Topology::new("127.0.0.1", &ports, Replication::PrimaryBackup))
            .map_err(err)?;
        // "Make the token once, on any host, and copy the file to every host."
        let (token_host, token_block) = guide
            .on_host
            .iter()
            .find(|(_, b)| b.contains("cluster.token") && !guide::starts_service(b))
            .cloned()
            .ok_or_else(|| err("the guide has no block that makes cluster.token"))?;
        let lab = Lab {
            guide,
            topology,
            work: work.to_path_buf(),
            token_host: token_host.clone(),
            bin_dir: bin_dir.to_path_buf(),
            running: Mutex::new(BTreeMap::new()),
            cuts: Mutex::new(BTreeSet::new()),
            env,
            disks: Mutex::new(Vec::new()),
            http: reqwest::Client::new(),
        };
        lab.remove_network();
        if work.exists() {
            disk::unmount_stale(work);
            std::fs::remove_dir_all(work).map_err(|e| err(format!("{}: {e}", work.display())))?;
        }
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run(
            "ip",
            &["addr", "add", &format!("{GATEWAY}/24"), "dev", BRIDGE],
        )?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        for (host, ip) in &lab.guide.hosts {
            let ns = ns(host);
            let veth = format!("{ns}-h");
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            run("ip", &["link", "set", &veth, "master", BRIDGE, "up"])?;
            run(
                "ip",
                &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            )?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &GATEWAY.to_string(),
                ],
            )?;
            // Partition rules must come before the `local` table, which would
            // otherwise accept packets for this host's own address first.
            run(
                "ip",
                &["-n", &ns, "rule", "add", "pref", "100", "lookup", "local"],
            )?;
            run("ip", &["-n", &ns, "rule", "del", "pref", "0"])?;
            let etc = PathBuf::from("/etc/netns").join(&ns);
            std::fs::create_dir_all(&etc).map_err(|e| err(format!("{}: {e}", etc.display())))?;
            let hosts = format!("127.0.0.1 localhost\n{}", lab.guide.hosts_file);
            std::fs::write(etc.join("hosts"), hosts)
                .map_err(|e| err(format!("{}: {e}", etc.display())))?;
            std::fs::create_dir_all(lab.dir(host)).map_err(|e| err(e.to_string()))?;
        }
        let status = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns(&token_host),
                "bash",
                "-euc",
                &token_block,
            ])
            .current_dir(lab.dir(&token_host))
            .status()
            .map_err(|e| err(e.to_string()))?;
        if !status.success() {
            return Err(err("the guide's token step failed"));
        }
        let token = lab.dir(&token_host).join("cluster.token");
        for host in lab.guide.hosts.keys() {
            if *host != token_host {
                std::fs::copy(&token, lab.dir(host).join("cluster.token"))
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        // "Copy data/toys.json to the catalog host's toystore directory (to each
        // catalog replica's, with three)."
        for host in lab.guide.catalogs() {
            std::fs::copy(seed_file, lab.dir(&host).join("toys.json"))
                .map_err(|e| err(format!("{}: {e}", seed_file.display())))?;
        }
        // "Copy deploy/haproxy.cfg into its toystore directory."
        if let Some(lb) = lab.guide.balancer() {
            let config = guide_path
                .parent()
                .and_then(Path::parent)
                .map(|root| root.join("deploy").join("haproxy.cfg"))
                .ok_or_else(|| err("no deploy/ directory beside the guide's"))?;
            std::fs::copy(&config, lab.dir(&lb).join("haproxy.cfg"))
                .map_err(|e| err(format!("{}: {e}", config.display())))?;
        }
        Ok(lab)
    }

    /// The hosts that run a service, in the guide's order of starting them.
    pub fn services(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (host, block) in &self.guide.on_host {
            if guide::starts_service(block) && !out.contains(host) {
                out.push(host.clone());
            }
        }
        out
    }

    /// The catalog's hosts: `catalog`, or `catalog1` … when it is replicated.
    pub fn catalogs(&self) -> Vec<String> {
        self.guide.catalogs()
    }

    /// The front-ends' hosts: `frontend`, or `frontend1` … behind the load balancer.
    pub fn frontends(&self) -> Vec<String> {
        self.guide.frontends()
    }

    /// The load balancer's host, if the layout has one.
    pub fn balancer(&self) -> Option<String> {
        self.guide.balancer()
    }

    pub fn dir(&self, host: &str) -> PathBuf {
        self.work.join(host)
    }

    pub fn ip(&self, host: &str) -> Option<Ipv4Addr> {
        self.guide.hosts.get(host).copied()
    }

    /// The URL of `host`'s service, as seen from the bridge.
    pub fn url(&self, host: &str) -> Result<Url, ClientError> {
        let (Some(ip), Some(port)) = (self.ip(host), self.guide.port(host)) else {
            return Err(err(format!("no address or port for {host}")));
        };
        Url::parse(&format!("http://{ip}:{port}")).map_err(err)
    }

    /// The cluster token (as made by the guide's token step).
    pub fn token(&self) -> Result<String, ClientError> {
        let path = self.dir(&self.token_host).join("cluster.token");
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .map_err(|e| err(format!("{}: {e}", path.display())))
    }

    /// Starts `host`'s service with the guide's commands and waits until it is healthy.
    pub async fn start(&self, host: &str) -> Result<(), ClientError> {
        self.spawn(host)?;
        self.wait_healthy(host).await
    }

    /// Starts several services at once, then waits until each is healthy (Raft
    /// replicas are ready only once a majority of them runs).
    pub async fn start_all(&self, hosts: &[String]) -> Result<(), ClientError> {
        for host in hosts {
            self.spawn(host)?;
        }
        for host in hosts {
            self.wait_healthy(host).await?;
        }
        Ok(())
    }

    /// Runs the guide's start block of `host` in its namespace, in its own process
    /// group, logging to the host's `service.log`.
    fn spawn(&self, host: &str) -> Result<(), ClientError> {
        let blocks = self.guide.blocks_on(host);
        let Some(start) = blocks.iter().find(|b| guide::starts_service(b)) else {
            return Err(err(format!("the guide does not say how to start {host}")));
        };
        let script = format!("{}\n{start}", self.guide.every_host);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir(host).join("service.log"))
            .map_err(|e| err(e.to_string()))?;
        // HAProxy is in sbin, which a user's PATH may lack.
        let path = format!(
            "{}:{}:/usr/local/sbin:/usr/sbin",
            self.bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &ns(host), "bash", "-c", &script])
            .current_dir(self.dir(host))
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| err(e.to_string()))?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| err(format!("cannot start {host}: {e}")))?;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_string(), child);
        Ok(())
    }

    async fn wait_healthy(&self, host: &str) -> Result<(), ClientError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.is_healthy(host).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "{host} did not become healthy; see {}",
                    self.dir(host).join("service.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether `host`'s service answers that it is healthy (within a second).
    async fn is_healthy(&self, host: &str) -> bool {
        let Ok(url) = self.url(host) else {
            return false;
        };
        // The guide's hosts are the services of the default topology (its tests say so).
        let Ok(service) = self.topology.service(host) else {
            return false;
        };
        let asked = self
            .http
            .get(common::client::endpoint(&url, &["health"]))
            .timeout(Duration::from_secs(1))
            .send();
        match asked.await {
            Ok(resp) => resp
                .text()
                .await
                .is_ok_and(|body| service.kind.healthy(&body)),
            Err(_) => false,
        }
    }

    /// Sends `signal` to the process group of `host`'s service.
    fn signal(&self, host: &str, signal: &str) -> Result<(), ClientError> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let pid = running
            .get(host)
            .and_then(|c| c.id())
            .ok_or_else(|| err(format!("{host} is not running")))?;
        run("kill", &[signal, "--", &format!("-{pid}")])
    }

    /// SIGKILLs `host`'s service (a crash) and reaps it.
    pub async fn kill(&self, host: &str) -> Result<(), ClientError> {
        self.signal(host, "-KILL")?;
        let child = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(host);
        if let Some(mut child) = child {
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
        Ok(())
    }

    /// Stalls `host`'s service (SIGSTOP): it keeps its sockets and answers nothing.
    pub fn pause(&self, host: &str) -> Result<(), ClientError> {
        self.signal(host, "-STOP")
    }

    pub fn resume(&self, host: &str) -> Result<(), ClientError> {
        self.signal(host, "-CONT")
    }

    /// Cuts every packet between `a` and `b` (either may be "gateway": the clients).
    pub fn cut(&self, a: &str, b: &str) -> Result<(), ClientError> {
        self.cut_from(a, &[b.to_string()])
    }

    /// Cuts `host` from each of `others` (hosts, or "gateway": the clients). The
    /// rules in `host`'s own namespace go in first and in one `ip -batch`, so that
    /// `host` loses all of them at the same moment (a leader cut from both followers
    /// must not see one go a batch before the other).
    pub fn cut_from(&self, host: &str, others: &[String]) -> Result<(), ClientError> {
        let mut cuts = self.cuts.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = String::new();
        for other in others {
            if cuts.insert((host.to_string(), other.clone())) {
                let _ = writeln!(
                    batch,
                    "rule add pref 10 from {} blackhole",
                    self.address(other)?
                );
            }
        }
        if !batch.is_empty() {
            run_batch(&ns(host), &batch)?;
        }
        for other in others.iter().filter(|o| *o != "gateway") {
            if cuts.insert((other.clone(), host.to_string())) {
                let source = self.address(host)?;
                rule(&ns(other), "add", &source)?;
            }
        }
        Ok(())
    }

    /// Cuts `host` from every other host and from the clients.
    pub fn isolate(&self, host: &str) -> Result<(), ClientError> {
        let mut others: Vec<String> = self
            .guide
            .hosts
            .keys()
            .filter(|h| *h != host)
            .cloned()
            .collect();
        others.push("gateway".into());
        self.cut_from(host, &others)
    }

    /// Removes every cut.
    pub fn heal(&self) -> Result<(), ClientError> {
        let cuts = std::mem::take(&mut *self.cuts.lock().unwrap_or_else(|p| p.into_inner()));
        for (from, to) in cuts {
            let source = self.address(&to)?;
            rule(&ns(&from), "del", &source)?;
        }
        Ok(())
    }

    fn address(&self, host: &str) -> Result<String, ClientError> {
        if host == "gateway" {
            return Ok(GATEWAY.to_string());
        }
        self.ip(host)
            .map(|ip| ip.to_string())
            .ok_or_else(|| err(format!("unknown host {host}")))
    }

    /// Tail of `host`'s service log.
    pub fn log_tail(&self, host: &str, bytes: usize) -> String {
        let text = std::fs::read_to_string(self.dir(host).join("service.log")).unwrap_or_default();
        let start = text.len().saturating_sub(bytes);
        text.get(start..).unwrap_or_default().to_string()
    }

    fn remove_network(&self) {
        for host in self.guide.hosts.keys() {
            // Processes left in the namespace (a run that was itself killed) go first.
            if let Ok(out) = std::process::Command::new("ip")
                .args(["netns", "pids", &ns(host)])
                .stderr(Stdio::null())
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    run_quietly("kill", &["-CONT", pid]);
                    run_quietly("kill", &["-KILL", pid]);
                }
            }
            run_quietly("ip", &["netns", "del", &ns(host)]);
            run_quietly("ip", &["link", "del", &format!("{}-h", ns(host))]);
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns(host)));
        }
        run_quietly("ip", &["link", "del", BRIDGE]);
    }

    /// Stops every service (SIGKILL: the data is left as a crash leaves it) and
    /// removes the namespaces, the bridge and the hosts files.
    pub fn destroy(&self) {
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, child) in running {
            if let Some(pid) = child.id() {
                run_quietly("kill", &["-CONT", "--", &format!("-{pid}")]);
                run_quietly("kill", &["-KILL", "--", &format!("-{pid}")]);
            }
        }
        self.take_disks();
        self.remove_network();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests;
