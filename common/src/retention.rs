//! How long idempotency keys are kept, and the one clock they are measured by.
//!
//! A key is kept for a *window* (default 24 hours, `--key-retention`): a retry within
//! it gets the first order, a retry after it is a new order. The catalog forgets a key
//! one window after it first took stock for it; the order replicas keep it longer, by
//! [`replica_window`], and count from when the leader stored the order, which is
//! after the catalog's buy. So whenever a replica has forgotten a key, the catalog
//! has too, and an order the replicas take for new is bought anew — never written
//! without its stock (docs/DESIGN.md, "Key retention", has the whole argument). Every
//! buy also carries the replicas' own cutoff (`BuyRequest::valid_from`), which the
//! catalog honours when it is later than its own, so this holds even if the catalog
//! was started with a longer window.
//!
//! Times are wall-clock milliseconds since the Unix epoch, because they must mean the
//! same after a restart and on another machine.
//!
//! Expiry needs no pruning: a store ignores a key older than the cutoff. [`prune_loop`]
//! only gives the space back, in the background, a small transaction at a time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::tasks::Tasks;

/// The default window: what payment APIs that popularised `Idempotency-Key` keep.
pub const DEFAULT_WINDOW: &str = "24h";

/// Most that the replicas keep a key beyond the catalog's window.
const MAX_MARGIN: Duration = Duration::from_secs(60);

/// The window flag, the same on the catalog and the order replicas.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct RetentionArgs {
    /// How long an idempotency key is kept: a retry within it returns the first order,
    /// one after it places a new order. A number and a unit: ms, s, m, h or d
    /// (the replicas keep keys a little longer than the catalog, up to 1 min more).
    #[arg(long, env = "TOYSTORE_KEY_RETENTION", default_value = DEFAULT_WINDOW,
          value_parser = parse_window)]
    pub key_retention: Duration,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds of `window`, for arithmetic with [`now_ms`] times.
pub fn millis(window: Duration) -> u64 {
    u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}

/// How long the order replicas keep a key when the catalog keeps it for `window`:
/// the window plus a margin (as long again, at most a minute) that covers the time
/// between the catalog's buy and the leader's write, and clocks that differ a little.
pub fn replica_window(window: Duration) -> Duration {
    window.saturating_add(window.min(MAX_MARGIN))
}

/// The oldest time still within `window` at `now` (both in ms): a key first seen
/// before it has expired.
pub fn cutoff(now: u64, window: Duration) -> u64 {
    now.saturating_sub(millis(window))
}

/// Keys looked at in one pruning transaction: small, so that writers wait little.
pub const PRUNE_BATCH: usize = 512;

/// How often to prune when keys are kept for `window`: often enough that a store holds
/// little more than the window's keys.
pub fn prune_period(window: Duration) -> Duration {
    (window / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Every `every`, until `tasks` stop: asks `cutoff()` for the oldest time still
/// kept and calls `prune(cutoff, PRUNE_BATCH)` on the blocking pool until it answers
/// fewer than [`PRUNE_BATCH`] (it answers how many keys it passed), or shutdown begins.
pub async fn prune_loop<C, P, E>(every: Duration, cutoff: C, prune: P, tasks: Tasks)
where
    C: Fn() -> Result<u64, E> + Send + Sync + 'static,
    P: Fn(u64, usize) -> Result<usize, E> + Send + Sync + 'static,
    E: std::error::Error + Send + 'static,
{
    let work = Arc::new((cutoff, prune));
    loop {
        tokio::select! {
            _ = tasks.stopping() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let (work, stopping) = (work.clone(), tasks.clone());
        let pass = tokio::task::spawn_blocking(move || -> Result<usize, E> {
            let (cutoff, prune) = &*work;
            let cutoff = cutoff()?;
            let mut dropped = 0;
            loop {
                let passed = prune(cutoff, PRUNE_BATCH)?;
                dropped += passed;
                if passed < PRUNE_BATCH || stopping.is_stopping() {
                    return Ok(dropped);
                }
            }
        })
        .await;
        match pass {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                metrics::counter!("idempotency_keys_expired_total").increment(n as u64);
                tracing::debug!(keys = n, "dropped expired idempotency keys");
            }
            Ok(Err(e)) => {
                let error = crate::error::chain(&e);
                tracing::warn!(%error, "pruning idempotency keys failed")
            }
            Err(e) => tracing::warn!(error = %e, "the key pruner panicked"),
        }
    }
}

/// Parses a window such as `24h`, `90s` or `500ms` (positive).
pub fn parse_window(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit (ms, s, m, h, d)"))?;
    let unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h, d)")),
    };
    match amount.checked_mul(unit_ms) {
        Some(0) => Err(format!("{text:?}: the window must be positive")),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Err(format!("{text:?}: too long")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_with_their_unit() {
        assert_eq!(parse_window("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_window("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_window("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_window("2d"), Ok(Duration::from_secs(172_800)));
        for bad in [
            "",
            "24",
            "h",
            "0s",
            "-1s",
            "1.5h",
            "3 weeks",
            "99999999999999999999d",
        ] {
            assert!(parse_window(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_replicas_keep_keys_at_least_as_long_as_the_catalog() {
        let day = Duration::from_secs(86_400);
        assert_eq!(replica_window(day), day + Duration::from_secs(60));
        assert_eq!(
            replica_window(Duration::from_secs(2)),
            Duration::from_secs(4)
        );
        assert_eq!(cutoff(10_000, Duration::from_secs(2)), 8_000);
        assert_eq!(cutoff(1_000, Duration::from_secs(2)), 0);
    }
}
