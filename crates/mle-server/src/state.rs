//! The axum state every handler takes: the typed store, the configuration, serving (warm
//! versions), a handle on the scheduler (for cancels) and the audit log.

use std::sync::Arc;

use mle_store::Store;

use crate::audit::Audit;
use crate::config::Config;
use crate::db::Db;
use crate::scheduler::Scheduler;
use crate::serving::Serving;

/// Log streams open at once on this server.
pub const MAX_STREAMS: usize = 256;

/// What handlers share.
pub struct AppState {
    /// The typed store.
    pub db: Db,
    /// Server-wide settings.
    pub cfg: Arc<Config>,
    /// Model versions: loading and routing.
    pub serving: Arc<Serving>,
    /// The scheduling loop (not started by [`AppState::new`]).
    pub scheduler: Arc<Scheduler>,
    /// The audit log.
    pub audit: Audit,
    /// Permits for open log streams ([`MAX_STREAMS`]).
    pub streams: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// The state over `store`; start the loop with `tokio::spawn(state.scheduler.clone().run())`.
    pub fn new(store: Store, cfg: Config) -> Arc<Self> {
        let db = Db::new(store);
        let cfg = Arc::new(cfg);
        Arc::new(Self {
            serving: Serving::new(db.clone(), cfg.clone()),
            scheduler: Scheduler::new(db.clone(), cfg.clone()),
            audit: Audit::new(&cfg.data_dir),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            db,
            cfg,
        })
    }
}
