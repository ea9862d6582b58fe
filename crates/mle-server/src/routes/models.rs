//! `/v1/projects/{p}/models`: create, get (with the default version), list, patch
//! (description, labels), delete when it has no versions; `POST {model}:predict` predicts with
//! the default version.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mle_api::{ApiStatus, Model};
use mle_store::StoreError;
use serde_json::Value;

use super::predict::{json_body, predict_action};
use super::{
    body, fields_mask, invalid, page, paged, resource_id, test_permissions, valid_project,
};
use crate::access::Principal;
use crate::catalog::{default_version, model_name, version_out};
use crate::db::{DbError, Kind, Stored};
use crate::error::{ApiError, PredictError};
use crate::operations;
use crate::state::AppState;

/// Models of a project.
pub const MODELS: &str = "/v1/projects/{project}/models";
/// One model (`POST` on `{model}:predict` predicts with its default version).
pub const MODEL: &str = "/v1/projects/{project}/models/{model}";

/// The models routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(MODELS, post(create).get(list))
        .route(MODEL, get(read).delete(delete).patch(patch).post(action))
}

/// A model as the API returns it: its etag and default version filled in.
async fn model_out(s: &AppState, project: &str, rec: Stored<Model>) -> Model {
    let mut m = rec.value;
    m.etag = rec.etag.to_string();
    m.default_version = default_version(&s.db, project, &rec.name)
        .await
        .ok()
        .flatten()
        .map(version_out);
    m
}

async fn create(
    State(s): State<Arc<AppState>>,
    Path(project): Path<String>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Model>, ApiError> {
    valid_project(&project)?;
    let mut m: Model = body(raw, "model")?;
    let id = resource_id(&m.name, "model.name").map_err(|v| ApiError::Invalid(vec![v]))?;
    m.name = model_name(&project, &id);
    m.default_version = None;
    m.etag.clear();
    let etag = s.db.insert(Kind::Model, &project, "", &id, &m).await?;
    m.etag = etag.to_string();
    Ok(Json(m))
}

async fn read(
    State(s): State<Arc<AppState>>,
    Path((project, model)): Path<(String, String)>,
) -> Result<Json<Model>, ApiError> {
    let rec = s.db.get(Kind::Model, &project, "", &model).await?;
    Ok(Json(model_out(&s, &project, rec).await))
}

async fn list(
    State(s): State<Arc<AppState>>,
    Path(project): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (size, after) = page(&q)?;
    let recs: Vec<Stored<Model>> =
        s.db.list(Kind::Model, &project, "", after, size + 1)
            .await?;
    let mut items = Vec::new();
    for (i, r) in recs.into_iter().enumerate() {
        let seq = r.seq;
        // The one past the page only tells whether there is a next page.
        let v = if (i as i64) < size {
            serde_json::to_value(model_out(&s, &project, r).await).unwrap_or_default()
        } else {
            Value::Null
        };
        items.push((seq, v));
    }
    Ok(Json(paged(items, size, "models")))
}

async fn delete(
    State(s): State<Arc<AppState>>,
    Path((project, model)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    match s
        .db
        .delete(Kind::Model, &project, "", &model, Some(Kind::Version))
        .await
    {
        Err(DbError::Store(StoreError::HasChildren { .. })) => Err(ApiError::Status(
            ApiStatus::FailedPrecondition,
            format!("model '{model}' still has versions; delete them first"),
        )),
        r => r.map_err(ApiError::from),
    }?;
    s.serving.forget_routes();
    let _ = std::fs::remove_dir_all(s.cfg.data_dir.join("models").join(&project).join(&model));
    let (_, op) = operations::start(&s.db, &project, "DELETE_MODEL", &model, None, true).await?;
    Ok(Json(serde_json::to_value(op).unwrap_or_default()))
}

async fn patch(
    State(s): State<Arc<AppState>>,
    Path((project, model)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let patch: Model = body(raw, "model")?;
    let mask = fields_mask(&q)?;
    s.db.update(Kind::Model, &project, "", &model, |m: &mut Model| {
        for f in &mask {
            match f.as_str() {
                "description" => m.description = patch.description.clone(),
                "labels" => m.labels = patch.labels.clone(),
                _ => {}
            }
        }
    })
    .await?;
    let (_, op) = operations::start(&s.db, &project, "UPDATE_MODEL", &model, None, true).await?;
    Ok(Json(serde_json::to_value(op).unwrap_or_default()))
}

/// `POST {model}:predict` or `POST {model}:testIamPermissions`.
async fn action(
    State(s): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path((project, segment)): Path<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, PredictError> {
    if segment.ends_with(":testIamPermissions") {
        let answer = json_body(raw)
            .map_err(|e| invalid("body", e.message))
            .and_then(|v| test_permissions(&who, &project, v));
        return Ok(match answer {
            Ok(v) => v.into_response(),
            Err(e) => e.into_response(),
        });
    }
    predict_action(&s, &project, None, &segment, raw).await
}
