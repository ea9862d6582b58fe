//! Where a run directory's plan executes: on this machine under a detached supervisor, or as a
//! Slurm job. Both backends share the run directory contract (plan in, logs and `result.json`
//! out), so the server's scheduler and tuning loop treat them alike.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::RunDir;
use crate::slurm::{JobStatus, Resources, Slurm};

/// An execution backend.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `mle exec-supervise RUN_DIR`, detached, on this machine.
    Local {
        /// The `mle` binary.
        mle_exe: PathBuf,
    },
    /// One Slurm job per run directory.
    Slurm(Slurm),
}

impl Backend {
    /// `local` or `slurm`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Local { .. } => "local",
            Backend::Slurm(_) => "slurm",
        }
    }

    /// Starts the plan already written in `run`. `name` labels the job for the engine;
    /// `res` is what each replica asks for (the local backend ignores it).
    pub fn launch(&self, run: &RunDir, name: &str, res: &Resources) -> Result<(), String> {
        match self {
            Backend::Local { mle_exe } => {
                let child = std::process::Command::new(mle_exe)
                    .arg("exec-supervise")
                    .arg(&run.0)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .process_group(0)
                    .spawn()
                    .map_err(|e| format!("cannot start the job supervisor: {e}"))?;
                // The supervisor writes its pid too; writing it here closes the window before
                // it does.
                let _ = run.record_supervisor(child.id());
                // Reap the supervisor when it exits, so that it does not linger as a zombie.
                std::thread::spawn(move || {
                    let mut child = child;
                    let _ = child.wait();
                });
                Ok(())
            }
            Backend::Slurm(s) => {
                let plan = run.read_plan().map_err(|e| e.to_string())?;
                let trial = plan.trial.as_deref();
                for id in s.cancel_strays(run, name) {
                    run.service_log(
                        trial,
                        &format!(
                            "cancelled Slurm job {id}: an interrupted earlier attempt submitted it (the server stopped before recording it)"
                        ),
                    );
                }
                let tasks = plan.replicas.len();
                let id = s.submit(run, name, tasks, res, plan.max_running_secs)?;
                // Say where the job went, in the job's own logs.
                run.service_log(
                    trial,
                    &format!(
                        "submitted to Slurm as job {id} ({name}): {tasks} task(s), {} CPU(s) each",
                        res.cpus.max(1)
                    ),
                );
                Ok(())
            }
        }
    }

    /// Whether `run` was launched (it may have ended since).
    pub fn launched(&self, run: &RunDir) -> bool {
        match self {
            Backend::Local { .. } => run.pid_file().exists(),
            Backend::Slurm(_) => Slurm::job_id(run).is_some(),
        }
    }

    /// Whether the run's processes have been started (a Slurm job that waits in the queue, or
    /// whose tasks have not all met yet, has not).
    pub fn started(&self, run: &RunDir) -> bool {
        match self {
            Backend::Local { .. } => true,
            Backend::Slurm(_) => Self::start_time(run).is_some(),
        }
    }

    /// When the primary replica's trainer was started, on the Slurm backend (seconds since
    /// the Unix epoch, written by its `mle replica` shim to `<run>/started`).
    pub fn start_time(run: &RunDir) -> Option<f64> {
        std::fs::read_to_string(run.0.join("started"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the run is still going. Call it before reading `result.json`: a run that is
    /// over without a result (the supervisor died; Slurm cancelled, lost or failed the job)
    /// gets one here on the Slurm backend, saying why.
    pub fn alive(&self, run: &RunDir) -> bool {
        match self {
            Backend::Local { .. } => run.live_supervisor().is_some(),
            Backend::Slurm(s) => {
                let Some(id) = Slurm::job_id(run) else {
                    return false;
                };
                let why = match s.status(id) {
                    JobStatus::Active(state, reason)
                        if state == "PENDING"
                            && crate::slurm::NEVER_STARTS.contains(&reason.as_str()) =>
                    {
                        Slurm::scancel(id);
                        format!(
                            "Slurm cannot run job {id}: it is pending with reason {reason} (it asks for more than the partition, account or QOS can give; see the machine types)"
                        )
                    }
                    JobStatus::Active(..) | JobStatus::Unreachable(_) => return true,
                    JobStatus::Ended { state, reason } => {
                        let reason = if reason == "None" || reason.is_empty() {
                            String::new()
                        } else {
                            format!(" ({reason})")
                        };
                        format!(
                            "Slurm job {id} ended {state}{reason} before the primary replica reported a result"
                        )
                    }
                    JobStatus::Unknown => {
                        format!("Slurm has no record of job {id} (lost by the cluster?)")
                    }
                };
                if run.result().exists() {
                    return false;
                }
                let (state, message) = if run.0.join("cancel_requested").exists() {
                    ("CANCELLED", "Job cancelled by user request".to_string())
                } else {
                    ("FAILED", why)
                };
                let _ = run.write_result(state, &message);
                false
            }
        }
    }

    /// Kills what a dead supervisor left running: the recorded replica groups whose leaders
    /// are still the processes it started (on Slurm, the engine ends a job's tasks itself).
    pub fn reap(&self, run: &RunDir) {
        if let Backend::Local { .. } = self {
            for pgid in run.live_replica_groups() {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// Asks the run to stop (it ends CANCELLED once its processes are gone).
    pub fn cancel(&self, run: &RunDir) {
        match self {
            Backend::Local { .. } => {
                if let Some(pid) = run.live_supervisor() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
            Backend::Slurm(s) => s.cancel(run),
        }
    }
}
