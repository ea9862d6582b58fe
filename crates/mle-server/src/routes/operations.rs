//! `/v1/projects/{p}/operations`: get and list.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use mle_api::Operation;
use serde_json::Value;

use super::{page, paged};
use crate::db::{Kind, Stored};
use crate::error::ApiError;
use crate::state::AppState;

/// Operations of a project.
pub const OPERATIONS: &str = "/v1/projects/{project}/operations";
/// One operation.
pub const OPERATION: &str = "/v1/projects/{project}/operations/{operation}";

/// The operations routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(OPERATIONS, get(list))
        .route(OPERATION, get(read))
}

async fn read(
    State(s): State<Arc<AppState>>,
    Path((project, operation)): Path<(String, String)>,
) -> Result<Json<Operation>, ApiError> {
    let rec: Stored<Operation> = s.db.get(Kind::Operation, &project, "", &operation).await?;
    Ok(Json(rec.value))
}

async fn list(
    State(s): State<Arc<AppState>>,
    Path(project): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (size, after) = page(&q)?;
    let recs: Vec<Stored<Operation>> =
        s.db.list(Kind::Operation, &project, "", after, size + 1)
            .await?;
    let items = recs
        .into_iter()
        .map(|r| (r.seq, serde_json::to_value(r.value).unwrap_or_default()))
        .collect();
    Ok(Json(paged(items, size, "operations")))
}
