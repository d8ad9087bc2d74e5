//! Group work: callers queue one item each and wait for its answer; one task drains
//! the queue and hands whole batches to the work function, a bounded number at a
//! time. This is how every durable stage of the order path shares one flush, one
//! catalog request or one log entry among many orders (the buyer, the primary-backup
//! writer, the Raft proposer).
//!
//! A batch is taken only when a slot is free, so work that arrives while the slots
//! are busy joins the next batch rather than waiting in a small one. A batch taken is
//! always worked and answered; shutdown comes between batches.
//!
//! Each batch records how long its items waited to be taken, on average
//! (`batch_wait_seconds{batcher}`): one stage of an order's time in the breakdown
//! `client bench` prints. The work function records what the batch itself cost.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::tasks::Tasks;

/// How big a batch may be and how many may be worked at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most items in one batch.
    pub max_batch: usize,
    /// Most batches being worked at once (1: strictly one after another).
    pub in_flight: usize,
}

/// Why an item got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The batcher has stopped (shutdown).
    #[error("the {0} has stopped")]
    Stopped(&'static str),
    /// The work function answered fewer items than its batch held (a bug).
    #[error("the {0} left an item unanswered")]
    Unanswered(&'static str),
}

struct Pending<I, A> {
    item: I,
    queued: Instant,
    reply: oneshot::Sender<Result<A, BatchError>>,
}

/// Handle to a batcher. Cheap to clone.
pub struct Batcher<I, A> {
    name: &'static str,
    tx: mpsc::Sender<Pending<I, A>>,
}

// By hand: a derive would ask `I: Clone` and `A: Clone`.
impl<I, A> Clone for Batcher<I, A> {
    fn clone(&self) -> Self {
        Batcher {
            name: self.name,
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, A: Send + 'static> Batcher<I, A> {
    /// Starts the batcher named `name` on `tasks`. `work` gets each batch in queue
    /// order and answers one item each, in the same order.
    pub fn start<F, Fut>(name: &'static str, limits: Limits, tasks: &Tasks, work: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<A>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(4 * limits.max_batch.max(1));
        tasks.spawn(name, batch_loop(name, rx, limits, work, tasks.clone()));
        Batcher { name, tx }
    }

    /// Queues `item` and waits for its answer.
    pub async fn submit(&self, item: I) -> Result<A, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending {
                item,
                queued: Instant::now(),
                reply,
            })
            .await
            .map_err(|_| BatchError::Stopped(self.name))?;
        answer.await.map_err(|_| BatchError::Stopped(self.name))?
    }
}

async fn batch_loop<I, A, F, Fut>(
    name: &'static str,
    mut rx: mpsc::Receiver<Pending<I, A>>,
    limits: Limits,
    work: F,
    tasks: Tasks,
) where
    I: Send + 'static,
    A: Send + 'static,
    F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<A>> + Send + 'static,
{
    let max_batch = limits.max_batch.max(1);
    let slots = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    let mut taken = Vec::with_capacity(max_batch);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
            _ = tasks.stopping() => return,
        };
        tokio::select! {
            biased;
            n = rx.recv_many(&mut taken, max_batch) => if n == 0 { return },
            _ = tasks.stopping() => return,
        }
        record_wait(name, &taken);
        let (items, replies): (Vec<I>, Vec<_>) = taken.drain(..).map(|p| (p.item, p.reply)).unzip();
        let batch = work(items);
        tasks.spawn(name, async move {
            let _slot = slot;
            let mut answers = batch.await.into_iter();
            for reply in replies {
                let answer = answers.next().ok_or(BatchError::Unanswered(name));
                let _ = reply.send(answer);
            }
        });
    }
}

/// Records how long the items of a batch just taken waited, on average.
fn record_wait<I, A>(name: &'static str, taken: &[Pending<I, A>]) {
    let Some(count) = u32::try_from(taken.len()).ok().filter(|n| *n > 0) else {
        return;
    };
    let now = Instant::now();
    let waited: std::time::Duration = taken.iter().map(|p| now - p.queued).sum();
    metrics::histogram!("batch_wait_seconds", "batcher" => name)
        .record((waited / count).as_secs_f64());
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A batcher named `name` with room for 10 items a batch, `in_flight` at once.
    fn start<F, Fut>(
        name: &'static str,
        in_flight: usize,
        tasks: &Tasks,
        work: F,
    ) -> Batcher<u32, u32>
    where
        F: Fn(Vec<u32>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<u32>> + Send + 'static,
    {
        let limits = Limits {
            max_batch: 10,
            in_flight,
        };
        Batcher::start(name, limits, tasks, work)
    }

    #[tokio::test]
    async fn items_queued_while_a_batch_is_worked_share_the_next_batch() {
        let tasks = Tasks::new();
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let batcher = start("doubler", 1, &tasks, {
            let sizes = sizes.clone();
            move |items: Vec<u32>| {
                sizes.lock().expect("sizes").push(items.len());
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    items.into_iter().map(|i| i * 2).collect()
                }
            }
        });
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.submit(1).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let rest: Vec<_> = (2..=5)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.submit(i).await })
            })
            .collect();
        assert_eq!(first.await.expect("join"), Ok(2));
        for (i, r) in (2..=5).zip(rest) {
            assert_eq!(r.await.expect("join"), Ok(i * 2));
        }
        assert_eq!(*sizes.lock().expect("sizes"), vec![1, 4]);
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn an_item_the_work_did_not_answer_is_told_so() {
        let tasks = Tasks::new();
        let batcher = start("lossy", 2, &tasks, |_| async { Vec::new() });
        assert_eq!(
            batcher.submit(1).await,
            Err(BatchError::Unanswered("lossy"))
        );
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn after_shutdown_submits_are_refused() {
        let tasks = Tasks::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let batcher = start("idle", 1, &tasks, {
            let calls = calls.clone();
            move |items: Vec<u32>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { items }
            }
        });
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert_eq!(batcher.submit(1).await, Err(BatchError::Stopped("idle")));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
