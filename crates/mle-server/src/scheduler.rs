//! The scheduler: a loop that moves jobs through QUEUED → PREPARING → RUNNING → final, keeps
//! the configured replica slots from being oversubscribed, publishes queue positions, and
//! reconciles with the run directories (so a restarted server re-attaches to running jobs,
//! requeues interrupted preparations and fails jobs whose supervisor vanished). It is the only
//! part of the server that starts processes (environment preparation, supervisors) or signals
//! them (cancel); handlers ask it through [`Scheduler::cancel`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mle_api::{Int64, Job, JobState, PredictionOutput, rfc3339};
use mle_exec::RunDir;
use serde_json::Value;

use crate::catalog::{fetch, prediction_model};
use crate::config::Config;
use crate::db::{Db, DbError, StoredJob};
use crate::lifecycle::{finish, transition};
use crate::paths::{Place, place};
use crate::plan::{
    engine_name, is_tuning, job_resources, plan_prediction, plan_training, slots_needed,
};
use crate::tuning::Studies;

/// The scheduling loop's state.
pub struct Scheduler {
    db: Db,
    cfg: Arc<Config>,
    /// Jobs whose preparation runs in this process now.
    preparing: Mutex<HashSet<(String, String)>>,
    studies: Studies,
}

/// The counts a batch prediction job's `mle exec-predict` wrote.
fn prediction_output(run: &RunDir, p: &mle_api::PredictionInput) -> PredictionOutput {
    let counts: Value = std::fs::read_to_string(run.0.join("prediction.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    PredictionOutput {
        output_path: p.output_path.clone(),
        prediction_count: Int64(counts["prediction_count"].as_i64().unwrap_or(0)),
        error_count: Int64(counts["error_count"].as_i64().unwrap_or(0)),
        node_hours: counts["seconds"].as_f64().unwrap_or(0.0) / 3600.0,
    }
}

/// Why a lost job was left alone: it changed between the tick's snapshot and its update (the
/// next tick looks again). Any other refusal stays an error that the tick logs.
const CHANGED: &str = "the job changed while the scheduler looked at it";

impl Scheduler {
    /// A scheduler over `db`.
    pub fn new(db: Db, cfg: Arc<Config>) -> Arc<Self> {
        Arc::new(Self {
            db,
            cfg,
            preparing: Mutex::new(HashSet::new()),
            studies: Studies::default(),
        })
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

    fn preparing_here(&self, project: &str, job_id: &str) -> bool {
        self.preparing
            .lock()
            .map(|s| s.contains(&(project.to_string(), job_id.to_string())))
            .unwrap_or(false)
    }

    /// One pass: finish ended jobs, then start queued jobs that fit.
    pub async fn tick(self: &Arc<Self>) -> Result<(), DbError> {
        let active = self
            .db
            .jobs_in(&[JobState::Preparing, JobState::Running, JobState::Cancelling])
            .await?;
        let mut used = 0;
        for rec in &active {
            // One job's trouble (a refused transition, a store hiccup) must not stall the
            // others; it keeps its slots until the next tick looks again.
            used += match self.reconcile(rec).await {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("scheduler: job {}/{}: {e}", rec.project, rec.job.job_id);
                    slots_needed(&rec.job)
                }
            };
        }
        let mut position = 0i64;
        for rec in self.db.jobs_in(&[JobState::Queued]).await? {
            let need = slots_needed(&rec.job);
            if used + need <= self.cfg.slots {
                used += need;
                self.start(rec.project.clone(), rec.job.job_id.clone())
                    .await?;
            } else {
                if rec.job.job_position != Some(Int64(position)) {
                    self.db
                        .update_job(&rec.project, &rec.job.job_id, |j| {
                            j.job_position = Some(Int64(position));
                            Ok(())
                        })
                        .await?;
                }
                position += 1;
            }
        }
        Ok(())
    }

    /// Brings one active job up to date with its run directory; returns the slots it holds.
    async fn reconcile(&self, rec: &StoredJob) -> Result<usize, DbError> {
        let (project, job) = (rec.project.as_str(), &rec.job);
        let run = self.cfg.run_dir(project, &job.job_id);
        // Liveness before the result: a supervisor writes result.json and then exits, so
        // "not alive" followed by "no result" means it really died without one.
        let alive = self.cfg.backend.alive(&run);
        if let Some(o) = run.read_result() {
            self.record_result(project, job, &run, &o).await?;
            return Ok(0);
        }
        let preparing_here = self.preparing_here(project, &job.job_id);
        if is_tuning(job) && !preparing_here && job.state != JobState::Preparing {
            // The server itself drives a study; its trials have their own supervisors.
            self.studies
                .drive(&self.db, &self.cfg, project, job)
                .await?;
            return Ok(slots_needed(job));
        }
        if alive
            && !preparing_here
            && job.state == JobState::Preparing
            && self.cfg.backend.started(&run)
        {
            // The engine has started a job that waited in its queue.
            self.mark_running(project, &job.job_id).await?;
        }
        if preparing_here || alive {
            return Ok(slots_needed(job));
        }
        // The tick's snapshot may be older than the preparation that just ended: a tuning job
        // that became RUNNING (it has no supervisor of its own) or a job launched and marked
        // running between the snapshot and the looks above. Such a job has changed since the
        // snapshot; the next tick sees it as it is.
        let changed = |j: &Job| j.etag != job.etag;
        if changed(&self.db.job(project, &job.job_id).await?) {
            return Ok(slots_needed(job));
        }
        // Nothing is looking after this job: a server restart interrupted it, or its
        // supervisor died (SIGKILL, the OOM killer) and may have left replicas running.
        self.cfg.backend.reap(&run);
        let why = run.lost_to_full_disk().unwrap_or_else(|| {
            "The job's supervisor process disappeared (was the machine restarted?)".into()
        });
        let lost = self
            .db
            .update_job(project, &job.job_id, |j| {
                if changed(j) {
                    return Err(CHANGED.into());
                }
                match j.state {
                    JobState::Preparing => transition(j, JobState::Queued),
                    JobState::Cancelling => transition(j, JobState::Cancelled),
                    _ => finish(j, JobState::Failed, &why),
                }
            })
            .await;
        match lost {
            Err(DbError::Refused(why)) if why == CHANGED => Ok(slots_needed(job)),
            r => r.map(|_| 0),
        }
    }

    /// A run's `result.json` becomes the job's end.
    async fn record_result(
        &self,
        project: &str,
        job: &Job,
        run: &RunDir,
        o: &mle_exec::Outcome,
    ) -> Result<(), DbError> {
        let state = match o.state.as_str() {
            "SUCCEEDED" => JobState::Succeeded,
            "CANCELLED" => JobState::Cancelled,
            _ => JobState::Failed,
        };
        let prediction = job
            .prediction_input
            .as_ref()
            .map(|p| prediction_output(run, p));
        let started = mle_exec::Backend::start_time(run).map(rfc3339);
        self.db
            .update_job(project, &job.job_id, |j| {
                finish(j, state, &o.message)?;
                // A job that ran and ended between two looks at its engine's queue.
                if j.start_time.is_empty()
                    && let Some(t) = &started
                {
                    j.start_time = t.clone();
                }
                if prediction.is_some() {
                    j.prediction_output = prediction.clone();
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn start(self: &Arc<Self>, project: String, job_id: String) -> Result<(), DbError> {
        // Compare-and-set on the stored state: a job cancelled since the tick's snapshot is
        // CANCELLED now, and CANCELLED → PREPARING is refused, so it never starts.
        match self
            .db
            .update_job(&project, &job_id, |j| transition(j, JobState::Preparing))
            .await
        {
            Err(DbError::Refused(_)) => return Ok(()),
            r => r?,
        };
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
                    .db
                    .update_job(&project, &job_id, |j| {
                        let end = if j.state == JobState::Cancelling {
                            JobState::Cancelled
                        } else {
                            JobState::Failed
                        };
                        finish(j, end, &message)
                    })
                    .await;
            }
        });
        Ok(())
    }

    async fn prepare_and_launch(&self, project: &str, job_id: &str) -> Result<(), String> {
        let job = self.db.job(project, job_id).await.map_err(internal)?;
        let run = self.cfg.run_dir(project, job_id);
        // A previous, interrupted attempt may have left files; start clean.
        let _ = std::fs::remove_dir_all(&run.0);
        std::fs::create_dir_all(run.logs())
            .map_err(|e| format!("cannot create the run directory: {e}"))?;
        if let Some(u) = &self.cfg.jobs.run_as {
            run.open_to(&self.cfg.data_dir, (u.uid, u.gid), &[])
                .map_err(|e| {
                    format!("cannot prepare the run directory for user {}: {e}", u.name)
                })?;
            // A job dir that does not exist yet is made for the job's user (who must write it).
            if let Some(t) = &job.training_input
                && let Place::Local(dir) = place(&t.job_dir)
                && !t.job_dir.is_empty()
            {
                mle_exec::make_dir_for(&dir, (u.uid, u.gid))
                    .map_err(|e| format!("cannot create the job dir for user {}: {e}", u.name))?;
            }
        }
        if let Some(t) = &job.training_input
            && !t.python_module.is_empty()
            && !t.package_uris.is_empty()
        {
            let python = self.prepare_env(project, &job, t, &run).await?;
            run.set_interpreter(&python).map_err(|e| e.to_string())?;
        }
        let tuning = is_tuning(&job);
        if let Some(p) = &job.prediction_input {
            let src = prediction_model(&self.db, &self.cfg, project, p).await?;
            let into = run.0.join("model");
            let dir = tokio::task::spawn_blocking(move || fetch(&src, &into))
                .await
                .map_err(|e| format!("fetching the model: {e}"))??;
            let plan = plan_prediction(p, &dir, &run, &self.cfg.mle_exe);
            run.write_plan(&plan).map_err(|e| e.to_string())?;
        } else if !tuning {
            let plan = plan_training(&job, &run, &self.cfg, None)?;
            run.write_plan(&plan).map_err(|e| e.to_string())?;
        }
        let current = self.db.job(project, job_id).await.map_err(internal)?;
        if current.state == JobState::Cancelling {
            return Err("Job cancelled by user request".into());
        }
        if !tuning {
            let res = job_resources(&job);
            off_runtime(|| {
                self.cfg
                    .backend
                    .launch(&run, &engine_name(project, job_id, None), &res)
            })?;
        }
        // A cancel that came between the check above and the launch found nothing to signal:
        // signal now, so that it is not lost.
        if !tuning
            && self
                .db
                .job(project, job_id)
                .await
                .is_ok_and(|j| j.state == JobState::Cancelling)
        {
            off_runtime(|| self.cfg.backend.cancel(&run));
        }
        // A job waiting in the engine's queue (Slurm PENDING) stays PREPARING; the tick moves
        // it to RUNNING when the engine starts it.
        if tuning || self.cfg.backend.started(&run) {
            self.mark_running(project, job_id).await.map_err(internal)?;
        }
        Ok(())
    }

    /// PREPARING → RUNNING, from now (a job cancelled meanwhile stays CANCELLING, but its
    /// start time says that it did start).
    async fn mark_running(&self, project: &str, job_id: &str) -> Result<(), DbError> {
        self.db
            .update_job(project, job_id, |j| {
                if j.state == JobState::Preparing {
                    transition(j, JobState::Running)?;
                } else if j.state == JobState::Cancelling && j.start_time.is_empty() {
                    j.start_time = mle_api::now_rfc3339();
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Cancels a job: queued jobs end at once; running ones are signalled. A job that has
    /// already ended is refused.
    pub async fn cancel(&self, project: &str, job_id: &str) -> Result<Job, DbError> {
        let job = self
            .db
            .update_job(project, job_id, |j| match j.state {
                JobState::Queued | JobState::StateUnspecified => transition(j, JobState::Cancelled),
                JobState::Preparing | JobState::Running => transition(j, JobState::Cancelling),
                JobState::Cancelling => Ok(()),
                s => Err(format!("job '{job_id}' has already ended ({s:?})")),
            })
            .await?;
        if job.state == JobState::Cancelling {
            off_runtime(|| self.cfg.backend.cancel(&self.cfg.run_dir(project, job_id)));
        }
        Ok(job)
    }
}

/// A store failure as a job's `errorMessage` says it: the detail is logged on the server, not
/// shown to clients.
fn internal(e: DbError) -> String {
    eprintln!("scheduler: store error: {e}");
    "internal error while starting the job (the server's log has the details)".into()
}

impl Scheduler {
    /// The job's packages as local files: local ones where they are, those in buckets
    /// downloaded into the run's `packages/` (streamed, at most `MAX_PACKAGE_BYTES` each),
    /// each download in the job's logs. Off the async runtime.
    async fn fetch_packages(
        &self,
        t: &mle_api::TrainingInput,
        run: &RunDir,
    ) -> Result<Vec<std::path::PathBuf>, String> {
        let (uris, run) = (t.package_uris.clone(), run.clone());
        let run_as = self.cfg.jobs.run_as.as_ref().map(|u| (u.uid, u.gid));
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (i, uri) in uris.iter().enumerate() {
                let loc = match place(uri) {
                    Place::Local(p) => {
                        out.push(p);
                        continue;
                    }
                    Place::Bucket(loc) => loc,
                };
                let storage = mle_storage::Storage::shared().map_err(|e| e.to_string())?;
                // The object's own name (pip reads the version from it), in a directory of
                // its own so that two packages of one name do not collide.
                let (_, key) = loc.bucket_key().unwrap_or_default();
                let name = key
                    .rsplit('/')
                    .next()
                    .filter(|n| !n.is_empty())
                    .unwrap_or("package");
                let dir = run.0.join("packages").join(i.to_string());
                let to = dir.join(name);
                let n = storage
                    .download(&loc, &to, MAX_PACKAGE_BYTES)
                    .map_err(|e| format!("cannot fetch the package: {e}"))?;
                // pip runs as the job's user: the copy is theirs to read.
                if let Some((uid, gid)) = run_as {
                    for p in [dir.parent().unwrap_or(&dir), &dir, &to] {
                        std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| {
                            format!("cannot hand {} to the job's user: {e}", p.display())
                        })?;
                    }
                }
                run.service_log(None, &format!("fetched {uri} ({n} bytes)"));
                out.push(to);
            }
            Ok(out)
        })
        .await
        .map_err(|e| format!("fetching the job's packages: {e}"))?
    }

    /// The job's Python environment: its packages with their dependencies, layered on its
    /// runtime's interpreter (`mle_exec::pyenv`; cached, so trials and later jobs of the same
    /// packages reuse it); pip's output goes to the job's logs (task `pip`). Runs off the async
    /// runtime; pip is stopped when the job is cancelled meanwhile or when it takes longer
    /// than `--pip-timeout`. Returns the interpreter the replicas run.
    async fn prepare_env(
        &self,
        project: &str,
        job: &Job,
        t: &mle_api::TrainingInput,
        run: &RunDir,
    ) -> Result<std::path::PathBuf, String> {
        let python = self
            .cfg
            .runtimes
            .pick(&t.runtime_version, &t.python_version)?
            .to_string();
        let packages = self.fetch_packages(t, run).await?;
        let mut env = mle_exec::env::inherited();
        // A package's setup.py is the job's code: it gets the job's environment, not the
        // server's.
        env.extend(self.cfg.passed_env());
        if self.cfg.jobs.run_as.is_some() {
            env.retain(|(k, _)| k != "HOME");
            env.push(("HOME".into(), run.work().display().to_string()));
        }
        let (db, cfg, run) = (self.db.clone(), self.cfg.clone(), run.clone());
        let (project, job_id) = (project.to_string(), job.job_id.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let req = mle_exec::pyenv::Request {
                python: &python,
                packages: &packages,
                pip_args: &cfg.pip.args,
                cache: &cfg.env_cache(),
                run_as: cfg.jobs.run_as.as_ref().map(|u| (u.uid, u.gid)),
                env: &env,
                timeout: cfg.pip.timeout,
            };
            let last = std::cell::Cell::new(std::time::Instant::now());
            let cancelled = || {
                // The store is asked at most twice a second.
                if last.get().elapsed() < Duration::from_millis(500) {
                    return false;
                }
                last.set(std::time::Instant::now());
                handle
                    .block_on(db.job(&project, &job_id))
                    .is_ok_and(|j| j.state == JobState::Cancelling)
            };
            let mut log = |line: &str| run.task_log("pip", None, line);
            let ready = mle_exec::pyenv::prepare(&req, &mut log, &cancelled)?;
            if !ready.reused {
                run.service_log(None, "the job's packages are installed");
            }
            Ok(ready.python)
        })
        .await
        .map_err(|e| format!("preparing the job's environment: {e}"))?
    }
}

/// The largest package a job may fetch from a bucket.
const MAX_PACKAGE_BYTES: u64 = 1 << 30;

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

#[cfg(test)]
mod tests {
    use super::*;

    async fn scheduler() -> (Arc<Scheduler>, Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(mle_store::Store::open_dir(dir.path()).await.unwrap());
        let cfg = Config::local(dir.path().to_path_buf(), "/bin/false".into());
        (Scheduler::new(db.clone(), Arc::new(cfg)), db, dir)
    }

    async fn submit(db: &Db, id: &str, tuning: bool, to: &[JobState]) {
        let hp = r#", "hyperparameters": {"goal": "MAXIMIZE", "maxTrials": 2, "params": [{"parameterName": "x", "type": "DOUBLE", "minValue": 0, "maxValue": 1}]}"#;
        let job: Job = serde_json::from_str(&format!(
            r#"{{"jobId": "{id}", "state": "QUEUED", "trainingInput": {{"scaleTier": "BASIC", "pythonModule": "t"{}}}}}"#,
            if tuning { hp } else { "" }
        ))
        .unwrap();
        db.insert_job("p", &job).await.unwrap();
        for &s in to {
            db.update_job("p", id, |j| transition(j, s)).await.unwrap();
        }
    }

    /// The tick reads its snapshot, then looks at each job; a preparation that ends in between
    /// (a study becomes RUNNING, and has no supervisor of its own) must not read as a lost job.
    #[tokio::test]
    async fn a_job_that_changed_since_the_snapshot_is_not_declared_lost() {
        let (sched, db, _dir) = scheduler().await;
        submit(&db, "study", true, &[JobState::Preparing]).await;
        let snapshot = db.jobs_in(&[JobState::Preparing]).await.unwrap();
        sched.mark_running("p", "study").await.unwrap();
        sched.reconcile(&snapshot[0]).await.unwrap();
        let job = db.job("p", "study").await.unwrap();
        assert_eq!(job.state, JobState::Running, "{}", job.error_message);
        // A job whose supervisor really is gone (nothing changed since the snapshot) fails.
        submit(
            &db,
            "lost",
            false,
            &[JobState::Preparing, JobState::Running],
        )
        .await;
        let snapshot = db.jobs_in(&[JobState::Running]).await.unwrap();
        let lost = snapshot.iter().find(|r| r.job.job_id == "lost").unwrap();
        assert_eq!(sched.reconcile(lost).await.unwrap(), 0);
        let job = db.job("p", "lost").await.unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert!(job.error_message.contains("supervisor process disappeared"));
    }
}
