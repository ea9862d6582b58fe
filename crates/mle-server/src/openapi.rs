//! The OpenAPI 3 description of the REST API, generated from the code: paths are the router's
//! own constants, and schemas are derived from the serde output of fully populated `mle-api`
//! values, so a wire change shows up here. `docs/openapi.json` is this document, committed; a
//! test fails when it is stale (`MLE_UPDATE_OPENAPI=1 cargo test -p mle-server` rewrites it).

use std::collections::BTreeMap;

use mle_api::{
    AcceleratorConfig, DataFormat, ErrorEnvelope, FieldViolation, Framework, GoalType,
    HyperparameterMetric, HyperparameterOutput, HyperparameterSpec, Int32, Int64, Job, JobState,
    ParameterSpec, ParameterType, PredictionInput, PredictionOutput, ReplicaConfig, ScaleTier,
    ScaleType, Scheduling, TrainingInput, TrainingOutput, TuningAlgorithm, VersionState,
};
use serde_json::{Value, json};

use crate::routes::jobs::{JOB, JOB_LOGS, JOBS};
use crate::routes::models::{MODEL, MODELS};
use crate::routes::operations::{OPERATION, OPERATIONS};
use crate::routes::predict::{
    KSERVE_MODEL, V2_INFER, V2_LIVE, V2_MODEL, V2_MODEL_READY, V2_READY, V2_VERSION_INFER,
};
use crate::routes::tokens::{TOKEN, TOKENS};
use crate::routes::versions::{VERSION, VERSIONS};
use crate::routes::watch::{JOB_LOG_STREAM, JOB_METRICS, PRINCIPAL};

/// An integer field: proto3 JSON writes 64-bit integers as strings, and the server reads
/// either a number or a numeric string for every integer field.
fn integer(format: &str) -> Value {
    json!({"anyOf": [{"type": "string", "pattern": "^ *-?[0-9]{1,18} *$"}, {"type": "integer"}], "format": format})
}

/// A JSON schema describing the shape of `v` (objects, arrays and scalar types). In the fully
/// populated values below, a string that holds an integer is an `Int64` field and every
/// integer an `Int32` one (no other field is given such a value).
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
        Value::String(s) if s.parse::<i64>().is_ok() => integer("int64"),
        Value::String(_) => json!({"type": "string"}),
        Value::Number(n) if n.is_f64() => json!({"type": "number"}),
        Value::Number(_) => integer("int32"),
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
                trial_id: "t".into(),
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
        etag: "e".into(),
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
        etag: "e".into(),
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
    job["properties"]["predictionInput"]["properties"]["dataFormat"]["enum"] = json!(names(&[
        DataFormat::DataFormatUnspecified,
        DataFormat::Json,
        DataFormat::Text,
        DataFormat::TfRecord,
        DataFormat::TfRecordGzip,
        DataFormat::Csv,
    ]));
    let mut version = schema_of(&serde_json::to_value(full_version()).expect("versions serialise"));
    version["properties"]["framework"]["enum"] = json!(names(&[
        Framework::FrameworkUnspecified,
        Framework::Mle,
        Framework::Onnx,
        Framework::Tensorflow,
        Framework::ScikitLearn,
        Framework::Xgboost,
    ]));
    version["properties"]["state"]["enum"] = json!(names(&[
        VersionState::Unknown,
        VersionState::Ready,
        VersionState::Creating,
        VersionState::Failed,
        VersionState::Deleting,
        VersionState::Updating,
    ]));
    let mut model = schema_of(&serde_json::to_value(full_model()).expect("models serialise"));
    model["properties"]["defaultVersion"] = json!({"$ref": "#/components/schemas/Version"});
    let error = schema_of(
        &serde_json::to_value(ErrorEnvelope::invalid(vec![FieldViolation::new("f", "d")]))
            .expect("errors serialise"),
    );
    let operation = json!({"type": "object", "properties": {
        "name": {"type": "string"}, "metadata": {"type": "object"}, "done": {"type": "boolean"},
        "error": {"type": "object", "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}},
        "response": {"type": "object"}}});
    let schemas = json!({
        "Job": job, "Error": error, "Model": model, "Version": version, "Operation": operation,
        "PredictError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "PredictRequest": {"type": "object", "required": ["instances"], "properties": {"instances": {"type": "array", "items": {
            "description": "a list of numbers in signature order, an object of named features, or a CSV line",
            "anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "object"}, {"type": "string"}]}}}},
        "PredictResponse": {"type": "object", "required": ["predictions"], "properties": {"predictions": {"type": "array", "items": {
            "description": "a number (regression) or {classes, scores}"}}}},
        "V2Tensor": {"type": "object", "required": ["name", "datatype", "shape", "data"], "properties": {
            "name": {"type": "string"}, "datatype": {"type": "string", "enum": ["FP32", "FP64", "FP16", "INT32", "INT64", "BYTES"]},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "data": {"type": "array", "description": "row-major values, flat or nested"}}},
        "V2InferRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"}, "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}}}},
        "V2InferResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
            "id": {"type": "string"}, "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}}}},
        "V2Metadata": {"type": "object", "properties": {"name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"}, "inputs": {"type": "array"}, "outputs": {"type": "array"}}},
        "Permissions": {"type": "object", "properties": {"permissions": {"type": "array", "items": {"type": "string"},
            "description": "IAM permission names (ml.jobs.create, ml.models.predict, ..., ml.versions.setDefault)"}}},
        "Token": {"type": "object", "properties": {"name": {"type": "string"}, "role": {"type": "string", "enum": ["viewer", "modelUser", "developer", "admin"]},
            "projects": {"type": "array", "items": {"type": "string"}}, "createTime": {"type": "string"},
            "token": {"type": "string", "description": "only in the answer to a create, once"}}},
        "NewToken": {"type": "object", "required": ["name", "role", "projects"], "properties": {"name": {"type": "string"},
            "role": {"type": "string", "enum": ["viewer", "modelUser", "developer", "admin"]}, "projects": {"type": "array", "items": {"type": "string"}}}},
        "LogsPage": {"type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object", "properties": {
            "time": {"type": "number"}, "severity": {"type": "string"}, "task": {"type": "string"}, "trial": {"type": "string"}, "message": {"type": "string"}}}},
            "nextPageToken": {"type": "string"}}},
        "MetricSeries": {"type": "object", "properties": {
            "jobDir": {"type": "string", "description": "the directory read (the trial's, with `trial`)"},
            "series": {"type": "array", "items": {"type": "object", "properties": {
                "run": {"type": "string", "description": "the event files' directory below the job dir ('' for the job dir, `eval`, ...)"},
                "tag": {"type": "string"}, "steps": {"type": "array", "items": {"type": "integer"}},
                "values": {"type": "array", "items": {"type": ["number", "null"]}, "description": "null for NaN or an infinity"},
                "count": {"type": "integer", "description": "steps before downsampling"}}}},
            "exports": {"type": "array", "items": {"type": "string"}, "description": "export roots under `<jobDir>/export/`, for a version's deploymentUri"},
            "skippedFiles": {"type": "integer", "description": "event files over 256 MiB, not read"}}},
        "Principal": {"type": "object", "properties": {"name": {"type": "string"},
            "role": {"type": "string", "enum": ["viewer", "modelUser", "developer", "admin", "serverAdmin"]},
            "projects": {"type": "array", "items": {"type": "object", "properties": {"projectId": {"type": "string"},
                "permissions": {"type": "array", "items": {"type": "string"}}}}}}},
    });
    let r = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let content = |schema: Value| json!({"application/json": {"schema": schema}});
    let ok = |schema: Value| json!({"description": "OK", "content": content(schema)});
    let err = |d: &str| json!({"description": d, "content": content(r("Error"))});
    let predict_err = |d: &str| json!({"description": d, "content": content(r("PredictError"))});
    // Prediction routes answer bad input in `{"error": ...}` (as CMLE does); a path that does
    // not decode is refused before the handler, in the envelope.
    let either = |d: &str| json!({"description": d, "content": content(json!({"anyOf": [r("Error"), r("PredictError")]}))});
    let body =
        |schema: Value, required: bool| json!({"required": required, "content": content(schema)});
    let list = |key: &str, item: &str| {
        ok(
            json!({"type": "object", "properties": {key: {"type": "array", "items": r(item)}, "nextPageToken": {"type": "string"}}}),
        )
    };
    let path_param = |name: &str, d: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}, "description": d});
    let q = |name: &str, t: &str, d: &str| json!({"name": name, "in": "query", "schema": {"type": t}, "description": d});
    let paging = json!([
        q("pageSize", "integer", "default 20, at most 100"),
        q("pageToken", "string", "nextPageToken of the previous page")
    ]);
    let mask = |d: &str| json!([q("updateMask", "string", d)]);
    let project = path_param("project", "project id");
    let trial = json!({"name": "trial", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,10}$"},
                       "description": "a tuning trial's id: only its lines, or its `<jobDir>/<trial>/`"});
    let model_p = path_param("model", "model id");
    let predicting = json!({"200": ok(r("PredictResponse")), "400": either("bad instances, no READY version, or a path that does not decode"),
        "404": predict_err("no such model, version or method"), "413": predict_err("body over 1.5 MB")});
    let infer = json!({"summary": "V2 inference: one input tensor [N, features]", "requestBody": body(r("V2InferRequest"), true),
        "responses": {"200": ok(r("V2InferResponse")), "400": either("bad tensor, or no READY version"),
                      "404": predict_err("no such model or version"), "413": predict_err("body over 1.5 MB")}});
    let mut paths = json!({
        "/healthz": {"get": {"summary": "Liveness (no authentication)", "security": [],
            "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
            "responses": {"200": {"description": "version 0.0.4 of the text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": ok(json!({"type": "object"}))}}},
        JOBS: {
            "parameters": [project],
            "post": {"summary": "Create a job", "requestBody": body(r("Job"), true),
                     "responses": {"200": ok(r("Job")), "400": err("invalid job (field violations)"), "409": err("the job id exists")}},
            "get": {"summary": "List jobs in creation order",
                    "parameters": [paging[0], paging[1], q("filter", "string", "state:STATE and/or jobId:prefix*"),
                                   q("orderBy", "string", "`createTime` (the default, oldest first) or `createTime desc` (newest first; an mle extension)")],
                    "responses": {"200": list("jobs", "Job"), "400": err("bad paging or filter")}},
        },
        JOB: {
            "parameters": [project, path_param("job", "job id; `POST` on `{job}:cancel` cancels the job")],
            "get": {"summary": "Get a job", "responses": {"200": ok(r("Job")), "404": err("no such job")}},
            "post": {"summary": "`{job}:cancel` cancels the job; `{job}:testIamPermissions` answers which of the listed permissions the caller holds",
                     "requestBody": body(r("Permissions"), false),
                     "responses": {"200": ok(r("Permissions")), "400": err("the job has ended, or a bad body"), "404": err("no such job or method")}},
            "patch": {"summary": "Update labels", "parameters": mask("must be `labels` (the default)"), "requestBody": body(r("Job"), true),
                      "responses": {"200": ok(r("Job")), "400": err("bad mask or labels"), "404": err("no such job")}},
        },
        JOB_LOGS: {
            "parameters": [project, path_param("job", "job id"), q("pageToken", "string", "where the previous page ended (its nextPageToken); every line is returned once"),
                           trial.clone()],
            "get": {"summary": "The next log lines of every replica, in time order, at most about 1 MiB a page (mle extension)",
                    "responses": {"200": ok(r("LogsPage")), "400": err("bad page token"), "404": err("no such job")}},
        },
        JOB_LOG_STREAM: {
            "parameters": [project, path_param("job", "job id"), q("pageToken", "string", "start after this cursor (a nextPageToken)"),
                           trial.clone()],
            "get": {"summary": "The job's log lines as server-sent events, live (mle extension): `entries` events carry a LogsPage; an `end` event ({state, nextPageToken}) follows once the job has ended and every line was sent. A stream lasts at most 30 minutes; reconnect with the last nextPageToken",
                    "responses": {"200": {"description": "text/event-stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                                  "400": err("bad page token or trial"), "404": err("no such job"), "429": err("too many open streams")}},
        },
        JOB_METRICS: {
            "parameters": [project, path_param("job", "job id"), trial.clone(),
                           json!({"name": "maxPoints", "in": "query", "schema": {"type": "integer", "minimum": 3, "maximum": 10000},
                                  "description": "points per series at most (default 1000); longer series are downsampled (largest-triangle-three-buckets)"})],
            "get": {"summary": "Scalar series from the event files under the job dir, by run and tag (mle extension)",
                    "responses": {"200": ok(r("MetricSeries")), "400": err("bad trial or maxPoints, or a job dir the path policy now refuses"), "404": err("no such job")}},
        },
        PRINCIPAL: {
            "get": {"summary": "Who the token is: name, role, and the permissions it holds per project (mle extension)",
                    "responses": {"200": ok(r("Principal"))}},
        },
        MODELS: {
            "parameters": [project],
            "post": {"summary": "Create a model", "requestBody": body(r("Model"), true),
                     "responses": {"200": ok(r("Model")), "400": err("invalid model"), "409": err("the model exists")}},
            "get": {"summary": "List models", "parameters": paging, "responses": {"200": list("models", "Model"), "400": err("bad paging")}},
        },
        MODEL: {
            "parameters": [project, path_param("model", "model id; `POST` on `{model}:predict` predicts with the default version")],
            "get": {"summary": "Get a model (with its default version)", "responses": {"200": ok(r("Model")), "404": err("no such model")}},
            "delete": {"summary": "Delete a model without versions", "responses": {"200": ok(r("Operation")), "400": err("the model has versions"), "404": err("no such model")}},
            "patch": {"summary": "Update description and/or labels", "parameters": mask("description,labels"), "requestBody": body(r("Model"), true),
                      "responses": {"200": ok(r("Operation")), "400": err("bad mask or body"), "404": err("no such model")}},
            "post": {"summary": "`{model}:predict`, or `{model}:testIamPermissions` (a Permissions body)",
                     "requestBody": body(json!({"anyOf": [r("PredictRequest"), r("Permissions")]}), true),
                     "responses": {"200": ok(json!({"anyOf": [r("PredictResponse"), r("Permissions")]})),
                                   "400": either("bad instances or body, no READY version, or a path that does not decode"),
                                   "404": predict_err("no such model, version or method"), "413": predict_err("body over 1.5 MB")}},
        },
        VERSIONS: {
            "parameters": [project, model_p],
            "post": {"summary": "Create a version from `deploymentUri` (copied); returns an operation", "requestBody": body(r("Version"), true),
                     "responses": {"200": ok(r("Operation")), "400": err("invalid version"), "404": err("no such model"), "409": err("the version exists")}},
            "get": {"summary": "List versions", "parameters": paging, "responses": {"200": list("versions", "Version"), "400": err("bad paging"), "404": err("no such model")}},
        },
        VERSION: {
            "parameters": [project, model_p, path_param("version", "version id; `POST` on `{version}:predict` or `{version}:setDefault`")],
            "get": {"summary": "Get a version", "responses": {"200": ok(r("Version")), "404": err("no such version")}},
            "delete": {"summary": "Delete a version (not the default while others remain, not while CREATING)",
                       "responses": {"200": ok(r("Operation")), "400": err("the version is the default or is being created"), "404": err("no such version")}},
            "patch": {"summary": "Update description and/or labels", "parameters": mask("description,labels"), "requestBody": body(r("Version"), true),
                      "responses": {"200": ok(r("Operation")), "400": err("bad mask or body"), "404": err("no such version")}},
            "post": {"summary": "`{version}:predict` (the body is a PredictRequest) or `{version}:setDefault` (no body)",
                     "requestBody": body(r("PredictRequest"), false),
                     "responses": {"200": ok(json!({"anyOf": [r("PredictResponse"), r("Version")]})),
                                   "400": either("bad instances, a version that is not READY, or a path that does not decode"),
                                   "404": either("no such model, version or method"), "413": predict_err("body over 1.5 MB")}},
        },
        OPERATIONS: {"parameters": [project], "get": {"summary": "List operations", "parameters": paging,
            "responses": {"200": list("operations", "Operation"), "400": err("bad paging")}}},
        OPERATION: {"parameters": [project, path_param("operation", "operation id")],
            "get": {"summary": "Get an operation", "responses": {"200": ok(r("Operation")), "404": err("no such operation")}}},
        KSERVE_MODEL: {
            "parameters": [path_param("model", "model of project `default`; `POST` on `{model}:predict`")],
            "get": {"summary": "KServe V1 model status", "responses": {
                "200": ok(json!({"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}})),
                "404": predict_err("no such model")}},
            "post": {"summary": "KServe V1 `{model}:predict`", "requestBody": body(r("PredictRequest"), true), "responses": predicting},
        },
        V2_LIVE: {"get": {"summary": "V2 liveness (no authentication)", "security": [],
            "responses": {"200": ok(json!({"type": "object", "properties": {"live": {"type": "boolean"}}}))}}},
        V2_READY: {"get": {"summary": "V2 readiness (no authentication)", "security": [],
            "responses": {"200": ok(json!({"type": "object", "properties": {"ready": {"type": "boolean"}}}))}}},
        V2_MODEL: {"parameters": [path_param("model", "model of project `default`")], "get": {"summary": "V2 model metadata",
            "responses": {"200": ok(r("V2Metadata")), "400": either("no READY default version"), "404": predict_err("no such model")}}},
        V2_MODEL_READY: {"parameters": [path_param("model", "model of project `default`")], "get": {"summary": "V2 model readiness",
            "responses": {"200": ok(json!({"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}})),
                          "400": either("no READY default version"), "404": predict_err("no such model")}}},
        TOKENS: {
            "get": {"summary": "List the named tokens (server admin only; an mle extension)",
                    "responses": {"200": ok(json!({"type": "object", "properties": {"tokens": {"type": "array", "items": r("Token")}}}))}},
            "post": {"summary": "Create a named token; the answer holds it, once (server admin only)", "requestBody": body(r("NewToken"), true),
                     "responses": {"200": ok(r("Token")), "400": err("bad name, role or projects"), "409": err("the name is taken")}},
        },
        TOKEN: {"parameters": [path_param("name", "token name")],
            "delete": {"summary": "Revoke a token (server admin only)", "responses": {"200": ok(json!({"type": "object"})), "404": err("no such token")}}},
        V2_INFER: {"parameters": [path_param("model", "model of project `default`")], "post": infer.clone()},
        V2_VERSION_INFER: {"parameters": [path_param("model", "model"), path_param("version", "version")], "post": infer},
    });
    complete(&mut paths);
    json!({
        "openapi": "3.0.3",
        "info": {"title": "mle job service (ml/v1 shapes)", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "the token in <data-dir>/token"}},
            "schemas": schemas,
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

/// What every operation can answer besides its own responses, written once: 401 and 403 (in
/// the envelope, from the access check) where a token is needed, and 400 where a path or
/// query parameter may fail to decode (an invalid percent-encoding, non-UTF-8).
fn complete(paths: &mut Value) {
    let envelope = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let Some(paths) = paths.as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let shared = item.get("parameters").cloned().unwrap_or(json!([]));
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in ops.iter_mut() {
            if method == "parameters" {
                continue;
            }
            let open = op.get("security").is_some_and(|s| s == &json!([]));
            let has_params = shared.as_array().is_some_and(|a| !a.is_empty())
                || op
                    .get("parameters")
                    .is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty()));
            let responses = &mut op["responses"];
            if !open {
                responses["401"] = envelope("no or bad bearer token");
                responses["403"] =
                    envelope("the token's role or projects do not allow this (see README, Access)");
            }
            if has_params && responses.get("400").is_none() {
                responses["400"] = envelope("a path or query parameter that does not decode");
            }
        }
    }
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
