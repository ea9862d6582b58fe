//! One error type for every route, rendered as the Google error envelope. Internal details are
//! logged on the server and never returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mle_api::{ApiStatus, ErrorEnvelope, FieldViolation};
use mle_store::StoreError;

/// Errors a handler returns.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with field violations.
    Invalid(Vec<FieldViolation>),
    /// Any other status with a safe message.
    Status(ApiStatus, String),
    /// 500; the detail is logged, not returned.
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists { kind, id } => ApiError::Status(
                ApiStatus::AlreadyExists,
                format!("{kind} '{id}' already exists"),
            ),
            StoreError::NotFound { kind, id } => {
                ApiError::Status(ApiStatus::NotFound, format!("{kind} '{id}' not found"))
            }
            StoreError::Conflict { kind, id, .. } => ApiError::Status(
                ApiStatus::FailedPrecondition,
                format!("{kind} '{id}' was modified concurrently; read it again"),
            ),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let envelope = match self {
            ApiError::Invalid(v) => ErrorEnvelope::invalid(v),
            ApiError::Status(s, m) => ErrorEnvelope::new(s, m),
            ApiError::Internal(detail) => {
                eprintln!("internal error: {detail}");
                ErrorEnvelope::new(ApiStatus::Internal, "internal error")
            }
        };
        let code =
            StatusCode::from_u16(envelope.error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(envelope)).into_response()
    }
}
