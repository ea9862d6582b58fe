//! `/v1/projects/{p}/jobs`: create, get, list, cancel, patch labels, and the mle extension
//! `/v1/projects/{p}/jobs/{id}/logs`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use mle_api::{ApiStatus, FieldViolation, Job, JobState, valid_job_id, validate_job};
use mle_store::JobFilter;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::scheduler::{Scheduler, decode, inside, is_tuning, now_rfc3339, slots_needed};

/// Collection of a project's jobs.
pub const JOBS: &str = "/v1/projects/{project}/jobs";
/// One job (`POST` on `{job}:cancel` cancels).
pub const JOB: &str = "/v1/projects/{project}/jobs/{job}";
/// A job's log lines.
pub const JOB_LOGS: &str = "/v1/projects/{project}/jobs/{job}/logs";

/// The jobs routes.
pub fn router() -> Router<Arc<Scheduler>> {
    Router::new()
        .route(JOBS, post(create).get(list))
        .route(JOB, get(read).post(action).patch(patch))
        .route(JOB_LOGS, get(logs))
}

/// Project names: letters, digits, '-' and '_', at most 63.
pub(crate) fn valid_project(p: &str) -> Result<(), ApiError> {
    let ok = !p.is_empty()
        && p.len() <= 63
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::Invalid(vec![FieldViolation::new(
            "parent",
            "project names hold letters, digits, '-' and '_'",
        )]))
    }
}

/// A JSON request body, or a 400 naming the parse error.
pub(crate) fn body(r: Result<Json<Value>, JsonRejection>) -> Result<Value, ApiError> {
    r.map(|Json(v)| v).map_err(|e| {
        ApiError::Invalid(vec![FieldViolation::new(
            "body",
            format!("malformed JSON: {}", e.body_text()),
        )])
    })
}

async fn create(
    State(s): State<Arc<Scheduler>>,
    Path(project): Path<String>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Job>, ApiError> {
    valid_project(&project)?;
    let value = body(raw)?;
    let mut job: Job = serde_json::from_value(value)
        .map_err(|e| ApiError::Invalid(vec![FieldViolation::new("job", e.to_string())]))?;
    let mut violations = validate_job(&job);
    if let Some(p) = &job.prediction_input {
        violations.extend(s.check_prediction(&project, p).await?);
    }
    let need = slots_needed(&job);
    if need > s.cfg.slots {
        let (field, why) = if is_tuning(&job) {
            (
                "job.training_input.hyperparameters.max_parallel_trials",
                " (replicas per trial × maxParallelTrials)",
            )
        } else {
            ("job.training_input.scale_tier", "")
        };
        violations.push(FieldViolation::new(
            field,
            format!(
                "needs {need} replicas{why}, this server runs at most {}",
                s.cfg.slots
            ),
        ));
    }
    if let Some(h) = job
        .training_input
        .as_ref()
        .and_then(|t| t.hyperparameters.as_ref())
        && !h.resume_previous_job_id.is_empty()
        && valid_job_id(&h.resume_previous_job_id)
    {
        let field = "job.training_input.hyperparameters.resume_previous_job_id";
        match s.store.get_job(&project, &h.resume_previous_job_id).await {
            Ok(rec) if !is_tuning(&decode(&rec)) => violations.push(FieldViolation::new(
                field,
                format!("job '{}' is not a tuning job", h.resume_previous_job_id),
            )),
            Ok(_) => {}
            Err(mle_store::StoreError::NotFound { .. }) => violations.push(FieldViolation::new(
                field,
                format!("no job '{}' in this project", h.resume_previous_job_id),
            )),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(t) = &job.training_input {
        if !t.job_dir.is_empty() {
            let dir = t.job_dir.strip_prefix("file://").unwrap_or(&t.job_dir);
            if t.job_dir.contains("://") && !t.job_dir.starts_with("file://") {
                violations.push(FieldViolation::new(
                    "job.training_input.job_dir",
                    "only local paths and file:// URIs are supported",
                ));
            } else if !std::path::Path::new(dir).is_absolute() {
                violations.push(FieldViolation::new(
                    "job.training_input.job_dir",
                    format!("'{}' must be an absolute path", t.job_dir),
                ));
            } else if let Some(root) = &s.cfg.allow_root
                && !inside(root, std::path::Path::new(dir))
            {
                violations.push(FieldViolation::new(
                    "job.training_input.job_dir",
                    format!(
                        "'{}' is outside the directory this server may use",
                        t.job_dir
                    ),
                ));
            }
        }
        for (i, uri) in t.package_uris.iter().enumerate() {
            let path = uri.strip_prefix("file://").unwrap_or(uri);
            if uri.contains("://") && !uri.starts_with("file://") {
                violations.push(FieldViolation::new(
                    &format!("job.training_input.package_uris[{i}]"),
                    "only local paths and file:// URIs are supported",
                ));
            } else if !std::path::Path::new(path).is_file() {
                violations.push(FieldViolation::new(
                    &format!("job.training_input.package_uris[{i}]"),
                    format!("'{uri}' does not exist"),
                ));
            } else if let Some(root) = &s.cfg.allow_root
                && !inside(root, std::path::Path::new(path))
            {
                violations.push(FieldViolation::new(
                    &format!("job.training_input.package_uris[{i}]"),
                    format!("'{uri}' is outside the directory this server may use"),
                ));
            }
        }
    }
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
    let text = serde_json::to_string(&job).map_err(|e| ApiError::Internal(e.to_string()))?;
    s.store
        .insert_job(&project, &job.job_id, "QUEUED", &job.create_time, &text)
        .await?;
    Ok(Json(job))
}

async fn read(
    State(s): State<Arc<Scheduler>>,
    Path((project, job_id)): Path<(String, String)>,
) -> Result<Json<Job>, ApiError> {
    let rec = s.store.get_job(&project, &job_id).await?;
    let job: Job =
        serde_json::from_str(&rec.body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(job))
}

/// `POST .../jobs/{id}:cancel` (the verb rides on the last path segment).
async fn action(
    State(s): State<Arc<Scheduler>>,
    Path((project, segment)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let Some(job_id) = segment.strip_suffix(":cancel") else {
        return Err(ApiError::Status(
            ApiStatus::NotFound,
            format!("no such method: POST {segment}"),
        ));
    };
    let current = s.store.get_job(&project, job_id).await?;
    let job: Job =
        serde_json::from_str(&current.body).map_err(|e| ApiError::Internal(e.to_string()))?;
    if job.state.is_final() {
        return Err(ApiError::Status(
            ApiStatus::FailedPrecondition,
            format!("job '{job_id}' has already ended ({:?})", job.state),
        ));
    }
    s.cancel(&project, job_id).await?;
    Ok(Json(json!({})))
}

async fn patch(
    State(s): State<Arc<Scheduler>>,
    Path((project, job_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    raw: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Job>, ApiError> {
    let value = body(raw)?;
    let mask = q.get("updateMask").map(String::as_str).unwrap_or("labels");
    if mask != "labels" {
        return Err(ApiError::Invalid(vec![FieldViolation::new(
            "update_mask",
            "only 'labels' can be updated",
        )]));
    }
    let patch: Job = serde_json::from_value(value)
        .map_err(|e| ApiError::Invalid(vec![FieldViolation::new("job", e.to_string())]))?;
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
    Ok(Json(
        s.update(&project, &job_id, |j| j.labels = patch.labels.clone())
            .await?,
    ))
}

async fn list(
    State(s): State<Arc<Scheduler>>,
    Path(project): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let page_size = match q.get("pageSize").map(|v| v.parse::<i64>()) {
        None => 20,
        Some(Ok(n)) if n > 0 => n.min(100),
        Some(_) => {
            return Err(ApiError::Invalid(vec![FieldViolation::new(
                "page_size",
                "must be a positive integer",
            )]));
        }
    };
    let after = match q.get("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t.parse::<i64>().map_err(|_| {
            ApiError::Invalid(vec![FieldViolation::new(
                "page_token",
                "invalid page token",
            )])
        })?,
    };
    let mut filter = JobFilter::default();
    if let Some(f) = q.get("filter").filter(|f| !f.trim().is_empty()) {
        for term in f.split_whitespace().filter(|t| *t != "AND") {
            match term.split_once([':', '=']) {
                Some(("state", v)) => filter.state = Some(v.trim_matches('"').to_string()),
                Some(("jobId", v)) => {
                    filter.id_prefix = Some(v.trim_matches('"').trim_end_matches('*').to_string())
                }
                _ => {
                    return Err(ApiError::Invalid(vec![FieldViolation::new(
                        "filter",
                        format!("unsupported term '{term}' (use state:STATE or jobId:prefix*)"),
                    )]));
                }
            }
        }
    }
    let recs = s
        .store
        .list_jobs(&project, &filter, after, page_size + 1)
        .await?;
    let more = recs.len() as i64 > page_size;
    let page = &recs[..recs.len().min(page_size as usize)];
    let jobs: Vec<Value> = page
        .iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect();
    let mut out = json!({"jobs": jobs});
    if more && let Some(last) = page.last() {
        out["nextPageToken"] = json!(last.seq.to_string());
    }
    Ok(Json(out))
}

async fn logs(
    State(s): State<Arc<Scheduler>>,
    Path((project, job_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    s.store.get_job(&project, &job_id).await?;
    let skip = q
        .get("skip")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let all = s.run_dir(&project, &job_id).read_logs();
    let entries: Vec<Value> = all.into_iter().skip(skip).collect();
    Ok(Json(json!({"entries": entries})))
}
