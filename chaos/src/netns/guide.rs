//! The deployment guide (docs/DEPLOY.md) as the lab reads it: each host's shell
//! blocks, run word for word, and the ports they name.

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

impl Guide {
    pub fn read(path: &Path) -> Result<Guide, ClientError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        Guide::parse(&text)
    }

    /// Collects the fenced blocks whose first line says where they run.
    pub fn parse(text: &str) -> Result<Guide, ClientError> {
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
            } else if let Some(host) = first.strip_prefix("# on ") {
                guide.on_host.push((host.trim().to_string(), body));
            }
        }
        if guide.hosts.is_empty() || guide.every_host.is_empty() || guide.on_host.is_empty() {
            return Err(err("the deployment guide has no hosts block, no `# on every host` block or no `# on <host>` blocks"));
        }
        Ok(guide)
    }

    /// The blocks that run on `host`, in order.
    pub(super) fn blocks_on(&self, host: &str) -> Vec<&str> {
        self.on_host
            .iter()
            .filter(|(h, _)| h == host)
            .map(|(_, b)| b.as_str())
            .collect()
    }

    /// The port a host's service listens on (from its `--listen` address).
    pub fn port(&self, host: &str) -> Option<u16> {
        self.blocks_on(host).iter().find_map(|b| {
            let after = b.split("--listen").nth(1)?;
            let addr = after.split_whitespace().next()?;
            addr.rsplit(':').next()?.parse().ok()
        })
    }
}
