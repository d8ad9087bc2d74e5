//! The launcher behind `./run.sh`: starts, stops, crashes and restarts the services
//! of a toystore cluster on one machine, as detached processes with their PID files
//! and logs under the data directory.
//!
//! `run.sh` builds the binaries and hands its command to this program, which sits
//! beside them in the target directory. The services, their names, ports, data
//! directories and command lines come from [`common::topology`], the one description
//! of a cluster that the system tests and the client share.
//!
//! - [`settings`]: the environment `run.sh` passes (ports, host, data directory,
//!   replication mode) turned into a [`Settings`].
//! - [`process`]: PID files, detached starts, signals, "is it still the service?".
//! - [`health`]: `GET /health` in plain HTTP/1.0.
//! - [`commands`]: `up`, `start`, `stop`, `restart`, `rebuild`, `kill`, `status`, `logs`.
//! - [`probe`]: a container's health check (`probe`), from inside the container.
//! - [`error`]: [`LaunchError`], printed by `main` with its causes.

pub mod commands;
pub mod error;
pub mod health;
pub mod probe;
pub mod process;
pub mod settings;

pub use error::LaunchError;
pub use settings::Settings;

/// `./run.sh [COMMAND]`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "./run.sh",
    bin_name = "./run.sh",
    about = "Build, start, stop, crash and restart the toystore services",
    after_help = "Settings (environment): TOYSTORE_REPLICATION=primary-backup|raft, \
                  FRONTEND_PORT, CATALOG_PORT, ORDER1_PORT..ORDER3_PORT, TOYSTORE_HOST, \
                  TOYSTORE_DATA_DIR, TOYSTORE_START_TIMEOUT (seconds); every service \
                  flag also has its own variable (see the README)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do; with none, `up`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start every service (catalog and replicas, then the front-end) and wait until healthy.
    Up,
    /// Start one service again and wait until it is healthy.
    Start { service: String },
    /// Stop one service, or all of them (SIGTERM, then SIGKILL after 10 s).
    Stop { service: Option<String> },
    /// Stop and start one service.
    Restart { service: String },
    /// Start a replica (orderN, or catalogN of a replicated catalog) afresh from its
    /// peers: its data directory is set aside (kept) and it takes its whole history
    /// from them.
    Rebuild { service: String },
    /// SIGKILL one service (a crash: no shutdown code runs).
    Kill { service: String },
    /// What runs, with each service's health.
    Status,
    /// Follow a service's log.
    Logs { service: String },
    /// Exit 0 when a service on this host is healthy: the one named, or else the one
    /// this container runs (a container image's health check).
    Probe {
        kind: Option<String>,
        port: Option<u16>,
    },
}

/// Runs `cli`'s command on the cluster the environment describes.
pub fn run(cli: Cli) -> Result<(), LaunchError> {
    // The probe runs inside a container, where there is no cluster to describe.
    let cluster = || Settings::from_env().map(commands::Cluster::new);
    match cli.command.unwrap_or(Command::Up) {
        Command::Up => cluster()?.up(),
        Command::Start { service } => cluster()?.start(&service),
        Command::Stop { service: Some(s) } => cluster()?.stop(&s),
        Command::Stop { service: None } => cluster()?.stop_all(),
        Command::Restart { service } => cluster()?.restart(&service),
        Command::Rebuild { service } => cluster()?.rebuild(&service),
        Command::Kill { service } => cluster()?.kill(&service),
        Command::Status => cluster()?.status(),
        Command::Logs { service } => cluster()?.logs(&service),
        Command::Probe { kind, port } => probe::probe(kind.as_deref(), port),
    }
}
