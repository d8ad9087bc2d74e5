//! The load generator: `wrk` run on a URL, and its report parsed.

use std::path::Path;
use std::process::Stdio;

use super::err;
use crate::ClientError;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkResult {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
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

/// `wrk` on each of `urls` at once, `connections` each: their requests/s and error
/// replies summed, the p50 their mean weighted by requests, the p99 the worse one.
pub async fn wrk_spread(
    urls: &[String],
    connections: u32,
    seconds: u64,
    script: Option<&Path>,
) -> Result<WrkResult, ClientError> {
    let mut set = tokio::task::JoinSet::new();
    for url in urls {
        let (url, script) = (url.clone(), script.map(Path::to_path_buf));
        set.spawn(async move { wrk(&url, connections, seconds, script.as_deref()).await });
    }
    let mut runs = Vec::new();
    while let Some(run) = set.join_next().await {
        runs.push(run.map_err(err)??);
    }
    let rps: f64 = runs.iter().map(|r| r.rps).sum();
    Ok(WrkResult {
        rps,
        p50_ms: if rps > 0.0 {
            runs.iter().map(|r| r.p50_ms * r.rps).sum::<f64>() / rps
        } else {
            0.0
        },
        p99_ms: runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max),
        non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
    })
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
