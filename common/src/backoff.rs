//! The one retry policy: wait 20 ms, then twice as long each time, at most 500 ms
//! between tries, and never past a deadline. Every loop that tries a peer again (the
//! buyer's catalog batches, the leader's replication sends, the catalog's
//! invalidation pushes, the front-end's failover) waits through a [`Backoff`].

use std::time::Duration;

use tokio::time::Instant;

/// The first pause.
pub const FIRST: Duration = Duration::from_millis(20);
/// The longest pause.
pub const MAX: Duration = Duration::from_millis(500);

/// Pauses between tries: [`FIRST`], doubling up to [`MAX`], within a deadline.
#[derive(Debug, Clone)]
pub struct Backoff {
    pause: Duration,
    deadline: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            pause: FIRST,
            deadline: None,
        }
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, but no pause ends after `deadline`.
    pub fn until(deadline: Instant) -> Self {
        Backoff {
            pause: FIRST,
            deadline: Some(deadline),
        }
    }

    /// Waits the next pause and answers true; or answers false at once when that
    /// pause would end after the deadline (the caller gives up).
    pub async fn wait(&mut self) -> bool {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() + self.pause > deadline)
        {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(MAX);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_double_up_to_the_cap_and_stop_at_the_deadline() {
        let started = Instant::now();
        let mut backoff = Backoff::until(started + Duration::from_millis(1_000));
        let mut waited = Vec::new();
        while backoff.wait().await {
            waited.push(started.elapsed().as_millis());
        }
        // 20, 40, 80, 160, 320 ms: the next (500 ms) would end after 1 s.
        assert_eq!(waited, [20, 60, 140, 300, 620]);
    }
}
