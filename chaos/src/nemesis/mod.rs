//! The multi-host chaos run: the services on hosts of their own ([`crate::netns`]:
//! five; two front-ends and a load balancer in place of the one front-end, and three
//! catalog replicas in place of the one catalog, each add two), client sessions
//! ordering, and a
//! nemesis that kills, pauses and partitions any of them and fills their disks, one
//! fault at a time; then the [`lab::checker`]'s verdict and a report.
//!
//! Faults (each held for `down`, then undone; then the nemesis waits until every
//! replica is ready, their digests agree and no follower is counted as lagging (after
//! a partition, first the replication timeout: a request sent into it hangs until
//! then), and leaves `interval` of calm before the next):
//! - **kill**: SIGKILL the service, then start it again with the guide's command;
//! - **pause**: SIGSTOP, then SIGCONT;
//! - **partition**: isolate one host (from every other host and from the clients),
//!   cut the leader from its followers (the front-end still reaches it), cut the
//!   catalog's leader from its followers (replicated catalog), or cut a front-end
//!   from the catalog;
//! - **disk**: fill a replica's disk to the last byte (each replica's data directory
//!   is then a tmpfs of its own, [`crate::netns`]) until its storage fails and it
//!   stops by itself (10 s at most), then free it and start the replica again. Its
//!   targets are the order leader and a follower, and with a replicated catalog its
//!   leader and a follower (a lone catalog's full disk would only stop the store, as
//!   a kill does).
//!
//! Targets rotate so that every service is hit: the current order leader, a
//! follower, the catalog (its leader, when replicated; then a catalog follower too)
//! and a front-end (one of two, when they run behind the load balancer). Only a
//! fault of the single front-end or of the single catalog may leave requests
//! unanswered; a catalog replica's or one of two front-ends' must not (clients go
//! through the load balancer or fail over to the other front-end themselves, with
//! the same idempotency key). The load balancer is not a target: it is the one
//! process of its kind by design (docs/DEPLOY.md, section 11). With `lossy`, the run
//! ends with the two schedules docs/DESIGN.md admits can lose acknowledged orders
//! (the leader cut from its followers long enough to acknowledge alone, then killed;
//! a follower lagging, then the other two replicas killed), and the checker counts
//! what they lost apart from everything else.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::config::Replicas;
use common::domain::ReplicaId;
use common::wire::Replication;

use crate::netns::Lab;
use lab::checker::{closing_line, judge, replicas_agree, stock_adds_up, History, Window};
use lab::cluster::Inspector;
use lab::session::{run_sessions, Plan};
use lab::ClientError;

mod report;
mod schedule;
mod targets;

use report::{admitted, list, report};
use schedule::DISK_MB;
pub use schedule::{schedule, Fault, Kind};
use targets::{followers_of, Targets};

/// The longest a disk stays full.
const DISK_HOLD: Duration = Duration::from_secs(10);

/// Settings of a multi-host chaos run.
pub struct HostsPlan {
    pub load: Plan,
    pub faults: Vec<Fault>,
    pub interval: Duration,
    pub down: Duration,
    /// How the replicas agree; in Raft mode no schedule is admitted to lose orders.
    pub mode: Replication,
    /// The replicas' replication timeout (how long the lossy schedule must cut the
    /// leader off before it acknowledges alone).
    pub replicate_timeout: Duration,
    /// The front-end's cache lease: the bound on stale reads.
    pub lease: Duration,
    pub seed: u64,
    pub report: Option<PathBuf>,
    pub command: String,
}

/// An applied fault: what it was and when.
pub(super) struct Applied {
    window: Window,
}

/// Runs the experiment on `lab` (whose services are not started yet); `Ok(true)` when
/// every check passed.
pub async fn run(plan: HostsPlan, lab: &Lab) -> Result<bool, ClientError> {
    // As the guide says: the catalog and the replicas first, then the front-end; the
    // members of a group together (a Raft member is ready only once a majority runs).
    let mut services = lab.services();
    services.sort_by_key(|h| match h {
        h if h.starts_with("catalog") => 0,
        h if h.starts_with("order") => 1,
        h if h.starts_with("frontend") => 2,
        _ => 3,
    });
    let catalogs = lab.catalogs();
    let group = |host: &str| -> Vec<String> {
        let kind = if host.starts_with("order") {
            "order"
        } else if catalogs.len() > 1 && catalogs.iter().any(|c| c == host) {
            "catalog"
        } else {
            return vec![host.to_string()];
        };
        services
            .iter()
            .filter(|h| h.starts_with(kind))
            .cloned()
            .collect()
    };
    if plan.faults.iter().any(|f| matches!(f, Fault::FillDisk(_))) {
        lab.give_disks(DISK_MB)?;
    }
    for host in &services {
        let members = group(host);
        if members.first() == Some(host) {
            lab.start_all(&members).await?;
        }
    }
    let replicas = Replicas(
        (1..=3u32)
            .map(|i| lab.url(&format!("order{i}")).map(|u| (ReplicaId(i), u)))
            .collect::<Result<_, _>>()?,
    );
    let catalog_urls = catalogs
        .iter()
        .map(|c| lab.url(c))
        .collect::<Result<Vec<_>, _>>()?;
    let frontends = lab.frontends();
    let frontend_urls = frontends
        .iter()
        .map(|f| lab.url(f))
        .collect::<Result<Vec<_>, _>>()?;
    // Where clients go first: the load balancer, if there is one.
    let entry = match lab.balancer() {
        Some(lb) => lab.url(&lb)?,
        None => frontend_urls[0].clone(),
    };
    let inspector = Inspector::new(replicas, catalog_urls.clone(), entry.clone(), &lab.token()?)?;
    let targets = Targets {
        inspector: &inspector,
        catalogs: &catalogs,
        frontends: &frontends,
    };
    println!("{} hosts up: {}", services.len(), services.join(", "));

    let history = Arc::new(History::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load_plan = plan.load.clone();
    // Sessions start at the load balancer or at one of the front-ends, and fail over
    // along the list: session i starts at the i-th.
    load_plan.urls = std::iter::once(entry.clone())
        .chain(frontend_urls.iter().cloned())
        .collect();
    load_plan.urls.dedup();
    let load = tokio::spawn({
        let (history, stop) = (history.clone(), stop.clone());
        async move { run_sessions(&load_plan, stop, None, Some(history)).await }
    });
    let watcher = tokio::spawn(history.clone().watch(entry, catalog_urls, stop.clone()));

    let mut applied = Vec::new();
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let mut trouble = Ok(());
    for (i, fault) in plan.faults.iter().enumerate() {
        tokio::time::sleep(plan.interval).await;
        if load.is_finished() {
            break;
        }
        match apply(fault, lab, &targets, &history, &plan, &mut rng).await {
            Ok(done) => {
                println!(
                    "fault {:>2}: {} ({:.1}-{:.1} s)",
                    i + 1,
                    done.window.label,
                    done.window.start,
                    done.window.end
                );
                applied.push(done);
            }
            Err(e) => {
                trouble = Err(e);
                break;
            }
        }
    }
    tokio::time::sleep(plan.interval).await;
    // Healed: the sessions stop, resend what failed, and read their orders back.
    let _ = inspector.converged(Duration::from_secs(30)).await;
    stop.store(true, Ordering::Relaxed);
    let record = load.await.map_err(ClientError::task("the load"))??;
    let _ = watcher.await;
    trouble?;
    let converged = inspector.converged(Duration::from_secs(30)).await;

    let windows: Vec<Window> = applied.iter().map(|a| a.window.clone()).collect();
    let mut checks: Vec<(bool, String)> = Vec::new();
    let mut check = |passed: bool, what: String| {
        println!("[{}] {what}", if passed { "ok" } else { "FAIL" });
        checks.push((passed, what));
    };
    println!("\nclients ({} sessions):", plan.load.sessions);
    record.print();
    println!();

    let hit: std::collections::BTreeSet<String> = windows.iter().map(|w| w.label.clone()).collect();
    check(
        applied.len() >= plan.faults.len(),
        format!(
            "{} of {} faults applied ({} different)",
            applied.len(),
            plan.faults.len(),
            hit.len()
        ),
    );
    let statuses = match converged {
        Ok(all) => {
            let (agree, line) = replicas_agree(&all);
            check(agree, line);
            all
        }
        Err(all) => {
            check(
                false,
                format!("replicas did not converge within 30 s: {all:?}"),
            );
            all
        }
    };
    let source = statuses.first().map_or(ReplicaId(1), |s| s.id);
    let finals = inspector.orders_of(source).await?;
    let verdict = judge(&history, &finals, &windows);
    check(
        verdict.lost.is_empty(),
        format!(
            "{} of {} acknowledged orders lost outside the admitted schedule{}",
            verdict.lost.len(),
            verdict.acked,
            list(
                &verdict
                    .lost
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
            )
        ),
    );
    check(
        verdict.duplicated.is_empty(),
        format!(
            "{} keys stored twice{}",
            verdict.duplicated.len(),
            list(&verdict.duplicated)
        ),
    );
    check(
        verdict.phantoms.is_empty(),
        format!(
            "{} phantom orders read outside the admitted schedule ({} during it){}",
            verdict.phantoms.len(),
            verdict.phantoms_admitted,
            list(&verdict.phantoms)
        ),
    );
    check(
        verdict.failures.is_empty(),
        format!(
            "{} requests failed outside the faults that make the store unavailable \
             ({} failed during them){}",
            verdict.failures.len(),
            verdict.failures_admitted,
            list(
                &verdict
                    .failures
                    .iter()
                    .map(|f| format!("{:.1} s: {}", f.at, f.what))
                    .collect::<Vec<_>>()
            )
        ),
    );
    check(
        verdict.longest_stale <= plan.lease.as_secs_f64(),
        format!(
            "{} of {} product replies were stale; the longest by {:.2} s (lease {:.1} s)",
            verdict.stale_reads,
            verdict.reads,
            verdict.longest_stale,
            plan.lease.as_secs_f64()
        ),
    );
    // None measured would mean the replies stopped naming their front-end.
    check(
        verdict.own_unseen == 0 && verdict.own_reads > 0,
        format!(
            "read-your-writes: {} of {} lookups right after an order, answered by the \
             front-end that took it, did not show it",
            verdict.own_unseen, verdict.own_reads
        ),
    );
    check(
        verdict.other_longest_stale <= plan.lease.as_secs_f64(),
        format!(
            "{} of {} lookups right after an order, answered by another front-end, were \
             stale; the longest by {:.2} s (lease {:.1} s)",
            verdict.other_stale,
            verdict.other_reads,
            verdict.other_longest_stale,
            plan.lease.as_secs_f64()
        ),
    );
    if catalogs.len() > 1 {
        let digests = inspector.catalogs_converged(Duration::from_secs(30)).await;
        check(
            digests.is_ok(),
            match digests {
                Ok(digest) => format!(
                    "the {} catalog replicas hold the same stock (digest {digest})",
                    catalogs.len()
                ),
                Err(each) => format!("the catalog replicas differ: {each:?}"),
            },
        );
    }
    let t = inspector.stock_totals().await?;
    let (books, line) = stock_adds_up(&t);
    check(books, line);
    let units: u64 = finals.iter().map(|r| r.quantity).sum();
    check(
        units + verdict.units_lost_admitted() == t.sold,
        format!(
            "units in the {} stored orders ({units}) + units lost in the admitted schedule ({}) \
             = units the catalog sold ({})",
            finals.len(),
            verdict.units_lost_admitted(),
            t.sold
        ),
    );
    let ok = checks.iter().all(|c| c.0);
    println!("\n{}", closing_line(ok));
    if let Some(path) = &plan.report {
        let md = report(
            &plan, &services, &record, &history, &applied, &verdict, &checks,
        );
        std::fs::write(path, md).map_err(ClientError::file(path))?;
        println!("wrote {}", path.display());
    }
    Ok(ok)
}

/// Applies one fault, holds it, undoes it and waits for the target to be back.
async fn apply(
    fault: &Fault,
    lab: &Lab,
    targets: &Targets<'_>,
    history: &History,
    plan: &HostsPlan,
    rng: &mut fastrand::Rng,
) -> Result<Applied, ClientError> {
    let down = plan.down;
    let start = history.now();
    let (label, unavailable, lossy) = match fault {
        Fault::Kill(target) => {
            let host = targets.resolve(target, rng).await;
            lab.kill(&host).await?;
            tokio::time::sleep(down).await;
            lab.start(&host).await?;
            (
                format!("kill {host} ({target})"),
                targets.is_single(&host),
                false,
            )
        }
        Fault::Pause(target) => {
            let host = targets.resolve(target, rng).await;
            lab.pause(&host)?;
            tokio::time::sleep(down).await;
            lab.resume(&host)?;
            (
                format!("pause {host} ({target})"),
                targets.is_single(&host),
                false,
            )
        }
        Fault::Isolate(target) => {
            let host = targets.resolve(target, rng).await;
            lab.isolate(&host)?;
            tokio::time::sleep(down).await;
            lab.heal()?;
            (
                format!("isolate {host} ({target})"),
                targets.is_single(&host),
                false,
            )
        }
        Fault::FillDisk(target) => {
            let host = targets.resolve(target, rng).await;
            lab.fill_disk(&host).await?;
            // Held until the replica needs space it cannot have and stops (sled reuses
            // the space of its freed segments, so that may take a while): at least
            // `down`, at most `DISK_HOLD`.
            let filled = std::time::Instant::now();
            tokio::time::sleep(down).await;
            while !lab.has_exited(&host) && filled.elapsed() < DISK_HOLD {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let stopped = lab.free_disk(&host).await?;
            let how = if stopped {
                "it stopped"
            } else {
                "it served on"
            };
            (
                format!("fill the disk of {host} ({target}; {how})"),
                targets.is_single(&host),
                false,
            )
        }
        Fault::CutLeaderFromFollowers => {
            let leader = targets.resolve("leader", rng).await;
            lab.cut_from(&leader, &followers_of(&leader))?;
            tokio::time::sleep(down).await;
            lab.heal()?;
            (
                format!("cut leader {leader} from its followers"),
                false,
                false,
            )
        }
        Fault::CutCatalogLeaderFromFollowers => {
            let leader = targets.resolve("catalog", rng).await;
            lab.cut_from(&leader, &targets.other_catalogs(&leader))?;
            tokio::time::sleep(down).await;
            lab.heal()?;
            (
                format!("cut catalog leader {leader} from its followers"),
                false,
                false,
            )
        }
        Fault::CutFrontendFromCatalog => {
            let frontend = targets.resolve("frontend", rng).await;
            lab.cut_from(&frontend, targets.catalogs)?;
            tokio::time::sleep(down).await;
            lab.heal()?;
            (
                format!("cut {frontend} from catalog"),
                targets.is_single(&frontend),
                false,
            )
        }
        Fault::CutThenKillLeader => {
            let leader = targets.resolve("leader", rng).await;
            lab.cut_from(&leader, &followers_of(&leader))?;
            // Long enough for the followers to lag and the leader to acknowledge alone.
            tokio::time::sleep(plan.replicate_timeout + down).await;
            lab.kill(&leader).await?;
            lab.heal()?;
            tokio::time::sleep(down).await;
            lab.start(&leader).await?;
            (
                format!(
                    "cut leader {leader} from its followers, then kill it{}",
                    admitted(plan.mode)
                ),
                false,
                plan.mode == Replication::PrimaryBackup,
            )
        }
        Fault::LagThenLoseTwo => {
            let leader = targets.resolve("leader", rng).await;
            let lagging = targets.resolve("follower", rng).await;
            let other = followers_of(&leader)
                .into_iter()
                .find(|h| *h != lagging)
                .unwrap_or_default();
            lab.pause(&lagging)?;
            // The leader stops waiting for it and goes on with the other follower.
            tokio::time::sleep(plan.replicate_timeout + down).await;
            lab.kill(&leader).await?;
            lab.kill(&other).await?;
            lab.resume(&lagging)?;
            tokio::time::sleep(down).await;
            lab.start(&leader).await?;
            lab.start(&other).await?;
            (
                format!(
                    "pause follower {lagging}, then kill leader {leader} and follower {other}{}",
                    admitted(plan.mode)
                ),
                true,
                plan.mode == Replication::PrimaryBackup,
            )
        }
    };
    // A request sent into a partition hangs until its timeout even after the heal
    // (TCP retransmits on its own schedule): a primary-backup leader may only then
    // count its followers as lagging and acknowledge alone for a moment. Wait that
    // out, so that the next fault meets a healed store and faults do not compound
    // into the schedules the design admits can lose orders.
    let partition = matches!(
        fault,
        Fault::Isolate(_)
            | Fault::CutLeaderFromFollowers
            | Fault::CutCatalogLeaderFromFollowers
            | Fault::CutFrontendFromCatalog
    );
    if partition {
        tokio::time::sleep(plan.replicate_timeout).await;
    }
    // Back to normal: every replica ready again (a restarted one has caught up), and
    // no follower counted as lagging.
    targets.settled().await;
    Ok(Applied {
        window: Window {
            label,
            start,
            end: history.now(),
            unavailable,
            lossy,
        },
    })
}

#[cfg(test)]
mod tests;
