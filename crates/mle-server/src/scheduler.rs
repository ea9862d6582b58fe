//! The scheduler: a loop that moves jobs through QUEUED → PREPARING → RUNNING → final, keeps
//! the configured replica slots from being oversubscribed, publishes queue positions, and
//! reconciles with the run directories (so a restarted server re-attaches to running jobs,
//! requeues interrupted preparations and fails jobs whose supervisor vanished).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mle_api::{Int64, Job, JobState, ScaleTier, TrainingInput};
use mle_exec::{JobPlan, ReplicaPlan, RunDir};
use mle_store::{JobRecord, Store, StoreError};
use serde_json::{Value, json};

/// Server-wide settings the scheduler needs.
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
    /// When set, job dirs and packages must lie inside this directory.
    pub allow_root: Option<PathBuf>,
    /// Where jobs run: supervised on this machine, or as Slurm jobs.
    pub backend: mle_exec::Backend,
}

/// Resolves `path` as the file system will: symlinks and `..` in the part that exists are
/// resolved by the OS, the rest lexically (a `..` that would climb out of it is refused).
pub fn resolve(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(existing.file_name()?.to_os_string());
        existing = existing.parent()?.to_path_buf();
    }
    let mut out = existing.canonicalize().ok()?;
    for part in rest.into_iter().rev() {
        match part.to_str() {
            Some("..") => return None,
            Some(".") => {}
            _ => out.push(part),
        }
    }
    Some(out)
}

/// Whether `path` resolves inside `root` (itself resolved).
pub fn inside(root: &Path, path: &Path) -> bool {
    match (root.canonicalize(), resolve(path)) {
        (Ok(r), Some(p)) => p.starts_with(r),
        _ => false,
    }
}

/// Shared scheduler state.
pub struct Scheduler {
    pub(crate) store: Store,
    pub(crate) cfg: Config,
    preparing: Mutex<HashSet<(String, String)>>,
    /// When each running trial's metrics were last read (`(project, job, trial)`).
    pub(crate) metric_polls: Mutex<HashMap<(String, String, String), std::time::Instant>>,
    /// Loaded model versions.
    pub(crate) serving: crate::models::Registry,
}

/// `RFC 3339` UTC time now.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs_f64())
}

/// `RFC 3339` UTC time (millisecond precision) of seconds since the Unix epoch.
pub fn rfc3339(epoch_secs: f64) -> String {
    let millis = (epoch_secs.max(0.0) * 1000.0).round() as i64;
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms").
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Workers, parameter servers and evaluators of a training input.
pub fn replica_counts(t: &TrainingInput) -> (usize, usize, usize) {
    let evaluators = t.evaluator_count.0.max(0) as usize;
    match t.scale_tier {
        ScaleTier::Basic | ScaleTier::BasicGpu | ScaleTier::BasicTpu => (0, 0, evaluators),
        ScaleTier::Standard1 => (4, 3, evaluators),
        ScaleTier::Premium1 => (19, 11, evaluators),
        ScaleTier::Custom => (
            t.worker_count.0.max(0) as usize,
            t.parameter_server_count.0.max(0) as usize,
            evaluators,
        ),
    }
}

/// Slots a job takes while it runs: its replicas, times `maxParallelTrials` for tuning jobs.
pub fn slots_needed(job: &Job) -> usize {
    job.training_input.as_ref().map_or(1, |t| {
        let (w, p, e) = replica_counts(t);
        let parallel = t.hyperparameters.as_ref().map_or(1, |h| h.parallel());
        (1 + w + p + e).saturating_mul(parallel)
    })
}

/// What each replica (each Slurm task) of a training job asks for: the largest of the machine
/// types it names, one CPU when it names none (the scale tiers). One srun step gives every
/// task the same resources; per-role sizes would need heterogeneous jobs, which Slurm does not
/// start on a single node.
pub fn task_resources(t: &TrainingInput) -> mle_exec::Resources {
    let mut r = mle_exec::Resources::default();
    let roles = [
        (&t.master_type, &t.master_config, true),
        (&t.worker_type, &t.worker_config, t.worker_count.0 > 0),
        (
            &t.parameter_server_type,
            &t.parameter_server_config,
            t.parameter_server_count.0 > 0,
        ),
        (
            &t.evaluator_type,
            &t.evaluator_config,
            t.evaluator_count.0 > 0,
        ),
    ];
    for (kind, config, used) in roles {
        if !used {
            continue;
        }
        if let Some(m) = mle_api::machine(kind) {
            r.cpus = r.cpus.max(m.cpus);
            r.mem_mb = Some(
                r.mem_mb
                    .unwrap_or(0)
                    .max((m.memory_gb * 1024.0).round() as u64),
            );
            r.gpus = r.gpus.max(m.gpus);
        }
        if let Some(a) = config.as_ref().and_then(|c| c.accelerator_config.as_ref()) {
            r.gpus = r.gpus.max(a.count.0.max(0) as u32);
        }
    }
    r
}

/// The engine's name for a run: `mle-<project>-<job>` (`-t<trial>` for tuning trials).
pub fn engine_name(project: &str, job_id: &str, trial: Option<&str>) -> String {
    match trial {
        Some(t) => format!("mle-{project}-{job_id}-t{t}"),
        None => format!("mle-{project}-{job_id}"),
    }
}

/// Whether a job runs tuning trials.
pub fn is_tuning(job: &Job) -> bool {
    job.training_input
        .as_ref()
        .is_some_and(|t| t.hyperparameters.is_some())
}

fn snake(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// camelCase keys → snake_case, recursively (`TF_CONFIG.job` uses the proto field names).
fn snake_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (snake(&k), snake_keys(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(snake_keys).collect()),
        other => other,
    }
}

fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()
        .map(|a| a.port())
}

/// What makes a tuning trial's processes differ from a plain job's.
#[derive(Debug, Clone)]
pub struct TrialRun {
    /// 1-based trial id.
    pub id: String,
    /// `--<name>=<value>` per hyperparameter.
    pub args: Vec<String>,
    /// Where each replica's `cloudml-hypertune` file goes (`<task>.metrics`).
    pub metric_dir: PathBuf,
    /// `hyperparameterMetricTag`.
    pub tag: String,
}

/// The processes of a training job (or of one tuning trial): ps, workers and evaluators first,
/// the primary last, each with its `TF_CONFIG` (DESIGN §2.1).
pub fn plan_training(
    job: &Job,
    run: &RunDir,
    cfg: &Config,
    trial: Option<&TrialRun>,
) -> Result<JobPlan, String> {
    let t = job.training_input.as_ref().ok_or("not a training job")?;
    let (workers, ps, evaluators) = replica_counts(t);
    let primary = if t.use_chief_in_tf_config {
        "chief"
    } else {
        "master"
    };
    let addr = || {
        free_port()
            .map(|p| format!("localhost:{p}"))
            .ok_or("no free port on localhost")
    };
    let mut cluster = serde_json::Map::new();
    cluster.insert(primary.into(), json!([addr()?]));
    if workers > 0 {
        cluster.insert(
            "worker".into(),
            Value::Array(
                (0..workers)
                    .map(|_| addr().map(Value::from))
                    .collect::<Result<_, _>>()?,
            ),
        );
    }
    if ps > 0 {
        cluster.insert(
            "ps".into(),
            Value::Array(
                (0..ps)
                    .map(|_| addr().map(Value::from))
                    .collect::<Result<_, _>>()?,
            ),
        );
    }
    let single = workers == 0 && ps == 0;
    let job_json = snake_keys(serde_json::to_value(t).map_err(|e| e.to_string())?);
    let mut args = t.args.clone();
    if !t.job_dir.is_empty() {
        // Trials write to `<job-dir>/<trialId>/` (DESIGN §2.3).
        let dir = match trial {
            Some(tr) => format!("{}/{}", t.job_dir.trim_end_matches('/'), tr.id),
            None => t.job_dir.clone(),
        };
        args.extend(["--job-dir".to_string(), dir]);
    }
    if let Some(tr) = trial {
        args.extend(tr.args.iter().cloned());
    }
    let (program, mut base_args, cwd, mut env) = if !t.python_module.is_empty() {
        let packages = run.0.join("packages");
        (
            cfg.python.clone(),
            vec!["-m".to_string(), t.python_module.clone()],
            Some(run.0.clone()),
            vec![("PYTHONPATH".to_string(), packages.display().to_string())],
        )
    } else {
        let mc = t.master_config.as_ref().ok_or("no trainer")?;
        let mut cmd = mc.container_command.clone();
        if cmd.first().map(String::as_str) == Some("mle") {
            cmd[0] = cfg.mle_exe.display().to_string();
        }
        let program = cmd.remove(0);
        cmd.extend(mc.container_args.iter().cloned());
        (program, cmd, None, Vec::new())
    };
    base_args.extend(args);
    env.push(("CLOUD_ML_JOB_ID".into(), job.job_id.clone()));
    if let Some(tr) = trial {
        env.push(("CLOUD_ML_TRIAL_ID".into(), tr.id.clone()));
        env.push(("CLOUD_ML_HP_METRIC_TAG".into(), tr.tag.clone()));
    }
    env.push((
        "CLOUD_ML_JOB".into(),
        json!({"job_id": job.job_id, "training_input": job_json}).to_string(),
    ));
    let mut replicas = Vec::new();
    let mut push = |role: &str, index: usize, in_cluster: bool| {
        let mut tf = if single && in_cluster {
            json!({"cluster": {}, "task": {}, "job": job_json, "environment": "cloud"})
        } else {
            json!({"cluster": cluster, "task": {"type": role, "index": index}, "job": job_json, "environment": "cloud"})
        };
        let task = format!("{role}-replica-{index}");
        let mut env = env.clone();
        if let Some(tr) = trial {
            tf["task"]["trial"] = json!(tr.id);
            // One metric file per replica: they share a machine here, unlike on CMLE.
            env.push((
                "CLOUD_ML_HP_METRIC_FILE".into(),
                tr.metric_dir
                    .join(format!("{task}.metrics"))
                    .display()
                    .to_string(),
            ));
        }
        env.push(("TF_CONFIG".into(), tf.to_string()));
        replicas.push(ReplicaPlan {
            task,
            program: program.clone(),
            args: base_args.clone(),
            env,
            cwd: cwd.clone(),
        });
    };
    for i in 0..ps {
        push("ps", i, true);
    }
    for i in 0..workers {
        push("worker", i, true);
    }
    for i in 0..evaluators {
        push("evaluator", i, false);
    }
    push(primary, 0, true);
    let max_running_secs = t
        .scheduling
        .as_ref()
        .and_then(|s| mle_api::parse_duration(&s.max_running_time));
    Ok(JobPlan {
        replicas,
        max_running_secs,
        trial: trial.map(|t| t.id.clone()),
    })
}

pub(crate) fn decode(rec: &JobRecord) -> Job {
    serde_json::from_str(&rec.body).unwrap_or_else(|_| Job {
        job_id: rec.job_id.clone(),
        ..Job::default()
    })
}

impl Scheduler {
    /// A scheduler over `store`.
    pub fn new(store: Store, cfg: Config) -> Arc<Self> {
        Arc::new(Self {
            store,
            cfg,
            preparing: Mutex::new(HashSet::new()),
            metric_polls: Mutex::new(HashMap::new()),
            serving: crate::models::Registry::default(),
        })
    }

    /// A job's run directory.
    pub fn run_dir(&self, project: &str, job_id: &str) -> RunDir {
        RunDir(self.cfg.data_dir.join("runs").join(project).join(job_id))
    }

    /// Read-modify-write of a job with the etag check, retried on concurrent changes.
    pub async fn update(
        &self,
        project: &str,
        job_id: &str,
        f: impl Fn(&mut Job),
    ) -> Result<Job, StoreError> {
        loop {
            let rec = self.store.get_job(project, job_id).await?;
            let mut job = decode(&rec);
            f(&mut job);
            job.etag = (rec.etag + 1).to_string();
            let body = serde_json::to_string(&job).expect("jobs serialise");
            let state = serde_json::to_value(job.state).expect("states serialise");
            match self
                .store
                .update_job(
                    project,
                    job_id,
                    rec.etag,
                    state.as_str().unwrap_or_default(),
                    &body,
                )
                .await
            {
                Ok(_) => return Ok(job),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs the scheduling loop forever.
    pub async fn run(self: Arc<Self>) {
        loop {
            // A tick asks Slurm's command-line tools about every job, and each call can wait
            // for the controller's MessageTimeout when it is slow or down: on that backend the
            // tick runs where it cannot hold up the runtime's other tasks (the API).
            let result = if matches!(self.cfg.backend, mle_exec::Backend::Slurm(_)) {
                off_runtime(|| tokio::runtime::Handle::current().block_on(self.tick()))
            } else {
                self.tick().await
            };
            if let Err(e) = result {
                eprintln!("scheduler: {e}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One pass: finish ended jobs, then start queued jobs that fit.
    pub async fn tick(self: &Arc<Self>) -> Result<(), StoreError> {
        let active = self
            .store
            .jobs_in_states(&["PREPARING", "RUNNING", "CANCELLING"])
            .await?;
        let mut used = 0;
        for rec in &active {
            let job = decode(rec);
            let run = self.run_dir(&rec.project, &rec.job_id);
            let key = (rec.project.clone(), rec.job_id.clone());
            // Liveness before the result: a supervisor writes result.json and then exits, so
            // "not alive" followed by "no result" means it really died without one.
            let alive = self.cfg.backend.alive(&run);
            if let Some(o) = run.read_result() {
                let state = match o.state.as_str() {
                    "SUCCEEDED" => JobState::Succeeded,
                    "CANCELLED" => JobState::Cancelled,
                    _ => JobState::Failed,
                };
                let prediction = job.prediction_input.as_ref().map(|p| {
                    let counts: Value = std::fs::read_to_string(run.0.join("prediction.json"))
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default();
                    mle_api::PredictionOutput {
                        output_path: p.output_path.clone(),
                        prediction_count: Int64(counts["prediction_count"].as_i64().unwrap_or(0)),
                        error_count: Int64(counts["error_count"].as_i64().unwrap_or(0)),
                        node_hours: counts["seconds"].as_f64().unwrap_or(0.0) / 3600.0,
                    }
                });
                let started = mle_exec::Backend::start_time(&run).map(rfc3339);
                self.update(&rec.project, &rec.job_id, |j| {
                    j.state = state;
                    j.error_message = o.message.clone();
                    j.end_time = now_rfc3339();
                    // A job that ran and ended between two looks at its engine's queue.
                    if j.start_time.is_empty()
                        && let Some(t) = &started
                    {
                        j.start_time = t.clone();
                    }
                    if prediction.is_some() {
                        j.prediction_output = prediction.clone();
                    }
                })
                .await?;
                continue;
            }
            let preparing_here = self
                .preparing
                .lock()
                .map(|s| s.contains(&key))
                .unwrap_or(false);
            if is_tuning(&job) && !preparing_here && job.state != JobState::Preparing {
                // The server itself drives a study; its trials have their own supervisors.
                self.drive_study(&rec.project, &job).await?;
                used += slots_needed(&job);
                continue;
            }
            if alive
                && !preparing_here
                && job.state == JobState::Preparing
                && self.cfg.backend.started(&run)
            {
                // The engine has started a job that waited in its queue.
                self.mark_running(&rec.project, &rec.job_id).await?;
            }
            if preparing_here || alive {
                used += slots_needed(&job);
                continue;
            }
            // Nothing is looking after this job: a server restart interrupted it.
            match job.state {
                JobState::Preparing => {
                    self.update(&rec.project, &rec.job_id, |j| j.state = JobState::Queued)
                        .await?;
                }
                JobState::Cancelling => {
                    self.update(&rec.project, &rec.job_id, |j| {
                        j.state = JobState::Cancelled;
                        j.end_time = now_rfc3339();
                    })
                    .await?;
                }
                _ => {
                    self.update(&rec.project, &rec.job_id, |j| {
                        j.state = JobState::Failed;
                        j.error_message =
                            "The job's supervisor process disappeared (was the machine restarted?)"
                                .into();
                        j.end_time = now_rfc3339();
                    })
                    .await?;
                }
            }
        }
        let queued = self.store.jobs_in_states(&["QUEUED"]).await?;
        let mut position = 0i64;
        for rec in queued {
            let job = decode(&rec);
            let need = slots_needed(&job);
            if used + need <= self.cfg.slots {
                used += need;
                self.start(rec.project.clone(), rec.job_id.clone()).await?;
            } else {
                if job.job_position != Some(Int64(position)) {
                    self.update(&rec.project, &rec.job_id, |j| {
                        j.job_position = Some(Int64(position))
                    })
                    .await?;
                }
                position += 1;
            }
        }
        Ok(())
    }

    async fn start(self: &Arc<Self>, project: String, job_id: String) -> Result<(), StoreError> {
        self.update(&project, &job_id, |j| {
            j.state = JobState::Preparing;
            j.job_position = None;
        })
        .await?;
        let key = (project.clone(), job_id.clone());
        if let Ok(mut s) = self.preparing.lock() {
            s.insert(key.clone());
        }
        let me = self.clone();
        tokio::spawn(async move {
            let result = me.prepare_and_launch(&project, &job_id).await;
            if let Ok(mut s) = me.preparing.lock() {
                s.remove(&key);
            }
            if let Err(message) = result {
                let _ = me
                    .update(&project, &job_id, |j| {
                        if !j.state.is_final() {
                            j.state = if j.state == JobState::Cancelling {
                                JobState::Cancelled
                            } else {
                                JobState::Failed
                            };
                            j.error_message = message.clone();
                            j.end_time = now_rfc3339();
                        }
                    })
                    .await;
            }
        });
        Ok(())
    }

    async fn prepare_and_launch(&self, project: &str, job_id: &str) -> Result<(), String> {
        let job = decode(
            &self
                .store
                .get_job(project, job_id)
                .await
                .map_err(|e| e.to_string())?,
        );
        let run = self.run_dir(project, job_id);
        // A previous, interrupted attempt may have left files; start clean.
        let _ = std::fs::remove_dir_all(&run.0);
        std::fs::create_dir_all(run.logs())
            .map_err(|e| format!("cannot create the run directory: {e}"))?;
        if let Some(t) = &job.training_input
            && !t.python_module.is_empty()
        {
            install_packages(&self.cfg.python, &t.package_uris, &run.0.join("packages")).await?;
        }
        let tuning = is_tuning(&job);
        if let Some(p) = &job.prediction_input {
            let plan = self.plan_prediction(project, p, &run).await?;
            run.write_plan(&plan).map_err(|e| e.to_string())?;
        } else if !tuning {
            let plan = plan_training(&job, &run, &self.cfg, None)?;
            run.write_plan(&plan).map_err(|e| e.to_string())?;
        }
        let current = decode(
            &self
                .store
                .get_job(project, job_id)
                .await
                .map_err(|e| e.to_string())?,
        );
        if current.state == JobState::Cancelling {
            return Err("Job cancelled by user request".into());
        }
        if !tuning {
            let res = job
                .training_input
                .as_ref()
                .map(task_resources)
                .unwrap_or_default();
            off_runtime(|| {
                self.cfg
                    .backend
                    .launch(&run, &engine_name(project, job_id, None), &res)
            })?;
        }
        // A job waiting in the engine's queue (Slurm PENDING) stays PREPARING; the tick moves
        // it to RUNNING when the engine starts it.
        if tuning || self.cfg.backend.started(&run) {
            self.mark_running(project, job_id)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// PREPARING → RUNNING, from now (a job cancelled meanwhile stays CANCELLING).
    async fn mark_running(&self, project: &str, job_id: &str) -> Result<(), StoreError> {
        self.update(project, job_id, |j| {
            if j.state == JobState::Preparing {
                j.state = JobState::Running;
                j.start_time = now_rfc3339();
            }
        })
        .await
        .map(|_| ())
    }

    /// Cancels a job: queued jobs end at once; running ones are signalled.
    pub async fn cancel(&self, project: &str, job_id: &str) -> Result<Job, StoreError> {
        let job = self
            .update(project, job_id, |j| match j.state {
                JobState::Queued | JobState::StateUnspecified => {
                    j.state = JobState::Cancelled;
                    j.end_time = now_rfc3339();
                    j.job_position = None;
                }
                JobState::Preparing | JobState::Running => j.state = JobState::Cancelling,
                _ => {}
            })
            .await?;
        if job.state == JobState::Cancelling {
            off_runtime(|| self.cfg.backend.cancel(&self.run_dir(project, job_id)));
        }
        Ok(job)
    }
}

/// Runs `f`, a blocking call into the execution engine, without stalling the async runtime's
/// other tasks (`block_in_place` hands this worker's queue to another thread first). Outside
/// a multi-threaded runtime it simply runs `f`.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// `pip install --no-deps --target DIR` of each package (local paths or `file://` URIs).
async fn install_packages(python: &str, uris: &[String], target: &Path) -> Result<(), String> {
    for uri in uris {
        let path = uri.strip_prefix("file://").unwrap_or(uri).to_string();
        let out = tokio::process::Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
            ])
            .arg(target)
            .arg(&path)
            .output()
            .await
            .map_err(|e| format!("cannot run {python} -m pip: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(format!(
                "installing package {uri} failed: {}",
                tail.join(" | ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_resolved_before_the_root_check() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        assert!(inside(&root, &root.join("a/new/job")));
        assert!(!inside(&root, &root.join("a/../../outside")));
        assert!(!inside(&root, &root.join("new/../../outside")));
        assert!(!inside(&root, &root.join("escape/passwd")));
        assert!(!inside(&root, Path::new("relative/path")));
        assert!(!inside(&root, &dir.path().join("rootx")));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T');
        assert!(t.starts_with("20"));
        // 2000-03-01T00:00:00Z is 951868800 s after the epoch (a leap-year boundary).
        assert_eq!(rfc3339(951_868_800.25), "2000-03-01T00:00:00.250Z");
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn slurm_tasks_ask_for_the_largest_machine_type_of_the_job() {
        let t: TrainingInput = serde_json::from_str(
            r#"{"scaleTier": "CUSTOM", "masterType": "complex_model_m_gpu", "workerType": "n1-highmem-8",
                "workerCount": "2", "parameterServerType": "n1-standard-32", "parameterServerCount": "0",
                "workerConfig": {"acceleratorConfig": {"count": "8", "type": "NVIDIA_TESLA_T4"}}}"#,
        )
        .unwrap();
        // Master 16 CPUs, 14.4 GB, 4 GPUs; workers 8 CPUs, 52 GB, 8 GPUs by their accelerator
        // config; the parameter server type is unused (no ps).
        assert_eq!(
            task_resources(&t),
            mle_exec::Resources {
                cpus: 16,
                mem_mb: Some(53_248),
                gpus: 8
            }
        );
        let basic: TrainingInput = serde_json::from_str(r#"{"scaleTier": "STANDARD_1"}"#).unwrap();
        assert_eq!(task_resources(&basic), mle_exec::Resources::default());
        assert_eq!(engine_name("p", "j", Some("3")), "mle-p-j-t3");
    }

    #[test]
    fn standard_1_has_eight_replicas_with_their_own_tf_config() {
        let job: Job = serde_json::from_str(
            r#"{"jobId": "j", "trainingInput": {"scaleTier": "STANDARD_1", "pythonModule": "trainer.task", "packageUris": ["p.tar.gz"], "args": ["--x"], "jobDir": "/tmp/j"}}"#,
        )
        .unwrap();
        let cfg = Config {
            data_dir: "/tmp".into(),
            slots: 8,
            mle_exe: "/bin/mle".into(),
            python: "python3".into(),
            allow_root: None,
            backend: mle_exec::Backend::Local {
                mle_exe: "/bin/mle".into(),
            },
        };
        let plan = plan_training(&job, &RunDir("/tmp/run".into()), &cfg, None).unwrap();
        let tasks: Vec<&str> = plan.replicas.iter().map(|r| r.task.as_str()).collect();
        assert_eq!(tasks.len(), 8);
        assert_eq!(tasks.last(), Some(&"master-replica-0"));
        let tf: Value = serde_json::from_str(
            &plan.replicas[0]
                .env
                .iter()
                .find(|(k, _)| k == "TF_CONFIG")
                .unwrap()
                .1,
        )
        .unwrap();
        assert_eq!(tf["task"], json!({"type": "ps", "index": 0}));
        assert_eq!(tf["cluster"]["worker"].as_array().unwrap().len(), 4);
        assert_eq!(tf["job"]["python_module"], "trainer.task");
        assert_eq!(
            plan.replicas[0].args,
            vec!["-m", "trainer.task", "--x", "--job-dir", "/tmp/j"]
        );
    }
}
