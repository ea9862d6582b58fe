//! `Job`, `TrainingInput` and `TrainingOutput` as in `google.cloud.ml.v1`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 64-bit integer that proto3 JSON writes as a string and that clients may send as either a
/// string or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Int64(pub i64);

impl Serialize for Int64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => s
                .trim()
                .parse()
                .map(Int64)
                .map_err(|_| serde::de::Error::custom(format!("'{s}' is not an integer"))),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(Int64)
                .ok_or_else(|| serde::de::Error::custom(format!("{n} is not an integer"))),
            other => Err(serde::de::Error::custom(format!(
                "expected an integer, got {other}"
            ))),
        }
    }
}

/// Job states (`google.cloud.ml.v1.Job.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Not set.
    #[default]
    StateUnspecified,
    /// Accepted, waiting for capacity.
    Queued,
    /// Resources are being prepared (packages installed, replicas starting).
    Preparing,
    /// Replicas are running.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error (`errorMessage` says why).
    Failed,
    /// Cancel requested; replicas are being stopped.
    Cancelling,
    /// Stopped by a cancel request.
    Cancelled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Predefined cluster shapes (`TrainingInput.ScaleTier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScaleTier {
    /// One master.
    #[default]
    Basic,
    /// 1 master, 4 workers, 3 parameter servers.
    #[serde(rename = "STANDARD_1")]
    Standard1,
    /// 1 master, 19 workers, 11 parameter servers.
    #[serde(rename = "PREMIUM_1")]
    Premium1,
    /// One master with a GPU.
    BasicGpu,
    /// One master with a TPU (accepted for compatibility; mapped to BASIC_GPU resources).
    BasicTpu,
    /// Machine types and counts given explicitly.
    Custom,
}

/// GPUs or TPUs attached to each replica.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AcceleratorConfig {
    /// How many.
    pub count: Int64,
    /// Accelerator type name, e.g. `NVIDIA_TESLA_T4`.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// Per-role replica settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicaConfig {
    /// Accelerators per replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerator_config: Option<AcceleratorConfig>,
    /// Container image (accepted; mle runs commands on the host).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_uri: String,
    /// The command to run instead of a Python module.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_command: Vec<String>,
    /// Arguments of `container_command`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_args: Vec<String>,
}

/// `TrainingInput.scheduling`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Scheduling {
    /// Longest run, as a proto3 Duration string such as `"3600s"`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub max_running_time: String,
    /// Longest wait in the queue.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub max_wait_time: String,
}

/// What to train and on what cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TrainingInput {
    /// Cluster shape.
    pub scale_tier: ScaleTier,
    /// Master machine type (CUSTOM).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub master_type: String,
    /// Master settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_config: Option<ReplicaConfig>,
    /// Worker machine type (CUSTOM).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub worker_type: String,
    /// Worker settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_config: Option<ReplicaConfig>,
    /// Workers (CUSTOM).
    #[serde(skip_serializing_if = "is_zero")]
    pub worker_count: Int64,
    /// Parameter server machine type (CUSTOM).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub parameter_server_type: String,
    /// Parameter server settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter_server_config: Option<ReplicaConfig>,
    /// Parameter servers (CUSTOM).
    #[serde(skip_serializing_if = "is_zero")]
    pub parameter_server_count: Int64,
    /// Evaluator machine type.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub evaluator_type: String,
    /// Evaluator settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluator_config: Option<ReplicaConfig>,
    /// Evaluators.
    #[serde(skip_serializing_if = "is_zero")]
    pub evaluator_count: Int64,
    /// Trainer packages: local paths or URIs of sdist tarballs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub package_uris: Vec<String>,
    /// The module to run with `python3 -m`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub python_module: String,
    /// Trainer arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Hyperparameter tuning spec: when set, the job runs tuning trials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hyperparameters: Option<crate::HyperparameterSpec>,
    /// Region (informational locally).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// Job directory.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub job_dir: String,
    /// Runtime version (informational).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runtime_version: String,
    /// Python version (informational).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub python_version: String,
    /// Time limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,
    /// Name the primary `chief` instead of `master` in `TF_CONFIG`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub use_chief_in_tf_config: bool,
}

fn is_zero(v: &Int64) -> bool {
    v.0 == 0
}

/// Results of a training job (tuning fields are filled by the tuner).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TrainingOutput {
    /// Completed tuning trials.
    #[serde(skip_serializing_if = "is_zero")]
    pub completed_trial_count: Int64,
    /// Tuning trials, best first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trials: Vec<crate::HyperparameterOutput>,
    /// Consumed ML units (reported as 0 locally).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumed_ml_units: Option<f64>,
    /// Whether this is a tuning job.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_hyperparameter_tuning_job: bool,
    /// The tuning metric tag.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hyperparameter_metric_tag: String,
}

/// A job (`google.cloud.ml.v1.Job`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Job {
    /// User-chosen id, unique in the project.
    pub job_id: String,
    /// Training input (for training jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training_input: Option<TrainingInput>,
    /// Prediction input (for batch prediction jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_input: Option<crate::PredictionInput>,
    /// Creation time (RFC 3339), set by the server.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub create_time: String,
    /// Start time.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub start_time: String,
    /// End time.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub end_time: String,
    /// Current state.
    pub state: JobState,
    /// Why the job failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error_message: String,
    /// Training results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training_output: Option<TrainingOutput>,
    /// Batch prediction results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_output: Option<crate::PredictionOutput>,
    /// User labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Optimistic-concurrency tag, changed on every update.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub etag: String,
    /// Place in the queue while QUEUED (0 = next).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_position: Option<Int64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_follows_the_proto3_json_mapping() {
        let job: Job = serde_json::from_str(
            r#"{"jobId": "j", "state": "QUEUED", "jobPosition": 3,
                "trainingInput": {"scaleTier": "STANDARD_1", "workerCount": "4", "args": ["--a"]}}"#,
        )
        .unwrap();
        assert_eq!(job.training_input.as_ref().unwrap().worker_count, Int64(4));
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(
            text,
            r#"{"jobId":"j","trainingInput":{"scaleTier":"STANDARD_1","workerCount":"4","args":["--a"]},"state":"QUEUED","jobPosition":"3"}"#
        );
        assert!(
            serde_json::from_str::<Job>(r#"{"trainingInput": {"scaleTier": "HUGE"}}"#).is_err()
        );
        assert!(
            serde_json::from_str::<Job>(r#"{"jobPosition": "x"}"#)
                .unwrap_err()
                .to_string()
                .contains("'x' is not an integer")
        );
    }
}
