//! Why a launcher command failed.

use std::path::PathBuf;

use common::topology::TopologyError;

/// A failed command; `main` prints it with its causes and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("{var} must be {expected} (it is '{value}')")]
    Setting {
        var: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("{}", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {program}")]
    Run {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot start {service}: port {port} on {host} is already in use by another \
         program (set {var} to use another port)"
    )]
    PortInUse {
        service: String,
        port: u16,
        host: String,
        var: String,
    },
    #[error("{service} exited during start-up")]
    ExitedAtStart { service: String },
    #[error("{service} did not become healthy in time; see {}", .log.display())]
    NotHealthy { service: String, log: PathBuf },
    #[error("cannot tell which service to probe: {0}")]
    ProbeTarget(String),
    #[error("{kind} on port {port} is not healthy: {reply}")]
    Unhealthy {
        kind: &'static str,
        port: u16,
        reply: String,
    },
    #[error(
        "{0} cannot be rebuilt: only a replica can (an order replica, or a catalog replica \
         with TOYSTORE_CATALOG_REPLICAS=3), since it takes its history from its peers"
    )]
    NotRebuildable(String),
    #[error("{0} is not running")]
    NotRunning(String),
    #[error("{service} (pid {pid}) still exists 10 s after SIGKILL")]
    Unkillable { service: String, pid: u32 },
}

impl LaunchError {
    /// Wraps an I/O error on `path`.
    pub fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LaunchError {
        let path = path.into();
        move |source| LaunchError::File { path, source }
    }
}
