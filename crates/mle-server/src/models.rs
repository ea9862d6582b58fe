//! Serving: `/v1/projects/{p}/models` (create, get, list, patch, delete when empty), their
//! `versions` (create → Operation, get, list, patch, delete, `:setDefault`), `operations`, and
//! online prediction over three protocols: ml v1 (`...models/{m}[/versions/{v}]:predict`),
//! KServe V1 (`/v1/models/{m}:predict`) and the Open Inference Protocol V2 (`/v2/...`), the
//! last two for the `default` project.
//!
//! `versions.create` copies the model files into `<data-dir>/models/<p>/<m>/<v>/`, so later
//! changes to the source do not affect the version, and loads them; loaded versions stay warm
//! in the [`Registry`] and micro-batch concurrent requests.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mle_api::{
    ApiStatus, FieldViolation, Framework, Model, Operation, OperationError, Version, VersionState,
    valid_resource_id,
};
use mle_serve::{BatchOptions, Batcher, Format, Output, Servable, ServeError};
use mle_store::{Resource, StoreError};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::jobs::{body, valid_project};
use crate::scheduler::{Scheduler, inside, now_rfc3339};

/// Models of a project.
pub const MODELS: &str = "/v1/projects/{project}/models";
/// One model (`POST` on `{model}:predict` predicts with its default version).
pub const MODEL: &str = "/v1/projects/{project}/models/{model}";
/// Versions of a model.
pub const VERSIONS: &str = "/v1/projects/{project}/models/{model}/versions";
/// One version (`POST` on `{version}:predict` or `{version}:setDefault`).
pub const VERSION: &str = "/v1/projects/{project}/models/{model}/versions/{version}";
/// Operations of a project.
pub const OPERATIONS: &str = "/v1/projects/{project}/operations";
/// One operation.
pub const OPERATION: &str = "/v1/projects/{project}/operations/{operation}";
/// KServe V1: model status, and `POST {model}:predict`.
pub const KSERVE_MODEL: &str = "/v1/models/{model}";
/// Open Inference Protocol V2 paths.
pub const V2_LIVE: &str = "/v2/health/live";
/// V2 server readiness.
pub const V2_READY: &str = "/v2/health/ready";
/// V2 model metadata.
pub const V2_MODEL: &str = "/v2/models/{model}";
/// V2 model readiness.
pub const V2_MODEL_READY: &str = "/v2/models/{model}/ready";
/// V2 inference on the default version.
pub const V2_INFER: &str = "/v2/models/{model}/infer";
/// V2 inference on one version.
pub const V2_VERSION_INFER: &str = "/v2/models/{model}/versions/{version}/infer";

/// The request body limit of online prediction (as CMLE's).
pub const MAX_PREDICT_BYTES: usize = 1_572_864;
/// The project KServe and V2 requests use.
pub const DEFAULT_PROJECT: &str = "default";

/// `project/model/version` (`project/model/` for the default version).
type RouteKey = String;

fn route_key(project: &str, model: &str, version: Option<&str>) -> RouteKey {
    let v = version.unwrap_or("");
    let mut k = String::with_capacity(project.len() + model.len() + v.len() + 2);
    k.push_str(project);
    k.push('/');
    k.push_str(model);
    k.push('/');
    k.push_str(v);
    k
}

/// Loaded versions, by `(project, model, version)`, and the answers of recent
/// `(project, model, version or default)` lookups, so that a prediction touches no database.
/// Every change to a version clears the lookups.
#[derive(Default)]
pub struct Registry {
    loaded: RwLock<HashMap<(String, String, String), Arc<Batcher>>>,
    routes: RwLock<HashMap<RouteKey, (String, Arc<Batcher>)>>,
}

impl Registry {
    fn route(&self, key: &RouteKey) -> Option<(String, Arc<Batcher>)> {
        self.routes.read().ok()?.get(key).cloned()
    }

    fn put_route(&self, key: RouteKey, version: String, b: Arc<Batcher>) {
        if let Ok(mut m) = self.routes.write() {
            m.insert(key, (version, b));
        }
    }

    fn clear_routes(&self) {
        if let Ok(mut m) = self.routes.write() {
            m.clear();
        }
    }

    fn get(&self, key: &(String, String, String)) -> Option<Arc<Batcher>> {
        self.loaded.read().ok()?.get(key).cloned()
    }

    fn put(&self, key: (String, String, String), b: Arc<Batcher>) {
        if let Ok(mut m) = self.loaded.write() {
            m.insert(key, b);
        }
    }

    fn remove(&self, key: &(String, String, String)) {
        if let Ok(mut m) = self.loaded.write() {
            m.remove(key);
        }
        self.clear_routes();
    }
}

/// The serving routes (they need the token like every other route but the V2 health checks).
pub fn router() -> Router<Arc<Scheduler>> {
    Router::new()
        .route(MODELS, post(create_model).get(list_models))
        .route(
            MODEL,
            get(get_model)
                .delete(delete_model)
                .patch(patch_model)
                .post(model_action),
        )
        .route(VERSIONS, post(create_version).get(list_versions))
        .route(
            VERSION,
            get(get_version)
                .delete(delete_version)
                .patch(patch_version)
                .post(version_action),
        )
        .route(OPERATIONS, get(list_operations))
        .route(OPERATION, get(get_operation))
        .route(KSERVE_MODEL, get(kserve_status).post(kserve_predict))
        .route(V2_MODEL, get(v2_metadata))
        .route(V2_MODEL_READY, get(v2_model_ready))
        .route(V2_INFER, post(v2_infer))
        .route(V2_VERSION_INFER, post(v2_version_infer))
        .layer(DefaultBodyLimit::max(MAX_PREDICT_BYTES))
}

/// Health routes of the V2 protocol (no token, like `/healthz`).
pub fn health_router() -> Router {
    Router::new()
        .route(V2_LIVE, get(|| async { Json(json!({"live": true})) }))
        .route(V2_READY, get(|| async { Json(json!({"ready": true})) }))
}

fn invalid(field: &str, why: impl Into<String>) -> ApiError {
    ApiError::Invalid(vec![FieldViolation::new(field, why)])
}

fn decode<T: serde::de::DeserializeOwned + Default>(r: &Resource) -> T {
    serde_json::from_str(&r.body).unwrap_or_default()
}

fn model_name(project: &str, model: &str) -> String {
    format!("projects/{project}/models/{model}")
}

fn version_name(project: &str, model: &str, version: &str) -> String {
    format!("projects/{project}/models/{model}/versions/{version}")
}

fn page(q: &HashMap<String, String>) -> Result<(i64, i64), ApiError> {
    let size = match q.get("pageSize").map(|v| v.parse::<i64>()) {
        None => 20,
        Some(Ok(n)) if n > 0 => n.min(100),
        Some(_) => return Err(invalid("page_size", "must be a positive integer")),
    };
    let after = match q.get("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .parse::<i64>()
            .map_err(|_| invalid("page_token", "invalid page token"))?,
    };
    Ok((size, after))
}

/// A list response: the page's items under `key`, and `nextPageToken` when `recs` (fetched with
/// one row more than `size`) holds more.
fn paged(recs: &[Resource], size: i64, key: &str, items: Vec<Value>) -> Value {
    let page = &recs[..recs.len().min(size as usize)];
    let mut out = json!({ key: items });
    if recs.len() as i64 > size
        && let Some(last) = page.last()
    {
        out["nextPageToken"] = json!(last.seq.to_string());
    }
    out
}

// ---- models ----

async fn model_with_default(s: &Scheduler, project: &str, rec: &Resource) -> Model {
    let mut m: Model = decode(rec);
    m.etag = rec.etag.to_string();
    m.default_version = default_version(s, project, &rec.name)
        .await
        .ok()
        .flatten()
        .map(|v| version_out(&v));
    m
}

async fn create_model(
    State(s): State<Arc<Scheduler>>,
    Path(project): Path<String>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Model>, ApiError> {
    valid_project(&project)?;
    let mut m: Model =
        serde_json::from_value(body(raw)?).map_err(|e| invalid("model", e.to_string()))?;
    let id = m.name.rsplit('/').next().unwrap_or_default().to_string();
    if !valid_resource_id(&id) {
        return Err(invalid(
            "model.name",
            format!(
                "'{id}' must start with a letter and hold only letters, digits and underscores (at most 128)"
            ),
        ));
    }
    m.name = model_name(&project, &id);
    m.default_version = None;
    m.etag.clear();
    let body = serde_json::to_string(&m).map_err(|e| ApiError::Internal(e.to_string()))?;
    let rec = s
        .store
        .insert_resource("model", &project, "", &id, &body)
        .await?;
    m.etag = rec.etag.to_string();
    Ok(Json(m))
}

async fn get_model(
    State(s): State<Arc<Scheduler>>,
    Path((project, model)): Path<(String, String)>,
) -> Result<Json<Model>, ApiError> {
    let rec = s.store.get_resource("model", &project, "", &model).await?;
    Ok(Json(model_with_default(&s, &project, &rec).await))
}

async fn list_models(
    State(s): State<Arc<Scheduler>>,
    Path(project): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (size, after) = page(&q)?;
    let recs = s
        .store
        .list_resources("model", &project, "", after, size + 1)
        .await?;
    let mut models = Vec::new();
    for r in recs.iter().take(size as usize) {
        models.push(
            serde_json::to_value(model_with_default(&s, &project, r).await).unwrap_or_default(),
        );
    }
    Ok(Json(paged(&recs, size, "models", models)))
}

async fn delete_model(
    State(s): State<Arc<Scheduler>>,
    Path((project, model)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    match s
        .store
        .delete_resource("model", &project, "", &model, Some("version"))
        .await
    {
        Err(StoreError::HasChildren { .. }) => Err(ApiError::Status(
            ApiStatus::FailedPrecondition,
            format!("model '{model}' still has versions; delete them first"),
        )),
        r => r.map_err(ApiError::from),
    }?;
    s.serving.clear_routes();
    let _ = std::fs::remove_dir_all(s.cfg.data_dir.join("models").join(&project).join(&model));
    let op = finished_operation(&s, &project, "DELETE_MODEL", &model, None, None).await?;
    Ok(Json(serde_json::to_value(op).unwrap_or_default()))
}

async fn patch_model(
    State(s): State<Arc<Scheduler>>,
    Path((project, model)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let patch: Model =
        serde_json::from_value(body(raw)?).map_err(|e| invalid("model", e.to_string()))?;
    let mask = fields_mask(&q)?;
    loop {
        let rec = s.store.get_resource("model", &project, "", &model).await?;
        let mut m: Model = decode(&rec);
        for f in &mask {
            match f.as_str() {
                "description" => m.description = patch.description.clone(),
                "labels" => m.labels = patch.labels.clone(),
                _ => {}
            }
        }
        let body = serde_json::to_string(&m).map_err(|e| ApiError::Internal(e.to_string()))?;
        match s
            .store
            .update_resource("model", &project, "", &model, rec.etag, &body)
            .await
        {
            Err(StoreError::Conflict { .. }) => continue,
            r => {
                r?;
                break;
            }
        }
    }
    let op = finished_operation(&s, &project, "UPDATE_MODEL", &model, None, None).await?;
    Ok(Json(serde_json::to_value(op).unwrap_or_default()))
}

fn fields_mask(q: &HashMap<String, String>) -> Result<Vec<String>, ApiError> {
    let mask: Vec<String> = q
        .get("updateMask")
        .map(|m| m.split(',').map(|f| f.trim().to_string()).collect())
        .unwrap_or_default();
    if mask.is_empty() {
        return Err(invalid(
            "update_mask",
            "is required: description and/or labels",
        ));
    }
    if let Some(bad) = mask
        .iter()
        .find(|f| !["description", "labels"].contains(&f.as_str()))
    {
        return Err(invalid(
            "update_mask",
            format!("'{bad}' cannot be updated (description, labels)"),
        ));
    }
    Ok(mask)
}

// ---- versions ----

fn version_out(r: &Resource) -> Version {
    let mut v: Version = decode(r);
    v.etag = r.etag.to_string();
    v
}

async fn default_version(
    s: &Scheduler,
    project: &str,
    model: &str,
) -> Result<Option<Resource>, StoreError> {
    let mut after = 0;
    loop {
        let recs = s
            .store
            .list_resources("version", project, model, after, 100)
            .await?;
        if recs.is_empty() {
            return Ok(None);
        }
        after = recs.last().map_or(after, |r| r.seq);
        if let Some(r) = recs.into_iter().find(|r| decode::<Version>(r).is_default) {
            return Ok(Some(r));
        }
    }
}

/// Where a version's files live.
fn version_dir(s: &Scheduler, project: &str, model: &str, version: &str) -> PathBuf {
    s.cfg
        .data_dir
        .join("models")
        .join(project)
        .join(model)
        .join(version)
}

/// A deployment URI as a local directory: `file://` stripped; an export root
/// (`.../export/<name>`) means its newest timestamped export.
fn source_dir(uri: &str) -> Result<PathBuf, String> {
    if uri.contains("://") && !uri.starts_with("file://") {
        return Err("only local paths and file:// URIs are supported".into());
    }
    let p = PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri));
    if !p.is_absolute() {
        return Err(format!("'{uri}' must be an absolute path"));
    }
    if !p.is_dir() {
        return Err(format!("'{uri}' is not a directory"));
    }
    let holds_model = p.join("mle_model.json").is_file()
        || std::fs::read_dir(&p)
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "onnx"))
            })
            .unwrap_or(false);
    if holds_model {
        return Ok(p);
    }
    let newest = std::fs::read_dir(&p).ok().and_then(|d| {
        d.flatten()
            .filter_map(|e| {
                let ts: u64 = e.file_name().to_str()?.parse().ok()?;
                Some((ts, e.path()))
            })
            .max_by_key(|(ts, _)| *ts)
            .map(|(_, path)| path)
    });
    newest.ok_or_else(|| {
        format!("'{uri}' holds neither an mle export (mle_model.json) nor an .onnx model")
    })
}

fn copy_dir(from: &FsPath, to: &FsPath) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let kind = e.file_type()?;
        if kind.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else if kind.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
        // Symlinks and other special files are not copied.
    }
    Ok(())
}

fn op_metadata(
    kind: &str,
    project: &str,
    model: &str,
    version: Option<&Version>,
    created: &str,
) -> Value {
    let mut m = json!({
        "@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata",
        "createTime": created, "startTime": created,
        "operationType": kind, "modelName": model_name(project, model),
    });
    if let Some(v) = version {
        m["version"] = serde_json::to_value(v).unwrap_or_default();
    }
    m
}

fn op_id(kind: &str, model: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let salt: u32 = rand::random();
    format!("{}_{model}_{millis}_{salt:08x}", kind.to_ascii_lowercase())
}

async fn finished_operation(
    s: &Scheduler,
    project: &str,
    kind: &str,
    model: &str,
    version: Option<&Version>,
    error: Option<String>,
) -> Result<Operation, ApiError> {
    let now = now_rfc3339();
    let id = op_id(kind, model);
    let mut meta = op_metadata(kind, project, model, version, &now);
    meta["endTime"] = json!(now);
    let op = Operation {
        name: format!("projects/{project}/operations/{id}"),
        metadata: meta,
        done: true,
        error: error.map(|message| OperationError { code: 9, message }),
        response: None,
    };
    let body = serde_json::to_string(&op).map_err(|e| ApiError::Internal(e.to_string()))?;
    s.store
        .insert_resource("operation", project, "", &id, &body)
        .await?;
    Ok(op)
}

async fn create_version(
    State(s): State<Arc<Scheduler>>,
    Path((project, model)): Path<(String, String)>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Operation>, ApiError> {
    let mut v: Version =
        serde_json::from_value(body(raw)?).map_err(|e| invalid("version", e.to_string()))?;
    let id = v.name.rsplit('/').next().unwrap_or_default().to_string();
    let mut violations = Vec::new();
    if !valid_resource_id(&id) {
        violations.push(FieldViolation::new(
            "version.name",
            format!("'{id}' must start with a letter and hold only letters, digits and underscores (at most 128)"),
        ));
    }
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
        match source_dir(&v.deployment_uri) {
            Err(e) => {
                violations.push(FieldViolation::new("version.deployment_uri", e));
                None
            }
            Ok(p) => {
                if let Some(root) = &s.cfg.allow_root
                    && !inside(root, &p)
                {
                    violations.push(FieldViolation::new(
                        "version.deployment_uri",
                        format!(
                            "'{}' is outside the directory this server may use",
                            v.deployment_uri
                        ),
                    ));
                }
                Some(p)
            }
        }
    };
    if !violations.is_empty() {
        return Err(ApiError::Invalid(violations));
    }
    let source = source.expect("validated");
    s.store.get_resource("model", &project, "", &model).await?;
    let first = s
        .store
        .list_resources("version", &project, &model, 0, 1)
        .await?
        .is_empty();
    let now = now_rfc3339();
    v.name = version_name(&project, &model, &id);
    v.state = VersionState::Creating;
    v.create_time = now.clone();
    v.is_default = first;
    v.error_message.clear();
    v.last_use_time.clear();
    v.etag.clear();
    let body = serde_json::to_string(&v).map_err(|e| ApiError::Internal(e.to_string()))?;
    s.store
        .insert_resource("version", &project, &model, &id, &body)
        .await?;
    let op_id = op_id("CREATE_VERSION", &model);
    let op = Operation {
        name: format!("projects/{project}/operations/{op_id}"),
        metadata: op_metadata("CREATE_VERSION", &project, &model, Some(&v), &now),
        done: false,
        error: None,
        response: None,
    };
    let op_body = serde_json::to_string(&op).map_err(|e| ApiError::Internal(e.to_string()))?;
    s.store
        .insert_resource("operation", &project, "", &op_id, &op_body)
        .await?;
    let me = s.clone();
    tokio::spawn(async move {
        me.finish_version(&project, &model, &id, &op_id, source)
            .await;
    });
    Ok(Json(op))
}

impl Scheduler {
    /// Copies and loads a CREATING version, then marks it READY or FAILED and ends its
    /// operation.
    async fn finish_version(
        self: &Arc<Self>,
        project: &str,
        model: &str,
        version: &str,
        op_id: &str,
        source: PathBuf,
    ) {
        let dir = version_dir(self, project, model, version);
        let dir2 = dir.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<Batcher, String> {
            let tmp = dir2.with_extension("incoming");
            let _ = std::fs::remove_dir_all(&tmp);
            let _ = std::fs::remove_dir_all(&dir2);
            copy_dir(&source, &tmp).map_err(|e| format!("cannot copy the model files: {e}"))?;
            std::fs::rename(&tmp, &dir2)
                .map_err(|e| format!("cannot store the model files: {e}"))?;
            let servable = Servable::load(&dir2).map_err(|e| e.to_string())?;
            Ok(Batcher::new(servable, BatchOptions::default()))
        })
        .await
        .unwrap_or_else(|e| Err(format!("loading failed: {e}")));
        let error = loaded.as_ref().err().cloned();
        if let Ok(b) = loaded {
            let framework = match b.servable.signature.format {
                Format::Mle => Framework::Mle,
                Format::Onnx => Framework::Onnx,
            };
            self.serving
                .put((project.into(), model.into(), version.into()), Arc::new(b));
            let _ = self
                .update_version(project, model, version, |v| {
                    v.state = VersionState::Ready;
                    v.framework = framework;
                })
                .await;
        } else {
            let _ = std::fs::remove_dir_all(&dir);
            let message = error.clone().unwrap_or_default();
            let _ = self
                .update_version(project, model, version, |v| {
                    v.state = VersionState::Failed;
                    v.error_message = message.clone();
                })
                .await;
        }
        let final_version = self
            .store
            .get_resource("version", project, model, version)
            .await
            .ok()
            .map(|r| version_out(&r));
        loop {
            let Ok(rec) = self
                .store
                .get_resource("operation", project, "", op_id)
                .await
            else {
                return;
            };
            let mut op: Operation = decode(&rec);
            op.done = true;
            op.metadata["endTime"] = json!(now_rfc3339());
            match &error {
                Some(e) => {
                    op.error = Some(OperationError {
                        code: 3,
                        message: e.clone(),
                    })
                }
                None => {
                    let mut resp = serde_json::to_value(&final_version).unwrap_or_default();
                    resp["@type"] = json!("type.googleapis.com/google.cloud.ml.v1.Version");
                    op.response = Some(resp);
                }
            }
            let body = serde_json::to_string(&op).unwrap_or_default();
            match self
                .store
                .update_resource("operation", project, "", op_id, rec.etag, &body)
                .await
            {
                Err(StoreError::Conflict { .. }) => continue,
                _ => return,
            }
        }
    }

    async fn update_version(
        &self,
        project: &str,
        model: &str,
        version: &str,
        f: impl Fn(&mut Version),
    ) -> Result<Version, StoreError> {
        loop {
            let rec = self
                .store
                .get_resource("version", project, model, version)
                .await?;
            let mut v: Version = decode(&rec);
            f(&mut v);
            let body = serde_json::to_string(&v).unwrap_or_default();
            let r = self
                .store
                .update_resource("version", project, model, version, rec.etag, &body)
                .await;
            self.serving.clear_routes();
            match r {
                Err(StoreError::Conflict { .. }) => continue,
                r => return r.map(|r| version_out(&r)),
            }
        }
    }

    /// Versions left CREATING by a server that stopped: create them again from their source.
    pub(crate) async fn resume_versions(self: &Arc<Self>) -> Result<(), StoreError> {
        for rec in self.store.all_resources("version").await? {
            let v: Version = decode(&rec);
            if v.state != VersionState::Creating {
                continue;
            }
            let ops = self.store.all_resources("operation").await?;
            let op = ops.iter().find(|o| {
                let op: Operation = decode(o);
                !op.done && op.metadata["version"]["name"].as_str() == Some(v.name.as_str())
            });
            let op_id = op.map(|o| o.name.clone()).unwrap_or_default();
            match source_dir(&v.deployment_uri) {
                Ok(src) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.finish_version(&rec.project, &rec.parent, &rec.name, &op_id, src)
                            .await;
                    });
                }
                Err(e) => {
                    let _ = self
                        .update_version(&rec.project, &rec.parent, &rec.name, |v| {
                            v.state = VersionState::Failed;
                            v.error_message = e.clone();
                        })
                        .await;
                }
            }
        }
        Ok(())
    }

    /// The warm batcher of a READY version (loaded from its stored files on first use).
    async fn batcher(
        &self,
        project: &str,
        model: &str,
        version: &str,
    ) -> Result<Arc<Batcher>, PredictError> {
        let key = (project.to_string(), model.to_string(), version.to_string());
        if let Some(b) = self.serving.get(&key) {
            return Ok(b);
        }
        let dir = version_dir(self, project, model, version);
        let b = tokio::task::spawn_blocking(move || Servable::load(&dir))
            .await
            .map_err(|_| PredictError::internal())?
            .map_err(|e| {
                eprintln!("loading {project}/{model}/{version}: {e}");
                PredictError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the version cannot be loaded",
                )
            })?;
        let b = Arc::new(Batcher::new(b, BatchOptions::default()));
        self.serving.put(key, b.clone());
        Ok(b)
    }
}

async fn get_version(
    State(s): State<Arc<Scheduler>>,
    Path((project, model, version)): Path<(String, String, String)>,
) -> Result<Json<Version>, ApiError> {
    let rec = s
        .store
        .get_resource("version", &project, &model, &version)
        .await?;
    Ok(Json(version_out(&rec)))
}

async fn list_versions(
    State(s): State<Arc<Scheduler>>,
    Path((project, model)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    s.store.get_resource("model", &project, "", &model).await?;
    let (size, after) = page(&q)?;
    let recs = s
        .store
        .list_resources("version", &project, &model, after, size + 1)
        .await?;
    let items = recs
        .iter()
        .take(size as usize)
        .map(|r| serde_json::to_value(version_out(r)).unwrap_or_default())
        .collect();
    Ok(Json(paged(&recs, size, "versions", items)))
}

async fn delete_version(
    State(s): State<Arc<Scheduler>>,
    Path((project, model, version)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let rec = s
        .store
        .get_resource("version", &project, &model, &version)
        .await?;
    let v: Version = decode(&rec);
    if v.is_default {
        let others = s
            .store
            .list_resources("version", &project, &model, 0, 2)
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
    s.store
        .delete_resource("version", &project, &model, &version, None)
        .await?;
    s.serving
        .remove(&(project.clone(), model.clone(), version.clone()));
    let _ = std::fs::remove_dir_all(version_dir(&s, &project, &model, &version));
    let op = finished_operation(
        &s,
        &project,
        "DELETE_VERSION",
        &model,
        Some(&version_out(&rec)),
        None,
    )
    .await?;
    Ok(Json(serde_json::to_value(op).unwrap_or_default()))
}

async fn patch_version(
    State(s): State<Arc<Scheduler>>,
    Path((project, model, version)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let patch: Version =
        serde_json::from_value(body(raw)?).map_err(|e| invalid("version", e.to_string()))?;
    let mask = fields_mask(&q)?;
    let v = s
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
    let op = finished_operation(&s, &project, "UPDATE_VERSION", &model, Some(&v), None).await?;
    Ok(Json(serde_json::to_value(op).unwrap_or_default()))
}

async fn set_default(
    s: &Scheduler,
    project: &str,
    model: &str,
    version: &str,
) -> Result<Version, ApiError> {
    let target = s
        .store
        .get_resource("version", project, model, version)
        .await?;
    if decode::<Version>(&target).state != VersionState::Ready {
        return Err(ApiError::Status(
            ApiStatus::FailedPrecondition,
            format!("version '{version}' is not READY"),
        ));
    }
    if let Some(old) = default_version(s, project, model).await?
        && old.name != version
    {
        s.update_version(project, model, &old.name, |v| v.is_default = false)
            .await?;
    }
    Ok(
        s.update_version(project, model, version, |v| v.is_default = true)
            .await?,
    )
}

// ---- operations ----

async fn get_operation(
    State(s): State<Arc<Scheduler>>,
    Path((project, operation)): Path<(String, String)>,
) -> Result<Json<Operation>, ApiError> {
    let rec = s
        .store
        .get_resource("operation", &project, "", &operation)
        .await?;
    Ok(Json(decode(&rec)))
}

async fn list_operations(
    State(s): State<Arc<Scheduler>>,
    Path(project): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (size, after) = page(&q)?;
    let recs = s
        .store
        .list_resources("operation", &project, "", after, size + 1)
        .await?;
    let items = recs
        .iter()
        .take(size as usize)
        .map(|r| serde_json::from_str(&r.body).unwrap_or_default())
        .collect();
    Ok(Json(paged(&recs, size, "operations", items)))
}

// ---- prediction ----

/// A prediction error: `{"error": "..."}` with a status (never a 500 for bad input).
pub struct PredictError {
    status: StatusCode,
    message: String,
}

impl PredictError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<StoreError> for PredictError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, id } => {
                Self::new(StatusCode::NOT_FOUND, format!("{kind} '{id}' not found"))
            }
            other => {
                eprintln!("store error in prediction: {other}");
                Self::internal()
            }
        }
    }
}

impl From<ServeError> for PredictError {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::BadInput(m) => Self::bad(m),
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

/// The READY version a request addresses (the model's default when `version` is None).
async fn resolve(
    s: &Scheduler,
    project: &str,
    model: &str,
    version: Option<&str>,
) -> Result<String, PredictError> {
    let rec = match version {
        Some(v) => s.store.get_resource("version", project, model, v).await?,
        None => {
            s.store.get_resource("model", project, "", model).await?;
            default_version(s, project, model).await?.ok_or_else(|| {
                PredictError::bad(format!("model '{model}' has no default version"))
            })?
        }
    };
    let v: Version = decode(&rec);
    if v.state != VersionState::Ready {
        return Err(PredictError::bad(format!(
            "version '{}' is {:?}, not READY",
            rec.name, v.state
        )));
    }
    Ok(rec.name)
}

fn json_body(raw: Result<Bytes, BytesRejection>) -> Result<Value, PredictError> {
    let bytes = raw.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            PredictError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request is larger than {MAX_PREDICT_BYTES} bytes"),
            )
        } else {
            PredictError::bad("cannot read the request body")
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| PredictError::bad(format!("malformed JSON: {e}")))
}

/// The batcher serving `version` (or the default) of `model`, and the version's name.
async fn route(
    s: &Scheduler,
    project: &str,
    model: &str,
    version: Option<&str>,
) -> Result<(String, Arc<Batcher>), PredictError> {
    let key = route_key(project, model, version);
    if let Some(hit) = s.serving.route(&key) {
        return Ok(hit);
    }
    let resolved = resolve(s, project, model, version).await?;
    let b = s.batcher(project, model, &resolved).await?;
    s.serving.put_route(key, resolved.clone(), b.clone());
    Ok((resolved, b))
}

/// `{"instances": [...]}` → `{"predictions": [...]}` with version `version` of `model`.
async fn predict_instances(
    s: &Scheduler,
    project: &str,
    model: &str,
    version: Option<&str>,
    req: Value,
) -> Result<Response, PredictError> {
    let (_, b) = route(s, project, model, version).await?;
    let sig = &b.servable.signature;
    let instances = req
        .get("instances")
        .ok_or_else(|| PredictError::bad("the request needs an 'instances' list"))?;
    let rows = mle_serve::parse_instances(instances, sig)?;
    let n = rows.len() / sig.inputs.len();
    let out = b.predict(rows, n).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        sig.predictions_json(&out),
    )
        .into_response())
}

async fn model_action(
    State(s): State<Arc<Scheduler>>,
    Path((project, segment)): Path<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, PredictError> {
    let Some(model) = segment.strip_suffix(":predict") else {
        return Err(PredictError::new(
            StatusCode::NOT_FOUND,
            format!("no such method: POST {segment}"),
        ));
    };
    let req = json_body(raw)?;
    predict_instances(&s, &project, model, None, req).await
}

async fn version_action(
    State(s): State<Arc<Scheduler>>,
    Path((project, model, segment)): Path<(String, String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, PredictError> {
    if let Some(version) = segment.strip_suffix(":setDefault") {
        return Ok(match set_default(&s, &project, &model, version).await {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        });
    }
    let Some(version) = segment.strip_suffix(":predict") else {
        return Err(PredictError::new(
            StatusCode::NOT_FOUND,
            format!("no such method: POST {segment}"),
        ));
    };
    let req = json_body(raw)?;
    predict_instances(&s, &project, &model, Some(version), req).await
}

async fn kserve_status(
    State(s): State<Arc<Scheduler>>,
    Path(model): Path<String>,
) -> Result<Json<Value>, PredictError> {
    let ready = resolve(&s, DEFAULT_PROJECT, &model, None).await.is_ok();
    s.store
        .get_resource("model", DEFAULT_PROJECT, "", &model)
        .await?;
    Ok(Json(json!({"name": model, "ready": ready})))
}

async fn kserve_predict(
    State(s): State<Arc<Scheduler>>,
    Path(segment): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, PredictError> {
    let Some(model) = segment.strip_suffix(":predict") else {
        return Err(PredictError::new(
            StatusCode::NOT_FOUND,
            format!("no such method: POST {segment}"),
        ));
    };
    let req = json_body(raw)?;
    predict_instances(&s, DEFAULT_PROJECT, model, None, req).await
}

fn v2_platform(o: &Output, f: Format) -> (&'static str, usize) {
    let platform = match f {
        Format::Mle => "mle",
        Format::Onnx => "onnx",
    };
    let classes = match o {
        Output::Classification { classes } => classes.len(),
        Output::Regression => 0,
    };
    (platform, classes)
}

async fn v2_metadata(
    State(s): State<Arc<Scheduler>>,
    Path(model): Path<String>,
) -> Result<Json<Value>, PredictError> {
    let version = resolve(&s, DEFAULT_PROJECT, &model, None).await?;
    let b = s.batcher(DEFAULT_PROJECT, &model, &version).await?;
    let sig = &b.servable.signature;
    let versions: Vec<String> = s
        .store
        .list_resources("version", DEFAULT_PROJECT, &model, 0, 100)
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();
    let (platform, _) = v2_platform(&sig.output, sig.format);
    let mut outputs = vec![json!({"name": "output", "datatype": "FP32", "shape": [-1, sig.width]})];
    if let Output::Classification { .. } = sig.output {
        outputs.push(json!({"name": "label", "datatype": "BYTES", "shape": [-1]}));
    }
    Ok(Json(json!({
        "name": model, "versions": versions, "platform": platform,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, sig.inputs.len()]}],
        "outputs": outputs,
    })))
}

async fn v2_model_ready(State(s): State<Arc<Scheduler>>, Path(model): Path<String>) -> Response {
    match resolve(&s, DEFAULT_PROJECT, &model, None).await {
        Ok(_) => Json(json!({"name": model, "ready": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

fn flatten_numbers(v: &Value, out: &mut Vec<f32>) -> Result<(), String> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|x| flatten_numbers(x, out)),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN) as f32;
            if !x.is_finite() {
                return Err(format!("{n} is not a finite FP32 value"));
            }
            out.push(x);
            Ok(())
        }
        other => Err(format!("tensor data must be numbers, got {other}")),
    }
}

async fn v2_run(
    s: &Scheduler,
    model: &str,
    version: Option<&str>,
    req: Value,
) -> Result<Json<Value>, PredictError> {
    let (resolved, b) = route(s, DEFAULT_PROJECT, model, version).await?;
    let sig = &b.servable.signature;
    let inputs = req["inputs"]
        .as_array()
        .filter(|i| i.len() == 1)
        .ok_or_else(|| PredictError::bad("'inputs' must hold exactly one tensor"))?;
    let t = &inputs[0];
    let datatype = t["datatype"].as_str().unwrap_or_default();
    if !["FP32", "FP64", "INT32", "INT64", "FP16"].contains(&datatype) {
        return Err(PredictError::bad(format!(
            "datatype '{datatype}' is not supported (FP32, FP64, INT32, INT64)"
        )));
    }
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        })
        .unwrap_or_default();
    let w = sig.inputs.len();
    let n = match shape.as_slice() {
        [n, cols] if *cols == w => *n,
        [cols] if *cols == w => 1,
        _ => {
            return Err(PredictError::bad(format!(
                "shape {:?} does not fit the model's input [N, {w}]",
                t["shape"]
            )));
        }
    };
    let mut rows = Vec::with_capacity(n * w);
    flatten_numbers(&t["data"], &mut rows).map_err(PredictError::bad)?;
    if rows.len() != n * w || n == 0 {
        return Err(PredictError::bad(format!(
            "data holds {} values, shape {:?} needs {}",
            rows.len(),
            t["shape"],
            n * w
        )));
    }
    let out = b.predict(rows, n).await?;
    let mut outputs =
        vec![json!({"name": "output", "datatype": "FP32", "shape": [n, sig.width], "data": out})];
    if let Output::Classification { classes } = &sig.output {
        let labels: Vec<&str> = out
            .chunks(sig.width)
            .map(|r| {
                let best = if r.len() == 1 {
                    usize::from(r[0] >= 0.5)
                } else {
                    r.iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map_or(0, |(i, _)| i)
                };
                classes.get(best).map_or("", String::as_str)
            })
            .collect();
        outputs.push(json!({"name": "label", "datatype": "BYTES", "shape": [n], "data": labels}));
    }
    let mut resp = json!({"model_name": model, "model_version": resolved, "outputs": outputs});
    if let Some(id) = req.get("id") {
        resp["id"] = id.clone();
    }
    Ok(Json(resp))
}

async fn v2_infer(
    State(s): State<Arc<Scheduler>>,
    Path(model): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, PredictError> {
    let req = json_body(raw)?;
    v2_run(&s, &model, None, req).await
}

async fn v2_version_infer(
    State(s): State<Arc<Scheduler>>,
    Path((model, version)): Path<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, PredictError> {
    let req = json_body(raw)?;
    v2_run(&s, &model, Some(&version), req).await
}

// ---- batch prediction ----

impl Scheduler {
    /// The model directory a prediction input names: a READY version's stored files, or a
    /// `uri` used in place.
    async fn prediction_model_dir(
        &self,
        project: &str,
        p: &mle_api::PredictionInput,
    ) -> Result<PathBuf, String> {
        if !p.uri.is_empty() {
            return source_dir(&p.uri);
        }
        let (model, version) = if !p.version_name.is_empty() {
            let parts: Vec<&str> = p.version_name.split('/').collect();
            match parts.as_slice() {
                ["projects", pr, "models", m, "versions", v] if *pr == project => {
                    (m.to_string(), Some(v.to_string()))
                }
                _ => {
                    return Err(format!(
                        "versionName '{}' is not projects/{project}/models/M/versions/V",
                        p.version_name
                    ));
                }
            }
        } else {
            let parts: Vec<&str> = p.model_name.split('/').collect();
            match parts.as_slice() {
                ["projects", pr, "models", m] if *pr == project => (m.to_string(), None),
                [m] => (m.to_string(), None),
                _ => {
                    return Err(format!(
                        "modelName '{}' is not projects/{project}/models/M",
                        p.model_name
                    ));
                }
            }
        };
        let version = resolve(self, project, &model, version.as_deref())
            .await
            .map_err(|e| e.message)?;
        Ok(version_dir(self, project, &model, &version))
    }

    /// Field violations of a batch prediction job (the model must be servable, paths local).
    pub(crate) async fn check_prediction(
        &self,
        project: &str,
        p: &mle_api::PredictionInput,
    ) -> Result<Vec<FieldViolation>, ApiError> {
        let mut v = Vec::new();
        let f = |n: &str| format!("job.prediction_input.{n}");
        if [&p.model_name, &p.version_name, &p.uri]
            .iter()
            .filter(|s| !s.is_empty())
            .count()
            == 1
            && let Err(e) = self.prediction_model_dir(project, p).await
        {
            v.push(FieldViolation::new(&f("model_name"), e));
        }
        let local = |field: &str, path: &str, v: &mut Vec<FieldViolation>| {
            let plain = path.strip_prefix("file://").unwrap_or(path);
            if path.contains("://") && !path.starts_with("file://") {
                v.push(FieldViolation::new(
                    field,
                    "only local paths and file:// URIs are supported",
                ));
            } else if !FsPath::new(plain).is_absolute() {
                v.push(FieldViolation::new(
                    field,
                    format!("'{path}' must be an absolute path"),
                ));
            } else if let Some(root) = &self.cfg.allow_root
                && !inside(root, FsPath::new(plain))
            {
                v.push(FieldViolation::new(
                    field,
                    format!("'{path}' is outside the directory this server may use"),
                ));
            }
        };
        for (i, path) in p.input_paths.iter().enumerate() {
            local(&f(&format!("input_paths[{i}]")), path, &mut v);
        }
        if !p.output_path.is_empty() {
            local(&f("output_path"), &p.output_path, &mut v);
        }
        if v.is_empty()
            && !p.input_paths.is_empty()
            && let Err(e) = mle_serve::expand_inputs(&p.input_paths)
        {
            v.push(FieldViolation::new(&f("input_paths"), e.to_string()));
        }
        Ok(v)
    }

    /// The one process of a batch prediction job: `mle exec-predict`.
    pub(crate) async fn plan_prediction(
        &self,
        project: &str,
        p: &mle_api::PredictionInput,
        run: &mle_exec::RunDir,
    ) -> Result<mle_exec::JobPlan, String> {
        let dir = self.prediction_model_dir(project, p).await?;
        let format = match p.data_format {
            mle_api::DataFormat::Json => "json",
            _ => "text",
        };
        let mut args = vec![
            "exec-predict".to_string(),
            "--model-dir".into(),
            dir.display().to_string(),
            "--data-format".into(),
            format.into(),
            "--output-path".into(),
            p.output_path
                .strip_prefix("file://")
                .unwrap_or(&p.output_path)
                .to_string(),
            "--batch-size".into(),
            (if p.batch_size.0 > 0 {
                p.batch_size.0
            } else {
                64
            })
            .to_string(),
            "--summary".into(),
            run.0.join("prediction.json").display().to_string(),
            "--".into(),
        ];
        args.extend(p.input_paths.iter().cloned());
        Ok(mle_exec::JobPlan {
            replicas: vec![mle_exec::ReplicaPlan {
                task: "master-replica-0".into(),
                program: self.cfg.mle_exe.display().to_string(),
                args,
                env: Vec::new(),
                cwd: None,
            }],
            max_running_secs: None,
            trial: None,
        })
    }
}
