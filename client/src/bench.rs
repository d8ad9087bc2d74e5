//! The benchmark: toystore against bare baselines on this machine, in one run, with
//! one load generator (`wrk`) for both sides of every ratio.
//!
//! 1. Cached `GET /products/Tux` on the front-end vs a bare axum server answering the
//!    same body, at 8 and 64 connections.
//! 2. The same lookup with the cache off vs a bare axum proxy hop to that server.
//! 3. `POST /orders` through the whole system (three replicas, every order durable on
//!    all of them before its reply): latency with 1 client, throughput with 32.
//!
//! Writes the table to `PERFORMANCE.md` in the output directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::Url;

use crate::cluster::RunSh;
use crate::ClientError;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkResult {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
}

/// Settings of a benchmark run.
pub struct BenchPlan {
    pub run_sh: RunSh,
    /// Seconds per measurement.
    pub duration: u64,
    /// The `client` executable, to start the baselines with.
    pub client_exe: PathBuf,
    pub out: PathBuf,
    pub command: String,
}

fn err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Other(e.to_string())
}

/// Runs `wrk` and parses its report.
pub async fn wrk(
    url: &str,
    connections: u32,
    seconds: u64,
    script: Option<&Path>,
) -> Result<WrkResult, ClientError> {
    let threads = connections.clamp(1, 2).to_string();
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.args(["--latency", "-t", &threads, "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--timeout", "10s"]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            ClientError::Other(format!(
                "cannot run wrk ({e}); install it, e.g. apt-get install -y wrk"
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(err(format!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    parse_wrk(&text).ok_or_else(|| err(format!("unexpected wrk output:\n{text}")))
}

/// Parses `Requests/sec`, the 50% and 99% latency lines and `Non-2xx` from wrk.
pub fn parse_wrk(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    let mut seen_rps = false;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => {
                r.rps = v.parse().ok()?;
                seen_rps = true;
            }
            (Some("50%"), Some(v)) => r.p50_ms = duration_ms(v)?,
            (Some("99%"), Some(v)) => r.p99_ms = duration_ms(v)?,
            (Some("Non-2xx"), _) => {
                r.non_2xx = line.rsplit(' ').next()?.parse().ok()?;
            }
            _ => {}
        }
    }
    seen_rps.then_some(r)
}

/// `"123.45us"`, `"1.20ms"`, `"2.00s"` → milliseconds.
fn duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// A baseline server process; killed when dropped.
struct Baseline(tokio::process::Child);

impl Baseline {
    async fn start(exe: &Path, port: u16, upstream: Option<&str>) -> Result<Self, ClientError> {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(["baseline", "--listen", &format!("127.0.0.1:{port}")]);
        if let Some(u) = upstream {
            cmd.args(["--upstream", u]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(err)?;
        let url = format!("http://127.0.0.1:{port}/products/Tux");
        for _ in 0..100 {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(Baseline(child));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(err(format!("baseline on port {port} did not start")))
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// One row of the report.
struct Row {
    what: String,
    ours: WrkResult,
    base: Option<WrkResult>,
    target: String,
    met: Option<bool>,
}

pub async fn run(plan: BenchPlan) -> Result<(), ClientError> {
    let started = std::time::Instant::now();
    let rs = &plan.run_sh;
    let front = rs.frontend_url();
    let lookup = front_url(&front, "products/Tux");
    let base_port = rs.port_base + 70;
    let proxy_port = rs.port_base + 71;
    let bare = Baseline::start(&plan.client_exe, base_port, None).await?;
    let bare_url = format!("http://127.0.0.1:{base_port}/products/Tux");
    let hop = Baseline::start(&plan.client_exe, proxy_port, Some(&bare_url)).await?;
    let hop_url = format!("http://127.0.0.1:{proxy_port}/products/Tux");
    let d = plan.duration;
    let mut rows = Vec::new();

    println!("cached lookups vs the bare server");
    rs.run(&["restart", "frontend"], &[("FRONTEND_CACHE", "true")])
        .await?;
    for c in [8, 64] {
        wrk(&lookup, c, 1, None).await?; // warm-up: fill the cache, open connections
        let ours = wrk(&lookup, c, d, None).await?;
        let base = wrk(&bare_url, c, d, None).await?;
        rows.push(ratio_row(
            format!("GET /products/Tux, cache on, {c} conns vs bare server"),
            ours,
            base,
        ));
    }

    println!("uncached lookups vs the bare proxy hop");
    rs.run(&["restart", "frontend"], &[("FRONTEND_CACHE", "false")])
        .await?;
    for c in [8, 64] {
        wrk(&lookup, c, 1, None).await?;
        let ours = wrk(&lookup, c, d, None).await?;
        let base = wrk(&hop_url, c, d, None).await?;
        rows.push(ratio_row(
            format!("GET /products/Tux, cache off, {c} conns vs bare proxy hop"),
            ours,
            base,
        ));
    }
    drop((bare, hop));
    rs.run(&["restart", "frontend"], &[("FRONTEND_CACHE", "true")])
        .await?;

    println!("orders through the whole system");
    let script = std::env::temp_dir().join(format!("toystore-order-{}.lua", std::process::id()));
    std::fs::write(&script, ORDER_SCRIPT).map_err(err)?;
    let orders = front_url(&front, "orders");
    wrk(&orders, 1, 1, Some(&script)).await?;
    let one = wrk(&orders, 1, d, Some(&script)).await?;
    rows.push(Row {
        what: "POST /orders, 1 client: p50".into(),
        ours: one,
        base: None,
        target: "p50 ≤ 1.5 ms".into(),
        met: Some(one.p50_ms <= 1.5 && one.non_2xx == 0),
    });
    let many = wrk(&orders, 32, d, Some(&script)).await?;
    rows.push(Row {
        what: "POST /orders, 32 clients: orders/s".into(),
        ours: many,
        base: None,
        target: "≥ 5,000 orders/s".into(),
        met: Some(many.rps >= 5000.0 && many.non_2xx == 0),
    });
    let _ = std::fs::remove_file(&script);

    let inspector = rs.inspector()?;
    let replicas = inspector
        .converged(Duration::from_secs(30))
        .await
        .map_err(|_| err("replicas did not converge"))?;
    let durable = format!(
        "After the run all three replicas hold the same {} orders (digest {}).",
        replicas[0].orders, replicas[0].digest
    );

    let md = report(&plan, &rows, &durable, started.elapsed().as_secs_f64());
    print!("{md}");
    let path = plan.out.join("PERFORMANCE.md");
    std::fs::write(&path, md).map_err(|e| err(format!("{}: {e}", path.display())))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn front_url(front: &Url, path: &str) -> String {
    format!("{}{path}", front.as_str())
}

fn ratio_row(what: String, ours: WrkResult, base: WrkResult) -> Row {
    let ratio = if base.rps > 0.0 {
        ours.rps / base.rps
    } else {
        0.0
    };
    Row {
        what,
        ours,
        base: Some(base),
        target: "≥ 0.7 × baseline".into(),
        met: Some(ratio >= 0.7 && ours.non_2xx == 0),
    }
}

/// wrk script: orders of one unit of a random toy (spread, like real traffic).
const ORDER_SCRIPT: &str = r#"
local toys = {"Tux", "Fox", "Python", "Whale", "Elephant", "Dolphin", "Barbie", "LEGO",
  "Uno", "Clue", "Chess", "Bubbles", "Frisbee", "Twister", "Slinky", "Rubik's Cube",
  "Etch A Sketch", "Lincoln Logs", "Jack-in-the-box", "Jump Rope", "Play-Doh",
  "Teddy Bear", "Mr. Potato Head", "Hot Wheels"}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = '{"name": "' .. toys[math.random(#toys)] .. '", "quantity": 1}'
  return wrk.format(nil, nil, nil, body)
end
"#;

fn report(plan: &BenchPlan, rows: &[Row], durable: &str, seconds: f64) -> String {
    let mut md = String::from("# Performance\n\n");
    let _ = writeln!(
        md,
        "Measured by `{}` on this project's 2-core machine ({seconds:.0} s, {} s per \
         measurement, `wrk` as the load generator for both sides of each ratio, sharing \
         the two cores with the services). Release build, three order replicas, every order \
         flushed on the catalog and on all three replicas before its reply. Lookups are of \
         `Tux`; orders are of one unit of a random toy.\n",
        plan.command, plan.duration
    );
    let _ = writeln!(md, "| measurement | toystore req/s | p50 ms | p99 ms | baseline req/s | baseline p50 ms | baseline p99 ms | ratio | target | met |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let (b_rps, b50, b99, ratio) = match r.base {
            Some(b) => (
                format!("{:.0}", b.rps),
                format!("{:.3}", b.p50_ms),
                format!("{:.3}", b.p99_ms),
                format!("{:.2}", if b.rps > 0.0 { r.ours.rps / b.rps } else { 0.0 }),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.3} | {:.3} | {b_rps} | {b50} | {b99} | {ratio} | {} | {} |",
            r.what,
            r.ours.rps,
            r.ours.p50_ms,
            r.ours.p99_ms,
            r.target,
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            }
        );
    }
    let errors: u64 = rows.iter().map(|r| r.ours.non_2xx).sum();
    let _ = writeln!(
        md,
        "\nNon-2xx replies during the run: {errors}. {durable}\n"
    );
    let _ = writeln!(
        md,
        "Baselines: `client baseline` — a bare axum server answering the same body as a \
         cached lookup, and a bare axum proxy hop forwarding to it over one pooled reqwest \
         client (`client/src/baseline.rs`). Re-run with `{}`.",
        plan.command
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_parsed() {
        let text = "Running 5s test @ http://127.0.0.1:8080/products/Tux
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    85.12us  100.00us   5.00ms   95.00%
  Latency Distribution
     50%   62.00us
     75%   80.00us
     90%  110.00us
     99%    1.20ms
  500000 requests in 5.00s, 80.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec: 100000.50
Transfer/sec:     16.00MB";
        let r = parse_wrk(text).expect("parsed");
        assert_eq!(r.rps, 100000.5);
        assert!((r.p50_ms - 0.062).abs() < 1e-9);
        assert!((r.p99_ms - 1.2).abs() < 1e-9);
        assert_eq!(r.non_2xx, 3);
        assert!(parse_wrk("garbage").is_none());
    }
}
