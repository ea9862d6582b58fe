//! `/v1/projects/{p}/jobs`: create, get, list, cancel, patch labels, and the mle extension
//! `/v1/projects/{p}/jobs/{id}/logs` (`?trial=ID` for one trial's), listed oldest or newest
//! first (`orderBy=createTime desc`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::routing::{get, post};
use mle_api::{ApiStatus, FieldViolation, Job, JobState, now_rfc3339, valid_job_id, validate_job};
use mle_exec::logs::{self, Cursor};
use mle_store::JobFilter;
use serde_json::{Value, json};

use super::{body, invalid, page, paged, test_permissions, valid_project};
use crate::access::Principal;
use crate::db::DbError;
use crate::error::ApiError;
use crate::paths::{Need, checked};
use crate::plan::{check_prediction, is_tuning, oversized_count, slots_needed};
use crate::state::AppState;

/// Collection of a project's jobs.
pub const JOBS: &str = "/v1/projects/{project}/jobs";
/// One job (`POST` on `{job}:cancel` cancels).
pub const JOB: &str = "/v1/projects/{project}/jobs/{job}";
/// A job's log lines.
pub const JOB_LOGS: &str = "/v1/projects/{project}/jobs/{job}/logs";

/// Log bytes one request reads at most (whole lines; the next page carries on).
const LOG_PAGE_BYTES: usize = 1 << 20;

/// The jobs routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(JOBS, post(create).get(list))
        .route(JOB, get(read).post(action).patch(patch))
        .route(JOB_LOGS, get(logs))
}

/// Whether the job's replicas (times its parallel trials) fit this server.
fn check_slots(s: &AppState, job: &Job) -> Option<FieldViolation> {
    let need = slots_needed(job);
    if need <= s.cfg.slots {
        return None;
    }
    let (field, why) = if is_tuning(job) {
        (
            "job.training_input.hyperparameters.max_parallel_trials",
            " (replicas per trial × maxParallelTrials)",
        )
    } else {
        let named = job
            .training_input
            .as_ref()
            .and_then(|t| oversized_count(t, s.cfg.slots));
        (named.unwrap_or("job.training_input.scale_tier"), "")
    };
    Some(FieldViolation::new(
        field,
        format!(
            "needs {need} replicas{why}, this server runs at most {}",
            s.cfg.slots
        ),
    ))
}

/// `resumePreviousJobId` must name a tuning job of the project.
async fn check_resume(
    s: &AppState,
    project: &str,
    job: &Job,
) -> Result<Option<FieldViolation>, ApiError> {
    let Some(h) = job
        .training_input
        .as_ref()
        .and_then(|t| t.hyperparameters.as_ref())
    else {
        return Ok(None);
    };
    let previous = &h.resume_previous_job_id;
    if previous.is_empty() || !valid_job_id(previous) {
        return Ok(None);
    }
    let field = "job.training_input.hyperparameters.resume_previous_job_id";
    match s.db.job(project, previous).await {
        Ok(prev) if !is_tuning(&prev) => Ok(Some(FieldViolation::new(
            field,
            format!("job '{previous}' is not a tuning job"),
        ))),
        Ok(_) => Ok(None),
        Err(DbError::Store(mle_store::StoreError::NotFound { .. })) => Ok(Some(
            FieldViolation::new(field, format!("no job '{previous}' in this project")),
        )),
        Err(e) => Err(e.into()),
    }
}

/// A Python trainer's `runtimeVersion` (and `pythonVersion`) must be one this server has.
fn check_runtime(s: &AppState, job: &Job) -> Option<FieldViolation> {
    let t = job.training_input.as_ref()?;
    if t.python_module.is_empty() {
        return None;
    }
    let why = s
        .cfg
        .runtimes
        .pick(&t.runtime_version, &t.python_version)
        .err()?;
    Some(FieldViolation::new(
        "job.training_input.runtime_version",
        why,
    ))
}

/// Every replica's `containerCommand` must start an allowed program (`--allow-command`).
fn check_commands(s: &AppState, job: &Job) -> Vec<FieldViolation> {
    let Some(t) = &job.training_input else {
        return Vec::new();
    };
    [
        ("master_config", &t.master_config),
        ("worker_config", &t.worker_config),
        ("parameter_server_config", &t.parameter_server_config),
        ("evaluator_config", &t.evaluator_config),
    ]
    .into_iter()
    .filter_map(|(name, c)| {
        let program = c.as_ref()?.container_command.first()?;
        let why = s.cfg.command_allowed(program).err()?;
        Some(FieldViolation::new(
            &format!("job.training_input.{name}.container_command"),
            why,
        ))
    })
    .collect()
}

/// The job dir and packages must pass the path policy.
fn check_paths(s: &AppState, job: &Job) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    let Some(t) = &job.training_input else {
        return v;
    };
    let root = s.cfg.paths();
    if !t.job_dir.is_empty()
        && let Err(e) = checked(&t.job_dir, Need::Any, root)
    {
        v.push(FieldViolation::new("job.training_input.job_dir", e));
    }
    for (i, uri) in t.package_uris.iter().enumerate() {
        if let Err(e) = checked(uri, Need::File, root) {
            v.push(FieldViolation::new(
                &format!("job.training_input.package_uris[{i}]"),
                e,
            ));
        }
    }
    v
}

async fn create(
    State(s): State<Arc<AppState>>,
    Path(project): Path<String>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Job>, ApiError> {
    valid_project(&project)?;
    let mut job: Job = body(raw, "job")?;
    let mut violations = validate_job(&job);
    if let Some(p) = &job.prediction_input {
        violations.extend(check_prediction(&s.db, &s.cfg, &project, p).await);
    }
    violations.extend(check_slots(&s, &job));
    violations.extend(check_resume(&s, &project, &job).await?);
    violations.extend(check_paths(&s, &job));
    violations.extend(check_commands(&s, &job));
    violations.extend(check_runtime(&s, &job));
    if !violations.is_empty() {
        return Err(ApiError::Invalid(violations));
    }
    job.state = JobState::Queued;
    job.create_time = now_rfc3339();
    job.start_time.clear();
    job.end_time.clear();
    job.error_message.clear();
    job.training_output = None;
    job.etag = "1".into();
    s.db.insert_job(&project, &job).await?;
    Ok(Json(job))
}

async fn read(
    State(s): State<Arc<AppState>>,
    Path((project, job_id)): Path<(String, String)>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(s.db.job(&project, &job_id).await?))
}

/// `POST .../jobs/{id}:cancel` (the verb rides on the last path segment).
async fn action(
    State(s): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path((project, segment)): Path<(String, String)>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    if segment.ends_with(":testIamPermissions") {
        return test_permissions(&who, &project, body(raw, "body")?);
    }
    let Some(job_id) = segment.strip_suffix(":cancel") else {
        return Err(ApiError::Status(
            ApiStatus::NotFound,
            format!("no such method: POST {segment}"),
        ));
    };
    s.scheduler.cancel(&project, job_id).await?;
    Ok(Json(json!({})))
}

async fn patch(
    State(s): State<Arc<AppState>>,
    Path((project, job_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Job>, ApiError> {
    let patch: Job = body(raw, "job")?;
    let mask = q.get("updateMask").map(String::as_str).unwrap_or("labels");
    if mask != "labels" {
        return Err(invalid("update_mask", "only 'labels' can be updated"));
    }
    let probe = Job {
        job_id: "x".into(),
        labels: patch.labels.clone(),
        prediction_input: Some(mle_api::PredictionInput::default()),
        ..Job::default()
    };
    let bad: Vec<FieldViolation> = validate_job(&probe)
        .into_iter()
        .filter(|v| v.field.starts_with("job.labels"))
        .collect();
    if !bad.is_empty() {
        return Err(ApiError::Invalid(bad));
    }
    let job =
        s.db.update_job(&project, &job_id, |j| {
            j.labels = patch.labels.clone();
            Ok(())
        })
        .await?;
    Ok(Json(job))
}

/// `filter`: `state:STATE` and `jobId:prefix*` terms, joined by spaces or `AND`.
fn job_filter(f: Option<&String>) -> Result<JobFilter, ApiError> {
    let mut filter = JobFilter::default();
    let Some(f) = f.filter(|f| !f.trim().is_empty()) else {
        return Ok(filter);
    };
    for term in f.split_whitespace().filter(|t| *t != "AND") {
        match term.split_once([':', '=']) {
            Some(("state", v)) => filter.state = Some(v.trim_matches('"').to_string()),
            Some(("jobId", v)) => {
                filter.id_prefix = Some(v.trim_matches('"').trim_end_matches('*').to_string())
            }
            _ => {
                return Err(invalid(
                    "filter",
                    format!("unsupported term '{term}' (use state:STATE or jobId:prefix*)"),
                ));
            }
        }
    }
    Ok(filter)
}

async fn list(
    State(s): State<Arc<AppState>>,
    Path(project): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (size, after) = page(&q)?;
    let mut filter = job_filter(q.get("filter"))?;
    filter.newest_first = match q
        .get("orderBy")
        .map(|o| o.split_whitespace().collect::<Vec<_>>())
    {
        None => false,
        Some(o) if o.is_empty() || o == ["createTime"] || o == ["createTime", "asc"] => false,
        Some(o) if o == ["createTime", "desc"] => true,
        Some(_) => {
            return Err(invalid(
                "order_by",
                "must be 'createTime' or 'createTime desc'",
            ));
        }
    };
    let jobs = s.db.list_jobs(&project, &filter, after, size + 1).await?;
    let items = jobs
        .into_iter()
        .map(|r| (r.seq, serde_json::to_value(&r.job).unwrap_or_default()))
        .collect();
    Ok(Json(paged(items, size, "jobs")))
}

async fn logs(
    State(s): State<Arc<AppState>>,
    Path((project, job_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    s.db.job(&project, &job_id).await?;
    let trial = super::watch::trial_param(&q)?;
    let cursor = match q.get("pageToken") {
        None => Cursor::default(),
        Some(t) => Cursor::parse(t).ok_or_else(|| invalid("page_token", "invalid page token"))?,
    };
    let run = s.cfg.run_dir(&project, &job_id);
    // File reads: off the async runtime.
    let page = tokio::task::spawn_blocking(move || {
        logs::read_page_of(&run, trial.as_deref(), &cursor, LOG_PAGE_BYTES)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(
        json!({"entries": page.entries, "nextPageToken": page.next.token()}),
    ))
}
