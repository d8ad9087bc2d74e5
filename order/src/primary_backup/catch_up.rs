//! Catch-up: making this replica's history equal to a peer's.
//!
//! - A replica that starts syncs from the leader if a peer says it leads, otherwise
//!   from the most up-to-date peer; then it reports itself ready and takes from the
//!   leader, once more, what it refused while catching up.
//! - A sync finds the newest order both hold identically (walking back page by page),
//!   takes every order after it from the peer, and drops whatever it holds beyond the
//!   peer's history (the Raft "log matching" idea, by pages).

use std::collections::HashMap;
use std::time::Duration;

use common::client::PeerError;
use common::domain::OrderNumber;
use common::wire::{OrderRecord, Role};
use reqwest::Url;

use super::state::{freshness, peer_error, Leadership, LogGuard, Replica};
use crate::error::OrderError;

/// Orders per catch-up page.
const PAGE: u64 = 500;

impl Replica {
    /// Catch-up at start: sync from the leader (or the most up-to-date peer), then
    /// report ready. Retries a few times if the source fails midway. A store being
    /// rebuilt (`--rebuild`) holds nothing to rely on: it waits, however long, until a
    /// ready peer answers and it has taken that peer's whole history.
    pub async fn catch_up(&self) {
        let rebuilding = match self.inner.store.rebuilding() {
            Ok(rebuilding) => rebuilding,
            Err(e) => {
                let log = self.lock_log().await;
                self.storage_failed(&log, &e);
                return;
            }
        };
        let mut attempt = 0;
        while rebuilding || attempt < 5 {
            attempt += 1;
            let log = self.lock_log().await;
            if self.leadership().ready {
                return; // a leader notice got here first and synced us
            }
            let statuses = self.peer_statuses(self.inner.timeouts.status).await;
            let mine = match self.inner.store.last() {
                Ok(last) => freshness(
                    last.as_ref().map(|r| r.epoch),
                    last.as_ref().map(|r| r.number),
                ),
                Err(e) => {
                    self.storage_failed(&log, &e);
                    return;
                }
            };
            let leader = statuses
                .iter()
                .filter(|(_, s)| s.role == Role::Leader && s.ready)
                .max_by_key(|(_, s)| s.epoch);
            let source = match leader {
                Some((url, s)) => {
                    let adopted = match self.check_claim(s.id, s.epoch) {
                        Ok(()) => self.adopt_epoch(&log, s.epoch, s.id).await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    match adopted {
                        Ok(()) => Some((url.clone(), s.id)),
                        Err(e) => {
                            tracing::warn!(peer = %s.id, error = %e, "peer's leadership claim refused");
                            None
                        }
                    }
                }
                None => statuses
                    .iter()
                    .filter(|(_, s)| {
                        if rebuilding {
                            s.ready
                        } else {
                            freshness(s.last_epoch, s.last_order) > mine
                        }
                    })
                    .max_by_key(|(_, s)| freshness(s.last_epoch, s.last_order))
                    .map(|(url, s)| (url.clone(), s.id)),
            };
            let Some((url, peer)) = source else {
                if !rebuilding {
                    break;
                }
                if attempt == 1 || attempt % 30 == 0 {
                    tracing::warn!("rebuilding: waiting for a ready peer to take the history from");
                }
                drop(log);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            match self.sync_from(&log, &url).await {
                Ok(()) => {
                    tracing::info!(%peer, "caught up");
                    break;
                }
                Err(e @ OrderError::Storage(_)) => {
                    self.storage_failed(&log, &e);
                    return;
                }
                Err(e) => {
                    tracing::warn!(%peer, attempt, error = %e, "catch-up failed; retrying");
                    drop(log);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        // Batches the leader sent while we caught up were refused (421) and skipped. Under
        // the lock, become ready — later batches wait for the lock — and take once more
        // whatever the leader stored in between.
        let log = self.lock_log().await;
        let current = self.leadership();
        self.set_leadership(
            &log,
            Leadership {
                ready: true,
                ..current
            },
        );
        if let Some(url) = current
            .leader
            .filter(|l| *l != self.inner.id)
            .and_then(|l| self.peer_url(l).cloned())
        {
            match self.sync_from(&log, &url).await {
                Ok(()) => {}
                Err(e @ OrderError::Storage(_)) => {
                    self.storage_failed(&log, &e);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "final sync from the leader failed"),
            }
        }
        tracing::info!(orders = self.inner.store.count(), "ready");
    }

    /// Makes this replica's history equal to `peer`'s: finds the newest order both hold
    /// identically (walking back page by page), takes every order after it from the
    /// peer, and drops whatever it holds beyond the peer's history.
    pub async fn sync_from(&self, _log: &LogGuard<'_>, peer: &Url) -> Result<(), OrderError> {
        let store = &self.inner.store;
        let client = &self.inner.client;

        let mut common: Option<OrderNumber> = None;
        if let Some(last) = store.last()? {
            let mut end = last.number.get();
            let mut size = 16;
            loop {
                let start = end.saturating_sub(size - 1);
                let page = client
                    .log_page(peer, OrderNumber(start), end - start + 1)
                    .await
                    .map_err(peer_error)?;
                let theirs: HashMap<OrderNumber, &OrderRecord> =
                    page.entries.iter().map(|r| (r.number, r)).collect();
                for n in (start..=end).rev().map(OrderNumber) {
                    let (Some(t), Some(m)) = (theirs.get(&n), store.order(n)?) else {
                        continue;
                    };
                    if m.same_write(t) {
                        common = Some(n);
                        break;
                    }
                }
                if common.is_some() || start == 0 {
                    break;
                }
                end = start - 1;
                size = (size * 4).min(PAGE);
            }
        }

        let mut from = common.map_or(Some(OrderNumber(0)), OrderNumber::next);
        let mut taken = 0usize;
        let mut dropped = 0usize;
        // `from`: the next number to take (`None` past the last number there is).
        while let Some(first) = from {
            let page = client
                .log_page(peer, first, PAGE)
                .await
                .map_err(peer_error)?;
            let Some(last) = page.entries.last() else {
                break;
            };
            if page.entries[0].number != first || !consecutive(&page.entries) {
                return Err(peer_error(PeerError::Status {
                    status: reqwest::StatusCode::BAD_GATEWAY,
                    message: format!("peer history has a gap after order {first}"),
                }));
            }
            let next = last.number.next();
            let change = store.append(&page.entries)?;
            taken += change.written;
            dropped += change.removed.len();
            from = next;
        }
        // Drop whatever this replica holds beyond the peer's history.
        let keep = match from {
            Some(first) => first.get().checked_sub(1).map(OrderNumber),
            None => Some(OrderNumber(u64::MAX)),
        };
        dropped += store.truncate_after(keep)?.len();
        store.flush().await?;
        self.clamp_commit(store.last()?.map(|r| r.number));
        if taken > 0 || dropped > 0 {
            tracing::info!(taken, dropped, "synced history from {peer}");
        }
        // A store being rebuilt now holds a whole history: the peer's.
        if store.rebuilding()? {
            store.set_rebuilding(false).await?;
            tracing::info!(orders = store.count(), "rebuilt from {peer}");
        }
        Ok(())
    }
}

/// True when the records' numbers follow each other without gaps.
pub(super) fn consecutive(entries: &[OrderRecord]) -> bool {
    entries
        .windows(2)
        .all(|w| w[0].number.next() == Some(w[1].number))
}
