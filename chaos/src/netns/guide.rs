//! The deployment guide (docs/DEPLOY.md) as the lab reads it: each host's shell
//! blocks, run word for word, and the ports they name.
//!
//! The guide describes one catalog (host `catalog`) or three catalog replicas (hosts
//! `catalog1`-`catalog3`, and the `# on every host, with three catalogs` block after
//! the other settings); and one front-end (host `frontend`) or two behind a load
//! balancer (hosts `frontend1`, `frontend2` and `lb`, and the `# on every host, with
//! two front-ends` block). [`Guide::parse`] keeps the blocks of the layout asked for,
//! and the hosts that run them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use super::err;
use lab::ClientError;

/// The parts of `docs/DEPLOY.md` that are run.
#[derive(Debug, Clone)]
pub struct Guide {
    /// Host name → address, from the `/etc/hosts` block.
    pub hosts: BTreeMap<String, Ipv4Addr>,
    /// The `/etc/hosts` block as written.
    pub hosts_file: String,
    /// `# on every host` block(s).
    pub every_host: String,
    /// `# on <host>` blocks, in the order they appear.
    pub on_host: Vec<(String, String)>,
}

/// First line of the settings block for three catalog replicas.
const EVERY_HOST_WITH_GROUP: &str = "# on every host, with three catalogs";

/// First line of the settings block for two front-ends.
const EVERY_HOST_WITH_FRONTENDS: &str = "# on every host, with two front-ends";

/// A layout of the guide: how many catalog replicas and front-ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// 1 (the single catalog) or 3.
    pub catalogs: u16,
    /// 1, or 2 behind the load balancer.
    pub frontends: u16,
}

/// One of several front-ends (`frontend1` …) or the load balancer, as opposed to
/// the single `frontend`.
fn is_of_several_frontends(host: &str) -> bool {
    host == "lb"
        || host
            .strip_prefix("frontend")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a block starts a service: the toystore services' `--listen`, HAProxy's
/// `TOYSTORE_LB_BIND=`.
pub(super) fn starts_service(block: &str) -> bool {
    block.contains("--listen") || block.contains("TOYSTORE_LB_BIND=")
}

/// A replicated catalog's host (`catalog1` …), as opposed to the single `catalog`.
fn is_catalog_replica(host: &str) -> bool {
    host.strip_prefix("catalog")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl Guide {
    /// The guide at `path`, in `layout`.
    pub fn read(path: &Path, layout: Layout) -> Result<Guide, ClientError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        Guide::parse(&text, layout)
    }

    /// Collects the fenced blocks whose first line says where they run, for `layout`;
    /// the hosts are those that run a block of it.
    pub fn parse(text: &str, layout: Layout) -> Result<Guide, ClientError> {
        let group = match layout.catalogs {
            1 => false,
            3 => true,
            n => {
                return Err(err(format!(
                    "the deployment guide has layouts for 1 or 3 catalog replicas, not {n}"
                )))
            }
        };
        let several = match layout.frontends {
            1 => false,
            2 => true,
            n => {
                return Err(err(format!(
                    "the deployment guide has layouts for 1 or 2 front-ends, not {n}"
                )))
            }
        };
        let mut blocks: Vec<Vec<&str>> = Vec::new();
        let mut current: Option<Vec<&str>> = None;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                match current.take() {
                    Some(block) => blocks.push(block),
                    None => current = Some(Vec::new()),
                }
            } else if let Some(block) = current.as_mut() {
                block.push(line);
            }
        }
        let mut group_settings = String::new();
        let mut frontend_settings = String::new();
        let mut guide = Guide {
            hosts: BTreeMap::new(),
            hosts_file: String::new(),
            every_host: String::new(),
            on_host: Vec::new(),
        };
        for block in blocks {
            let Some((first, rest)) = block.split_first() else {
                continue;
            };
            let body = rest.join("\n") + "\n";
            let first = first.trim();
            if first == "# /etc/hosts on every host" {
                for line in rest {
                    let mut parts = line.split_whitespace();
                    if let (Some(ip), Some(name)) = (parts.next(), parts.next()) {
                        let ip: Ipv4Addr = ip
                            .parse()
                            .map_err(|_| err(format!("bad address in {line:?}")))?;
                        guide.hosts.insert(name.to_string(), ip);
                    }
                }
                guide.hosts_file = body;
            } else if first == "# on every host" {
                guide.every_host.push_str(&body);
            } else if first == EVERY_HOST_WITH_GROUP {
                group_settings.push_str(&body);
            } else if first == EVERY_HOST_WITH_FRONTENDS {
                frontend_settings.push_str(&body);
            } else if let Some(host) = first.strip_prefix("# on ") {
                let host = host.trim();
                let catalog_in_layout = if group {
                    host != "catalog"
                } else {
                    !is_catalog_replica(host)
                };
                let frontend_in_layout = if several {
                    host != "frontend"
                } else {
                    !is_of_several_frontends(host)
                };
                let in_layout = catalog_in_layout && frontend_in_layout;
                if in_layout {
                    guide.on_host.push((host.to_string(), body));
                }
            }
        }
        if guide.hosts.is_empty() || guide.every_host.is_empty() || guide.on_host.is_empty() {
            return Err(err("the deployment guide has no hosts block, no `# on every host` block or no `# on <host>` blocks"));
        }
        if group {
            if group_settings.is_empty() {
                return Err(err(format!(
                    "the deployment guide has no `{EVERY_HOST_WITH_GROUP}` block"
                )));
            }
            guide.every_host.push_str(&group_settings);
        }
        if several {
            if frontend_settings.is_empty() {
                return Err(err(format!(
                    "the deployment guide has no `{EVERY_HOST_WITH_FRONTENDS}` block"
                )));
            }
            guide.every_host.push_str(&frontend_settings);
        }
        let used: Vec<&String> = guide.on_host.iter().map(|(h, _)| h).collect();
        guide.hosts.retain(|host, _| used.contains(&host));
        Ok(guide)
    }

    /// The hosts of the replicated catalog (`catalog1` …; none with one catalog).
    pub fn catalog_replicas(&self) -> Vec<String> {
        self.hosts
            .keys()
            .filter(|h| is_catalog_replica(h))
            .cloned()
            .collect()
    }

    /// The catalog's hosts: the replicas, or the single `catalog`.
    pub fn catalogs(&self) -> Vec<String> {
        match self.catalog_replicas() {
            replicas if replicas.is_empty() => vec!["catalog".to_string()],
            replicas => replicas,
        }
    }

    /// The front-ends' hosts: `frontend`, or `frontend1` … behind the load balancer.
    pub fn frontends(&self) -> Vec<String> {
        self.hosts
            .keys()
            .filter(|h| h.starts_with("frontend"))
            .cloned()
            .collect()
    }

    /// The load balancer's host, if the layout has one.
    pub fn balancer(&self) -> Option<String> {
        self.hosts.keys().find(|h| *h == "lb").cloned()
    }

    /// The blocks that run on `host`, in order.
    pub(super) fn blocks_on(&self, host: &str) -> Vec<&str> {
        self.on_host
            .iter()
            .filter(|(h, _)| h == host)
            .map(|(_, b)| b.as_str())
            .collect()
    }

    /// The port a host's service listens on (from its `--listen` address, or the
    /// load balancer's `TOYSTORE_LB_BIND=`).
    pub fn port(&self, host: &str) -> Option<u16> {
        self.blocks_on(host).iter().find_map(|b| {
            let after = b
                .split("--listen")
                .nth(1)
                .or_else(|| b.split("TOYSTORE_LB_BIND=").nth(1))?;
            let addr = after.split_whitespace().next()?;
            addr.rsplit(':').next()?.parse().ok()
        })
    }
}
