//! Leader notices from the front-end: following a new leader, or becoming it.
//!
//! - A notice is checked (known replica, sane epoch) before anything changes; an
//!   older epoch, or a second leader for the epoch held, is refused.
//! - A replica made leader first syncs from the most up-to-date reachable peer
//!   (highest epoch of its newest order, then most orders), then accepts writes; if
//!   that fails, it refuses to lead. Peers that did not answer start out lagging.
//! - A replica told to follow syncs from the new leader.

use std::collections::BTreeSet;

use common::domain::ReplicaId;
use common::wire::{LeaderNotice, ReplicaStatus, Role};

use super::state::{freshness, Leadership, LogGuard, Replica};
use crate::error::OrderError;

impl Replica {
    /// Handles a leader notice from the front-end.
    pub async fn on_notice(&self, notice: LeaderNotice) -> Result<ReplicaStatus, OrderError> {
        self.check_claim(notice.leader_id, notice.epoch)?;
        let log = self.lock_log().await;
        let before = self.leadership();
        let now = self
            .adopt_epoch(&log, notice.epoch, notice.leader_id)
            .await?;
        if notice.leader_id == self.inner.id {
            if !now.accepts_writes() {
                let silent = match self.promotion_sync(&log).await {
                    Ok(silent) => silent,
                    Err(e) => {
                        tracing::warn!(error = %e, "refusing leadership");
                        return Err(e);
                    }
                };
                // A new term starts out waiting for every follower that answered the
                // promotion, and with the commit index where the last leader's heartbeat
                // left it: what this replica holds beyond it is committed once its first
                // heartbeat round is done.
                if !silent.is_empty() {
                    tracing::warn!(?silent, "peers did not answer the promotion: lagging");
                }
                *self.inner.lagging.lock().unwrap_or_else(|p| p.into_inner()) = silent;
                self.set_leadership(
                    &log,
                    Leadership {
                        role: Role::Leader,
                        ready: true,
                        ..now
                    },
                );
                self.inner.beat_now.notify_one();
                tracing::info!(epoch = %notice.epoch, "now the leader");
            }
        } else {
            if before.leader != Some(notice.leader_id) || before.epoch != notice.epoch {
                tracing::info!(leader = %notice.leader_id, epoch = %notice.epoch, "following");
            }
            if let Some(url) = self.peer_url(notice.leader_id).cloned() {
                if let Err(e) = self.sync_from(&log, &url).await {
                    tracing::warn!(error = %e, "could not sync from the new leader");
                }
            }
            self.set_leadership(&log, Leadership { ready: true, ..now });
        }
        drop(log);
        self.status()
    }

    /// Before leading: take the history of the most up-to-date reachable peer if it is
    /// ahead of ours. Fails (and this replica must not lead) when such a peer exists
    /// but its history could not be taken.
    /// Returns the peers that did not answer: the new leader starts out not waiting
    /// for them (they are lagging until a heartbeat finds them back), so a peer that
    /// stalled or was cut off costs the promotion's status timeout, not a replication
    /// timeout on top of it.
    async fn promotion_sync(&self, log: &LogGuard<'_>) -> Result<BTreeSet<ReplicaId>, OrderError> {
        let last = self.inner.store.last()?;
        let mine = freshness(
            last.as_ref().map(|r| r.epoch),
            last.as_ref().map(|r| r.number),
        );
        let statuses = self.peer_statuses(self.inner.timeouts.status).await;
        let silent: BTreeSet<ReplicaId> = self
            .inner
            .peers
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| statuses.iter().all(|(_, s)| s.id != *id))
            .collect();
        let Some(best) = statuses
            .iter()
            .map(|(_, s)| freshness(s.last_epoch, s.last_order))
            .max()
            .filter(|best| *best > mine)
        else {
            return Ok(silent);
        };
        for (url, status) in statuses
            .iter()
            .filter(|(_, s)| freshness(s.last_epoch, s.last_order) == best)
        {
            match self.sync_from(log, url).await {
                Ok(()) => {
                    tracing::info!(
                        peer = %status.id,
                        "took the newer history of a peer before leading"
                    );
                    return Ok(silent);
                }
                Err(e) => tracing::warn!(peer = %status.id, error = %e, "sync from peer failed"),
            }
        }
        Err(OrderError::CannotLead(
            "a peer holds a newer history that could not be taken".into(),
        ))
    }
}
