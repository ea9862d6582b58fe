//! The `ml/v1` wire types of mle's REST API, shared by the server and the CLI: jobs with their
//! training input and output, in the proto3 JSON mapping Google's client libraries speak
//! (camelCase fields, 64-bit integers as strings, enums as their names), plus the error
//! envelope with field violations and the validation that produces them.
//!
//! This is the only crate that derives serde for the wire (STYLE.md); inner crates convert.
//!
//! ```
//! use mle_api::{Job, validate_job};
//! let job: Job = serde_json::from_str(r#"{"jobId": "abalone_1", "trainingInput": {
//!     "scaleTier": "BASIC", "pythonModule": "trainer.task", "packageUris": ["trainer.tar.gz"],
//!     "region": "local"}}"#).unwrap();
//! assert!(validate_job(&job).is_empty());
//! ```

mod error;
mod job;
mod location;
mod machine;
mod serving;
mod time;
mod tuning;
mod validate;

pub use error::{ApiStatus, ErrorBody, ErrorEnvelope, FieldViolation};
pub use job::{
    AcceleratorConfig, Int64, Job, JobState, ReplicaConfig, ScaleTier, Scheduling, TrainingInput,
    TrainingOutput,
};
pub use location::local_path;
pub use machine::{Machine, machine, machine_names};
pub use serving::{
    DataFormat, Framework, Model, Operation, OperationError, PredictionInput, PredictionOutput,
    Version, VersionState, valid_resource_id, validate_prediction,
};
pub use time::{now_rfc3339, rfc3339};
pub use tuning::{
    DEFAULT_METRIC_TAG, GoalType, HyperparameterMetric, HyperparameterOutput, HyperparameterSpec,
    Int32, ParameterSpec, ParameterType, ScaleType, TuningAlgorithm, validate_hyperparameters,
};
pub use validate::{parse_duration, valid_job_id, valid_project_id, validate_job};
