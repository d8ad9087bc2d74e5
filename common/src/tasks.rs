//! One lifecycle for every background task of a service (tokio-util's
//! `CancellationToken` and `TaskTracker`, as garage's background runner and
//! mini-redis's `Shutdown` do).
//!
//! A service makes one [`Tasks`] at start, spawns every background task through it,
//! and at shutdown calls [`Tasks::shutdown`]: the token is cancelled, every task sees
//! it and ends (a queue's task first answers the work it has taken), and shutdown
//! waits for all of them, with a deadline, naming any that did not end.
//!
//! Two kinds of task:
//! - [`Tasks::spawn`]: the task watches [`Tasks::stopping`] itself, because it has
//!   something to finish (a batch being written is written and answered).
//! - [`Tasks::spawn_cancellable`]: the task has nothing to finish (a periodic loop, a
//!   probe); it is dropped at its next `.await` once shutdown begins.
//!
//! A service whose own storage (or Raft core) has failed stops for good through the
//! same handle: [`Tasks::fail`] records why and resolves [`Tasks::failed`], which the
//! service's `run` serves until (beside the shutdown signal); `run` then stops as on
//! SIGTERM and returns the reason as its error, so the process exits non-zero with a
//! line saying why, and a supervisor (or `run.sh start`) brings it back to catch up.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Handle to a service's background tasks. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tasks {
    token: CancellationToken,
    tracker: TaskTracker,
    /// Names of the tasks still running, for the shutdown log. A std mutex: held only
    /// to add or remove a name.
    running: Arc<Mutex<Vec<&'static str>>>,
    /// Why the service stopped for good, once it has ([`Tasks::fail`]).
    failure: Arc<OnceLock<String>>,
    failed: CancellationToken,
}

/// Removes a task's name from the running list when the task ends (or is dropped).
struct Running {
    name: &'static str,
    running: Arc<Mutex<Vec<&'static str>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = running.iter().position(|n| *n == self.name) {
            running.swap_remove(i);
        }
    }
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    fn running(&self, name: &'static str) -> Running {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name);
        Running {
            name,
            running: self.running.clone(),
        }
    }

    /// Spawns `task`, which must end soon after [`Tasks::stopping`] resolves.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let running = self.running(name);
        self.tracker.spawn(async move {
            let _running = running;
            task.await
        });
    }

    /// Spawns `task`, which is dropped at its next `.await` once shutdown begins.
    pub fn spawn_cancellable<F>(&self, name: &'static str, task: F)
    where
        F: Future + Send + 'static,
    {
        let token = self.token.clone();
        self.spawn(name, async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Resolves once shutdown has begun.
    pub fn stopping(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }

    /// True once shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Begins shutdown without waiting: every task (and every request handler that
    /// watches [`Tasks::stopping`], such as a stream) is told to end.
    pub fn stop(&self) {
        self.token.cancel();
    }

    /// Stops the service for good because of `why` (its storage failed): logs it
    /// (the first reason only) and resolves [`Tasks::failed`]. Shutdown itself is
    /// the service's `run`'s to do, as on SIGTERM.
    pub fn fail(&self, why: impl Into<String>) {
        let why = why.into();
        if self.failure.set(why.clone()).is_ok() {
            tracing::error!("{why}: stopping this service; it catches up when started again");
        }
        self.failed.cancel();
    }

    /// Resolves once [`Tasks::fail`] has been called.
    pub fn failed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.failed.clone().cancelled_owned()
    }

    /// Resolves on `shutdown` or on this service's failure, whichever comes first:
    /// what a service's `run` serves until.
    pub fn until_failed(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let failed = self.failed();
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = failed => {}
            }
        }
    }

    /// Why the service stopped for good, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Begins shutdown and waits up to `deadline` for every task to end. Returns
    /// whether they all did; the ones that did not are logged by name.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
        {
            return true;
        }
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tracing::warn!(
            ?running,
            deadline_ms = deadline.as_millis() as u64,
            "background tasks did not stop in time"
        );
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_a_task_to_finish_its_work() {
        let tasks = Tasks::new();
        let finished = Arc::new(AtomicBool::new(false));
        tasks.spawn("worker", {
            let (stopping, finished) = (tasks.stopping(), finished.clone());
            async move {
                stopping.await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                finished.store(true, Ordering::SeqCst);
            }
        });
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert!(finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_cancellable_task_is_dropped_at_shutdown() {
        let tasks = Tasks::new();
        tasks.spawn_cancellable("forever", std::future::pending::<()>());
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_failure_is_told_once_and_keeps_its_first_reason() {
        let tasks = Tasks::new();
        assert!(tasks.failure().is_none());
        let failed = tasks.failed();
        tasks.fail("storage failed: disk full");
        tasks.fail("something later");
        failed.await;
        assert_eq!(tasks.failure(), Some("storage failed: disk full"));
        assert!(
            !tasks.is_stopping(),
            "failing is not shutdown: run() does that"
        );
    }

    #[tokio::test]
    async fn a_task_that_ignores_shutdown_is_reported_after_the_deadline() {
        let tasks = Tasks::new();
        tasks.spawn("stubborn", async {
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        assert!(!tasks.shutdown(Duration::from_millis(50)).await);
    }
}
