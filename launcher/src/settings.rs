//! The environment `run.sh` passes, read once: where the repository and the data
//! are, which host and ports, which replication mode, how long a start may take.

use std::path::PathBuf;
use std::time::Duration;

use common::topology::{Ports, Topology};
use common::wire::Replication;

use crate::LaunchError;

/// Everything a command needs to know about the cluster it acts on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The repository (`TOYSTORE_ROOT`, set by `run.sh`): the default data directory
    /// and seed file live under it, and messages name files relative to it.
    pub root: PathBuf,
    /// PID files, logs, the cluster token and the services' sled directories
    /// (`TOYSTORE_DATA_DIR`, default `data/`).
    pub data: PathBuf,
    /// Where the service binaries are: beside this program.
    pub bin_dir: PathBuf,
    pub topology: Topology,
    /// How long `up` and `start` wait for a service to report healthy
    /// (`TOYSTORE_START_TIMEOUT`, seconds, default 30).
    pub start_timeout: Duration,
}

/// An environment variable, unless unset or empty (as `run.sh`'s `${VAR:-default}`).
pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    pub fn from_env() -> Result<Settings, LaunchError> {
        let root = match var("TOYSTORE_ROOT") {
            Some(root) => PathBuf::from(root),
            None => std::env::current_dir().map_err(LaunchError::file("."))?,
        };
        let data = var("TOYSTORE_DATA_DIR").map_or_else(|| root.join("data"), PathBuf::from);
        let replication = match var("TOYSTORE_REPLICATION").as_deref() {
            None | Some("primary-backup") => Replication::PrimaryBackup,
            Some("raft") => Replication::Raft,
            Some(other) => {
                return Err(LaunchError::Setting {
                    var: "TOYSTORE_REPLICATION",
                    expected: "primary-backup or raft",
                    value: other.to_string(),
                })
            }
        };
        let start_timeout = match var("TOYSTORE_START_TIMEOUT") {
            None => Duration::from_secs(30),
            Some(s) => s
                .parse()
                .map(Duration::from_secs)
                .map_err(|_| LaunchError::Setting {
                    var: "TOYSTORE_START_TIMEOUT",
                    expected: "a whole number of seconds",
                    value: s,
                })?,
        };
        let exe = std::env::current_exe().map_err(LaunchError::file("/proc/self/exe"))?;
        let bin_dir = exe.parent().map(PathBuf::from).unwrap_or_default();
        let host = var("TOYSTORE_HOST").unwrap_or_else(|| "127.0.0.1".into());
        let ports = Ports::from_env(var)?;
        Ok(Settings {
            topology: Topology::new(&host, &ports, replication)?,
            root,
            data,
            bin_dir,
            start_timeout,
        })
    }

    /// `path` as the user knows it: relative to the repository when under it.
    pub fn show(&self, path: &std::path::Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}
