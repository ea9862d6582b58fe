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
use mle_api::{FieldViolation, Framework, Model, Operation, Version, VersionState, now_rfc3339};
use serde_json::Value;

use super::predict::predict_action;
use super::{body, fields_mask, page, paged, resource_id};
use crate::catalog::{Source, source, version_name, version_out};
use crate::db::{Kind, Stored};
use crate::error::{ApiError, PredictError};
use crate::state::AppState;
use crate::{defaults, operations};

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

/// The version's id, framework and source, or the violations.
fn check_version(s: &AppState, v: &Version) -> Result<(String, Source), ApiError> {
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
    let src = if v.deployment_uri.is_empty() {
        violations.push(FieldViolation::new("version.deployment_uri", "is required"));
        None
    } else {
        match source(&v.deployment_uri, s.cfg.paths()) {
            Err(e) => {
                violations.push(FieldViolation::new("version.deployment_uri", e));
                None
            }
            Ok(p) => Some(p),
        }
    };
    match src {
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
    v.name = version_name(&project, &model, &id);
    v.state = VersionState::Creating;
    v.create_time = now_rfc3339();
    v.error_message.clear();
    v.last_use_time.clear();
    v.etag.clear();
    let v = defaults::create(&s.db, &project, &model, &id, &v).await?;
    s.serving.forget_routes();
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
    let rec = defaults::delete(&s.db, &project, &model, &version).await?;
    s.serving.forget_routes();
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

/// `POST {version}:setDefault` or `POST {version}:predict`.
async fn action(
    State(s): State<Arc<AppState>>,
    Path((project, model, segment)): Path<(String, String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, PredictError> {
    if let Some(version) = segment.strip_suffix(":setDefault") {
        let set = defaults::set_default(&s.db, &project, &model, version).await;
        s.serving.forget_routes();
        return Ok(match set {
            Ok(v) => Json(version_out(v)).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        });
    }
    predict_action(&s, &project, Some(&model), &segment, raw).await
}
