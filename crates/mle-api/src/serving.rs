//! Models, versions, operations and batch prediction (`google.cloud.ml.v1`), with validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::FieldViolation;
use crate::job::Int64;

/// `Version.Framework`, plus mle's own formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Framework {
    /// Detected from the files: an mle export bundle (`mle_model.json`) or an ONNX model.
    #[default]
    FrameworkUnspecified,
    /// An mle export bundle.
    Mle,
    /// An ONNX model (`*.onnx`), e.g. from Keras, PyTorch or scikit-learn via skl2onnx.
    Onnx,
    /// TensorFlow SavedModel (not servable here: convert to ONNX).
    Tensorflow,
    /// scikit-learn pickles (not servable here: convert with skl2onnx).
    ScikitLearn,
    /// XGBoost boosters (not servable here: convert to ONNX).
    Xgboost,
}

/// `Version.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VersionState {
    /// Not set.
    #[default]
    Unknown,
    /// Serving.
    Ready,
    /// Being copied and loaded.
    Creating,
    /// Could not be loaded (`errorMessage` says why).
    Failed,
    /// Being deleted.
    Deleting,
    /// Being updated.
    Updating,
}

/// A model version (`google.cloud.ml.v1.Version`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Version {
    /// `projects/{p}/models/{m}/versions/{v}` (the id alone in create requests).
    pub name: String,
    /// Free text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whether requests to the model without a version go here.
    pub is_default: bool,
    /// Where the model files came from: a local path or `file://` URI.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deployment_uri: String,
    /// Creation time (RFC 3339).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub create_time: String,
    /// Last prediction (RFC 3339).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_use_time: String,
    /// Runtime version (informational).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runtime_version: String,
    /// Python version (informational).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub python_version: String,
    /// Machine type (informational).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub machine_type: String,
    /// The format of the files.
    pub framework: Framework,
    /// State.
    pub state: VersionState,
    /// Why the version failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error_message: String,
    /// User labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Optimistic-concurrency tag.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub etag: String,
}

/// A model (`google.cloud.ml.v1.Model`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Model {
    /// `projects/{p}/models/{m}` (the id alone in create requests).
    pub name: String,
    /// Free text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The default version, filled by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_version: Option<Version>,
    /// Regions (informational).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Online prediction logging (informational).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub online_prediction_logging: bool,
    /// User labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Optimistic-concurrency tag.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub etag: String,
}

/// `google.rpc.Status` inside an operation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OperationError {
    /// gRPC code.
    pub code: i32,
    /// Message.
    pub message: String,
}

/// A long-running operation (`google.longrunning.Operation`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Operation {
    /// `projects/{p}/operations/{id}`.
    pub name: String,
    /// `OperationMetadata` with its `@type`.
    pub metadata: serde_json::Value,
    /// Whether it has finished.
    pub done: bool,
    /// Set when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
    /// The result (the version) with its `@type`, when it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<serde_json::Value>,
}

/// `PredictionInput.DataFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DataFormat {
    /// Not set (invalid).
    #[default]
    DataFormatUnspecified,
    /// One JSON instance per line.
    Json,
    /// One text instance per line (CSV values in signature order).
    Text,
    /// TFRecord (not supported).
    TfRecord,
    /// Gzipped TFRecord (not supported).
    TfRecordGzip,
    /// CSV (as TEXT).
    Csv,
}

/// `predictionInput` of a batch prediction job.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PredictionInput {
    /// `projects/{p}/models/{m}` (its default version).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model_name: String,
    /// `projects/{p}/models/{m}/versions/{v}`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version_name: String,
    /// A model directory used directly.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// Input format.
    pub data_format: DataFormat,
    /// Input files; `*` and `?` globs in the last path component.
    pub input_paths: Vec<String>,
    /// Output directory.
    pub output_path: String,
    /// Instances per model call (default 64).
    #[serde(skip_serializing_if = "is_zero")]
    pub batch_size: Int64,
    /// Region (informational).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// Runtime version (informational).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runtime_version: String,
}

fn is_zero(v: &Int64) -> bool {
    v.0 == 0
}

/// `predictionOutput` of a batch prediction job.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PredictionOutput {
    /// Where the results are.
    pub output_path: String,
    /// Instances predicted.
    pub prediction_count: Int64,
    /// Instances that failed.
    pub error_count: Int64,
    /// Node hours (wall time of the job in hours, locally).
    pub node_hours: f64,
}

/// ml v1's model and version id rule: a letter first, then letters, digits and underscores.
pub fn valid_resource_id(id: &str) -> bool {
    crate::valid_job_id(id)
}

/// Problems of a prediction input, fields under `job.prediction_input`.
pub fn validate_prediction(p: &PredictionInput, v: &mut Vec<FieldViolation>) {
    let f = |n: &str| format!("job.prediction_input.{n}");
    let sources = [&p.model_name, &p.version_name, &p.uri]
        .iter()
        .filter(|s| !s.is_empty())
        .count();
    if sources != 1 {
        v.push(FieldViolation::new(
            &f("model_name"),
            "give exactly one of modelName, versionName and uri",
        ));
    }
    match p.data_format {
        DataFormat::Json | DataFormat::Text | DataFormat::Csv => {}
        DataFormat::DataFormatUnspecified => v.push(FieldViolation::new(
            &f("data_format"),
            "is required: JSON or TEXT",
        )),
        _ => v.push(FieldViolation::new(
            &f("data_format"),
            "only JSON and TEXT are supported",
        )),
    }
    if p.input_paths.is_empty() {
        v.push(FieldViolation::new(
            &f("input_paths"),
            "at least one input path is required",
        ));
    }
    if p.output_path.is_empty() {
        v.push(FieldViolation::new(&f("output_path"), "is required"));
    }
    if p.batch_size.0 < 0 || p.batch_size.0 > 100_000 {
        v.push(FieldViolation::new(
            &f("batch_size"),
            "must be between 1 and 100000",
        ));
    }
}
