//! The OpenAPI 3 description of the REST API, generated from the code: paths are the router's
//! own constants, and schemas are derived from the serde output of fully populated `mle-api`
//! values, so a wire change shows up here. `docs/openapi.json` is this document, committed; a
//! test fails when it is stale (`MLE_UPDATE_OPENAPI=1 cargo test -p mle-server` rewrites it).

use std::collections::BTreeMap;

use mle_api::{
    AcceleratorConfig, DataFormat, ErrorEnvelope, FieldViolation, GoalType, HyperparameterMetric,
    HyperparameterOutput, HyperparameterSpec, Int32, Int64, Job, JobState, ParameterSpec,
    ParameterType, PredictionInput, PredictionOutput, ReplicaConfig, ScaleTier, ScaleType,
    Scheduling, TrainingInput, TrainingOutput, TuningAlgorithm,
};
use serde_json::{Value, json};

use crate::jobs::{JOB, JOB_LOGS, JOBS};

/// A JSON schema describing the shape of `v` (objects, arrays and scalar types).
fn schema_of(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let props: serde_json::Map<String, Value> =
                m.iter().map(|(k, v)| (k.clone(), schema_of(v))).collect();
            json!({"type": "object", "properties": props})
        }
        Value::Array(a) => {
            json!({"type": "array", "items": a.first().map(schema_of).unwrap_or(json!({}))})
        }
        Value::String(_) => json!({"type": "string"}),
        Value::Number(n) if n.is_f64() => json!({"type": "number"}),
        Value::Number(_) => json!({"type": "integer"}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Null => json!({}),
    }
}

fn names<T: serde::Serialize>(values: &[T]) -> Vec<Value> {
    values
        .iter()
        .map(|v| serde_json::to_value(v).expect("enums serialise"))
        .collect()
}

/// A job with every field set, so that its serialisation shows every wire field.
fn full_job() -> Job {
    let replica = ReplicaConfig {
        accelerator_config: Some(AcceleratorConfig {
            count: Int64(1),
            kind: "NVIDIA_TESLA_T4".into(),
        }),
        image_uri: "image".into(),
        container_command: vec!["mle".into()],
        container_args: vec!["train".into()],
    };
    Job {
        job_id: "j".into(),
        training_input: Some(TrainingInput {
            scale_tier: ScaleTier::Custom,
            master_type: "t".into(),
            master_config: Some(replica.clone()),
            worker_type: "t".into(),
            worker_config: Some(replica.clone()),
            worker_count: Int64(1),
            parameter_server_type: "t".into(),
            parameter_server_config: Some(replica.clone()),
            parameter_server_count: Int64(1),
            evaluator_type: "t".into(),
            evaluator_config: Some(replica),
            evaluator_count: Int64(1),
            package_uris: vec!["p".into()],
            python_module: "m".into(),
            args: vec!["a".into()],
            hyperparameters: Some(HyperparameterSpec {
                goal: GoalType::Maximize,
                params: vec![ParameterSpec {
                    parameter_name: "p".into(),
                    kind: ParameterType::Double,
                    min_value: Some(0.5),
                    max_value: Some(1.5),
                    categorical_values: vec!["c".into()],
                    discrete_values: vec![0.5],
                    scale_type: ScaleType::UnitLogScale,
                }],
                max_trials: Int32(1),
                max_parallel_trials: Int32(1),
                max_failed_trials: Int32(1),
                hyperparameter_metric_tag: "m".into(),
                enable_trial_early_stopping: true,
                algorithm: TuningAlgorithm::GridSearch,
                resume_previous_job_id: "j".into(),
            }),
            region: "r".into(),
            job_dir: "d".into(),
            runtime_version: "v".into(),
            python_version: "v".into(),
            scheduling: Some(Scheduling {
                max_running_time: "1s".into(),
                max_wait_time: "1s".into(),
            }),
            use_chief_in_tf_config: true,
        }),
        prediction_input: Some(PredictionInput {
            model_name: "m".into(),
            version_name: "v".into(),
            uri: "u".into(),
            data_format: DataFormat::Json,
            input_paths: vec!["i".into()],
            output_path: "o".into(),
            batch_size: Int64(1),
            region: "r".into(),
            runtime_version: "v".into(),
        }),
        create_time: "t".into(),
        start_time: "t".into(),
        end_time: "t".into(),
        state: JobState::Running,
        error_message: "e".into(),
        training_output: Some(TrainingOutput {
            completed_trial_count: Int64(1),
            trials: vec![HyperparameterOutput {
                trial_id: "1".into(),
                hyperparameters: BTreeMap::from([("p".to_string(), "0.5".to_string())]),
                final_metric: Some(HyperparameterMetric {
                    training_step: Int64(1),
                    objective_value: 0.5,
                }),
                all_metrics: vec![HyperparameterMetric::default()],
                is_trial_stopped_early: true,
                state: JobState::Succeeded,
                start_time: "t".into(),
                end_time: "t".into(),
                error_message: "e".into(),
            }],
            consumed_ml_units: Some(0.5),
            is_hyperparameter_tuning_job: true,
            hyperparameter_metric_tag: "m".into(),
        }),
        prediction_output: Some(PredictionOutput {
            output_path: "o".into(),
            prediction_count: Int64(1),
            error_count: Int64(1),
            node_hours: 0.5,
        }),
        labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
        etag: "e".into(),
        job_position: Some(Int64(0)),
    }
}

/// The OpenAPI document.
pub fn spec() -> Value {
    let mut job = schema_of(&serde_json::to_value(full_job()).expect("jobs serialise"));
    job["properties"]["state"]["enum"] = json!(names(&[
        JobState::StateUnspecified,
        JobState::Queued,
        JobState::Preparing,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelling,
        JobState::Cancelled,
    ]));
    job["properties"]["trainingInput"]["properties"]["scaleTier"]["enum"] = json!(names(&[
        ScaleTier::Basic,
        ScaleTier::Standard1,
        ScaleTier::Premium1,
        ScaleTier::BasicGpu,
        ScaleTier::BasicTpu,
        ScaleTier::Custom,
    ]));
    let hp = &mut job["properties"]["trainingInput"]["properties"]["hyperparameters"]["properties"];
    hp["goal"]["enum"] = json!(names(&[GoalType::Maximize, GoalType::Minimize]));
    hp["algorithm"]["enum"] = json!(names(&[
        TuningAlgorithm::AlgorithmUnspecified,
        TuningAlgorithm::GridSearch,
        TuningAlgorithm::RandomSearch,
    ]));
    let param = &mut hp["params"]["items"]["properties"];
    param["type"]["enum"] = json!(names(&[
        ParameterType::Double,
        ParameterType::Integer,
        ParameterType::Categorical,
        ParameterType::Discrete,
    ]));
    param["scaleType"]["enum"] = json!(names(&[
        ScaleType::None,
        ScaleType::UnitLinearScale,
        ScaleType::UnitLogScale,
        ScaleType::UnitReverseLogScale,
    ]));
    let error = schema_of(
        &serde_json::to_value(ErrorEnvelope::invalid(vec![FieldViolation::new("f", "d")]))
            .expect("errors serialise"),
    );
    let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let ok = |schema: Value| json!({"description": "OK", "content": {"application/json": {"schema": schema}}});
    let project =
        json!({"name": "project", "in": "path", "required": true, "schema": {"type": "string"}});
    let job_param = json!({"name": "job", "in": "path", "required": true, "schema": {"type": "string"}, "description": "job id; `POST` on `{job}:cancel` cancels the job"});
    let job_ref = json!({"$ref": "#/components/schemas/Job"});
    let q = |name: &str, t: &str, d: &str| json!({"name": name, "in": "query", "schema": {"type": t}, "description": d});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "mle job service (ml/v1 shapes)", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "the token in <data-dir>/token"}},
            "schemas": {"Job": job, "Error": error},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness (no authentication)", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text/plain; version=0.0.4"}, "401": err("no or bad token")}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
            JOBS: {
                "parameters": [project],
                "post": {"summary": "Create a job", "requestBody": {"required": true, "content": {"application/json": {"schema": job_ref}}},
                         "responses": {"200": ok(job_ref.clone()), "400": err("invalid job (field violations)"), "409": err("the job id exists")}},
                "get": {"summary": "List jobs in creation order",
                        "parameters": [q("pageSize", "integer", "default 20, at most 100"), q("pageToken", "string", "nextPageToken of the previous page"),
                                       q("filter", "string", "state:STATE and/or jobId:prefix*")],
                        "responses": {"200": ok(json!({"type": "object", "properties": {"jobs": {"type": "array", "items": job_ref}, "nextPageToken": {"type": "string"}}})),
                                      "400": err("bad paging or filter")}},
            },
            JOB: {
                "parameters": [project.clone(), job_param],
                "get": {"summary": "Get a job", "responses": {"200": ok(job_ref.clone()), "404": err("no such job")}},
                "post": {"summary": "`{job}:cancel`: cancel a job", "responses": {"200": ok(json!({"type": "object"})), "400": err("the job has ended"), "404": err("no such job")}},
                "patch": {"summary": "Update labels", "parameters": [q("updateMask", "string", "must be `labels`")],
                          "requestBody": {"content": {"application/json": {"schema": job_ref}}},
                          "responses": {"200": ok(job_ref.clone()), "400": err("bad mask or labels"), "404": err("no such job")}},
            },
            JOB_LOGS: {
                "parameters": [project, {"name": "job", "in": "path", "required": true, "schema": {"type": "string"}}, q("skip", "integer", "lines already read")],
                "get": {"summary": "Log lines of every replica, in time order (mle extension)",
                        "responses": {"200": ok(json!({"type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object", "properties": {
                            "time": {"type": "number"}, "severity": {"type": "string"}, "task": {"type": "string"}, "trial": {"type": "string"}, "message": {"type": "string"}}}}}}))}},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_openapi_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let want = serde_json::to_string_pretty(&super::spec()).unwrap() + "\n";
        if std::env::var_os("MLE_UPDATE_OPENAPI").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/openapi.json is stale: run `MLE_UPDATE_OPENAPI=1 cargo test --release -p mle-server` and commit it"
        );
    }
}
