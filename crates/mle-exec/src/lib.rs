//! Running jobs: on this machine, a [`JobPlan`] (replica commands with their `TF_CONFIG`) is
//! executed by a detached supervisor process (`mle exec-supervise RUN_DIR`) that outlives the
//! server. The run directory is the contract between them:
//!
//! - `plan.json`: what to run (written by the server);
//! - `supervisor.pid`: the supervisor's pid;
//! - `logs/<task>.log`: one JSON object per output line
//!   (`{"time", "severity", "task", "message"}`), `task` as `master-replica-0`;
//! - `result.json`: `{"state": "SUCCEEDED"|"FAILED"|"CANCELLED", "message"}`, written
//!   atomically when the job ends; its presence means the job is over.
//!
//! Each replica runs in its own process group; stopping a job signals every group, so nothing
//! a trainer started survives a cancel.
//!
//! The same run directory can instead become a Slurm job ([`Backend::Slurm`], [`slurm`]): one
//! task per replica, each running the [`replica`] shim, which adds `slurm_job`, `started`,
//! `cancel_requested`, the rendezvous (`slurm/`) and Slurm's output files (`logs/slurm-*.log`)
//! to the contract above.
//!
//! Python trainers run on a [`runtime`]'s interpreter, in a [`pyenv`] that holds their
//! packages and those packages' dependencies.

mod backend;
pub mod env;
pub mod logs;
mod plan;
pub mod pyenv;
pub mod replica;
pub mod runtime;
pub mod slurm;
mod supervise;

pub use backend::Backend;
pub use plan::{JobPlan, ReplicaPlan, RunDir, make_dir_for};
pub use replica::replica;
pub use runtime::{Runtime, Runtimes};
pub use slurm::{Resources, Slurm};
pub use supervise::{Outcome, stop_groups, supervise};

/// Errors of the executor.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// File system errors, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A plan or result file is malformed.
    #[error("{path}: {why}")]
    Format {
        /// The path.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A Slurm task cannot run its replica.
    #[error("{0}")]
    Replica(String),
}
