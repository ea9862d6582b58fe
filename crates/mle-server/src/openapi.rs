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

use crate::routes::jobs::{JOB, JOB_LOGS, JOBS};
use crate::routes::models::{MODEL, MODELS};
use crate::routes::operations::{OPERATION, OPERATIONS};
use crate::routes::predict::{
    KSERVE_MODEL, V2_INFER, V2_LIVE, V2_MODEL, V2_MODEL_READY, V2_READY, V2_VERSION_INFER,
};
use crate::routes::versions::{VERSION, VERSIONS};

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

fn full_version() -> mle_api::Version {
    mle_api::Version {
        name: "projects/p/models/m/versions/v".into(),
        description: "d".into(),
        is_default: true,
        deployment_uri: "/d".into(),
        create_time: "t".into(),
        last_use_time: "t".into(),
        runtime_version: "r".into(),
        python_version: "p".into(),
        machine_type: "m".into(),
        framework: mle_api::Framework::Mle,
        state: mle_api::VersionState::Ready,
        error_message: "e".into(),
        labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
        etag: "1".into(),
    }
}

fn full_model() -> mle_api::Model {
    mle_api::Model {
        name: "projects/p/models/m".into(),
        description: "d".into(),
        default_version: Some(full_version()),
        regions: vec!["r".into()],
        online_prediction_logging: true,
        labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
        etag: "1".into(),
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
    let model = schema_of(&serde_json::to_value(full_model()).expect("models serialise"));
    let version = schema_of(&serde_json::to_value(full_version()).expect("versions serialise"));
    let operation = schema_of(
        &json!({"name": "n", "metadata": {"@type": "t", "operationType": "CREATE_VERSION", "modelName": "m", "createTime": "t", "endTime": "t"}, "done": true, "error": {"code": 3, "message": "m"}, "response": {}}),
    );
    let model_ref = json!({"$ref": "#/components/schemas/Model"});
    let version_ref = json!({"$ref": "#/components/schemas/Version"});
    let op_ref = json!({"$ref": "#/components/schemas/Operation"});
    let path_param = |name: &str, d: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}, "description": d});
    let predict_err = json!({"description": "bad input, unknown model or version, body over 1.5 MB", "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}});
    let predict_body = json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {"instances": {"type": "array", "items": {"description": "a list of numbers in signature order, an object of named features, or a CSV line"}}}}}}});
    let predict_ok = ok(
        json!({"type": "object", "properties": {"predictions": {"type": "array", "items": {"description": "a number (regression) or {classes, scores}"}}}}),
    );
    let mut paths = serde_json::Map::new();
    paths.insert(MODELS.into(), json!({
        "parameters": [project.clone()],
        "post": {"summary": "Create a model", "requestBody": {"content": {"application/json": {"schema": model_ref}}}, "responses": {"200": ok(model_ref.clone()), "400": err("invalid model"), "409": err("the model exists")}},
        "get": {"summary": "List models", "parameters": [q("pageSize", "integer", "default 20, at most 100"), q("pageToken", "string", "")], "responses": {"200": ok(json!({"type": "object", "properties": {"models": {"type": "array", "items": model_ref}, "nextPageToken": {"type": "string"}}}))}},
    }));
    paths.insert(MODEL.into(), json!({
        "parameters": [project.clone(), path_param("model", "model id; `POST` on `{model}:predict` predicts with the default version")],
        "get": {"summary": "Get a model (with its default version)", "responses": {"200": ok(model_ref.clone()), "404": err("no such model")}},
        "delete": {"summary": "Delete a model without versions", "responses": {"200": ok(op_ref.clone()), "400": err("the model has versions"), "404": err("no such model")}},
        "patch": {"summary": "Update description/labels", "parameters": [q("updateMask", "string", "description,labels")], "responses": {"200": ok(op_ref.clone())}},
        "post": {"summary": "`{model}:predict`", "requestBody": predict_body.clone(), "responses": {"200": predict_ok.clone(), "4XX": predict_err.clone()}},
    }));
    paths.insert(VERSIONS.into(), json!({
        "parameters": [project.clone(), path_param("model", "model id")],
        "post": {"summary": "Create a version from `deploymentUri` (copied); returns an operation", "requestBody": {"content": {"application/json": {"schema": version_ref}}}, "responses": {"200": ok(op_ref.clone()), "400": err("invalid version"), "404": err("no such model"), "409": err("the version exists")}},
        "get": {"summary": "List versions", "responses": {"200": ok(json!({"type": "object", "properties": {"versions": {"type": "array", "items": version_ref}, "nextPageToken": {"type": "string"}}}))}},
    }));
    paths.insert(VERSION.into(), json!({
        "parameters": [project.clone(), path_param("model", "model id"), path_param("version", "version id; `POST` on `{version}:predict` or `{version}:setDefault`")],
        "get": {"summary": "Get a version", "responses": {"200": ok(version_ref.clone()), "404": err("no such version")}},
        "delete": {"summary": "Delete a version (not the default while others remain)", "responses": {"200": ok(op_ref.clone())}},
        "patch": {"summary": "Update description/labels", "parameters": [q("updateMask", "string", "description,labels")], "responses": {"200": ok(op_ref.clone())}},
        "post": {"summary": "`{version}:predict` or `{version}:setDefault`", "requestBody": predict_body.clone(), "responses": {"200": predict_ok.clone(), "4XX": predict_err.clone()}},
    }));
    paths.insert(OPERATIONS.into(), json!({"parameters": [project.clone()], "get": {"summary": "List operations", "responses": {"200": ok(json!({"type": "object", "properties": {"operations": {"type": "array", "items": op_ref}}}))}}}));
    paths.insert(OPERATION.into(), json!({"parameters": [project.clone(), path_param("operation", "operation id")], "get": {"summary": "Get an operation", "responses": {"200": ok(op_ref.clone()), "404": err("no such operation")}}}));
    paths.insert(KSERVE_MODEL.into(), json!({
        "parameters": [path_param("model", "model of project `default`; `POST` on `{model}:predict`")],
        "get": {"summary": "KServe V1 model status", "responses": {"200": ok(json!({"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}}))}},
        "post": {"summary": "KServe V1 `{model}:predict`", "requestBody": predict_body, "responses": {"200": predict_ok, "4XX": predict_err.clone()}},
    }));
    paths.insert(V2_LIVE.into(), json!({"get": {"summary": "V2 liveness (no authentication)", "security": [], "responses": {"200": {"description": "{\"live\": true}"}}}}));
    paths.insert(V2_READY.into(), json!({"get": {"summary": "V2 readiness (no authentication)", "security": [], "responses": {"200": {"description": "{\"ready\": true}"}}}}));
    paths.insert(V2_MODEL.into(), json!({"parameters": [path_param("model", "model of project `default`")], "get": {"summary": "V2 model metadata", "responses": {"200": {"description": "name, versions, platform, inputs, outputs"}, "4XX": predict_err.clone()}}}));
    paths.insert(V2_MODEL_READY.into(), json!({"parameters": [path_param("model", "model of project `default`")], "get": {"summary": "V2 model readiness", "responses": {"200": {"description": "ready"}, "4XX": predict_err.clone()}}}));
    let infer = json!({"summary": "V2 inference: one FP32 input tensor [N, features]", "responses": {"200": {"description": "outputs: `output` [N, width] FP32, and `label` [N] BYTES for classifiers"}, "4XX": predict_err}});
    paths.insert(V2_INFER.into(), json!({"parameters": [path_param("model", "model of project `default`")], "post": infer.clone()}));
    paths.insert(V2_VERSION_INFER.into(), json!({"parameters": [path_param("model", "model"), path_param("version", "version")], "post": infer}));
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "mle job service (ml/v1 shapes)", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "the token in <data-dir>/token"}},
            "schemas": {"Job": job, "Error": error, "Model": model, "Version": version, "Operation": operation},
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
                "parameters": [project, {"name": "job", "in": "path", "required": true, "schema": {"type": "string"}}, q("pageToken", "string", "where the previous page ended (its nextPageToken); every line is returned once")],
                "get": {"summary": "The next log lines of every replica, in time order, at most about 1 MiB a page (mle extension)",
                        "responses": {"200": ok(json!({"type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object", "properties": {
                            "time": {"type": "number"}, "severity": {"type": "string"}, "task": {"type": "string"}, "trial": {"type": "string"}, "message": {"type": "string"}}}},
                            "nextPageToken": {"type": "string"}}}))}},
            },
        },
    });
    if let Some(p) = doc["paths"].as_object_mut() {
        p.extend(paths);
    }
    doc
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
