//! `/v1/projects/{p}/models/{m}/versions`: create (an Operation; the files are copied into the
//! server's model store and loaded), get, list, patch (description, labels), delete (not the
//! default while others remain), `POST {version}:setDefault`, and `POST {version}:predict`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mle_api::{
    ApiStatus, FieldViolation, Framework, Model, Operation, Version, VersionState, now_rfc3339,
};
use serde_json::Value;

use super::predict::predict_action;
use super::{body, fields_mask, page, paged, resource_id};
use crate::catalog::{default_version, source_dir, version_name, version_out};
use crate::db::{Kind, Stored};
use crate::error::{ApiError, PredictError};
use crate::operations;
use crate::state::AppState;

/// Versions of a model.
pub const VERSIONS: &str = "/v1/projects/{project}/models/{model}/versions";
/// One version (`POST` on `{version}:predict` or `{version}:setDefault`).
pub const VERSION: &str = "/v1/projects/{project}/models/{model}/versions/{version}";

/// The versions routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(VERSIONS, post(create).get(list))
        .route(VERSION, get(read).delete(delete).patch(patch).post(action))
}

/// The version's id, framework and source directory, or the violations.
fn check_version(s: &AppState, v: &Version) -> Result<(String, std::path::PathBuf), ApiError> {
    let mut violations = Vec::new();
    let id = resource_id(&v.name, "version.name")
        .map_err(|e| violations.push(e))
        .unwrap_or_default();
    match v.framework {
        Framework::FrameworkUnspecified | Framework::Mle | Framework::Onnx => {}
        other => violations.push(FieldViolation::new(
            "version.framework",
            format!("{other:?} models cannot be served here; export them to ONNX (framework ONNX)"),
        )),
    }
    let source = if v.deployment_uri.is_empty() {
        violations.push(FieldViolation::new("version.deployment_uri", "is required"));
        None
    } else {
        match source_dir(&v.deployment_uri, s.cfg.allow_root.as_deref()) {
            Err(e) => {
                violations.push(FieldViolation::new("version.deployment_uri", e));
                None
            }
            Ok(p) => Some(p),
        }
    };
    match source {
        Some(p) if violations.is_empty() => Ok((id, p)),
        _ => Err(ApiError::Invalid(violations)),
    }
}

async fn create(
    State(s): State<Arc<AppState>>,
    Path((project, model)): Path<(String, String)>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Operation>, ApiError> {
    let mut v: Version = body(raw, "version")?;
    let (id, source) = check_version(&s, &v)?;
    s.db.get::<Model>(Kind::Model, &project, "", &model).await?;
    let first =
        s.db.list::<Version>(Kind::Version, &project, &model, 0, 1)
            .await?
            .is_empty();
    v.name = version_name(&project, &model, &id);
    v.state = VersionState::Creating;
    v.create_time = now_rfc3339();
    v.is_default = first;
    v.error_message.clear();
    v.last_use_time.clear();
    v.etag.clear();
    s.db.insert(Kind::Version, &project, &model, &id, &v)
        .await?;
    let (op_id, op) =
        operations::start(&s.db, &project, "CREATE_VERSION", &model, Some(&v), false).await?;
    let serving = s.serving.clone();
    tokio::spawn(async move {
        serving
            .finish_version(&project, &model, &id, &op_id, source)
            .await;
    });
    Ok(Json(op))
}

async fn read(
    State(s): State<Arc<AppState>>,
    Path((project, model, version)): Path<(String, String, String)>,
) -> Result<Json<Version>, ApiError> {
    let rec = s.db.get(Kind::Version, &project, &model, &version).await?;
    Ok(Json(version_out(rec)))
}

async fn list(
    State(s): State<Arc<AppState>>,
    Path((project, model)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    s.db.get::<Model>(Kind::Model, &project, "", &model).await?;
    let (size, after) = page(&q)?;
    let recs: Vec<Stored<Version>> =
        s.db.list(Kind::Version, &project, &model, after, size + 1)
            .await?;
    let items = recs
        .into_iter()
        .map(|r| {
            (
                r.seq,
                serde_json::to_value(version_out(r)).unwrap_or_default(),
            )
        })
        .collect();
    Ok(Json(paged(items, size, "versions")))
}

async fn delete(
    State(s): State<Arc<AppState>>,
    Path((project, model, version)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let rec: Stored<Version> = s.db.get(Kind::Version, &project, &model, &version).await?;
    if rec.value.state == VersionState::Creating {
        // Its files are being copied and loaded: deleting now would leave them behind.
        return Err(ApiError::Status(
            ApiStatus::FailedPrecondition,
            format!("version '{version}' is being created; delete it once it is READY or FAILED"),
        ));
    }
    if rec.value.is_default {
        let others =
            s.db.list::<Version>(Kind::Version, &project, &model, 0, 2)
                .await?;
        if others.len() > 1 {
            return Err(ApiError::Status(
                ApiStatus::FailedPrecondition,
                format!(
                    "version '{version}' is the default; make another version the default first"
                ),
            ));
        }
    }
    s.db.delete(Kind::Version, &project, &model, &version, None)
        .await?;
    s.serving.unload(&project, &model, &version);
    let v = version_out(rec);
    let (_, op) =
        operations::start(&s.db, &project, "DELETE_VERSION", &model, Some(&v), true).await?;
    Ok(Json(serde_json::to_value(op).unwrap_or_default()))
}

async fn patch(
    State(s): State<Arc<AppState>>,
    Path((project, model, version)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let patch: Version = body(raw, "version")?;
    let mask = fields_mask(&q)?;
    let v = s
        .serving
        .update_version(&project, &model, &version, |v| {
            for f in &mask {
                match f.as_str() {
                    "description" => v.description = patch.description.clone(),
                    "labels" => v.labels = patch.labels.clone(),
                    _ => {}
                }
            }
        })
        .await?;
    let (_, op) =
        operations::start(&s.db, &project, "UPDATE_VERSION", &model, Some(&v), true).await?;
    Ok(Json(serde_json::to_value(op).unwrap_or_default()))
}

async fn set_default(
    s: &AppState,
    project: &str,
    model: &str,
    version: &str,
) -> Result<Version, ApiError> {
    let target: Stored<Version> = s.db.get(Kind::Version, project, model, version).await?;
    if target.value.state != VersionState::Ready {
        return Err(ApiError::Status(
            ApiStatus::FailedPrecondition,
            format!("version '{version}' is not READY"),
        ));
    }
    if let Some(old) = default_version(&s.db, project, model).await?
        && old.name != version
    {
        s.serving
            .update_version(project, model, &old.name, |v| v.is_default = false)
            .await?;
    }
    Ok(s.serving
        .update_version(project, model, version, |v| v.is_default = true)
        .await?)
}

/// `POST {version}:setDefault` or `POST {version}:predict`.
async fn action(
    State(s): State<Arc<AppState>>,
    Path((project, model, segment)): Path<(String, String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, PredictError> {
    if let Some(version) = segment.strip_suffix(":setDefault") {
        return Ok(match set_default(&s, &project, &model, version).await {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        });
    }
    predict_action(&s, &project, Some(&model), &segment, raw).await
}
