//! The cluster's shape, in one place: which services a toystore cluster runs, their
//! names, ports, data directories and command lines.
//!
//! `run.sh` (through the `launcher` binary), the system tests and the client's own
//! clusters all build theirs from here, so the names users type (`./run.sh kill
//! order3`), the default ports of the operational contract and the flags each binary
//! is started with are written once.
//!
//! The default layout (SPEC §3) comes from a port base of 8000: front-end base + 80,
//! catalog base + 81, order replicas base + 91 … base + 93. A replicated catalog
//! (`TOYSTORE_CATALOG_REPLICAS=3`, SPEC §7) is `catalog1` … `catalog3` on the
//! catalog's port and the next ones. Several front-ends (`TOYSTORE_FRONTENDS=N`) are
//! `frontend1` … `frontendN`, front-end i on the front-end's port + 100·(i−1); the
//! catalog pushes its invalidations to each. Each port can be moved on its own
//! (`FRONTEND_PORT`, `FRONTEND<i>_PORT`, `CATALOG_PORT`, `CATALOG<i>_PORT`,
//! `ORDER<i>_PORT`).

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::Url;

use crate::config::Replicas;
use crate::domain::ReplicaId;
use crate::wire::{CatalogHealth, FrontendHealth, ReplicaStatus, Replication};

/// A URL as the services' flags take it: without the trailing slash.
fn trim(url: Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// What a service is; each kind is one binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Catalog,
    Order,
    Frontend,
    /// The load balancer in front of the front-ends (HAProxy, not one of ours).
    Balancer,
}

impl Kind {
    /// The binary's file name (in the target directory, beside the launcher).
    pub fn binary(self) -> &'static str {
        match self {
            Kind::Catalog => "catalog",
            Kind::Order => "order",
            Kind::Frontend => "frontend",
            Kind::Balancer => "haproxy",
        }
    }

    /// Whether a service of this kind that answered `GET /health` with `body` is
    /// ready for what starts after it: a replica or the catalog that says `ready`, a
    /// front-end that knows a leader and holds a cache lease (it has heard from the
    /// catalog).
    pub fn healthy(self, body: &str) -> bool {
        match self {
            Kind::Order => serde_json::from_str::<ReplicaStatus>(body).is_ok_and(|s| s.ready),
            Kind::Catalog => serde_json::from_str::<CatalogHealth>(body).is_ok_and(|s| s.ready),
            // The balancer forwards `/health` to a front-end it finds up.
            Kind::Frontend | Kind::Balancer => serde_json::from_str::<FrontendHealth>(body)
                .is_ok_and(|s| s.leader.is_some() && s.cache.leased),
        }
    }
}

/// One service of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The name users and scripts know it by: `catalog`, `order2`, `frontend`.
    pub name: String,
    pub kind: Kind,
    pub port: u16,
    /// An order replica's id, or a catalog replica's in a replicated catalog.
    pub replica: Option<ReplicaId>,
}

/// A topology that cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("{var}={value}: not a port number (1-65535)")]
    BadPort { var: String, value: String },
    #[error("{var}={value}: {expected}")]
    BadCount {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("port base {0} is too high: the cluster uses ports up to base + {max}", max = Ports::SPAN - 1)]
    BaseTooHigh(u16),
    #[error("port {port} is given to both {first} and {second}")]
    SharedPort {
        port: u16,
        first: String,
        second: String,
    },
    #[error("unknown service '{name}' (services: {known})")]
    UnknownService { name: String, known: String },
}

/// Where each service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// The front-end, or front-end `i` (1-based) of several on `frontends[i - 1]`.
    pub frontends: Vec<u16>,
    /// The catalog, or replica `i` (1-based) of a replicated one on `catalogs[i - 1]`.
    pub catalogs: Vec<u16>,
    /// Replica `i` (1-based) listens on `orders[i - 1]`.
    pub orders: Vec<u16>,
    /// The load balancer, when one runs (`TOYSTORE_LB=haproxy`).
    pub balancer: Option<u16>,
}

impl Ports {
    /// The base of the default layout (front-end 8080, catalog 8081, replicas 8091-8093).
    pub const DEFAULT_BASE: u16 = 8000;
    /// A layout from base B uses ports below B + SPAN.
    pub const SPAN: u16 = 94;
    const BALANCER: u16 = 0;
    const FRONTEND: u16 = 80;
    const CATALOG: u16 = 81;
    const ORDERS: u16 = 91;
    /// The lab's three order replicas.
    pub const REPLICAS: u16 = 3;
    /// Most replicas of a replicated catalog.
    pub const MAX_CATALOGS: u16 = 7;
    /// Most front-ends.
    pub const MAX_FRONTENDS: u16 = 9;
    /// Front-end `i` listens this far above front-end `i - 1` by default.
    pub const FRONTEND_STRIDE: u16 = 100;

    /// The default layout moved to base `base` (so a second cluster can run beside
    /// the first): front-end `base + 80`, catalog `base + 81`, replicas `base + 91..`.
    pub fn from_base(base: u16) -> Result<Ports, TopologyError> {
        base.checked_add(Self::SPAN - 1)
            .ok_or(TopologyError::BaseTooHigh(base))?;
        Ok(Ports::at(base))
    }

    /// The layout from `base`, which leaves room for [`Ports::SPAN`] ports.
    fn at(base: u16) -> Ports {
        Ports {
            frontends: vec![base + Self::FRONTEND],
            catalogs: vec![base + Self::CATALOG],
            orders: (0..Self::REPLICAS)
                .map(|i| base + Self::ORDERS + i)
                .collect(),
            balancer: None,
        }
    }

    /// `n` catalog replicas, on the catalog's port and the ones after it.
    pub fn with_catalogs(mut self, n: u16) -> Result<Ports, TopologyError> {
        let first = self.catalogs.first().copied().unwrap_or_default();
        self.catalogs = (0..n.max(1))
            .map(|i| {
                first
                    .checked_add(i)
                    .ok_or(TopologyError::BaseTooHigh(first))
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// `n` front-ends, [`Ports::FRONTEND_STRIDE`] apart from the first one's port.
    pub fn with_frontends(mut self, n: u16) -> Result<Ports, TopologyError> {
        let first = self.frontends.first().copied().unwrap_or_default();
        self.frontends = (0..n.max(1))
            .map(|i| {
                i.checked_mul(Self::FRONTEND_STRIDE)
                    .and_then(|step| first.checked_add(step))
                    .ok_or(TopologyError::BaseTooHigh(first))
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// The default layout with each port replaced by its variable when `var` has it
    /// (`FRONTEND_PORT`, `CATALOG_PORT`, `ORDER1_PORT` …), as many catalog replicas as
    /// `TOYSTORE_CATALOG_REPLICAS` says (`CATALOG2_PORT` … move them) and as many
    /// front-ends as `TOYSTORE_FRONTENDS` says (`FRONTEND2_PORT` … move them).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Ports, TopologyError> {
        let count = |name: &'static str, max: u16, expected: &'static str| match var(name) {
            None => Ok(1),
            Some(value) => match value.trim().parse::<u16>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(TopologyError::BadCount {
                    var: name,
                    value,
                    expected,
                }),
            },
        };
        let catalogs = count(
            "TOYSTORE_CATALOG_REPLICAS",
            Self::MAX_CATALOGS,
            "a number of catalog replicas from 1 to 7 (3 survives one loss)",
        )?;
        let frontends = count(
            "TOYSTORE_FRONTENDS",
            Self::MAX_FRONTENDS,
            "a number of front-ends from 1 to 9",
        )?;
        let mut ports = Ports::default();
        let set = |name: String, port: &mut u16| match var(&name) {
            None => Ok(()),
            Some(value) => match value.trim().parse::<u16>() {
                Ok(p) if p > 0 => {
                    *port = p;
                    Ok(())
                }
                _ => Err(TopologyError::BadPort { var: name, value }),
            },
        };
        if let Some(first) = ports.frontends.first_mut() {
            set("FRONTEND_PORT".into(), first)?;
        }
        ports = ports.with_frontends(frontends)?;
        for (i, port) in ports.frontends.iter_mut().enumerate().skip(1) {
            set(format!("FRONTEND{}_PORT", i + 1), port)?;
        }
        if let Some(first) = ports.catalogs.first_mut() {
            set("CATALOG_PORT".into(), first)?;
        }
        ports = ports.with_catalogs(catalogs)?;
        for (i, port) in ports.catalogs.iter_mut().enumerate().skip(1) {
            set(format!("CATALOG{}_PORT", i + 1), port)?;
        }
        for (i, port) in ports.orders.iter_mut().enumerate() {
            set(format!("ORDER{}_PORT", i + 1), port)?;
        }
        match var("TOYSTORE_LB").as_deref().map(str::trim) {
            None | Some("") | Some("none") => {}
            Some("haproxy") => {
                let mut port = Self::DEFAULT_BASE + Self::BALANCER;
                set("TOYSTORE_LB_PORT".into(), &mut port)?;
                ports.balancer = Some(port);
            }
            Some(other) => {
                return Err(TopologyError::BadCount {
                    var: "TOYSTORE_LB",
                    value: other.to_string(),
                    expected: "haproxy (the one load balancer built in), or none",
                })
            }
        }
        Ok(ports)
    }

    /// The variables that give `run.sh` these ports (the inverse of [`Ports::from_env`]).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut vars = Vec::new();
        // `<KIND>_PORT`, `<KIND>2_PORT` … and how many there are.
        let mut numbered = |kind: &str, ports: &[u16], count: &str| {
            for (i, port) in ports.iter().enumerate() {
                let name = match i {
                    0 => format!("{kind}_PORT"),
                    _ => format!("{kind}{}_PORT", i + 1),
                };
                vars.push((name, port.to_string()));
            }
            vars.push((count.to_string(), ports.len().to_string()));
        };
        numbered("FRONTEND", &self.frontends, "TOYSTORE_FRONTENDS");
        numbered("CATALOG", &self.catalogs, "TOYSTORE_CATALOG_REPLICAS");
        for (i, port) in self.orders.iter().enumerate() {
            vars.push((format!("ORDER{}_PORT", i + 1), port.to_string()));
        }
        if let Some(port) = self.balancer {
            vars.push(("TOYSTORE_LB".to_string(), "haproxy".to_string()));
            vars.push(("TOYSTORE_LB_PORT".to_string(), port.to_string()));
        }
        vars
    }
}

impl Default for Ports {
    /// The operational contract's ports: 8080, 8081, 8091-8093.
    fn default() -> Ports {
        Ports::at(Ports::DEFAULT_BASE)
    }
}

/// A whole cluster: its services in start order (catalog, replicas, front-end), on
/// one host.
#[derive(Debug, Clone)]
pub struct Topology {
    host: String,
    replication: Replication,
    ports: Ports,
    services: Vec<Service>,
}

impl Topology {
    /// The cluster on `host` with `ports`; refuses two services on one port.
    pub fn new(
        host: &str,
        ports: &Ports,
        replication: Replication,
    ) -> Result<Topology, TopologyError> {
        let topology = Topology::build(host, ports, replication);
        let services = &topology.services;
        for (i, a) in services.iter().enumerate() {
            if let Some(b) = services[i + 1..].iter().find(|b| b.port == a.port) {
                return Err(TopologyError::SharedPort {
                    port: a.port,
                    first: a.name.clone(),
                    second: b.name.clone(),
                });
            }
        }
        Ok(topology)
    }

    /// The operational contract: the default ports on 127.0.0.1, primary-backup.
    pub fn default_layout() -> Topology {
        Topology::build("127.0.0.1", &Ports::default(), Replication::PrimaryBackup)
    }

    fn build(host: &str, ports: &Ports, replication: Replication) -> Topology {
        let replicated = ports.catalogs.len() > 1;
        let mut services: Vec<Service> = (1..)
            .zip(&ports.catalogs)
            .map(|(id, port)| Service {
                name: if replicated {
                    format!("catalog{id}")
                } else {
                    "catalog".into()
                },
                kind: Kind::Catalog,
                port: *port,
                replica: replicated.then_some(ReplicaId(id)),
            })
            .collect();
        for (id, port) in (1..).zip(&ports.orders) {
            services.push(Service {
                name: format!("order{id}"),
                kind: Kind::Order,
                port: *port,
                replica: Some(ReplicaId(id)),
            });
        }
        let several = ports.frontends.len() > 1;
        for (i, port) in (1..).zip(&ports.frontends) {
            services.push(Service {
                name: if several {
                    format!("frontend{i}")
                } else {
                    "frontend".into()
                },
                kind: Kind::Frontend,
                port: *port,
                replica: None,
            });
        }
        if let Some(port) = ports.balancer {
            services.push(Service {
                name: "lb".into(),
                kind: Kind::Balancer,
                port,
                replica: None,
            });
        }
        Topology {
            host: host.to_string(),
            replication,
            ports: ports.clone(),
            services,
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// The ports it was made with.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Every service, in start order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The services of one kind, in start order.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Service> {
        self.services.iter().filter(move |s| s.kind == kind)
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Result<&Service, TopologyError> {
        self.services
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| TopologyError::UnknownService {
                name: name.to_string(),
                known: self.names().join(" "),
            })
    }

    /// The service names, in start order.
    pub fn names(&self) -> Vec<&str> {
        self.services.iter().map(|s| s.name.as_str()).collect()
    }

    /// `host:port` that `service` binds.
    pub fn listen(&self, service: &Service) -> String {
        format!("{}:{}", self.host, service.port)
    }

    /// Where `service` is reached.
    pub fn url(&self, service: &Service) -> Url {
        let text = format!("http://{}/", self.listen(service));
        // A host given to a topology is a name or an address, so this parses; a
        // host that does not still yields a URL whose requests fail with its name.
        Url::parse(&text).unwrap_or_else(|_| {
            let mut url = Url::parse("http://invalid-host/").expect("static URL");
            let _ = url.set_port(Some(service.port));
            url
        })
    }

    fn first_url(&self, kind: Kind) -> Url {
        self.of_kind(kind)
            .next()
            .map(|s| self.url(s))
            .unwrap_or_else(|| Url::parse("http://invalid-host/").expect("static URL"))
    }

    /// The catalog's URL, or its first replica's.
    pub fn catalog_url(&self) -> Url {
        self.first_url(Kind::Catalog)
    }

    /// The catalog's URL, or each of its replicas' (`TOYSTORE_CATALOG_URL`).
    pub fn catalog_urls(&self) -> Vec<Url> {
        self.of_kind(Kind::Catalog).map(|s| self.url(s)).collect()
    }

    /// A replicated catalog's members as `--peers` (`1=http://…,2=…`), or `None`.
    pub fn catalog_peers(&self) -> Option<String> {
        let peers: Vec<String> = self
            .of_kind(Kind::Catalog)
            .filter_map(|s| Some(format!("{}={}", s.replica?, trim(self.url(s)))))
            .collect();
        (!peers.is_empty()).then(|| peers.join(","))
    }

    /// The (first) front-end's URL: where clients go.
    pub fn frontend_url(&self) -> Url {
        self.first_url(Kind::Frontend)
    }

    /// Every front-end's URL (`CATALOG_FRONTEND_URL`: the catalog pushes its
    /// invalidations to each; `TOYSTORE_FRONTEND_URLS`: each front-end's dashboard
    /// shows them all).
    pub fn frontend_urls(&self) -> Vec<Url> {
        self.of_kind(Kind::Frontend).map(|s| self.url(s)).collect()
    }

    /// The order replicas with their URLs (`TOYSTORE_REPLICAS`).
    pub fn replicas(&self) -> Replicas {
        Replicas(
            self.of_kind(Kind::Order)
                .filter_map(|s| Some((s.replica?, self.url(s))))
                .collect(),
        )
    }

    /// `TOYSTORE_REPLICAS` as its text: `1=http://127.0.0.1:8091,…`.
    pub fn replicas_arg(&self) -> String {
        self.replicas()
            .0
            .into_iter()
            .map(|(id, url)| format!("{id}={}", trim(url)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Where `service` keeps its data under `root`: `catalog/`, `order<N>/` (primary-
    /// backup) or `order<N>-raft/` (the modes' stores are not interchangeable), `lb/`
    /// (the balancer's server list, [`Topology::balancer_servers`]); the front-end
    /// keeps none.
    pub fn data_dir(&self, service: &Service, root: &Path) -> Option<PathBuf> {
        match (service.kind, self.replication) {
            (Kind::Frontend, _) => None,
            (Kind::Order, Replication::Raft) => Some(root.join(format!("{}-raft", service.name))),
            _ => Some(root.join(&service.name)),
        }
    }

    /// The variables that tell every service where its peers are and how the
    /// replicas agree.
    pub fn cluster_env(&self) -> Vec<(&'static str, String)> {
        let catalogs: Vec<String> = self.catalog_urls().into_iter().map(trim).collect();
        let frontends: Vec<String> = self.frontend_urls().into_iter().map(trim).collect();
        let mut env = vec![
            ("TOYSTORE_REPLICATION", self.replication.to_string()),
            ("TOYSTORE_CATALOG_URL", catalogs.join(",")),
            ("TOYSTORE_REPLICAS", self.replicas_arg()),
            ("CATALOG_FRONTEND_URL", frontends.join(",")),
            ("TOYSTORE_FRONTEND_URLS", frontends.join(",")),
        ];
        if let Some(peers) = self.catalog_peers() {
            env.push(("CATALOG_PEERS", peers));
        }
        env
    }

    /// The load balancer's own part of its configuration: the `frontends` backend
    /// with one checked server per front-end (the rest is `deploy/haproxy.cfg`).
    pub fn balancer_servers(&self) -> String {
        let mut out = String::from(
            "# Written by run.sh from the cluster's layout: one server per front-end.\n\
             backend frontends\n    balance roundrobin\n    option httpchk GET /health\n",
        );
        for service in self.of_kind(Kind::Frontend) {
            out.push_str(&format!(
                "    server {} {} check\n",
                service.name,
                self.listen(service)
            ));
        }
        out
    }

    /// The command that starts `service` from the binaries in `bin_dir` with its data
    /// under `data_root`: its address, replica id and data directory as flags, the
    /// cluster as [`Topology::cluster_env`]. Callers add their own settings. The
    /// balancer is HAProxy from the system: its address is `TOYSTORE_LB_BIND`, and
    /// callers give it `deploy/haproxy.cfg` and [`Topology::balancer_servers`] (`-f`).
    pub fn command(&self, service: &Service, bin_dir: &Path, data_root: &Path) -> Command {
        if service.kind == Kind::Balancer {
            let mut cmd = Command::new(service.kind.binary());
            cmd.env("TOYSTORE_LB_BIND", self.listen(service));
            return cmd;
        }
        let mut cmd = Command::new(bin_dir.join(service.kind.binary()));
        cmd.arg("--listen").arg(self.listen(service));
        if let Some(id) = service.replica {
            cmd.arg("--id").arg(id.to_string());
        }
        if service.kind == Kind::Frontend {
            cmd.arg("--name").arg(&service.name);
        }
        if let Some(dir) = self.data_dir(service, data_root) {
            cmd.arg("--data-dir").arg(dir);
        }
        cmd.envs(self.cluster_env());
        cmd
    }
}

#[cfg(test)]
mod tests;
