//! `mle server`: the job service. An axum app with the `ml/v1` API (bearer-token auth on every
//! route but the health checks), a store (SQLite in the data dir or PostgreSQL), and a
//! scheduler that runs jobs through detached supervisors (`mle-exec`), so the server can be
//! killed at any moment and pick its jobs up again on restart.
//!
//! The rooms, from the bottom: `config`, `paths` (the path policy), `db` (the typed store),
//! `lifecycle` (job state transitions), `catalog` (model and version lookups), `operations`,
//! `plan` (what a job runs), `serving` (warm versions), `tuning` (studies), `scheduler` (the
//! loop), `state` (what handlers share), `routes/` (one file per resource), `app` (the HTTP
//! app). Tests and other crates build the app with [`app`] (no socket needed) or start it
//! with [`run`].

mod app;
mod catalog;
mod config;
mod db;
mod error;
mod lifecycle;
pub mod openapi;
mod operations;
mod paths;
mod plan;
mod routes;
mod scheduler;
mod serving;
mod state;
mod tuning;

pub use app::app;
pub use config::Config;
pub use error::ApiError;
pub use plan::{plan_training, replica_counts, slots_needed};
pub use state::AppState;

use std::path::Path;

use mle_store::Store;

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
    /// Reading the store at start-up.
    #[error(transparent)]
    Db(#[from] db::DbError),
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
    let state = AppState::new(store, cfg);
    state.serving.resume_versions().await?;
    tokio::spawn(state.scheduler.clone().run());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServerError::Io(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Io(e.to_string()))?;
    println!("mle server listening on http://{addr}");
    axum::serve(listener, app(state, token))
        .await
        .map_err(|e| ServerError::Io(e.to_string()))
}
