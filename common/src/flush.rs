//! Group commit for sled: many writers, one `flush()`.
//!
//! sled is durable only once `Db::flush` returns. Calling it once per request costs one
//! fsync each; under load, writers that arrive while a flush is running all wait for the
//! next one, so a burst of N writes costs about two fsyncs instead of N.
//! `flush_async` is deliberately not used: sled 0.34.7 deadlocks with many concurrent
//! callers. [`GroupFlush`] (async writers) and [`Flusher`] (any waiter, e.g. the Raft
//! log's completion callbacks) flush on a thread of their own, which waits for writers
//! on a channel: a task and a hop to tokio's blocking pool per flush cost about 50 µs
//! more on this machine (0.26 against 0.21 ms for an insert and its flush, p50).
//! [`flush_blocking`] is the one-off flush, on the blocking pool.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

/// Why a flush failed. Cheap to clone: one flush answers many waiters, so its cause
/// is shared (sled's error is not `Clone`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlushError {
    #[error("flushing sled failed")]
    Sled(#[source] Arc<sled::Error>),
    /// The flush's blocking task died (it panicked, or the runtime is shutting down).
    #[error("the flush did not finish")]
    Task(#[source] Arc<tokio::task::JoinError>),
    #[error("the flusher has stopped")]
    Stopped,
    #[error("the flusher's thread could not be started")]
    Thread(#[source] Arc<std::io::Error>),
}

type Waiter = oneshot::Sender<Result<(), FlushError>>;

/// Handle to the group flusher of one database, for async writers. Cheap to clone; its
/// thread ends when every handle is gone.
#[derive(Clone)]
pub struct GroupFlush {
    flusher: Flusher<Waiter>,
}

impl GroupFlush {
    /// Starts the flusher thread for `db`.
    pub fn start(db: sled::Db) -> Result<Self, FlushError> {
        let flusher = Flusher::start(
            db,
            "group-flush",
            |waiters: &mut Vec<Waiter>, result, took| {
                metrics::histogram!("group_flush_batch_size").record(waiters.len() as f64);
                metrics::histogram!("group_flush_seconds").record(took.as_secs_f64());
                for waiter in waiters.drain(..) {
                    let _ = waiter.send(result.clone());
                }
            },
        )?;
        Ok(GroupFlush { flusher })
    }

    /// Returns once everything written before this call is on disk.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let (done, wait) = oneshot::channel();
        self.flusher.queue(done)?;
        wait.await.map_err(|_| FlushError::Stopped)?
    }
}

/// A thread that flushes one database for whoever queued a waiter (`W`): it takes
/// every waiter queued while its previous flush ran, flushes once, and hands them
/// all to `answer` with the result and the flush's duration. Cheap to clone. The
/// thread ends when every handle is gone, or at [`Flusher::stop`] once it has
/// answered the waiters it took.
pub struct Flusher<W> {
    tx: std::sync::mpsc::Sender<Job<W>>,
}

impl<W> Clone for Flusher<W> {
    fn clone(&self) -> Self {
        Flusher {
            tx: self.tx.clone(),
        }
    }
}

enum Job<W> {
    Wait(W),
    Stop,
}

impl<W: Send + 'static> Flusher<W> {
    /// Starts the thread, named `name`, for `db`.
    pub fn start(
        db: sled::Db,
        name: &str,
        answer: impl FnMut(&mut Vec<W>, Result<(), FlushError>, Duration) + Send + 'static,
    ) -> Result<Self, FlushError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || flush_loop(&db, &rx, answer))
            .map_err(|e| FlushError::Thread(Arc::new(e)))?;
        Ok(Flusher { tx })
    }

    /// Queues `waiter` for the next flush (it is dropped if the thread has ended).
    pub fn queue(&self, waiter: W) -> Result<(), FlushError> {
        self.tx
            .send(Job::Wait(waiter))
            .map_err(|_| FlushError::Stopped)
    }

    /// Asks the thread to end once it has answered what it took.
    pub fn stop(&self) {
        let _ = self.tx.send(Job::Stop);
    }
}

/// Waits for a waiter, takes every other that is waiting too, flushes once for all.
fn flush_loop<W>(
    db: &sled::Db,
    rx: &std::sync::mpsc::Receiver<Job<W>>,
    mut answer: impl FnMut(&mut Vec<W>, Result<(), FlushError>, Duration),
) {
    let mut waiters = Vec::new();
    let mut stopping = false;
    while !stopping {
        match rx.recv() {
            Ok(Job::Wait(first)) => waiters.push(first),
            Ok(Job::Stop) | Err(_) => return,
        }
        for job in rx.try_iter() {
            match job {
                Job::Wait(waiter) => waiters.push(waiter),
                Job::Stop => stopping = true,
            }
        }
        let started = std::time::Instant::now();
        let result = db
            .flush()
            .map(drop)
            .map_err(|e| FlushError::Sled(Arc::new(e)));
        answer(&mut waiters, result, started.elapsed());
        waiters.clear();
    }
}

/// Flushes `db` on the blocking pool (never on an async worker thread).
pub async fn flush_blocking(db: &sled::Db) -> Result<(), FlushError> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.flush()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(FlushError::Sled(Arc::new(e))),
        Err(e) => Err(FlushError::Task(Arc::new(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stop ends the thread only after the waiters it took are answered; then
    /// queueing fails instead of waiting forever.
    #[test]
    fn a_stopped_flusher_answers_what_it_took_then_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("open sled");
        let (answered, flushed) = std::sync::mpsc::channel();
        let flusher = Flusher::start(
            db,
            "test-flush",
            move |waiters: &mut Vec<u32>, result, _| {
                for w in waiters.drain(..) {
                    let _ = answered.send((w, result.is_ok()));
                }
            },
        )
        .expect("flusher thread");
        flusher.queue(7).expect("queued");
        flusher.stop();
        let got = flushed
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the taken waiter is answered");
        assert_eq!(got, (7, true));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while flusher.queue(8).is_ok() {
            assert!(std::time::Instant::now() < deadline, "the thread ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// The risk this module exists for: many concurrent flushers must all be answered
    /// (sled's own `flush_async` deadlocks here). Runs on several worker threads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_concurrent_flushes_all_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("open sled");
        let flusher = GroupFlush::start(db.clone()).expect("flusher thread");
        let mut tasks = Vec::new();
        for i in 0u32..64 {
            let db = db.clone();
            let flusher = flusher.clone();
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), b"x").expect("insert");
                flusher.flush().await
            }));
        }
        let all = async {
            for t in tasks {
                t.await.expect("join").expect("flush");
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), all)
            .await
            .expect("every flush answered (no deadlock)");
        assert_eq!(db.len(), 64);
    }
}
