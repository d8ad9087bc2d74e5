//! The catalog's error type: one variant per way a request can fail, each with its
//! HTTP status, rendered in the contract's JSON error shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::domain::ReplicaId;
use common::error::{chain, error_response};
use common::storage::StorageError;
use consensus::network::MessageError;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no toy named {0:?}")]
    UnknownProduct(String),

    #[error("not enough {name} in stock: {available} left, {requested} requested")]
    InsufficientStock {
        name: String,
        available: u64,
        requested: u64,
    },

    #[error("idempotency key {0:?} was already used for a different order")]
    KeyReused(String),

    #[error("{0}")]
    BadRequest(String),

    /// The catalog's own storage failed.
    #[error("storage failure")]
    Storage(#[from] StorageError),

    /// This replica stopped for good (its Raft core failed): the reason.
    #[error("{0}")]
    Failed(String),

    /// A rule of the catalog's own code did not hold (a bug, not bad input).
    #[error("internal error: {0}")]
    Internal(&'static str),

    #[error("cannot build the cluster's HTTP client")]
    HttpClient(#[source] common::client::PeerError),

    #[error("cannot read seed file {path}: {reason}")]
    Seed { path: String, reason: String },

    /// A configuration the catalog cannot start with.
    #[error("{0}")]
    Config(String),

    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// A replicated catalog's follower (or a leader that just lost its place) was
    /// asked what only the leader does.
    #[error("catalog replica {id} is not the leader (leader: {})", leader.map_or("unknown".into(), |l| l.to_string()))]
    NotLeader {
        id: ReplicaId,
        leader: Option<ReplicaId>,
    },

    /// No majority of the catalog replicas took a change or confirmed the leader in time.
    #[error("no majority of the catalog replicas: {0}")]
    NoMajority(String),

    #[error("the catalog's Raft member did not start")]
    RaftStart(#[source] Box<consensus::StartError>),

    #[error("raft write failed")]
    Proposal(#[source] consensus::ProposeError),

    #[error(transparent)]
    RaftMessage(#[from] consensus::network::MessageError),

    #[error("raft read failed")]
    RaftRead(#[source] consensus::ReadError),
}

impl From<sled::Error> for CatalogError {
    fn from(e: sled::Error) -> Self {
        CatalogError::Storage(e.into())
    }
}

impl From<common::flush::FlushError> for CatalogError {
    fn from(e: common::flush::FlushError) -> Self {
        CatalogError::Storage(e.into())
    }
}

impl CatalogError {
    pub fn status(&self) -> StatusCode {
        match self {
            CatalogError::UnknownProduct(_) => StatusCode::NOT_FOUND,
            CatalogError::InsufficientStock { .. } => StatusCode::CONFLICT,
            CatalogError::KeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            CatalogError::BadRequest(_)
            | CatalogError::RaftMessage(
                MessageError::UnknownKind(_) | MessageError::Unreadable(_),
            ) => StatusCode::BAD_REQUEST,
            CatalogError::NotLeader { .. } => StatusCode::MISDIRECTED_REQUEST,
            CatalogError::NoMajority(_) | CatalogError::Failed(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            CatalogError::Storage(_)
            | CatalogError::Internal(_)
            | CatalogError::HttpClient(_)
            | CatalogError::Seed { .. }
            | CatalogError::Config(_)
            | CatalogError::Io(_)
            | CatalogError::RaftStart(_)
            | CatalogError::Proposal(_)
            | CatalogError::RaftMessage(MessageError::Encode(_))
            | CatalogError::RaftRead(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for CatalogError {
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
