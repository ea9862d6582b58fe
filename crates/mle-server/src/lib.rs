//! `mle server`: the job service. An axum app with the `ml/v1` jobs API (bearer-token auth on
//! every route but `/healthz`), a store (SQLite in the data dir or PostgreSQL), and a scheduler
//! that runs jobs through detached supervisors (`mle-exec`), so the server can be killed at any
//! moment and pick its jobs up again on restart.
//!
//! Tests and other crates build the app with [`app`] (no socket needed) or start it with [`run`].

mod error;
mod jobs;
mod models;
pub mod openapi;
mod scheduler;
mod tuning;

pub use error::ApiError;
pub use scheduler::{
    Config, Scheduler, now_rfc3339, plan_training, replica_counts, rfc3339, slots_needed,
};

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mle_api::ApiStatus;
use mle_store::Store;

#[derive(Clone)]
struct Auth(Arc<String>);

async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Constant-time comparison: do not leak how much of the token matched.
    let ok = given.is_some_and(|g| {
        g.len() == auth.0.len()
            && g.bytes()
                .zip(auth.0.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        next.run(req).await
    } else {
        ApiError::Status(
            ApiStatus::Unauthenticated,
            "missing or invalid bearer token".into(),
        )
        .into_response()
    }
}

static REQUESTS: AtomicU64 = AtomicU64::new(0);

async fn count_requests(req: Request, next: Next) -> Response {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    next.run(req).await
}

/// `/metrics` in the Prometheus text exposition format.
async fn metrics(State(s): State<Arc<Scheduler>>) -> Result<Response, ApiError> {
    let mut out = String::from("# HELP mle_jobs Jobs by state.\n# TYPE mle_jobs gauge\n");
    for (state, n) in s.store.count_by_state().await? {
        out += &format!("mle_jobs{{state=\"{state}\"}} {n}\n");
    }
    out += &format!(
        "# HELP mle_slots_total Replica slots of this server.\n# TYPE mle_slots_total gauge\nmle_slots_total {}\n",
        s.cfg.slots
    );
    out += &format!(
        "# HELP mle_http_requests_total HTTP requests received.\n# TYPE mle_http_requests_total counter\nmle_http_requests_total {}\n",
        REQUESTS.load(Ordering::Relaxed)
    );
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response())
}

/// The whole HTTP app.
pub fn app(scheduler: Arc<Scheduler>, token: String) -> Router {
    let api = jobs::router()
        .merge(models::router())
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(openapi::spec()) }),
        )
        .with_state(scheduler)
        .route_layer(middleware::from_fn_with_state(
            Auth(Arc::new(token)),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(models::health_router())
        .merge(api)
        .fallback(|| async { ApiError::Status(ApiStatus::NotFound, "no such route".into()) })
        .layer(middleware::from_fn(count_requests))
}

/// Reads `<data-dir>/token`, creating it (mode 0600, 32 random bytes as hex) on first start.
pub fn token(data_dir: &Path) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let bytes: [u8; 32] = rand::random();
    let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(t.as_bytes())?;
    Ok(t)
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// File system.
    #[error("{0}")]
    Io(String),
    /// Store.
    #[error(transparent)]
    Store(#[from] mle_store::StoreError),
}

/// Opens the store, starts the scheduler and serves on `listen`; prints the bound address.
pub async fn run(listen: &str, cfg: Config, database: Option<&str>) -> Result<(), ServerError> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| ServerError::Io(format!("cannot create {}: {e}", cfg.data_dir.display())))?;
    let store = match database {
        Some(url) => Store::open(url).await?,
        None => Store::open_dir(&cfg.data_dir).await?,
    };
    let token = token(&cfg.data_dir)
        .map_err(|e| ServerError::Io(format!("token file in {}: {e}", cfg.data_dir.display())))?;
    let scheduler = Scheduler::new(store, cfg);
    scheduler.resume_versions().await?;
    tokio::spawn(scheduler.clone().run());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServerError::Io(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Io(e.to_string()))?;
    println!("mle server listening on http://{addr}");
    axum::serve(listener, app(scheduler, token))
        .await
        .map_err(|e| ServerError::Io(e.to_string()))
}
