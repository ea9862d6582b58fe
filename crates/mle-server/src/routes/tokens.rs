//! `/v1/tokens` (an mle extension, for the server admin's token only): list, create (the
//! answer holds the new token, once), and `DELETE /v1/tokens/{name}` to revoke one.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::{delete, get};
use mle_api::{ApiStatus, FieldViolation};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tokens::{self, TokenError};

/// The tokens.
pub const TOKENS: &str = "/v1/tokens";
/// One token.
pub const TOKEN: &str = "/v1/tokens/{name}";

/// The tokens routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(TOKENS, get(list).post(create))
        .route(TOKEN, delete(revoke))
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid(field, why) => {
                ApiError::Invalid(vec![FieldViolation::new(field, why)])
            }
            TokenError::Exists(_) => ApiError::Status(ApiStatus::AlreadyExists, e.to_string()),
            TokenError::Missing(_) => ApiError::Status(ApiStatus::NotFound, e.to_string()),
            TokenError::Db(d) => d.into(),
        }
    }
}

async fn list(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "tokens": tokens::list(&s.db).await? })))
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
    role: String,
    projects: Vec<String>,
}

async fn create(
    State(s): State<Arc<AppState>>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let t: NewToken = body(raw, "token")?;
    let (info, token) = tokens::create(&s.db, &t.name, &t.role, &t.projects).await?;
    let mut out = serde_json::to_value(info).unwrap_or_default();
    out["token"] = json!(token);
    Ok(Json(out))
}

async fn revoke(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    tokens::revoke(&s.db, &name).await?;
    Ok(Json(json!({})))
}
