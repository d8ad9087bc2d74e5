//! The order replica's error type: one variant per way a request can fail, each with
//! its HTTP status, rendered in the contract's JSON error shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::client::PeerError;
use common::domain::{Epoch, IdempotencyKey, OrderNumber, ReplicaId};

use common::error::{chain, error_response};
use common::flush::FlushError;
use common::storage::StorageError;
use consensus::network::MessageError;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// This replica does not take client writes; ask the front-end to re-select.
    #[error("replica {id} is not the leader (leader: {leader:?})")]
    NotLeader {
        id: ReplicaId,
        leader: Option<ReplicaId>,
    },

    #[error("replica is still catching up")]
    NotReady,

    #[error("no order number {0}")]
    UnknownOrder(OrderNumber),

    /// A leadership or replication message from an older epoch (fencing).
    #[error("stale epoch {theirs}: this replica is at epoch {mine}")]
    StaleEpoch { mine: Epoch, theirs: Epoch },

    #[error("idempotency key {0:?} was already used for a different order")]
    KeyReused(IdempotencyKey),

    /// The catalog answered with an error that is final for this order.
    #[error("{message}")]
    Catalog { status: StatusCode, message: String },

    #[error("catalog unavailable: {0}")]
    CatalogUnavailable(String),

    /// A follower that is up could not store a batch; nothing is acknowledged.
    #[error("replication failed: {0}")]
    ReplicationFailed(String),

    /// Raft mode: no majority stored the orders (or confirmed the leadership) in time.
    /// Nothing was acknowledged; a retry with the same key is safe.
    #[error("no majority: {0}")]
    NoMajority(String),

    /// This replica cannot lead: a peer holds a newer history it could not take.
    #[error("cannot lead: {0}")]
    CannotLead(String),

    #[error("{0}")]
    BadRequest(String),

    /// A peer this request depends on did not answer, or answered nonsense.
    #[error("peer failed: {0}")]
    Peer(#[source] PeerError),

    /// A batch named a leader that did not confirm its claim.
    #[error("{0}")]
    Unconfirmed(String),

    #[error("cannot build the cluster's HTTP client")]
    HttpClient(#[source] PeerError),

    /// This replica's own storage failed.
    #[error("storage failure")]
    Storage(#[from] StorageError),

    /// This replica stopped for good (its storage or its Raft core failed): it is no
    /// one to wait for or to lead. The reason.
    #[error("{0}")]
    Failed(String),

    #[error("{0}")]
    Config(String),

    /// Raft mode: a write the log could not take (not a lost majority: that is
    /// `NoMajority`).
    #[error("raft write failed")]
    Proposal(#[source] consensus::ProposeError),

    /// Raft mode: a peer's message that could not be answered.
    #[error(transparent)]
    RaftMessage(#[from] consensus::network::MessageError),

    #[error("raft did not start")]
    RaftStart(#[from] consensus::StartError),

    /// Raft mode: a read that the stopped Raft node could not confirm.
    #[error("raft read failed")]
    RaftRead(#[source] consensus::ReadError),

    /// A stage of the order path (buyer, writer, proposer) has stopped: shutdown.
    #[error(transparent)]
    Stopped(#[from] common::batch::BatchError),

    /// The task that finishes an order ended before the order did (a panic, or the
    /// runtime shutting down).
    #[error("the order's task ended early")]
    TaskEnded(#[source] tokio::task::JoinError),

    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<sled::Error> for OrderError {
    fn from(e: sled::Error) -> Self {
        OrderError::Storage(e.into())
    }
}

impl From<FlushError> for OrderError {
    fn from(e: FlushError) -> Self {
        OrderError::Storage(e.into())
    }
}

impl OrderError {
    /// The catalog's refusal of a buy, or its absence.
    pub fn from_catalog(e: PeerError) -> Self {
        match e {
            PeerError::Unreachable(m) => OrderError::CatalogUnavailable(m),
            PeerError::Status { status, message } if status.is_client_error() => {
                OrderError::Catalog { status, message }
            }
            PeerError::Status { message, .. } => OrderError::CatalogUnavailable(message),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            OrderError::NotLeader { .. } | OrderError::NotReady => StatusCode::MISDIRECTED_REQUEST,
            OrderError::UnknownOrder(_) => StatusCode::NOT_FOUND,
            OrderError::StaleEpoch { .. } => StatusCode::CONFLICT,
            OrderError::KeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            OrderError::Catalog { status, .. } => *status,
            OrderError::CatalogUnavailable(_)
            | OrderError::CannotLead(_)
            | OrderError::Peer(_)
            | OrderError::NoMajority(_)
            | OrderError::Failed(_)
            | OrderError::Unconfirmed(_) => StatusCode::SERVICE_UNAVAILABLE,
            OrderError::ReplicationFailed(_) => StatusCode::BAD_GATEWAY,
            OrderError::BadRequest(_) => StatusCode::BAD_REQUEST,
            OrderError::RaftMessage(MessageError::UnknownKind(_) | MessageError::Unreadable(_)) => {
                StatusCode::BAD_REQUEST
            }
            OrderError::Storage(_)
            | OrderError::HttpClient(_)
            | OrderError::RaftRead(_)
            | OrderError::Config(_)
            | OrderError::Io(_)
            | OrderError::Proposal(_)
            | OrderError::RaftMessage(MessageError::Encode(_))
            | OrderError::RaftStart(_)
            | OrderError::Stopped(_)
            | OrderError::TaskEnded(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for OrderError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %chain(&self), "request failed");
        }
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            return error_response(status, "internal storage failure");
        }
        error_response(status, self.to_string())
    }
}
