//! Server-wide settings: what `mle server`'s flags decide.

use std::path::PathBuf;
use std::time::Duration;

/// What one client may hold of the server's socket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Open connections at once; more are closed as they arrive.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (also an idle keep-alive
    /// connection's wait for the next request).
    pub header_timeout: Duration,
    /// How long one request may take, body and answer included (408 after that).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
        }
    }
}

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
    /// Connection limits and timeouts.
    pub limits: Limits,
}

impl Config {
    /// A job's run directory: `<data-dir>/runs/<project>/<job>/`.
    pub fn run_dir(&self, project: &str, job_id: &str) -> mle_exec::RunDir {
        mle_exec::RunDir(self.data_dir.join("runs").join(project).join(job_id))
    }
}
