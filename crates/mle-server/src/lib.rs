//! `mle server`: the job service. An axum app with the `ml/v1` API (bearer tokens, roles per
//! project and an audit log on every route but the health checks), a store (SQLite in the data dir or PostgreSQL), and a
//! scheduler that runs jobs through detached supervisors (`mle-exec`), so the server can be
//! killed at any moment and pick its jobs up again on restart.
//!
//! The rooms, from the bottom: `config`, `paths` (the path policy), `access` (roles and the
//! route table), `audit`, `tls`, `db` (the typed store), `tokens`, `defaults` (a model's
//! default version),
//! `lifecycle` (job state transitions), `catalog` (model and version lookups), `operations`,
//! `plan` (what a job runs), `serving` (warm versions), `series` (scalars from a job's event
//! files), `trials` and `tuning` (studies), `scheduler` (the
//! loop), `state` (what handlers share), `routes/` (one file per resource), `console` (the
//! web console's embedded files), `app` (the HTTP app). Tests and other crates build the app with [`app`] (no socket needed) or start it
//! with [`run`].

mod access;
mod app;
mod audit;
mod catalog;
mod config;
mod console;
mod db;
mod defaults;
mod error;
mod lifecycle;
mod listen;
pub mod openapi;
mod operations;
mod paths;
mod plan;
mod routes;
mod scheduler;
mod series;
mod serving;
mod state;
mod tls;
mod tokens;
mod trials;
mod tuning;

pub use app::app;
pub use config::{Config, JobPolicy, Limits, PipPolicy, RunAs, find_program};
pub use state::{AppState, MAX_STREAMS};
pub use tls::TlsFiles;
pub use tokens::{TokenError, TokenInfo, create_token, list_tokens, revoke_token};

use std::path::Path;

use mle_store::Store;

/// Reads `<data-dir>/token`, creating it (mode 0600, 32 random bytes as hex) on first start.
/// It is written whole or not at all (a temporary file renamed into place), and an empty
/// token file — which no request could match — is replaced.
pub fn token(data_dir: &Path) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("token");
    if let Ok(t) = std::fs::read_to_string(&path)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    let bytes: [u8; 32] = rand::random();
    let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = data_dir.join(format!(".token.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(t.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(t)
}

/// The data dir, created if needed and made private (mode 0700: it holds the token, the
/// database and every job's logs; 0711, passable but not listable, when jobs run as another
/// user and must reach their run directories), and locked for this server: a second server on the same
/// data dir would launch the same jobs, so it is refused, naming the holder. The lock lives
/// as long as the returned file.
pub fn claim_data_dir(
    data_dir: &Path,
    listen: &str,
    traversable: bool,
) -> Result<std::fs::File, ServerError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let io = |what: &str, e: std::io::Error| {
        ServerError::Io(format!("{what} {}: {e}", data_dir.display()))
    };
    std::fs::create_dir_all(data_dir).map_err(|e| io("cannot create", e))?;
    // Jobs that run as another user must pass through it to their run directories (0711:
    // nothing in it can be listed; its files are 0600).
    let mode = if traversable { 0o711 } else { 0o700 };
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("cannot make private", e))?;
    let path = data_dir.join("server.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("cannot open the lock file in", e))?;
    if f.try_lock().is_err() {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(ServerError::Io(format!(
            "another mle server ({}) is using the data dir {}; stop it or choose another --data-dir",
            holder.trim(),
            data_dir.display()
        )));
    }
    let _ = f.set_len(0);
    let _ = write!(f, "pid {} listening on {listen}", std::process::id());
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_private_reused_and_never_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let t = token(dir.path()).unwrap();
        assert_eq!(t.len(), 64);
        let mode = std::fs::metadata(dir.path().join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(token(dir.path()).unwrap(), t);
        // A token file left empty (by a crash of an older version) is replaced.
        std::fs::write(dir.path().join("token"), "\n").unwrap();
        let fresh = token(dir.path()).unwrap();
        assert_eq!(fresh.len(), 64);
        assert_ne!(fresh, t);
    }

    #[test]
    fn a_data_dir_is_private_and_held_by_one_server() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let held = claim_data_dir(&data, "127.0.0.1:1", false).unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let e = claim_data_dir(&data, "127.0.0.1:2", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("another mle server") && e.contains("127.0.0.1:1"),
            "{e}"
        );
        drop(held);
        claim_data_dir(&data, "127.0.0.1:3", false).unwrap();
    }
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

/// The store of a server: PostgreSQL at `database`, or the SQLite file in `data_dir`.
pub async fn open_store(data_dir: &Path, database: Option<&str>) -> Result<Store, ServerError> {
    Ok(match database {
        Some(url) => Store::open(url).await?,
        None => Store::open_dir(data_dir).await?,
    })
}

/// Opens the store, starts the scheduler and serves on `listen`; prints the bound address.
pub async fn run(
    listen: &str,
    cfg: Config,
    database: Option<&str>,
    tls: Option<&TlsFiles>,
) -> Result<(), ServerError> {
    let tls = tls
        .map(tls::acceptor)
        .transpose()
        .map_err(ServerError::Io)?;
    // Everything the server writes is its own: the database, logs, model copies.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let _lock = claim_data_dir(&cfg.data_dir, listen, cfg.jobs.run_as.is_some())?;
    let store = open_store(&cfg.data_dir, database).await?;
    // A database made before (or by an older server) may be readable by others.
    for f in ["mle.db", "mle.db-wal", "mle.db-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let _ =
            std::fs::set_permissions(cfg.data_dir.join(f), std::fs::Permissions::from_mode(0o600));
    }
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
    let files = listen::raise_open_files_limit();
    let limits = state.cfg.limits;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if tls.is_none() && !addr.ip().is_loopback() {
        eprintln!(
            "warning: listening on {addr} without TLS: tokens and predictions travel in clear text (use --tls-cert and --tls-key)"
        );
    }
    println!("mle server listening on {scheme}://{addr}");
    eprintln!("the console: {scheme}://{addr}/console/");
    if let Some(n) = files {
        eprintln!(
            "at most {} connections (open files limit {n}); headers within {} s, requests within {} s",
            limits.max_connections,
            limits.header_timeout.as_secs_f64(),
            limits.request_timeout.as_secs_f64()
        );
    }
    listen::serve(listener, app(state, token), limits, tls)
        .await
        .map_err(|e| ServerError::Io(e.to_string()))
}
