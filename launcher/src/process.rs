//! The services as detached processes: started in a process group of their own (so
//! the terminal's Ctrl-C and hang-up do not reach them), their PIDs in
//! `<data>/run/<service>.pid`, their output appended to `<data>/logs/<service>.log`.
//!
//! A PID file can outlive its process and the PID be reused by another program, so
//! a PID counts as the service's only while `/proc/<pid>/exe` is the service's binary.
//! Signals go through `kill(1)`: the workspace forbids `unsafe`, and with it
//! `libc::kill`.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::topology::{Kind, Service};

use crate::LaunchError;

/// Where a cluster's PID files and logs are.
#[derive(Debug, Clone)]
pub struct Files {
    data: PathBuf,
}

impl Files {
    pub fn new(data: &Path) -> Files {
        Files {
            data: data.to_path_buf(),
        }
    }

    pub fn pid_file(&self, service: &Service) -> PathBuf {
        self.data.join("run").join(format!("{}.pid", service.name))
    }

    pub fn log_file(&self, service: &Service) -> PathBuf {
        self.data.join("logs").join(format!("{}.log", service.name))
    }

    /// The PID of `service` if it runs (its PID file names a live process whose
    /// binary is the service's).
    pub fn running_pid(&self, service: &Service) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file(service))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if !alive(pid) {
            return None;
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        // " (deleted)": the binary was rebuilt while it ran.
        let name = exe.file_name()?.to_string_lossy().into_owned();
        let name = name.trim_end_matches(" (deleted)");
        (name == service.kind.binary()).then_some(pid)
    }

    /// Services with a PID file whose names are not among `known`: started with
    /// another layout (e.g. another `TOYSTORE_CATALOG_REPLICAS`) in the same data
    /// directory. Their kind comes from the name; their port is unknown (0).
    pub fn strays(&self, known: &[&str]) -> Vec<Service> {
        let Ok(entries) = std::fs::read_dir(self.data.join("run")) else {
            return Vec::new();
        };
        let mut strays: Vec<Service> = entries
            .flatten()
            .filter_map(|entry| {
                let file = entry.file_name().to_string_lossy().into_owned();
                let name = file.strip_suffix(".pid")?.to_string();
                let kind = [Kind::Catalog, Kind::Order, Kind::Frontend]
                    .into_iter()
                    .find(|k| name.starts_with(k.binary()))
                    .or((name == "lb").then_some(Kind::Balancer))?;
                (!known.contains(&name.as_str())).then_some(Service {
                    name,
                    kind,
                    port: 0,
                    replica: None,
                })
            })
            .collect();
        strays.sort_by(|a, b| a.name.cmp(&b.name));
        strays
    }

    /// Forgets `service`'s PID.
    pub fn clear(&self, service: &Service) {
        let _ = std::fs::remove_file(self.pid_file(service));
    }

    /// Starts `cmd` as `service`, detached, and records its PID.
    pub fn spawn(&self, service: &Service, mut cmd: Command) -> Result<Child, LaunchError> {
        for dir in ["run", "logs"] {
            let dir = self.data.join(dir);
            std::fs::create_dir_all(&dir).map_err(LaunchError::file(dir))?;
        }
        let log_path = self.log_file(service);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(LaunchError::file(&log_path))?;
        let err_log = log.try_clone().map_err(LaunchError::file(&log_path))?;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .process_group(0)
            .spawn()
            .map_err(|source| LaunchError::Run { program, source })?;
        let pid_file = self.pid_file(service);
        std::fs::write(&pid_file, format!("{}\n", child.id()))
            .map_err(LaunchError::file(pid_file))?;
        Ok(child)
    }
}

/// True while process `pid` exists and has not exited (a zombie, not yet reaped, has).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')' (comm may hold one).
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends `signal` (`TERM`, `KILL`, …) to `pid`; a process already gone is no error.
pub fn signal(pid: u32, signal: &str) -> Result<(), LaunchError> {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .map(drop)
        .map_err(|source| LaunchError::Run {
            program: "kill".into(),
            source,
        })
}

/// The last `lines` lines of the file at `path` (for "it exited during start-up").
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
