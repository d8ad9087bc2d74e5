//! Primary-backup mode's messages: the front-end's leader notices, and the leader's
//! replication batches and their acknowledgements.

use crate::domain::{Epoch, OrderNumber, ReplicaId};
use serde::{Deserialize, Serialize};

use super::{LogPos, OrderRecord};
use crate::trace::RequestId;

/// Leader → follower: append these orders after `prev`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replicate {
    pub leader_id: ReplicaId,
    pub epoch: Epoch,
    /// The leader's entry just before `entries[0]` (None when they start at order 0).
    pub prev: Option<LogPos>,
    pub entries: Vec<OrderRecord>,
    /// The leader's commit index: every order up to it is durable on the leader and
    /// on every follower it waits for (so it may have been acknowledged).
    #[serde(default)]
    pub commit: Option<OrderNumber>,
    /// The `x-request-id` of each entry's order, by position, for the followers' logs
    /// (empty when none is known).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_ids: Vec<Option<RequestId>>,
}

/// Follower → leader: the batch is flushed to disk.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Persisted {
    pub last_order: Option<OrderNumber>,
}

/// Front-end → replica: `leader_id` leads from `epoch` on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LeaderNotice {
    pub leader_id: ReplicaId,
    pub epoch: Epoch,
}
