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
    /// The Python interpreters for Python trainers, by runtime version (`--python`,
    /// `--runtime`).
    pub runtimes: mle_exec::Runtimes,
    /// How trainer packages are installed.
    pub pip: PipPolicy,
    /// When set, job dirs, packages, model and prediction paths must lie inside this directory.
    pub allow_root: Option<PathBuf>,
    /// The buckets `gs://` and `s3://` fields may name (`--allow-bucket`; `*` is any; none:
    /// any unless `allow_root` is set).
    pub allow_buckets: Vec<String>,
    /// Where jobs run: supervised on this machine, or as Slurm jobs.
    pub backend: mle_exec::Backend,
    /// Connection limits and timeouts.
    pub limits: Limits,
    /// What a job may run and see.
    pub jobs: JobPolicy,
}

/// How a job's packages are installed (`mle server --pip-arg`, `--pip-timeout`).
#[derive(Debug, Clone)]
pub struct PipPolicy {
    /// pip's index options, passed through (`--find-links DIR`, `--index-url URL`, ...).
    pub args: Vec<String>,
    /// How long installing a job's packages may take.
    pub timeout: Duration,
}

impl Default for PipPolicy {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            timeout: Duration::from_secs(900),
        }
    }
}

/// What a job may run and see (`mle server --allow-command`, `--pass-env`, `--run-as`).
#[derive(Debug, Clone, Default)]
pub struct JobPolicy {
    /// Programs a `containerCommand` may start besides the `mle` binary and the Python
    /// interpreter (names looked up on PATH, or paths).
    pub allow_commands: Vec<String>,
    /// Variables of the server's environment that jobs get too (beyond
    /// `mle_exec::env::INHERITED`).
    pub pass_env: Vec<String>,
    /// The user replicas and pip run as (`--run-as`), when not the server's own.
    pub run_as: Option<RunAs>,
}

/// An unprivileged user for jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

/// `name` as the file it runs: a path as given, a bare name looked up on PATH; symlinks
/// resolved. `None` when there is no such program.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let p = std::path::Path::new(name);
    if name.contains('/') {
        return p.canonicalize().ok();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|c| c.is_file())
        .and_then(|c| c.canonicalize().ok())
}

impl Config {
    /// A server that runs jobs on this machine with `mle_exe` and keeps its data in
    /// `data_dir`: 4 slots, the `python3` runtime, every policy at its default. Tests start
    /// from it and change what they need.
    pub fn local(data_dir: PathBuf, mle_exe: PathBuf) -> Self {
        Config {
            data_dir,
            slots: 4,
            mle_exe: mle_exe.clone(),
            runtimes: mle_exec::Runtimes {
                default: "python3".into(),
                listed: Vec::new(),
            },
            pip: Default::default(),
            allow_root: None,
            allow_buckets: Vec::new(),
            backend: mle_exec::Backend::Local { mle_exe },
            limits: Default::default(),
            jobs: Default::default(),
        }
    }

    /// Whether a `containerCommand` may start `program`: the `mle` binary, a runtime's Python
    /// interpreter, or an `--allow-command`; the error names the flag.
    pub fn command_allowed(&self, program: &str) -> Result<(), String> {
        if program == "mle" {
            return Ok(());
        }
        let refused = || {
            let mut allowed = vec!["mle".to_string()];
            allowed.extend(self.runtimes.interpreters().map(String::from));
            allowed.extend(self.jobs.allow_commands.iter().cloned());
            format!(
                "'{program}' is not a command this server runs (allowed: {}; an operator adds more with mle server --allow-command)",
                allowed.join(", ")
            )
        };
        let Some(want) = find_program(program) else {
            return Err(refused());
        };
        let allowed = std::iter::once(self.mle_exe.display().to_string())
            .chain(self.runtimes.interpreters().map(String::from))
            .chain(self.jobs.allow_commands.iter().cloned());
        if allowed.filter_map(|a| find_program(&a)).any(|a| a == want) {
            Ok(())
        } else {
            Err(refused())
        }
    }

    /// The `--pass-env` variables the server has, for a job's environment.
    pub fn passed_env(&self) -> Vec<(String, String)> {
        self.jobs
            .pass_env
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
            .collect()
    }

    /// The path policy of request fields (`--allow-root`, `--allow-bucket`).
    pub fn paths(&self) -> crate::paths::Policy<'_> {
        crate::paths::Policy {
            root: self.allow_root.as_deref(),
            buckets: &self.allow_buckets,
        }
    }

    /// The cache of jobs' Python environments: `<data-dir>/envs/`.
    pub fn env_cache(&self) -> PathBuf {
        self.data_dir.join("envs")
    }

    /// A job's run directory: `<data-dir>/runs/<project>/<job>/`.
    pub fn run_dir(&self, project: &str, job_id: &str) -> mle_exec::RunDir {
        mle_exec::RunDir(self.data_dir.join("runs").join(project).join(job_id))
    }
}
