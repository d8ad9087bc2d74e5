//! `client`: load sessions (`run`), the evaluation (`eval`) and the crash experiment
//! (`chaos`) against a toystore started with `./run.sh`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use client::ClientError;
use common::config::{parse_url, parse_urls, Urls};
use common::wire::Replication;
use lab::cluster::{Inspector, RunSh};
use lab::session::{run_sessions, Plan};
use reqwest::Url;

#[derive(Parser)]
#[command(
    name = "client",
    version,
    about = "toystore client: load, evaluation, chaos"
)]
struct Cli {
    /// Front-end base URL (of `run`; eval and chaos start a cluster of their own).
    /// The front-end, or several, comma-separated: requests that get no answer or a
    /// 5xx go to the next one (an order with the same idempotency key).
    #[arg(long, env = "TOYSTORE_URL", default_value = "http://127.0.0.1:8080", value_parser = parse_urls, global = true)]
    url: Urls,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run client sessions and report latencies, failures and order checks.
    Run {
        /// Concurrent sessions.
        #[arg(long, default_value_t = 5)]
        sessions: usize,
        /// Probability of ordering a toy that is in stock.
        #[arg(long, default_value_t = 0.5, value_parser = parse_p)]
        p: f64,
        /// Product queries per session.
        #[arg(long, default_value_t = 1000)]
        iterations: u64,
        /// Seed of the random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// p = 0..0.8 × cache on/off; writes CSV, plots and EVALUATION.md.
    Eval {
        #[arg(long, default_value_t = 5)]
        sessions: usize,
        /// Product queries per session for each p and cache setting.
        #[arg(long, default_value_t = 1000)]
        iterations: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where EVALUATION.md and eval/ (CSV, PNG plots) go.
        #[arg(long, default_value = "docs")]
        out: PathBuf,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Kill order replicas while sessions run, then check the guarantees; with
    /// --hosts, run each service as a host of its own (network namespaces, root: five
    /// hosts, or seven with --catalog-replicas 3) and kill, pause, partition any of
    /// them and fill a replica's disk.
    Chaos {
        /// Replicas to kill in all.
        #[arg(long, default_value_t = 10)]
        kills: u32,
        /// How many of the kills must hit the leader.
        #[arg(long, default_value_t = 3)]
        leader_kills: u32,
        /// Pause before each kill, in ms.
        #[arg(long, default_value_t = 1500)]
        interval_ms: u64,
        /// How long a killed replica stays down, in ms.
        #[arg(long, default_value_t = 1000)]
        down_ms: u64,
        #[arg(long, default_value_t = 5)]
        sessions: usize,
        #[arg(long, default_value_t = 0.5, value_parser = parse_p)]
        p: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write a markdown report here (e.g. docs/CHAOS.md).
        #[arg(long)]
        report: Option<PathBuf>,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        hosts: HostsArgs,
    },
    /// Benchmark against bare baselines with wrk; writes PERFORMANCE.md.
    Bench {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        duration: u64,
        /// Where PERFORMANCE.md goes.
        #[arg(long, default_value = "docs")]
        out: PathBuf,
        /// Orders a follower misses (in each mode) before its catch-up is timed; 0
        /// skips the measurement.
        #[arg(long, default_value_t = 100_000)]
        catch_up: u64,
        /// Instead: grow the store to --scale-orders orders and report what that costs
        /// (orders/s per step, disk, memory, restart, catch-up) in PERFORMANCE.md's
        /// scale section.
        #[arg(long)]
        scale: bool,
        /// Orders the scale run grows the store to.
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        scale_orders: u64,
        /// Orders per step of the scale run's report.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        scale_step: u64,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// A scripted session against a fresh cluster (lookups, orders, errors, kill -9
    /// of the leader, catch-up, restock), written with every command and reply to
    /// OUTPUT.md. It always starts with the lab's stock of 100 per toy.
    Demo {
        /// Where the document goes.
        #[arg(long, default_value = "docs/OUTPUT.md")]
        out: PathBuf,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Serve a bare baseline (used by bench): a constant product body, or with
    /// --upstream a proxy hop to it.
    #[command(hide = true)]
    Baseline {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long, value_parser = parse_url)]
        upstream: Option<Url>,
    },
}

/// The multi-host chaos run (`chaos --hosts`).
#[derive(clap::Args)]
struct HostsArgs {
    /// Run the services as hosts of their own (Linux network namespaces; needs root),
    /// set up by following the deployment guide, under the nemesis: the catalog, three
    /// order replicas and the front-ends (with two, a load balancer host too; two more
    /// catalog hosts with --catalog-replicas 3).
    #[arg(long)]
    hosts: bool,
    /// Front-ends (with --hosts): 1, or 2 behind a load balancer host (HAProxy, which
    /// must be installed).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=2))]
    frontends: u16,
    /// Faults the nemesis uses, comma-separated [default with --hosts:
    /// kill,pause,partition,disk; without it only kill is possible].
    #[arg(long, value_delimiter = ',')]
    nemesis: Option<Vec<chaos::nemesis::Kind>>,
    /// Number of faults (with --hosts).
    #[arg(long, default_value_t = 21)]
    faults: usize,
    /// End with the schedule the design admits can lose acknowledged orders, and
    /// count what it loses.
    #[arg(long)]
    lossy: bool,
    /// The deployment guide whose commands set the hosts up.
    #[arg(long, default_value = "docs/DEPLOY.md")]
    guide: PathBuf,
    /// The catalog's seed file, copied to each catalog host.
    #[arg(long, default_value = "data/toys.json")]
    seed_file: PathBuf,
    /// Directory of the service binaries [default: the client's own directory].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the hosts' toystore directories go (wiped first).
    #[arg(long, default_value = "data/hosts")]
    work_dir: PathBuf,
}

/// Extra commands of the benchmark.
/// The experiment's own cluster, started through run.sh on its own ports and data
/// directory (so a cluster you started yourself is left alone), stopped at the end.
#[derive(clap::Args)]
struct ClusterArgs {
    /// Path of run.sh.
    #[arg(long, default_value = "./run.sh")]
    run_sh: PathBuf,
    /// Ports: front-end BASE+80, catalog BASE+81, replicas BASE+91..93 (the default
    /// layout, 8080…, moved); `bench` also uses BASE+70 and BASE+71.
    #[arg(long, default_value_t = 18000, value_parser = clap::value_parser!(u16).range(1024..65400))]
    port_base: u16,
    /// Data directory of the experiment's cluster (wiped at start) [default: data/<command>].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Initial stock of every toy (large, so that toys do not just sell out).
    #[arg(long, default_value_t = 1_000_000)]
    initial_stock: u64,
    /// How the order replicas agree: primary-backup or raft.
    #[arg(long, env = "TOYSTORE_REPLICATION", value_enum, default_value_t = Replication::PrimaryBackup)]
    replication: Replication,
    /// Catalog replicas: 1 (the single catalog) or 3 (a Raft group; BASE+81..83).
    #[arg(long, env = "TOYSTORE_CATALOG_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=7))]
    catalog_replicas: u16,
}

impl ClusterArgs {
    fn run_sh(self, command: &str) -> Result<RunSh, ClientError> {
        RunSh::new(
            self.run_sh,
            (self.port_base, self.catalog_replicas),
            self.data_dir
                .unwrap_or_else(|| PathBuf::from("data").join(command)),
            self.initial_stock,
            self.replication,
        )
    }
}

/// Starts the experiment's cluster, runs `experiment`, and stops the cluster again.
async fn with_cluster<F, Fut, T>(run_sh: RunSh, experiment: F) -> Result<T, ClientError>
where
    F: FnOnce(RunSh, Inspector) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    run_sh.fresh_start().await?;
    let result = match run_sh.inspector() {
        Ok(inspector) => experiment(run_sh.clone(), inspector).await,
        Err(e) => Err(e),
    };
    if let Err(e) = run_sh.run(&["stop"], &[]).await {
        eprintln!(
            "client: stopping the experiment's cluster failed: {}",
            common::error::chain(&e)
        );
    }
    result
}

fn parse_p(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err("p must be between 0 and 1".into())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("client: {}", common::error::chain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<bool, ClientError> {
    let command_line = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    match cli.command {
        Command::Run {
            sessions,
            p,
            iterations,
            seed,
        } => {
            let plan = Plan {
                urls: cli.url.0,
                sessions,
                p,
                iterations: Some(iterations),
                seed,
            };
            let bar = indicatif::ProgressBar::new(sessions as u64 * iterations);
            let record = run_sessions(
                &plan,
                Arc::new(AtomicBool::new(false)),
                Some(bar.clone()),
                None,
            )
            .await?;
            bar.finish_and_clear();
            println!("{sessions} sessions, p = {p}, {iterations} queries each:");
            record.print();
            Ok(record.failures() == 0 && record.mismatches.is_empty())
        }
        Command::Eval {
            sessions,
            iterations,
            seed,
            out,
            cluster,
        } => {
            with_cluster(cluster.run_sh("eval")?, |run_sh, inspector| async move {
                let plan = client::eval::EvalPlan {
                    url: run_sh.frontend_url(),
                    sessions,
                    iterations,
                    seed,
                    run_sh,
                    out,
                    command: format!("cargo run --release -p client -- {command_line}"),
                };
                client::eval::run(plan, &inspector).await
            })
            .await?;
            Ok(true)
        }
        Command::Bench {
            scale: true,
            out,
            catch_up,
            scale_orders,
            scale_step,
            cluster,
            ..
        } => {
            with_cluster(cluster.run_sh("scale")?, |run_sh, _| async move {
                client::scale::run(client::scale::ScalePlan {
                    run_sh,
                    orders: scale_orders,
                    step: scale_step,
                    catch_up,
                    out,
                    command: format!("cargo run --release -p client -- {command_line}"),
                })
                .await
            })
            .await?;
            Ok(true)
        }
        Command::Bench {
            duration,
            out,
            catch_up,
            cluster,
            ..
        } => {
            let client_exe =
                std::env::current_exe().map_err(|e| ClientError::Other(e.to_string()))?;
            // The bare server and the proxy hop listen below the cluster's ports.
            let baseline_port = cluster.port_base + 70;
            with_cluster(cluster.run_sh("bench")?, |run_sh, _| async move {
                client::bench::run(client::bench::BenchPlan {
                    run_sh,
                    baseline_port,
                    duration,
                    client_exe,
                    catch_up,
                    out,
                    command: format!("cargo run --release -p client -- {command_line}"),
                })
                .await
            })
            .await?;
            Ok(true)
        }
        Command::Demo { out, cluster } => {
            let mut run_sh = cluster.run_sh("demo")?;
            run_sh.initial_stock = 100;
            with_cluster(run_sh, |run_sh, inspector| async move {
                client::demo::demo(run_sh, inspector, &out).await
            })
            .await?;
            Ok(true)
        }
        Command::Baseline { listen, upstream } => {
            client::baseline::serve(listen, upstream).await?;
            Ok(true)
        }
        Command::Chaos {
            kills,
            leader_kills,
            interval_ms,
            down_ms,
            sessions,
            p,
            seed,
            report,
            cluster,
            hosts,
        } => {
            let command = format!("cargo run --release -p client -- {command_line}");
            let load = Plan {
                urls: cli.url.0,
                sessions,
                p,
                iterations: None,
                seed,
            };
            if hosts.hosts {
                let interval = Duration::from_millis(interval_ms);
                let down = Duration::from_millis(down_ms);
                let env = vec![
                    (
                        "CATALOG_INITIAL_STOCK".to_string(),
                        cluster.initial_stock.to_string(),
                    ),
                    (
                        "TOYSTORE_REPLICATION".to_string(),
                        cluster.replication.to_string(),
                    ),
                ];
                let (mode, catalogs) = (cluster.replication, cluster.catalog_replicas);
                return run_hosts(
                    hosts, catalogs, env, mode, load, interval, down, seed, report, command,
                )
                .await;
            }
            let kill_only = hosts
                .nemesis
                .as_ref()
                .is_none_or(|kinds| kinds.iter().all(|k| *k == chaos::nemesis::Kind::Kill));
            if !kill_only {
                return Err(ClientError::Other(
                    "pauses, partitions and full disks need --hosts".into(),
                ));
            }
            if leader_kills > kills {
                return Err(ClientError::Other(
                    "--leader-kills cannot exceed --kills".into(),
                ));
            }
            with_cluster(cluster.run_sh("chaos")?, |run_sh, inspector| async move {
                let plan = chaos::crash::ChaosPlan {
                    load: Plan {
                        urls: vec![run_sh.frontend_url()],
                        ..load
                    },
                    kills,
                    leader_kills,
                    interval: Duration::from_millis(interval_ms),
                    down: Duration::from_millis(down_ms),
                    run_sh,
                    seed,
                    report,
                    command,
                };
                chaos::crash::run(plan, &inspector).await
            })
            .await
        }
    }
}

/// `chaos --hosts`: builds the hosts (five, or seven with `catalogs` = 3), runs the
/// nemesis, and removes them again.
#[allow(clippy::too_many_arguments)]
async fn run_hosts(
    hosts: HostsArgs,
    catalogs: u16,
    env: Vec<(String, String)>,
    mode: Replication,
    load: Plan,
    interval: Duration,
    down: Duration,
    seed: u64,
    report: Option<PathBuf>,
    command: String,
) -> Result<bool, ClientError> {
    let bin_dir = match hosts.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(PathBuf::from))
            .ok_or_else(|| ClientError::Other("cannot find the service binaries".into()))?,
    };
    for bin in ["catalog", "order", "frontend"] {
        if !bin_dir.join(bin).exists() {
            return Err(ClientError::Other(format!(
                "{} is missing: build the services first (cargo build --release)",
                bin_dir.join(bin).display()
            )));
        }
    }
    if hosts.frontends > 1 && !client::haproxy_installed() {
        return Err(ClientError::Other(
            "two front-ends run behind HAProxy, which is not installed (Debian: apt-get \
             install haproxy); or run one front-end with --frontends 1"
                .into(),
        ));
    }
    let work =
        std::path::absolute(&hosts.work_dir).map_err(|e| ClientError::Other(e.to_string()))?;
    if ![1, 3].contains(&catalogs) {
        return Err(ClientError::Other(format!(
            "the deployment guide has hosts for 1 or 3 catalog replicas, not {catalogs}"
        )));
    }
    let layout = chaos::netns::Layout {
        catalogs,
        frontends: hosts.frontends,
    };
    let lab =
        chaos::netns::Lab::create(&hosts.guide, layout, &hosts.seed_file, &bin_dir, &work, env)?;
    let plan = chaos::nemesis::HostsPlan {
        load,
        faults: chaos::nemesis::schedule(
            &hosts.nemesis.unwrap_or_else(|| {
                use chaos::nemesis::Kind;
                vec![Kind::Kill, Kind::Pause, Kind::Partition, Kind::Disk]
            }),
            hosts.faults,
            hosts.lossy,
            catalogs > 1,
            hosts.frontends > 1,
        ),
        interval,
        down,
        mode,
        replicate_timeout: Duration::from_secs(3),
        lease: Duration::from_secs(2),
        seed,
        report,
        command,
    };
    let outcome = chaos::nemesis::run(plan, &lab).await;
    lab.destroy();
    outcome
}
