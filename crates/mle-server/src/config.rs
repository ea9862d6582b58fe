//! Server-wide settings: what `mle server`'s flags decide.

use std::path::PathBuf;

/// Server-wide settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Root of runs, logs and the database.
    pub data_dir: PathBuf,
    /// Replica slots (each replica takes one).
    pub slots: usize,
    /// The `mle` binary (for the built-in trainer and the supervisor).
    pub mle_exe: PathBuf,
    /// The Python interpreter for Python trainers.
    pub python: String,
    /// When set, job dirs, packages, model and prediction paths must lie inside this directory.
    pub allow_root: Option<PathBuf>,
    /// Where jobs run: supervised on this machine, or as Slurm jobs.
    pub backend: mle_exec::Backend,
}

impl Config {
    /// A job's run directory: `<data-dir>/runs/<project>/<job>/`.
    pub fn run_dir(&self, project: &str, job_id: &str) -> mle_exec::RunDir {
        mle_exec::RunDir(self.data_dir.join("runs").join(project).join(job_id))
    }
}
