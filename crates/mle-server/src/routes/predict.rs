//! Online prediction over three protocols: ml v1 (`...models/{m}[/versions/{v}]:predict`,
//! reached through the models and versions routes), KServe V1 (`/v1/models/{m}:predict`) and
//! the Open Inference Protocol V2 (`/v2/...`), the last two for the `default` project. Every
//! size in a request is checked against the data it holds before anything is allocated.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mle_api::{Model, Version};
use mle_predict::{Format, Output};
use serde_json::{Value, json};

use crate::catalog::resolve;
use crate::db::{Kind, Stored};
use crate::error::PredictError;
use crate::state::AppState;

/// KServe V1: model status, and `POST {model}:predict`.
pub const KSERVE_MODEL: &str = "/v1/models/{model}";
/// Open Inference Protocol V2 server liveness.
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

/// The KServe and V2 routes (they need the token like every other route but the health
/// checks).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(KSERVE_MODEL, get(kserve_status).post(kserve_predict))
        .route(V2_MODEL, get(v2_metadata))
        .route(V2_MODEL_READY, get(v2_model_ready))
        .route(V2_INFER, post(v2_infer))
        .route(V2_VERSION_INFER, post(v2_version_infer))
}

/// Health routes of the V2 protocol (no token, like `/healthz`).
pub fn health_router() -> Router {
    Router::new()
        .route(V2_LIVE, get(|| async { Json(json!({"live": true})) }))
        .route(V2_READY, get(|| async { Json(json!({"ready": true})) }))
}

/// A request body as JSON: 413 past the limit, 400 when it does not parse.
pub(crate) fn json_body(raw: Result<Bytes, BytesRejection>) -> Result<Value, PredictError> {
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

/// `POST {model}:predict` (when `model` is None, the segment names the model) or
/// `POST {version}:predict` of `model`.
pub async fn predict_action(
    s: &AppState,
    project: &str,
    model: Option<&str>,
    segment: &str,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, PredictError> {
    let Some(name) = segment.strip_suffix(":predict") else {
        return Err(PredictError::new(
            StatusCode::NOT_FOUND,
            format!("no such method: POST {segment}"),
        ));
    };
    let req = json_body(raw)?;
    match model {
        None => predict_instances(s, project, name, None, req).await,
        Some(m) => predict_instances(s, project, m, Some(name), req).await,
    }
}

/// `{"instances": [...]}` → `{"predictions": [...]}` with version `version` of `model`.
async fn predict_instances(
    s: &AppState,
    project: &str,
    model: &str,
    version: Option<&str>,
    req: Value,
) -> Result<Response, PredictError> {
    let (_, b) = s.serving.route(project, model, version).await?;
    let sig = &b.servable.signature;
    let instances = req
        .get("instances")
        .ok_or_else(|| PredictError::bad("the request needs an 'instances' list"))?;
    let rows = mle_predict::parse_instances(instances, sig)?;
    let n = rows.len() / sig.inputs.len();
    let out = b.predict(rows, n).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        sig.predictions_json(&out),
    )
        .into_response())
}

async fn kserve_status(
    State(s): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Json<Value>, PredictError> {
    let ready = resolve(&s.db, DEFAULT_PROJECT, &model, None).await.is_ok();
    s.db.get::<Model>(Kind::Model, DEFAULT_PROJECT, "", &model)
        .await?;
    Ok(Json(json!({"name": model, "ready": ready})))
}

async fn kserve_predict(
    State(s): State<Arc<AppState>>,
    Path(segment): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, PredictError> {
    predict_action(&s, DEFAULT_PROJECT, None, &segment, raw).await
}

fn v2_platform(f: Format) -> &'static str {
    match f {
        Format::Mle => "mle",
        Format::Onnx => "onnx",
    }
}

async fn v2_metadata(
    State(s): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Json<Value>, PredictError> {
    let version = resolve(&s.db, DEFAULT_PROJECT, &model, None).await?;
    let b = s.serving.batcher(DEFAULT_PROJECT, &model, &version).await?;
    let sig = &b.servable.signature;
    let versions: Vec<String> =
        s.db.list::<Version>(Kind::Version, DEFAULT_PROJECT, &model, 0, 100)
            .await?
            .into_iter()
            .map(|r: Stored<Version>| r.name)
            .collect();
    let mut outputs = vec![json!({"name": "output", "datatype": "FP32", "shape": [-1, sig.width]})];
    if let Output::Classification { .. } = sig.output {
        outputs.push(json!({"name": "label", "datatype": "BYTES", "shape": [-1]}));
    }
    Ok(Json(json!({
        "name": model, "versions": versions, "platform": v2_platform(sig.format),
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, sig.inputs.len()]}],
        "outputs": outputs,
    })))
}

async fn v2_model_ready(State(s): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    match resolve(&s.db, DEFAULT_PROJECT, &model, None).await {
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

/// The rows of a V2 input tensor `t` for a model reading `w` values per row, and their
/// count. The data is read first: a `shape` is only believed when the data holds it.
fn v2_rows(t: &Value, w: usize) -> Result<(Vec<f32>, usize), PredictError> {
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
    let mut rows = Vec::new();
    flatten_numbers(&t["data"], &mut rows).map_err(PredictError::bad)?;
    if n == 0 || n.checked_mul(w) != Some(rows.len()) {
        return Err(PredictError::bad(format!(
            "data holds {} values, shape {:?} needs {}",
            rows.len(),
            t["shape"],
            n.checked_mul(w)
                .map_or_else(|| "more than can exist".to_string(), |x| x.to_string())
        )));
    }
    Ok((rows, n))
}

/// The label of each output row: the best class (a single score means class 1 at 0.5).
fn labels<'a>(out: &[f32], width: usize, classes: &'a [String]) -> Vec<&'a str> {
    out.chunks(width)
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
        .collect()
}

async fn v2_run(
    s: &AppState,
    model: &str,
    version: Option<&str>,
    req: Value,
) -> Result<Json<Value>, PredictError> {
    let (resolved, b) = s.serving.route(DEFAULT_PROJECT, model, version).await?;
    let sig = &b.servable.signature;
    let inputs = req["inputs"]
        .as_array()
        .filter(|i| i.len() == 1)
        .ok_or_else(|| PredictError::bad("'inputs' must hold exactly one tensor"))?;
    let (rows, n) = v2_rows(&inputs[0], sig.inputs.len())?;
    let out = b.predict(rows, n).await?;
    let mut outputs =
        vec![json!({"name": "output", "datatype": "FP32", "shape": [n, sig.width], "data": out})];
    if let Output::Classification { classes } = &sig.output {
        let labels = labels(&out, sig.width, classes);
        outputs.push(json!({"name": "label", "datatype": "BYTES", "shape": [n], "data": labels}));
    }
    let mut resp = json!({"model_name": model, "model_version": resolved, "outputs": outputs});
    if let Some(id) = req.get("id") {
        resp["id"] = id.clone();
    }
    Ok(Json(resp))
}

async fn v2_infer(
    State(s): State<Arc<AppState>>,
    Path(model): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, PredictError> {
    let req = json_body(raw)?;
    v2_run(&s, &model, None, req).await
}

async fn v2_version_infer(
    State(s): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, PredictError> {
    let req = json_body(raw)?;
    v2_run(&s, &model, Some(&version), req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_shape_is_believed_only_when_the_data_holds_it() {
        let t =
            |shape: Value, data: Value| json!({"datatype": "FP32", "shape": shape, "data": data});
        let (rows, n) = v2_rows(&t(json!([2, 2]), json!([[1, 2], [3, 4]])), 2).unwrap();
        assert_eq!((rows, n), (vec![1.0, 2.0, 3.0, 4.0], 2));
        assert_eq!(v2_rows(&t(json!([2]), json!([1, 2])), 2).unwrap().1, 1);
        // A huge shape with little data is refused, not allocated.
        let e = v2_rows(&t(json!([1_099_511_627_776u64, 4]), json!([1, 2, 3, 4])), 4).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = v2_rows(&t(json!([u64::MAX, 4]), json!([1, 2, 3, 4])), 4).unwrap_err();
        assert!(e.message.contains("more than can exist"), "{}", e.message);
        assert!(v2_rows(&t(json!([1, 3]), json!([1, 2, 3])), 4).is_err());
        assert!(v2_rows(&t(json!([1, 2]), json!(["a", 2])), 2).is_err());
        let bad_type = json!({"datatype": "BYTES", "shape": [1, 1], "data": [1]});
        assert!(v2_rows(&bad_type, 1).unwrap_err().message.contains("BYTES"));
    }

    #[test]
    fn labels_are_the_best_class_of_each_row() {
        let classes = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(
            labels(&[0.1, 0.7, 0.2, 0.9, 0.05, 0.05], 3, &classes),
            ["b", "a"]
        );
        assert_eq!(labels(&[0.2, 0.8], 1, &classes), ["a", "b"]);
    }
}
