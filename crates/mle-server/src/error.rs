//! The two error shapes of the REST API: [`ApiError`], rendered as the Google error envelope
//! (every ml v1 resource route), and [`PredictError`], `{"error": "..."}` (online prediction,
//! as CMLE answers it). Internal details are logged on the server and never returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mle_api::{ApiStatus, ErrorEnvelope, FieldViolation};
use mle_store::StoreError;
use serde_json::json;

use crate::db::DbError;

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
            other if other.is_disk_full() => {
                eprintln!("store error: {other}");
                ApiError::Status(ApiStatus::Unavailable, DISK_FULL.into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// What a client is told when the server's disk is full (nothing was changed).
pub const DISK_FULL: &str =
    "the server's disk is full, so nothing was changed; try again once space is freed";

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Store(s) => s.into(),
            DbError::Refused(m) => ApiError::Status(ApiStatus::FailedPrecondition, m),
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

/// A prediction error: `{"error": "..."}` with a status (never a 500 for bad input).
#[derive(Debug)]
pub struct PredictError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What the client is told.
    pub message: String,
}

impl PredictError {
    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 500 without details.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<DbError> for PredictError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Store(StoreError::NotFound { kind, id }) => {
                Self::new(StatusCode::NOT_FOUND, format!("{kind} '{id}' not found"))
            }
            DbError::Store(e) if e.is_disk_full() => {
                eprintln!("store error in prediction: {e}");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, DISK_FULL)
            }
            other => {
                eprintln!("store error in prediction: {other}");
                Self::internal()
            }
        }
    }
}

impl From<mle_predict::ServeError> for PredictError {
    fn from(e: mle_predict::ServeError) -> Self {
        match e {
            mle_predict::ServeError::BadInput(m) => Self::bad(m),
            other => {
                eprintln!("prediction error: {other}");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "prediction failed")
            }
        }
    }
}

impl IntoResponse for PredictError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message}))).into_response()
    }
}
