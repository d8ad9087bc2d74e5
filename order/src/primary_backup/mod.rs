//! Primary-backup mode (`--replication primary-backup`, the lab's Parts 2-3): the
//! front-end chooses the leader, and an order is acknowledged once it is durable on
//! the leader and every follower that is up.
//!
//! - [`state`]: the replica's shared state (history lock, leadership, commit index,
//!   lagging followers) and the rules every change obeys.
//! - `notice`: leader notices — following a new leader, or syncing and becoming it.
//! - `leader`: the leader's writer — group commit and replication of each batch.
//! - `heartbeat`: the leader's heartbeat — lagging followers, the commit index.
//! - `follower`: taking the leader's batches.
//! - `catch_up`: syncing a history from a peer, at start and when a batch does not
//!   follow.
//!
//! [`PrimaryBackup`] is this mode's arm of the replication seam (`crate::replication`):
//! it owns the mode's tasks (catch-up, writer, heartbeat, key pruner), its routes
//! (`POST /internal/leader`, `POST /internal/replicate`) and their shutdown.

mod catch_up;
mod follower;
mod heartbeat;
mod leader;
mod notice;
pub mod state;
#[cfg(test)]
mod tests;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use common::client::OrderClient;
use common::domain::{OrderNumber, ReplicaId};
use common::http::Json;
use common::retention;
use common::tasks::Tasks;
use common::wire::{data, LeaderNotice, NewOrder, OrderRecord, ReplicaStatus, Replicate};
use reqwest::Url;

pub use follower::MAX_BATCH_ENTRIES;
pub use state::{Leadership, Replica, MAX_EPOCH_STEP};

use crate::config::{Fault, Timeouts};
use crate::error::OrderError;
use crate::idempotency::Purchase;
use crate::store::Store;

/// This replica in primary-backup mode. Cheap to clone.
#[derive(Clone)]
pub struct PrimaryBackup {
    replica: Replica,
    writer: leader::Writer,
}

/// What the mode needs besides the store and its peers.
pub struct Options {
    pub timeouts: Timeouts,
    pub fault: Option<Fault>,
    /// How long the replicas keep an idempotency key.
    pub key_window: std::time::Duration,
}

impl PrimaryBackup {
    /// Starts replica `id` on `store`: catch-up from its peers (it is not ready until
    /// done), the writer, the heartbeat and the key pruner, all on `tasks`.
    pub fn start(
        id: ReplicaId,
        store: Store,
        peers: Vec<(ReplicaId, Url)>,
        client: OrderClient,
        options: Options,
        tasks: &Tasks,
    ) -> Result<Self, OrderError> {
        store.claim_mode(common::wire::Replication::PrimaryBackup)?;
        let replica = Replica::new(id, store.clone(), peers, client, options.timeouts, tasks)?;
        tasks.spawn_cancellable("catch-up", {
            let replica = replica.clone();
            async move { replica.catch_up().await }
        });
        tasks.spawn_cancellable("heartbeat", heartbeat::heartbeat_loop(replica.clone()));
        let window = options.key_window;
        tasks.spawn(
            "key pruner",
            retention::prune_loop(
                retention::prune_period(window),
                move || Ok::<_, OrderError>(retention::cutoff(retention::now_ms(), window)),
                store.pruner(),
                tasks.clone(),
            ),
        );
        let writer = leader::Writer::start(replica.clone(), options.fault, window, tasks);
        Ok(PrimaryBackup { replica, writer })
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    pub fn store(&self) -> &Store {
        self.replica.store()
    }

    /// Ok if this replica is the ready leader.
    pub fn check_writable(&self) -> Result<(), OrderError> {
        let leadership = self.replica.leadership();
        if leadership.accepts_writes() {
            Ok(())
        } else {
            Err(OrderError::NotLeader {
                id: self.replica.id(),
                leader: leadership.leader,
            })
        }
    }

    /// Numbers, stores and replicates a bought order (or answers the order its key
    /// made) once it is durable here and on every follower that is up.
    pub async fn submit(
        &self,
        order: NewOrder,
        purchase: Purchase,
    ) -> Result<OrderNumber, OrderError> {
        self.writer.submit(order, purchase).await
    }

    /// The committed order `number`. A number not stored at all is answered at once;
    /// one stored but not yet on every follower the leader waits for is shown after a
    /// short wait for the commit, or not at all.
    pub async fn read(&self, number: OrderNumber) -> Result<OrderRecord, OrderError> {
        let store = self.replica.store();
        if store.order(number)?.is_none() || !self.replica.committed(number).await {
            return Err(OrderError::UnknownOrder(number));
        }
        // Read again: what was stored at that number may have changed meanwhile.
        store.order(number)?.ok_or(OrderError::UnknownOrder(number))
    }

    pub fn status(&self) -> Result<ReplicaStatus, OrderError> {
        self.replica.status()
    }

    /// The mode's own routes (token-guarded by the caller): leader notices from the
    /// front-end and the leader's batches.
    pub fn routes<S>(&self) -> Router<S> {
        Router::new()
            .route("/internal/leader", post(leader_notice))
            .route("/internal/replicate", post(replicate))
            .with_state(self.replica.clone())
    }
}

async fn leader_notice(
    State(replica): State<Replica>,
    Json(notice): Json<LeaderNotice>,
) -> Result<impl IntoResponse, OrderError> {
    let taken = replica.on_notice(notice).await;
    Ok(data(replica.unless_storage_failed(taken).await?))
}

async fn replicate(
    State(replica): State<Replica>,
    Json(batch): Json<Replicate>,
) -> Result<impl IntoResponse, OrderError> {
    let taken = replica.on_replicate(batch).await;
    Ok(data(replica.unless_storage_failed(taken).await?))
}
