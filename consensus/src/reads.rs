//! Linearizable reads that share leadership confirmations (see [`Reads`]), for
//! [`crate::RaftNode::linearize`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// Concurrent linearizable reads share one leadership confirmation: a read may be
/// served once a confirmation that *began after it arrived* has succeeded (that
/// confirmation's read index covers everything committed before the read arrived,
/// and the member has applied it). Confirmations run one at a time, so under load one
/// round of heartbeats serves every read that queued behind the previous one.
#[derive(Default)]
pub(crate) struct Reads {
    /// Counts read arrivals and confirmation starts, in one order.
    clock: AtomicU64,
    /// When the newest successful confirmation began (0: none yet).
    confirmed: AtomicU64,
    /// One confirmation at a time.
    confirming: tokio::sync::Mutex<()>,
}

impl Reads {
    /// Serves a read that arrives now: runs `confirm` unless a confirmation that
    /// began after this read arrived has already succeeded.
    pub(crate) async fn serve<E, Fut>(&self, confirm: impl FnOnce() -> Fut) -> Result<(), E>
    where
        Fut: Future<Output = Result<(), E>>,
    {
        let arrived = self.clock.fetch_add(1, Ordering::SeqCst) + 1;
        let _one = self.confirming.lock().await;
        if self.confirmed.load(Ordering::SeqCst) > arrived {
            return Ok(());
        }
        let began = self.clock.fetch_add(1, Ordering::SeqCst) + 1;
        confirm().await?;
        self.confirmed.fetch_max(began, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::Reads;

    /// A confirmation that counts itself and takes a while.
    async fn confirm(count: &AtomicU32) -> Result<(), ()> {
        count.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }

    #[tokio::test]
    async fn reads_that_queue_behind_a_confirmation_share_the_next_one() {
        let (reads, count) = (Arc::new(Reads::default()), Arc::new(AtomicU32::new(0)));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (reads, count) = (reads.clone(), count.clone());
                tokio::spawn(async move { reads.serve(|| confirm(&count)).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("read task"), Ok(()));
        }
        // The first confirmation serves its read; the rest queued behind it and share
        // the second (a few may be scheduled late and need a third).
        let rounds = count.load(Ordering::SeqCst);
        assert!(
            (2..=5).contains(&rounds),
            "{rounds} confirmations for 50 reads"
        );
    }

    #[tokio::test]
    async fn a_read_after_a_confirmation_is_never_served_by_it() {
        let (reads, count) = (Reads::default(), AtomicU32::new(0));
        reads.serve(|| confirm(&count)).await.expect("first read");
        reads.serve(|| confirm(&count)).await.expect("second read");
        assert_eq!(
            count.load(Ordering::SeqCst),
            2,
            "each read needs its own round"
        );
    }

    #[tokio::test]
    async fn a_failed_confirmation_serves_nobody() {
        let reads = Reads::default();
        assert_eq!(
            reads.serve(|| async { Err::<(), _>("no majority") }).await,
            Err("no majority")
        );
        let count = AtomicU32::new(0);
        reads.serve(|| confirm(&count)).await.expect("read");
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
