//! The front-end's error type: every public failure, with its HTTP status, rendered
//! in the contract's JSON error shape. Never a 500 for anything a client sends.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::client::PeerError;
use common::error::error_response;

#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("{0}")]
    BadRequest(String),

    /// A service behind us refused the request for a reason that is the client's
    /// (unknown toy or order, not enough stock, reused key): passed through as is.
    #[error("{message}")]
    Refused { status: StatusCode, message: String },

    #[error("catalog unavailable")]
    CatalogUnavailable,

    #[error("order service unavailable: no replica can serve the request")]
    OrdersUnavailable,
}

impl FrontendError {
    /// Maps a catalog failure: its 4xx pass through, anything else is "unavailable".
    pub fn from_catalog(e: PeerError) -> Self {
        match e {
            PeerError::Status { status, message } if status.is_client_error() => {
                FrontendError::Refused { status, message }
            }
            e => {
                tracing::warn!(error = %e, "catalog call failed");
                FrontendError::CatalogUnavailable
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            FrontendError::BadRequest(_) => StatusCode::BAD_REQUEST,
            FrontendError::Refused { status, .. } => *status,
            FrontendError::CatalogUnavailable | FrontendError::OrdersUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl IntoResponse for FrontendError {
    fn into_response(self) -> Response {
        error_response(self.status(), self.to_string())
    }
}
