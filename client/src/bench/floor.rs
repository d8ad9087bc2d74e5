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
//!
//! Beside it, [`sled_transaction_flush`]: the same write as a transaction over two
//! trees, which is how every durable stage of the order path writes (a buy, a batch
//! of orders and its key index, change together or not at all). The sled release
//! wrote a transaction's batch marker in an I/O buffer of its own and synced it apart
//! from the data, so such a flush cost two syncs in sequence where an insert's cost
//! one; the copy in `vendor/sled` writes both in one buffer (vendor/README.md), and
//! this row shows what a transaction still costs beyond an insert.

use std::path::Path;
use std::time::{Duration, Instant};

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::{err, WrkResult};
use crate::ClientError;

/// The two limits, each as `wrk` reports a measurement.
#[derive(Debug, Clone, Copy)]
pub(super) struct Floor {
    /// One sled insert + flush, one writer: p50 and p99 per write, writes/s.
    pub(super) flush: WrkResult,
    /// The two-hop proxy chain at one connection.
    pub(super) chain: WrkResult,
    /// The same write as a transaction over two trees, then a flush (not part of the
    /// floor: how far above it the order path's kind of write is).
    pub(super) transaction: WrkResult,
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
    measure(dir, seconds, Write::Insert).await
}

/// [`sled_flush`], each write a transaction that inserts the value into one tree and
/// 8 bytes into another.
pub(super) async fn sled_transaction_flush(
    dir: &Path,
    seconds: u64,
) -> Result<WrkResult, ClientError> {
    measure(dir, seconds, Write::Transaction).await
}

#[derive(Debug, Clone, Copy)]
enum Write {
    Insert,
    Transaction,
}

async fn measure(dir: &Path, seconds: u64, write: Write) -> Result<WrkResult, ClientError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&dir);
        let measured = flushes(&dir, Duration::from_secs(seconds), write);
        let _ = std::fs::remove_dir_all(&dir);
        measured
    })
    .await
    .map_err(err)?
}

fn flushes(dir: &Path, length: Duration, kind: Write) -> Result<WrkResult, ClientError> {
    let db = common::storage::open_db(dir, common::storage::DEFAULT_CACHE_MB).map_err(err)?;
    let index = db.open_tree("index").map_err(err)?;
    let mut samples = lab::stats::Samples::default();
    let started = Instant::now();
    let mut writes = 0u64;
    while started.elapsed() < length && writes < 20_000 {
        let write = Instant::now();
        let key = writes.to_be_bytes();
        match kind {
            Write::Insert => {
                db.insert(key, &[7u8; 100][..]).map_err(err)?;
            }
            Write::Transaction => {
                let main: &sled::Tree = &db;
                (main, &index)
                    .transaction(|(main, index)| {
                        main.insert(&key, &[7u8; 100][..])?;
                        index.insert(&key, &[1u8; 8][..])?;
                        Ok::<_, ConflictableTransactionError<()>>(())
                    })
                    .map_err(|e| err(format!("{e:?}")))?;
            }
        }
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
            transaction: at(0.2, 0.8),
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
        for measured in [
            sled_flush(&dir, 1).await.expect("measured"),
            sled_transaction_flush(&dir, 1).await.expect("measured"),
        ] {
            assert!(measured.rps > 0.0 && measured.p50_ms > 0.0, "{measured:?}");
            assert!(measured.p99_ms >= measured.p50_ms, "{measured:?}");
            assert!(!dir.exists());
        }
    }
}
