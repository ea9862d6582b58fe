//! Hyperparameter tuning jobs: the server drives each study from the scheduler loop. Every
//! trial is a full run of the job's scale tier under its own supervisor
//! (`<run>/trials/<id>/`); the study's state lives in the job's `trainingOutput.trials`, so a
//! restarted server carries on where it stopped.
//!
//! Per tick, for a RUNNING or CANCELLING tuning job: read the metrics of running trials (their
//! `cloudml-hypertune` files, else the event files under `<job-dir>/<trialId>/`), finish trials
//! whose supervisor wrote a result, apply the median stopping rule, start trials proposed by
//! `mle-tune` up to `maxParallelTrials`, and end the job when the study is over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mle_api::{
    HyperparameterMetric, HyperparameterOutput, HyperparameterSpec, Int64, Job, JobState,
    now_rfc3339,
};
use mle_exec::RunDir;
use mle_metrics::Report;
use mle_tune::{Algorithm, Point, Tuner};

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::lifecycle;
use crate::paths::{Place, place};
use crate::plan::{TrialRun, engine_name, job_resources, plan_training};
use crate::trials::{
    count_running, curve, failure_summary, sort_best_first, succeeded_points, to_point, to_strings,
    tuner,
};

/// Completed trials the median stopping rule needs before it stops anything.
const MIN_COMPLETED_FOR_STOPPING: usize = 2;
/// How often a running trial's metric files are read.
const METRIC_POLL: Duration = Duration::from_millis(500);
/// Reports kept per trial in `allMetrics` (the hypertune file keeps as many).
const MAX_REPORTS: usize = 100;

/// Reads a trial's reports: its replicas' hypertune files when any holds the tag, else the
/// event files under its output directory.
fn read_reports(trial_run: &RunDir, output: Option<&Place>, tag: &str) -> Vec<Report> {
    let mut reports: Vec<Report> = std::fs::read_dir(trial_run.0.join("hypertune"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| mle_metrics::hypertune::read(&e.path(), tag).ok())
        .flatten()
        .collect();
    if reports.is_empty()
        && let Some(dir) = output
    {
        let runs = crate::series::read(dir).runs;
        reports = mle_metrics::events::reports(runs.into_iter().map(|r| r.scalars), tag);
    }
    reports.sort_by(|a, b| a.time.total_cmp(&b.time));
    if reports.len() > MAX_REPORTS {
        reports.drain(..reports.len() - MAX_REPORTS);
    }
    reports
}

/// How long a trial that has reported may keep its slot while its processes end.
const WIND_DOWN_SECS: f64 = 30.0;

/// The studies the scheduler drives, and when each running trial's metrics were last read.
#[derive(Default)]
pub struct Studies {
    metric_polls: Mutex<HashMap<(String, String, String), Instant>>,
}

/// What one step of one study works with.
struct Step<'a> {
    db: &'a Db,
    cfg: &'a Config,
    project: &'a str,
    job: &'a Job,
    spec: &'a HyperparameterSpec,
    tuner: Tuner,
    tag: String,
    run: RunDir,
    /// `<job-dir>`, under which each trial writes `<trialId>/`.
    out_root: Option<Place>,
}

impl Studies {
    fn metrics_due(&self, project: &str, job_id: &str, trial: &str) -> bool {
        let key = (project.to_string(), job_id.to_string(), trial.to_string());
        let Ok(mut polls) = self.metric_polls.lock() else {
            return true;
        };
        match polls.get(&key) {
            Some(t) if t.elapsed() < METRIC_POLL => false,
            _ => {
                polls.insert(key, Instant::now());
                true
            }
        }
    }

    /// Drops the poll times of this job's trials that no longer run.
    fn forget_ended(&self, project: &str, job_id: &str, trials: &[HyperparameterOutput]) {
        if let Ok(mut polls) = self.metric_polls.lock() {
            polls.retain(|(p, j, t), _| {
                p != project
                    || j != job_id
                    || trials
                        .iter()
                        .any(|x| x.trial_id == *t && x.state == JobState::Running)
            });
        }
    }

    /// One step of a tuning job's study (see the module docs): observe the running trials,
    /// then either stop them all (cancel, too many failures) or start new ones, and save.
    pub async fn drive(
        &self,
        db: &Db,
        cfg: &Config,
        project: &str,
        job: &Job,
    ) -> Result<(), DbError> {
        let Some(t) = &job.training_input else {
            return Ok(());
        };
        let Some(spec) = &t.hyperparameters else {
            return Ok(());
        };
        let step = Step {
            db,
            cfg,
            project,
            job,
            spec,
            tuner: tuner(spec),
            tag: spec.metric_tag().to_string(),
            run: cfg.run_dir(project, &job.job_id),
            out_root: (!t.job_dir.is_empty()).then(|| place(&t.job_dir)),
        };
        let mut trials = job
            .training_output
            .as_ref()
            .map(|o| o.trials.clone())
            .unwrap_or_default();
        let before = trials.clone();
        self.observe(&step, &mut trials);
        let failed = trials
            .iter()
            .filter(|t| t.state == JobState::Failed)
            .count();
        let too_many_failures =
            spec.max_failed_trials.0 > 0 && failed >= spec.max_failed_trials.0 as usize;
        let end = if job.state == JobState::Cancelling || too_many_failures {
            step.stop_all(&trials, failed)
        } else {
            step.propose(&mut trials).await
        };
        sort_best_first(&mut trials, step.tuner.goal);
        self.forget_ended(project, &job.job_id, &trials);
        if trials == before
            && end.is_none()
            && job
                .training_output
                .as_ref()
                .is_some_and(|o| o.is_hyperparameter_tuning_job)
        {
            return Ok(());
        }
        step.save(trials, end).await
    }

    /// Updates every running trial: metrics, results, launches, early stopping.
    fn observe(&self, step: &Step<'_>, trials: &mut [HyperparameterOutput]) {
        let stopping_allowed =
            step.spec.enable_trial_early_stopping && step.job.state == JobState::Running;
        let completed_curves: Vec<Vec<(u64, f64)>> = trials
            .iter()
            .filter(|t| t.state == JobState::Succeeded)
            .map(curve)
            .collect();
        for trial in trials.iter_mut().filter(|t| t.state == JobState::Running) {
            self.observe_trial(step, trial, &completed_curves, stopping_allowed);
        }
    }

    fn observe_trial(
        &self,
        step: &Step<'_>,
        trial: &mut HyperparameterOutput,
        completed_curves: &[Vec<(u64, f64)>],
        stopping_allowed: bool,
    ) {
        let tr = step.run.trial(&trial.trial_id);
        // Liveness before the result (see the scheduler's tick): no race with an exiting
        // supervisor that has just written its result.
        let alive = step.cfg.backend.alive(&tr);
        let result = tr.read_result();
        // The primary has reported but its processes (its Slurm job) are still winding
        // down: the trial keeps its parallel slot until they are gone, so that no more
        // than maxParallelTrials ever run (bounded wait, in case the engine is slow).
        if result.is_some() && alive {
            let reported = std::fs::metadata(tr.result())
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if reported.is_none_or(|d| d.as_secs_f64() < WIND_DOWN_SECS) {
                return;
            }
        }
        if (result.is_some() || self.metrics_due(step.project, &step.job.job_id, &trial.trial_id))
            && let Err(why) = step.read_metrics(trial, &tr, result.is_some())
        {
            // CMLE treats such a trial as infeasible; the value itself is never stored (JSON
            // has no NaN, and the job's record must stay readable).
            trial.state = JobState::Failed;
            trial.error_message = why;
            trial.end_time = now_rfc3339();
            tr.service_log(
                Some(&trial.trial_id),
                &format!("trial {} failed: {}", trial.trial_id, trial.error_message),
            );
            if result.is_none() {
                step.cfg.backend.cancel(&tr);
            }
            return;
        }
        if let Some(o) = result {
            step.finish_trial(trial, &tr, &o);
            return;
        }
        if !alive {
            if !step.cfg.backend.launched(&tr) {
                // Recorded but not started yet (new, or the server stopped in between).
                if let Err(e) = step.launch_trial(trial) {
                    trial.state = JobState::Failed;
                    trial.error_message = e;
                    trial.end_time = now_rfc3339();
                }
            } else {
                step.cfg.backend.reap(&tr);
                trial.state = JobState::Failed;
                trial.error_message = tr.lost_to_full_disk().unwrap_or_else(|| {
                    "the trial's supervisor process disappeared (was the machine restarted?)".into()
                });
                trial.end_time = now_rfc3339();
            }
            return;
        }
        if stopping_allowed
            && !trial.is_trial_stopped_early
            && mle_tune::median_stop(
                step.tuner.goal,
                &curve(trial),
                completed_curves,
                MIN_COMPLETED_FOR_STOPPING,
            )
        {
            trial.is_trial_stopped_early = true;
            tr.service_log(
                Some(&trial.trial_id),
                &format!(
                    "stopping trial {} early: its best {} so far is worse than the median of the completed trials at the same step",
                    trial.trial_id, step.tag
                ),
            );
            step.cfg.backend.cancel(&tr);
        }
    }
}

impl Step<'_> {
    /// The trial's process plan and its supervisor.
    fn launch_trial(&self, trial: &HyperparameterOutput) -> Result<(), String> {
        let tr = self.run.trial(&trial.trial_id);
        std::fs::create_dir_all(tr.logs())
            .map_err(|e| format!("cannot create the trial's run directory: {e}"))?;
        if let Some(u) = &self.cfg.jobs.run_as {
            tr.open_to(
                &self.cfg.data_dir,
                (u.uid, u.gid),
                &[tr.0.join("hypertune")],
            )
            .map_err(|e| {
                format!(
                    "cannot prepare the trial's run directory for user {}: {e}",
                    u.name
                )
            })?;
        }
        let t = TrialRun {
            id: trial.trial_id.clone(),
            // In the spec's order, as CMLE passes them.
            args: self
                .spec
                .params
                .iter()
                .filter_map(|p| {
                    let v = trial.hyperparameters.get(&p.parameter_name)?;
                    Some(format!("--{}={v}", p.parameter_name))
                })
                .collect(),
            metric_dir: tr.0.join("hypertune"),
            tag: self.tag.clone(),
        };
        let plan = plan_training(self.job, &self.run, self.cfg, Some(&t))?;
        tr.write_plan(&plan).map_err(|e| e.to_string())?;
        let name = engine_name(self.project, &self.job.job_id, Some(&trial.trial_id));
        self.cfg
            .backend
            .launch(&tr, &name, &job_resources(self.job))
    }

    /// Reads a trial's reports into `allMetrics` and `finalMetric`; a non-finite value is an
    /// error naming it.
    fn read_metrics(
        &self,
        trial: &mut HyperparameterOutput,
        tr: &RunDir,
        ended: bool,
    ) -> Result<(), String> {
        let output = self.out_root.as_ref().map(|r| r.join(&trial.trial_id));
        let reports = read_reports(tr, output.as_ref(), &self.tag);
        if let Some(bad) = reports.iter().find(|r| !r.value.is_finite()) {
            return Err(format!(
                "the trial reported a non-finite value of '{}' ({}) at step {}",
                self.tag, bad.value, bad.step
            ));
        }
        // A half-rewritten hypertune file can read short; keep the longer history until the
        // trial has ended.
        if ended || reports.len() >= trial.all_metrics.len() {
            trial.all_metrics = reports
                .iter()
                .map(|r| HyperparameterMetric {
                    training_step: Int64(r.step as i64),
                    objective_value: r.value,
                })
                .collect();
            trial.final_metric = trial.all_metrics.last().copied();
        }
        Ok(())
    }

    /// A trial's state from its supervisor's result.
    fn finish_trial(&self, trial: &mut HyperparameterOutput, tr: &RunDir, o: &mle_exec::Outcome) {
        trial.end_time = now_rfc3339();
        let before_state = trial.state;
        match o.state.as_str() {
            "SUCCEEDED" if trial.final_metric.is_some() => trial.state = JobState::Succeeded,
            "SUCCEEDED" => {
                trial.state = JobState::Failed;
                trial.error_message = format!(
                    "the trial never reported the metric '{}' (neither in a cloudml-hypertune file nor in event files under the job dir)",
                    self.tag
                );
            }
            "CANCELLED" if trial.is_trial_stopped_early && trial.final_metric.is_some() => {
                trial.state = JobState::Succeeded
            }
            "CANCELLED" => trial.state = JobState::Cancelled,
            _ => {
                trial.state = JobState::Failed;
                trial.error_message = o.message.clone();
            }
        }
        if trial.state != before_state && trial.state == JobState::Failed {
            tr.service_log(
                Some(&trial.trial_id),
                &format!("trial {} failed: {}", trial.trial_id, trial.error_message),
            );
        }
    }

    /// Cancels every running trial; once none runs, the job's end.
    fn stop_all(
        &self,
        trials: &[HyperparameterOutput],
        failed: usize,
    ) -> Option<(JobState, String)> {
        for trial in trials.iter().filter(|t| t.state == JobState::Running) {
            self.cfg.backend.cancel(&self.run.trial(&trial.trial_id));
        }
        if count_running(trials) > 0 {
            return None;
        }
        Some(if self.job.state == JobState::Cancelling {
            (JobState::Cancelled, "Job cancelled by user request".into())
        } else {
            (
                JobState::Failed,
                failure_summary(
                    trials,
                    &format!(
                        "{failed} trials failed (maxFailedTrials is {})",
                        self.spec.max_failed_trials.0
                    ),
                ),
            )
        })
    }

    /// Warm-start observations from `resumePreviousJobId`'s succeeded trials.
    async fn previous_trials(&self) -> Vec<(Point, f64)> {
        let previous = &self.spec.resume_previous_job_id;
        if previous.is_empty() {
            return Vec::new();
        }
        let Ok(job) = self.db.job(self.project, previous).await else {
            return Vec::new();
        };
        succeeded_points(
            &self.tuner.space,
            &job.training_output.map(|o| o.trials).unwrap_or_default(),
        )
    }

    /// Starts proposed trials up to `maxParallelTrials`; the job's end once all have run.
    async fn propose(&self, trials: &mut Vec<HyperparameterOutput>) -> Option<(JobState, String)> {
        let running = count_running(trials);
        let started = trials.len();
        let wanted = (self.spec.parallel().saturating_sub(running))
            .min(self.spec.trials() - started.min(self.spec.trials()));
        let mut exhausted = false;
        if wanted > 0 {
            let space = &self.tuner.space;
            let mut completed = self.previous_trials().await;
            completed.extend(succeeded_points(space, trials));
            // Failed points are not retried by grid search; for the others they are simply
            // not evidence.
            let pending: Vec<Point> = trials
                .iter()
                .filter(|t| {
                    t.state == JobState::Running
                        || (self.tuner.algorithm == Algorithm::Grid
                            && t.state != JobState::Succeeded)
                })
                .filter_map(|t| to_point(space, &t.hyperparameters))
                .collect();
            // A GP fit is cubic in the trials: off the async runtime, which serves the API.
            let tuner = self.tuner.clone();
            let proposed = tokio::task::spawn_blocking(move || {
                tuner
                    .propose(&completed, &pending, wanted)
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("the proposal task failed: {e}")));
            match proposed {
                Ok(points) => {
                    exhausted = points.len() < wanted;
                    for (i, p) in points.iter().enumerate() {
                        trials.push(HyperparameterOutput {
                            trial_id: (started + i + 1).to_string(),
                            hyperparameters: to_strings(space, p),
                            state: JobState::Running,
                            start_time: now_rfc3339(),
                            ..HyperparameterOutput::default()
                        });
                    }
                }
                Err(e) => {
                    return Some((
                        JobState::Failed,
                        format!("the tuner cannot propose trials: {e}"),
                    ));
                }
            }
        }
        let all_started = trials.len() >= self.spec.trials() || exhausted;
        if !all_started || count_running(trials) > 0 {
            return None;
        }
        let succeeded = trials.iter().any(|t| t.state == JobState::Succeeded);
        Some(if succeeded {
            (JobState::Succeeded, String::new())
        } else {
            (
                JobState::Failed,
                failure_summary(trials, "no trial succeeded"),
            )
        })
    }

    /// Writes the study into the job (and ends the job when `end` says so).
    async fn save(
        &self,
        trials: Vec<HyperparameterOutput>,
        end: Option<(JobState, String)>,
    ) -> Result<(), DbError> {
        let completed_count = trials
            .iter()
            .filter(|t| t.state == JobState::Succeeded)
            .count() as i64;
        self.db
            .update_job(self.project, &self.job.job_id, |j| {
                let out = j.training_output.get_or_insert_with(Default::default);
                out.trials = trials.clone();
                out.completed_trial_count = Int64(completed_count);
                out.is_hyperparameter_tuning_job = true;
                out.hyperparameter_metric_tag = self.tag.clone();
                match &end {
                    Some((state, message)) => lifecycle::finish(j, *state, message),
                    None => Ok(()),
                }
            })
            .await?;
        Ok(())
    }
}
