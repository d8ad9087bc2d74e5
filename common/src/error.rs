//! The error body of the REST contract: `{"error": {"code": <status>, "message": "..."}}`.
//!
//! Every service has its own error enum; each renders through [`error_response`] so all
//! replies share one shape, and `code` always equals the HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The outer error object.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for people and programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Equal to the HTTP status of the reply.
    pub code: u16,
    pub message: String,
}

/// Renders `status` and `message` in the error shape of the contract.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(error_of(status, message))).into_response()
}

/// The body of [`error_response`] as JSON text, for replies written outside a router
/// (a connection refused at the edge).
pub fn error_body(status: StatusCode, message: &str) -> String {
    serde_json::to_string(&error_of(status, message)).unwrap_or_default()
}

fn error_of(status: StatusCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        error: ErrorDetail {
            code: status.as_u16(),
            message: message.into(),
        },
    }
}

/// `error` and every error beneath it, joined with ": " — for the log line that
/// reports an internal failure once, with its whole cause.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// A request the server could not even decode (bad JSON, bad path, body too large).
///
/// This is the rejection of the shared extractors, so that malformed input gets the
/// same JSON error shape as every other failure.
#[derive(Debug, Clone)]
pub struct BadRequest {
    pub status: StatusCode,
    pub message: String,
}

impl BadRequest {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error_response(self.status, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_names_every_cause() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(chain(&e), "outer: disk full");
    }
}
