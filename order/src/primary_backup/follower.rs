//! A follower taking the leader's replication batches (and empty heartbeats).
//!
//! - Validate, then change: a batch naming a replica outside the configuration, an
//!   epoch more than `MAX_EPOCH_STEP` ahead, or entries that cannot be a leader's
//!   history is refused before anything is stored or adopted.
//! - A follower appends a batch only if it holds the entry just before it (`prev`);
//!   otherwise the leader's history wins: once the leader confirms its claim, the
//!   follower syncs from it. Where it holds older-epoch orders beyond the leader's
//!   newest one, it drops its divergent tail.
//! - It learns the commit index from the batch, up to what it holds.

use common::domain::OrderNumber;
use common::wire::{Persisted, Replicate, Role};

use super::catch_up::consecutive;
use super::state::{peer_error, Replica};
use crate::error::OrderError;

/// Most orders in one replication batch a follower accepts.
pub const MAX_BATCH_ENTRIES: usize = 4096;

impl Replica {
    /// Checks a replication batch completely before anything is changed: a known
    /// leader other than this replica, a sane epoch, and entries that could be a
    /// leader's history (consecutive numbers after `prev`, no epoch newer than the
    /// batch's, positive quantities; names and keys were checked as the body was read).
    fn check_batch(&self, batch: &Replicate) -> Result<(), OrderError> {
        if batch.leader_id == self.inner.id {
            return Err(OrderError::BadRequest(
                "a replica cannot replicate to itself".into(),
            ));
        }
        self.check_claim(batch.leader_id, batch.epoch)?;
        if batch.entries.len() > MAX_BATCH_ENTRIES {
            return Err(OrderError::BadRequest(format!(
                "a batch holds at most {MAX_BATCH_ENTRIES} orders"
            )));
        }
        let first = batch
            .prev
            .as_ref()
            .map_or(Some(OrderNumber(0)), |p| p.number.next());
        let well_formed = batch
            .entries
            .first()
            .is_none_or(|e| Some(e.number) == first)
            && consecutive(&batch.entries)
            && batch.prev.as_ref().is_none_or(|p| p.epoch <= batch.epoch)
            && batch
                .entries
                .iter()
                .all(|e| e.epoch <= batch.epoch && e.quantity > 0);
        if !well_formed {
            return Err(OrderError::BadRequest(
                "malformed batch: entries must follow prev, one number apart, with no \
                 epoch newer than the batch's"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Handles a replication batch (or an empty heartbeat) from the leader. Validates
    /// it, then applies it if it follows this replica's history; otherwise, once the
    /// leader has confirmed its claim, syncs from it. The leader's epoch is adopted
    /// only when the batch is taken, so a refused message changes nothing.
    pub async fn on_replicate(&self, batch: Replicate) -> Result<Persisted, OrderError> {
        self.check_batch(&batch)?;
        // A replica still catching up answers at once (the leader skips it) rather than
        // making the leader wait for its lock; its catch-up brings it up to date.
        let current = self.leadership();
        if !current.ready {
            return Err(OrderError::NotReady);
        }
        // Refuse a deposed leader at once too, without waiting for the lock: its writer
        // may be waiting on ours while we (as new leader) wait on it.
        if batch.epoch < current.epoch {
            return Err(OrderError::StaleEpoch {
                mine: current.epoch,
                theirs: batch.epoch,
            });
        }
        let log = self.lock_log().await;
        self.check_epoch(batch.epoch, batch.leader_id)?;
        let store = &self.inner.store;
        let follows = match &batch.prev {
            None => true,
            Some(prev) => store.holds(prev)?,
        };
        // The newest order of the leader's history this replica now holds as well.
        let end;
        if follows {
            self.adopt_epoch(&log, batch.epoch, batch.leader_id).await?;
            let change = store.append(&batch.entries)?;
            let mut dropped = change.removed.len();
            // Orders beyond the leader's newest one that a previous leader wrote (an
            // older epoch) are not in the leader's history: drop them, so that even an
            // empty heartbeat repairs an ex-leader's tail. (Orders of the leader's own
            // epoch beyond it cannot exist: it sends its batches in order.)
            end = batch
                .entries
                .last()
                .map(|e| e.number)
                .or(batch.prev.as_ref().map(|p| p.number));
            if store
                .last()?
                .is_some_and(|r| Some(r.number) > end && r.epoch < batch.epoch)
            {
                dropped += store.truncate_after(end)?.len();
            }
            if dropped > 0 {
                tracing::warn!(dropped, "dropped a tail the leader does not have");
            }
            store.flush().await?;
            log_replicated(&batch);
        } else {
            let url = self
                .peer_url(batch.leader_id)
                .cloned()
                .ok_or_else(|| OrderError::BadRequest("unknown leader".into()))?;
            // Take nothing from a claimed leader before it confirms the claim itself.
            let claim = self
                .inner
                .client
                .status_within(&url, self.inner.timeouts.status)
                .await
                .map_err(peer_error)?;
            if claim.role != Role::Leader || claim.epoch != batch.epoch {
                return Err(OrderError::Unconfirmed(format!(
                    "replica {} does not confirm leading epoch {}",
                    batch.leader_id, batch.epoch
                )));
            }
            self.adopt_epoch(&log, batch.epoch, batch.leader_id).await?;
            tracing::info!(
                leader = %batch.leader_id,
                "batch does not follow my history; syncing"
            );
            self.sync_from(&log, &url).await?;
            end = store.last()?.map(|r| r.number);
        }
        self.clamp_commit(store.last()?.map(|r| r.number));
        self.advance_commit(batch.commit.min(end));
        Ok(Persisted {
            last_order: store.last()?.map(|r| r.number),
        })
    }
}

/// One line per order a leader's batch brought, under its request's id (see
/// `common::trace`).
fn log_replicated(batch: &Replicate) {
    let ids = batch
        .request_ids
        .iter()
        .map(Option::as_ref)
        .chain(std::iter::repeat(None));
    for (order, id) in batch.entries.iter().zip(ids) {
        tracing::info!(
            order = %order.number,
            toy = %order.name,
            request_id = id.map(tracing::field::display),
            "order replicated"
        );
    }
}
