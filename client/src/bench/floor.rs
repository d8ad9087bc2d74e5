//! The order path's floor, measured in the same run as the orders, so that each order
//! row can say how far above it the system is.
//!
//! An order waits for two durable stages in sequence (the catalog's buy, then the
//! replicas' write) and for loopback HTTP exchanges (client → front-end → leader →
//! catalog, and the leader's round trip to its followers). The floor is what those
//! cost when nothing else is done: [`sled_flush`], one sled insert and flush by a lone
//! writer on the file system the services use, and a bare two-hop proxy chain
//! (`wrk` → proxy → proxy → server: three exchanges, each proxy a pooled `reqwest`
//! client, as `client baseline` runs them) at one connection. The floor of an order is
//! the chain's p50 plus two flushes' p50. It leaves out the fourth exchange and every
//! piece of work (validation, the key table, JSON), so it is a bound no
//! implementation of this protocol could beat on this machine, not a target.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{err, WrkResult};
use crate::ClientError;

/// The two limits, each as `wrk` reports a measurement.
#[derive(Debug, Clone, Copy)]
pub(super) struct Floor {
    /// One sled insert + flush, one writer: p50 and p99 per write, writes/s.
    pub(super) flush: WrkResult,
    /// The two-hop proxy chain at one connection.
    pub(super) chain: WrkResult,
}

impl Floor {
    /// The floor of an order, in ms: the chain's p50 and two flushes' p50.
    pub(super) fn order_ms(&self) -> f64 {
        self.chain.p50_ms + 2.0 * self.flush.p50_ms
    }

    /// The floor as a measurement: its p50 and the requests/s one client would make.
    pub(super) fn order(&self) -> WrkResult {
        let ms = self.order_ms();
        WrkResult {
            rps: if ms > 0.0 { 1000.0 / ms } else { 0.0 },
            p50_ms: ms,
            p99_ms: self.chain.p99_ms + 2.0 * self.flush.p99_ms,
            non_2xx: 0,
        }
    }
}

/// Inserts a 100-byte value and flushes, one write after the other, for `seconds`
/// (at most 20,000 writes), in a new sled database in `dir` (removed afterwards).
pub(super) async fn sled_flush(dir: &Path, seconds: u64) -> Result<WrkResult, ClientError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&dir);
        let measured = flushes(&dir, Duration::from_secs(seconds));
        let _ = std::fs::remove_dir_all(&dir);
        measured
    })
    .await
    .map_err(err)?
}

fn flushes(dir: &Path, length: Duration) -> Result<WrkResult, ClientError> {
    let db = common::storage::open_db(dir, common::storage::DEFAULT_CACHE_MB).map_err(err)?;
    let mut samples = lab::stats::Samples::default();
    let started = Instant::now();
    let mut writes = 0u64;
    while started.elapsed() < length && writes < 20_000 {
        let write = Instant::now();
        db.insert(writes.to_be_bytes(), &[7u8; 100][..])
            .map_err(err)?;
        db.flush().map_err(err)?;
        samples.record(write.elapsed());
        writes += 1;
    }
    let summary = samples.summary();
    Ok(WrkResult {
        rps: writes as f64 / started.elapsed().as_secs_f64().max(1e-9),
        p50_ms: summary.p50_ms,
        p99_ms: summary.p99_ms,
        non_2xx: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_of_an_order_is_the_chain_and_two_flushes() {
        let at = |p50_ms, p99_ms| WrkResult {
            rps: 0.0,
            p50_ms,
            p99_ms,
            non_2xx: 0,
        };
        let floor = Floor {
            flush: at(0.1, 0.4),
            chain: at(0.25, 1.0),
        };
        let order = floor.order();
        assert!((order.p50_ms - 0.45).abs() < 1e-9);
        assert!((order.p99_ms - 1.8).abs() < 1e-9);
        assert!((order.rps - 1000.0 / 0.45).abs() < 1e-6);
    }

    #[tokio::test]
    async fn flushes_are_measured_and_their_database_removed() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("floor");
        let measured = sled_flush(&dir, 1).await.expect("measured");
        assert!(measured.rps > 0.0 && measured.p50_ms > 0.0, "{measured:?}");
        assert!(measured.p99_ms >= measured.p50_ms, "{measured:?}");
        assert!(!dir.exists());
    }
}
