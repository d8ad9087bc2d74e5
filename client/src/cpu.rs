//! Where an order's CPU goes: each service's CPU time and the machine's, read from
//! `/proc` around a measurement (Linux only; elsewhere nothing is reported).
//!
//! A service's time is `utime + stime` of its process (`/proc/<pid>/stat`, the pid
//! from `run.sh`'s PID file); the machine's is every CPU's busy and total time from
//! `/proc/stat`. Divided by the orders placed meanwhile, they say how many µs of CPU
//! one order costs in each process, and in all (the load generator and the kernel's
//! own work included), against what the cores could give.

use std::fmt::Write as _;
use std::path::Path;

use common::topology::Kind;
use lab::cluster::RunSh;

/// The services, in report order: the front-end, the catalog (or its replicas), the
/// order replicas.
fn services(rs: &RunSh) -> Vec<String> {
    [Kind::Frontend, Kind::Catalog, Kind::Order]
        .into_iter()
        .flat_map(|kind| rs.topology.of_kind(kind).map(|s| s.name.clone()))
        .collect()
}

/// CPU times at one moment, in clock ticks.
pub struct Sample {
    /// Each service and its `utime + stime` (`None` if it could not be read).
    services: Vec<(String, Option<u64>)>,
    /// The machine's busy and total ticks, over every CPU.
    machine: Option<(u64, u64)>,
}

/// What one order cost, in µs of CPU.
pub struct PerOrder {
    pub services: Vec<(String, Option<f64>)>,
    /// All of the machine's busy time.
    pub all: Option<f64>,
    /// What the machine's CPUs could give one order at the measured rate.
    pub available: Option<f64>,
}

/// Reads the services' and the machine's CPU times now.
pub fn sample(rs: &RunSh) -> Sample {
    Sample {
        services: services(rs)
            .into_iter()
            .map(|service| {
                let ticks = rs.pid(&service).and_then(process_ticks);
                (service, ticks)
            })
            .collect(),
        machine: machine_ticks(),
    }
}

/// `utime + stime` of process `pid`.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy and total ticks of every CPU together (`/proc/stat`'s `cpu` line).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(Path::new("/proc/stat")).ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    // idle and iowait
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Ticks per second (`sysconf(_SC_CLK_TCK)`, which is 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `orders` orders placed between `before` and `after` cost each.
pub fn per_order(before: &Sample, after: &Sample, orders: f64) -> PerOrder {
    let us = |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1e6 / orders.max(1.0);
    let services = before
        .services
        .iter()
        .zip(&after.services)
        .map(|((name, b), (_, a))| {
            let spent = match (b, a) {
                (Some(b), Some(a)) => Some(us(a.saturating_sub(*b))),
                _ => None,
            };
            (name.clone(), spent)
        })
        .collect();
    let (all, available) = match (before.machine, after.machine) {
        (Some((b_busy, b_total)), Some((a_busy, a_total))) => (
            Some(us(a_busy.saturating_sub(b_busy))),
            Some(us(a_total.saturating_sub(b_total))),
        ),
        _ => (None, None),
    };
    PerOrder {
        services,
        all,
        available,
    }
}

/// One table row: `| what | frontend | … | all | available |`.
pub fn row(what: &str, p: &PerOrder) -> String {
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let mut out = format!("| {what} |");
    for (_, spent) in &p.services {
        let _ = write!(out, " {} |", cell(*spent));
    }
    let _ = write!(out, " {} | {} |", cell(p.all), cell(p.available));
    out
}

/// The table's header, naming the services of `p`.
pub fn header(p: &PerOrder) -> String {
    let mut out = String::from("| orders, 32 clients |");
    for (s, _) in &p.services {
        let _ = write!(out, " {s} |");
    }
    out.push_str(" all, with wrk and the kernel | available |\n|---|");
    for _ in 0..p.services.len() + 2 {
        out.push_str("---|");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_divided_by_the_orders() {
        let named = |ticks: [Option<u64>; 5]| {
            ["frontend", "catalog", "order1", "order2", "order3"]
                .into_iter()
                .map(String::from)
                .zip(ticks)
                .collect()
        };
        let before = Sample {
            services: named([Some(100), Some(0), None, Some(10), Some(10)]),
            machine: Some((1_000, 2_000)),
        };
        let after = Sample {
            services: named([Some(140), Some(20), Some(5), Some(20), Some(30)]),
            machine: Some((1_190, 2_200)),
        };
        // 1000 orders; a tick is 10 ms.
        let p = per_order(&before, &after, 1000.0);
        let spent: Vec<Option<f64>> = p.services.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            spent,
            [Some(400.0), Some(200.0), None, Some(100.0), Some(200.0)]
        );
        assert_eq!((p.all, p.available), (Some(1900.0), Some(2000.0)));
        assert_eq!(
            row("pb", &p),
            "| pb | 400 | 200 | - | 100 | 200 | 1900 | 2000 |"
        );
        assert_eq!(header(&p).lines().count(), 2);
        assert!(header(&p).starts_with("| orders, 32 clients | frontend | catalog |"));
    }

    #[test]
    fn this_process_can_be_read() {
        if cfg!(target_os = "linux") {
            assert!(process_ticks(std::process::id()).is_some());
            let (busy, total) = machine_ticks().expect("/proc/stat");
            assert!(busy <= total);
        }
    }
}
