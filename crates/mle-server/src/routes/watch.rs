//! What the console watches, as mle extensions of ml v1: a job's (or one trial's) metric
//! series from its event files, downsampled on the server (`.../jobs/{job}/metrics`); its log
//! lines as a stream of server-sent events (`.../jobs/{job}/logs/stream`); and who the
//! caller is, with their permissions per project (`/v1/principal`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mle_api::{ApiStatus, Job};
use mle_exec::logs::{self, Cursor};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::invalid;
use crate::access::{Permission, Principal};
use crate::error::ApiError;
use crate::paths::{Need, checked};
use crate::series;
use crate::state::{AppState, MAX_STREAMS};

/// A job's (or, with `trial`, one trial's) metric series.
pub const JOB_METRICS: &str = "/v1/projects/{project}/jobs/{job}/metrics";
/// A job's log lines as server-sent events.
pub const JOB_LOG_STREAM: &str = "/v1/projects/{project}/jobs/{job}/logs/stream";
/// The caller: name, role and permissions per project.
pub const PRINCIPAL: &str = "/v1/principal";

/// Points per series when `maxPoints` is not given.
const DEFAULT_POINTS: usize = 1000;
/// Log bytes one event carries at most.
const EVENT_BYTES: usize = 256 << 10;
/// How often a stream looks for new lines.
const POLL: Duration = Duration::from_millis(500);
/// A comment line is sent after this much silence, so proxies keep the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A stream ends after this long; the client reconnects with its cursor.
const MAX_STREAM: Duration = Duration::from_secs(30 * 60);

/// The routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(JOB_METRICS, get(metrics))
        .route(JOB_LOG_STREAM, get(stream))
        .route(PRINCIPAL, get(principal))
}

/// `trial`: a trial id (digits), if given.
pub(crate) fn trial_param(q: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    match q.get("trial") {
        None => Ok(None),
        Some(t) if (1..=10).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(t.clone()))
        }
        Some(_) => Err(invalid("trial", "must be a trial id (digits)")),
    }
}

async fn metrics(
    State(s): State<Arc<AppState>>,
    Path((project, job_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let job = s.db.job(&project, &job_id).await?;
    let trial = trial_param(&q)?;
    let max_points = match q.get("maxPoints").map(|v| v.parse::<usize>()) {
        None => DEFAULT_POINTS,
        Some(Ok(n)) if (3..=series::MAX_POINTS).contains(&n) => n,
        Some(_) => {
            return Err(invalid(
                "max_points",
                format!("must be an integer from 3 to {}", series::MAX_POINTS),
            ));
        }
    };
    let job_dir = job
        .training_input
        .as_ref()
        .map(|t| t.job_dir.clone())
        .unwrap_or_default();
    if job_dir.is_empty() {
        return Ok(Json(
            json!({"jobDir": "", "series": [], "exports": [], "skippedFiles": 0}),
        ));
    }
    // The job dir passed the policy when the job was created; it must still (the server may
    // have been restarted with another --allow-root).
    let root = checked(&job_dir, Need::Any, s.cfg.paths())
        .map_err(|e| ApiError::Status(ApiStatus::FailedPrecondition, e))?;
    let dir = match &trial {
        Some(t) => root.join(t),
        None => root,
    };
    // File and bucket reads: off the async runtime.
    let out = tokio::task::spawn_blocking(move || {
        let read = series::read(&dir);
        json!({
            "jobDir": dir.uri(),
            "series": series::series(&read.runs, max_points),
            "exports": series::exports(&dir),
            "skippedFiles": read.skipped,
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(out))
}

/// One server-sent event.
fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

async fn stream(
    State(s): State<Arc<AppState>>,
    Path((project, job_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    s.db.job(&project, &job_id).await?;
    let trial = trial_param(&q)?;
    let mut cursor = match q.get("pageToken") {
        None => Cursor::default(),
        Some(t) => Cursor::parse(t).ok_or_else(|| invalid("page_token", "invalid page token"))?,
    };
    let permit = s.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::Status(
            ApiStatus::ResourceExhausted,
            format!("{MAX_STREAMS} log streams are open on this server; try again later"),
        )
    })?;
    let run = s.cfg.run_dir(&project, &job_id);
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
    tokio::spawn(async move {
        let _permit = permit;
        let started = Instant::now();
        let mut quiet_since = Instant::now();
        loop {
            // The state first: lines written before the job ended are read below.
            let ended = match s.db.job(&project, &job_id).await {
                Ok(Job { state, .. }) if state.is_final() => Some(state),
                Ok(_) => None,
                Err(_) => break,
            };
            let (run2, trial2, at) = (run.clone(), trial.clone(), cursor.clone());
            let Ok(page) = tokio::task::spawn_blocking(move || {
                logs::read_page_of(&run2, trial2.as_deref(), &at, EVENT_BYTES)
            })
            .await
            else {
                break;
            };
            cursor = page.next.clone();
            let msg = if !page.entries.is_empty() {
                quiet_since = Instant::now();
                event(
                    "entries",
                    &json!({"entries": page.entries, "nextPageToken": page.next.token()}),
                )
            } else if let Some(state) = ended {
                let _ = tx
                    .send(Ok(event(
                        "end",
                        &json!({"state": state, "nextPageToken": cursor.token()}),
                    )))
                    .await;
                break;
            } else if quiet_since.elapsed() >= KEEP_ALIVE {
                quiet_since = Instant::now();
                Bytes::from_static(b": keep-alive\n\n")
            } else if started.elapsed() >= MAX_STREAM {
                break;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => continue,
                    _ = tx.closed() => break,
                }
            };
            if tx.send(Ok(msg)).await.is_err() {
                break;
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}

async fn principal(
    State(s): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let (role, projects) = match &who {
        Principal::ServerAdmin => ("serverAdmin".to_string(), s.db.projects().await?),
        Principal::Named { role, projects, .. } => (role.name().to_string(), projects.clone()),
    };
    let projects: Vec<Value> = projects
        .iter()
        .map(|p| {
            let held: Vec<&str> = Permission::ALL
                .iter()
                .filter(|perm| who.may(p, **perm))
                .map(|perm| perm.name())
                .collect();
            json!({"projectId": p, "permissions": held})
        })
        .collect();
    Ok(Json(
        json!({"name": who.name(), "role": role, "projects": projects}),
    ))
}
