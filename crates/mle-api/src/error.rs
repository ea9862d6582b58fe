//! The Google API error envelope:
//! `{"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT", "details": [...]}}`.

use serde::{Deserialize, Serialize};

/// Canonical status names (`google.rpc.Code`) with their HTTP codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApiStatus {
    /// 400.
    InvalidArgument,
    /// 401.
    Unauthenticated,
    /// 403.
    PermissionDenied,
    /// 404.
    NotFound,
    /// 409.
    AlreadyExists,
    /// 400 (state does not allow the operation).
    FailedPrecondition,
    /// 413 / 429.
    ResourceExhausted,
    /// 500 (details are logged, never returned).
    Internal,
    /// 503.
    Unavailable,
}

impl ApiStatus {
    /// The HTTP status code.
    pub fn http_code(self) -> u16 {
        match self {
            ApiStatus::InvalidArgument | ApiStatus::FailedPrecondition => 400,
            ApiStatus::Unauthenticated => 401,
            ApiStatus::PermissionDenied => 403,
            ApiStatus::NotFound => 404,
            ApiStatus::AlreadyExists => 409,
            ApiStatus::ResourceExhausted => 429,
            ApiStatus::Internal => 500,
            ApiStatus::Unavailable => 503,
        }
    }
}

/// One invalid field (`google.rpc.BadRequest.FieldViolation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldViolation {
    /// Path of the field, e.g. `job.training_input.master_type`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: &str, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// The body inside `"error"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// HTTP code.
    pub code: u16,
    /// Human-readable message.
    pub message: String,
    /// Canonical status.
    pub status: ApiStatus,
    /// `google.rpc.BadRequest` details with field violations, when any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<serde_json::Value>,
}

/// `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

impl ErrorEnvelope {
    /// An error with a message and no details.
    pub fn new(status: ApiStatus, message: impl Into<String>) -> Self {
        Self {
            error: ErrorBody {
                code: status.http_code(),
                message: message.into(),
                status,
                details: Vec::new(),
            },
        }
    }

    /// A 400 listing field violations.
    pub fn invalid(violations: Vec<FieldViolation>) -> Self {
        let message = violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        let mut e = Self::new(ApiStatus::InvalidArgument, message);
        e.error.details.push(serde_json::json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": violations,
        }));
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape() {
        let e = ErrorEnvelope::invalid(vec![FieldViolation::new(
            "job.job_id",
            "must start with a letter",
        )]);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"error": {"code": 400, "message": "job.job_id: must start with a letter", "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                             "fieldViolations": [{"field": "job.job_id", "description": "must start with a letter"}]}]}})
        );
    }
}
