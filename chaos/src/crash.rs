//! The crash experiment: while sessions order, repeatedly SIGKILL a random order
//! replica (the leader at least `leader_kills` times), restart it after a pause, and
//! then check what the lab asks: did any client notice? did every order read back? do
//! all replicas hold the same orders? does the stock add up?
//!
//! With a replicated catalog (`--catalog-replicas 3`) every other kill is of a
//! catalog replica instead (its leader half the time), and the catalog replicas must
//! end with the same stock too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lab::checker::{closing_line, replicas_agree, stock_adds_up};
use lab::cluster::{Inspector, RunSh};
use lab::session::{run_sessions, Plan};
use lab::ClientError;

/// Settings of a chaos run.
pub struct ChaosPlan {
    pub load: Plan,
    pub kills: u32,
    pub leader_kills: u32,
    /// Pause before each kill.
    pub interval: Duration,
    /// How long a killed replica stays down.
    pub down: Duration,
    pub run_sh: RunSh,
    pub seed: u64,
    /// Markdown report to write, if any.
    pub report: Option<std::path::PathBuf>,
    /// The command line, for the report.
    pub command: String,
}

/// Runs the experiment; `Ok(true)` when every check passed.
pub async fn run(plan: ChaosPlan, inspector: &Inspector) -> Result<bool, ClientError> {
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (plan, stop) = (plan.load.clone(), stop.clone());
        async move { run_sessions(&plan, stop, None, None).await }
    });

    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let ids = inspector.replica_ids();
    let (mut kills, mut leader_kills, mut catalog_kills) = (0u32, 0u32, 0u32);
    // A replicated catalog's replicas, by name (empty for the single catalog).
    let catalogs = plan.run_sh.catalog_replicas();
    let mut kill_log = Vec::new();
    let started = std::time::Instant::now();
    let mut killing = Ok(());
    while kills < plan.kills {
        tokio::time::sleep(plan.interval).await;
        if load.is_finished() {
            break;
        }
        let (service, role) = if !catalogs.is_empty() && kills % 2 == 1 {
            let leader = inspector.catalog_leader().await;
            let victim = match leader {
                Some(l) if rng.bool() => l,
                _ => rng.usize(..catalogs.len()),
            };
            catalog_kills += 1;
            let role = if Some(victim) == leader {
                "catalog leader"
            } else {
                "catalog follower"
            };
            (catalogs[victim].clone(), role)
        } else {
            let leader = inspector.leader().await;
            let leaders_owed = plan.leader_kills.saturating_sub(leader_kills);
            let order_kills_left =
                plan.kills - kills - catalog_kills_left(&catalogs, kills, plan.kills);
            let victim = match leader {
                Some(l) if leaders_owed > 0 && (rng.bool() || order_kills_left <= leaders_owed) => {
                    l
                }
                _ => ids[rng.usize(..ids.len())],
            };
            leader_kills += u32::from(Some(victim) == leader);
            let role = if Some(victim) == leader {
                "leader"
            } else {
                "follower"
            };
            (format!("order{victim}"), role)
        };
        println!("kill {:>2}: {service} ({role})", kills + 1);
        kill_log.push(format!("{service} ({role})"));
        if let Err(e) = plan.run_sh.run(&["kill", &service], &[]).await {
            killing = Err(e);
            break;
        }
        kills += 1;
        tokio::time::sleep(plan.down).await;
        if let Err(e) = plan.run_sh.run(&["start", &service], &[]).await {
            killing = Err(e);
            break;
        }
    }
    tokio::time::sleep(plan.interval).await;
    stop.store(true, Ordering::Relaxed);
    let record = load.await.map_err(ClientError::task("the load"))??;
    killing?;

    println!("\nclients ({} sessions):", plan.load.sessions);
    record.print();

    let mut ok = true;
    let mut checks: Vec<(bool, String)> = Vec::new();
    let mut check = |passed: bool, what: String| {
        println!("[{}] {what}", if passed { "ok" } else { "FAIL" });
        ok &= passed;
        checks.push((passed, what));
    };
    println!();
    check(
        kills >= plan.kills && leader_kills >= plan.leader_kills,
        match catalog_kills {
            0 => format!("{kills} replicas killed, {leader_kills} of them the leader"),
            n => format!(
                "{kills} replicas killed: {n} catalog replicas, {} order replicas, \
                 {leader_kills} of them the leader",
                kills - n
            ),
        },
    );
    check(
        record.failures() == 0,
        format!("{} requests failed as clients saw them", record.failures()),
    );
    check(
        record.mismatches.is_empty(),
        format!(
            "{} of {} orders did not read back as placed",
            record.mismatches.len(),
            record.orders
        ),
    );
    match inspector.converged(Duration::from_secs(30)).await {
        Ok(all) => {
            let (agree, line) = replicas_agree(&all);
            check(agree, line);
            let (units, count) = inspector.ordered_units(all[0].id).await?;
            let t = inspector.stock_totals().await?;
            let (books, line) = stock_adds_up(&t);
            check(books, line);
            check(
                units == t.sold,
                format!(
                    "units in the {count} stored orders ({units}) = units the catalog sold ({})",
                    t.sold
                ),
            );
        }
        Err(all) => {
            for s in &all {
                println!(
                    "  replica {}: ready {} orders {} digest {}",
                    s.id, s.ready, s.orders, s.digest
                );
            }
            check(false, "replicas did not converge within 30 s".into());
        }
    }
    if !catalogs.is_empty() {
        match inspector.catalogs_converged(Duration::from_secs(30)).await {
            Ok(digest) => check(
                true,
                format!(
                    "the {} catalog replicas hold the same stock (digest {digest})",
                    catalogs.len()
                ),
            ),
            Err(digests) => check(
                false,
                format!("catalog replicas did not converge within 30 s: {digests:?}"),
            ),
        }
    }
    println!("\n{}", closing_line(ok));
    if let Some(path) = &plan.report {
        let md = report(
            &plan,
            &record,
            &kill_log,
            &checks,
            started.elapsed().as_secs_f64(),
        );
        std::fs::write(path, md).map_err(ClientError::file(path))?;
        println!("wrote {}", path.display());
    }
    Ok(ok)
}

/// How many of the kills from number `kills` (0-based) on are of catalog replicas:
/// every other one, when there are any.
fn catalog_kills_left(catalogs: &[String], kills: u32, total: u32) -> u32 {
    if catalogs.is_empty() {
        0
    } else {
        (kills..total).filter(|k| k % 2 == 1).count() as u32
    }
}

/// The markdown report: what was done, what clients saw, and the checks.
fn report(
    plan: &ChaosPlan,
    record: &lab::stats::Record,
    kills: &[String],
    checks: &[(bool, String)],
    seconds: f64,
) -> String {
    use std::fmt::Write as _;
    let mut md = String::from("# Crash experiment\n\n");
    let _ = writeln!(
        md,
        "Generated by `{}` ({seconds:.0} s). {} client sessions ordered with p = {} while \
         order replicas were killed with SIGKILL, one every {} ms, each restarted {} ms later \
         through `run.sh`. Afterwards every session read back each of its orders.\n",
        plan.command,
        plan.load.sessions,
        plan.load.p,
        plan.interval.as_millis(),
        plan.down.as_millis()
    );
    let _ = writeln!(md, "Kills, in order: {}.\n", kills.join(", "));
    let _ = writeln!(md, "## What the clients saw\n");
    md.push_str(&record.latency_table());
    let _ = writeln!(
        md,
        "\nOrders placed: {}; refused as sold out: {}; failed requests: {}; orders that did \
         not read back as placed: {}.\n",
        record.orders,
        record.sold_out,
        record.failures(),
        record.mismatches.len()
    );
    let _ = writeln!(md, "## Checks\n");
    for (passed, what) in checks {
        let _ = writeln!(md, "- {} {what}", if *passed { "ok:" } else { "FAILED:" });
    }
    let all = checks.iter().all(|c| c.0);
    let _ = writeln!(md, "\n## The lab's questions\n");
    let _ = writeln!(
        md,
        "- **Can clients notice the failures?** {}",
        if record.failures() == 0 {
            "No. Every request succeeded: when the leader died, the front-end re-selected a \
             leader and retried the order with the same idempotency key. The crashes show \
             only as higher maximum latencies (the retries)."
        } else {
            "Yes: some requests failed (see above)."
        }
    );
    let _ = writeln!(
        md,
        "- **Do the replicas end with identical order data?** {}",
        if all {
            "Yes: after the last restart all three replicas report the same number of orders \
             and the same digest, and the catalog's stock adds up with the units in those \
             orders."
        } else {
            "Not in this run: see the failed checks above."
        }
    );
    md
}
