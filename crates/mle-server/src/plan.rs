//! Plans: what a job needs and what it runs. Replica counts per scale tier, the slots a job
//! takes, the machine resources a Slurm task asks for, engine names, and the process plans of
//! training jobs (with their `TF_CONFIG`), tuning trials and batch prediction jobs; plus the
//! checks of a batch prediction job's input.

use std::path::PathBuf;

use mle_api::{FieldViolation, Job, PredictionInput, ScaleTier, TrainingInput};
use mle_exec::{JobPlan, ReplicaPlan, RunDir};
use mle_tfconfig::TfConfig;
use serde_json::{Value, json};

use crate::catalog::prediction_model;
use crate::config::Config;
use crate::db::Db;
use crate::paths::{Need, Place, checked, place};

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

/// Slots a job takes while it runs: its replicas, times `maxParallelTrials` for tuning jobs
/// (saturating: counts near `i64::MAX` must not wrap around to a small number).
pub fn slots_needed(job: &Job) -> usize {
    job.training_input.as_ref().map_or(1, |t| {
        let (w, p, e) = replica_counts(t);
        let parallel = t.hyperparameters.as_ref().map_or(1, |h| h.parallel());
        1usize
            .saturating_add(w)
            .saturating_add(p)
            .saturating_add(e)
            .saturating_mul(parallel)
    })
}

/// The count field that alone asks for more than `slots` replicas, if one does.
pub fn oversized_count(t: &TrainingInput, slots: usize) -> Option<&'static str> {
    let (w, p, e) = replica_counts(t);
    [
        ("job.training_input.worker_count", w),
        ("job.training_input.parameter_server_count", p),
        ("job.training_input.evaluator_count", e),
    ]
    .into_iter()
    .filter(|(_, n)| *n >= slots)
    .max_by_key(|(_, n)| *n)
    .map(|(f, _)| f)
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

/// The resources of any job (one CPU for jobs without a training input).
pub fn job_resources(job: &Job) -> mle_exec::Resources {
    job.training_input
        .as_ref()
        .map(task_resources)
        .unwrap_or_default()
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

/// The program every replica of a training job runs, before its own `TF_CONFIG`.
struct Trainer {
    program: String,
    args: Vec<String>,
    cwd: Option<PathBuf>,
    env: Vec<(String, String)>,
}

/// The trainer's command line: a Python module in the job's environment, or a container
/// command (`mle` means this server's binary); then the job's args, `--job-dir` (per trial for
/// tuning) and the trial's hyperparameters.
fn trainer(
    t: &TrainingInput,
    run: &RunDir,
    cfg: &Config,
    trial: Option<&TrialRun>,
) -> Result<Trainer, String> {
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
    let mut out = if !t.python_module.is_empty() {
        // The environment prepared with the job's packages, or the runtime's interpreter.
        let program = match run.interpreter() {
            Some(p) => p.display().to_string(),
            None => cfg
                .runtimes
                .pick(&t.runtime_version, &t.python_version)?
                .to_string(),
        };
        Trainer {
            program,
            args: vec!["-m".to_string(), t.python_module.clone()],
            cwd: Some(run.0.clone()),
            env: Vec::new(),
        }
    } else {
        let mc = t.master_config.as_ref().ok_or("no trainer")?;
        let mut cmd = mc.container_command.clone();
        if cmd.first().map(String::as_str) == Some("mle") {
            cmd[0] = cfg.mle_exe.display().to_string();
        }
        if cmd.is_empty() {
            return Err("no trainer".into());
        }
        let program = cmd.remove(0);
        cmd.extend(mc.container_args.iter().cloned());
        Trainer {
            program,
            args: cmd,
            cwd: None,
            env: Vec::new(),
        }
    };
    out.args.extend(args);
    Ok(out)
}

/// The processes of a training job (or of one tuning trial): ps, workers and evaluators first,
/// the primary last (named by the runtime version), each with its `TF_CONFIG` (DESIGN §2.1)
/// and the variables derived from it (`CLUSTER_SPEC`, the PyTorch ones).
pub fn plan_training(
    job: &Job,
    run: &RunDir,
    cfg: &Config,
    trial: Option<&TrialRun>,
) -> Result<JobPlan, String> {
    let t = job.training_input.as_ref().ok_or("not a training job")?;
    let (workers, ps, evaluators) = replica_counts(t);
    let container = t.python_module.is_empty();
    let primary =
        mle_tfconfig::primary_name(&t.runtime_version, container, t.use_chief_in_tf_config);
    let cluster = mle_tfconfig::cluster(primary, workers, ps, |_, _| {
        free_port()
            .map(|p| format!("localhost:{p}"))
            .ok_or("no free port on localhost")
    })?;
    let single = workers == 0 && ps == 0;
    let job_json = snake_keys(serde_json::to_value(t).map_err(|e| e.to_string())?);
    let mut trainer = trainer(t, run, cfg, trial)?;
    let mut env = cfg.passed_env();
    env.extend(trainer.env.iter().cloned());
    // Another user's replicas live in the run's `work/`, the one place there they may write.
    let work = match trial {
        Some(tr) => run.trial(&tr.id).work(),
        None => run.work(),
    };
    if cfg.jobs.run_as.is_some() {
        env.push(("HOME".into(), work.display().to_string()));
        trainer.cwd = Some(work);
    }
    env.push(("CLOUD_ML_JOB_ID".into(), job.job_id.clone()));
    // Machine types with accelerators: the built-in trainer trains on the GPU.
    if task_resources(t).gpus > 0 {
        env.push(("MLE_DEVICE".into(), "cuda".into()));
    }
    if let Some(tr) = trial {
        env.push(("CLOUD_ML_TRIAL_ID".into(), tr.id.clone()));
        env.push(("CLOUD_ML_HP_METRIC_TAG".into(), tr.tag.clone()));
    }
    env.push((
        "CLOUD_ML_JOB".into(),
        json!({"job_id": job.job_id, "training_input": job_json}).to_string(),
    ));
    let replica = |role: &str, index: usize, in_cluster: bool| {
        let mut tf = if single && in_cluster {
            TfConfig::single(job_json.clone())
        } else {
            TfConfig::for_task(&cluster, role, index, job_json.clone())
        };
        let task = format!("{role}-replica-{index}");
        let mut env = env.clone();
        if let Some(tr) = trial {
            tf.set_trial(&tr.id);
            // One metric file per replica: they share a machine here, unlike on CMLE.
            env.push((
                "CLOUD_ML_HP_METRIC_FILE".into(),
                tr.metric_dir
                    .join(format!("{task}.metrics"))
                    .display()
                    .to_string(),
            ));
        }
        env.extend(tf.replica_env(container));
        ReplicaPlan {
            task,
            program: trainer.program.clone(),
            args: trainer.args.clone(),
            env,
            cwd: trainer.cwd.clone(),
        }
    };
    let mut replicas: Vec<ReplicaPlan> = (0..ps).map(|i| replica("ps", i, true)).collect();
    replicas.extend((0..workers).map(|i| replica("worker", i, true)));
    replicas.extend((0..evaluators).map(|i| replica("evaluator", i, false)));
    replicas.push(replica(primary, 0, true));
    let max_running_secs = t
        .scheduling
        .as_ref()
        .and_then(|s| mle_api::parse_duration(&s.max_running_time));
    Ok(JobPlan {
        replicas,
        max_running_secs,
        trial: trial.map(|t| t.id.clone()),
        run_as: cfg.jobs.run_as.as_ref().map(|u| (u.uid, u.gid)),
    })
}

/// Field violations of a batch prediction job (the model must be servable, paths allowed).
pub async fn check_prediction(
    db: &Db,
    cfg: &Config,
    project: &str,
    p: &PredictionInput,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    let f = |n: &str| format!("job.prediction_input.{n}");
    if [&p.model_name, &p.version_name, &p.uri]
        .iter()
        .filter(|s| !s.is_empty())
        .count()
        == 1
        && let Err(e) = prediction_model(db, cfg, project, p).await
    {
        v.push(FieldViolation::new(&f("model_name"), e));
    }
    let root = cfg.paths();
    for (i, path) in p.input_paths.iter().enumerate() {
        if let Err(e) = checked(path, Need::Any, root) {
            v.push(FieldViolation::new(&f(&format!("input_paths[{i}]")), e));
        }
    }
    if !p.output_path.is_empty()
        && let Err(e) = checked(&p.output_path, Need::Any, root)
    {
        v.push(FieldViolation::new(&f("output_path"), e));
    }
    if v.is_empty() && !p.input_paths.is_empty() {
        let paths = p.input_paths.clone();
        // Patterns must match (in buckets too: listing is one call); a named object's
        // existence is learnt when the job reads it.
        let expanded = tokio::task::spawn_blocking(move || {
            for p in &paths {
                match place(p) {
                    Place::Local(path) => {
                        mle_predict::expand_inputs(&[path.display().to_string()])
                            .map_err(|e| e.to_string())?;
                    }
                    Place::Bucket(_) => {
                        let storage = mle_storage::Storage::shared().map_err(|e| e.to_string())?;
                        storage.glob(p).map_err(|e| match e {
                            mle_storage::StorageError::NoSuchObject { uri } => {
                                format!("no file matches '{uri}'")
                            }
                            e => e.to_string(),
                        })?;
                    }
                }
            }
            Ok::<(), String>(())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        if let Err(e) = expanded {
            v.push(FieldViolation::new(&f("input_paths"), e));
        }
    }
    v
}

/// A field as the job's processes take it: a bucket URI as it is, a local path as a path.
fn as_arg(uri: &str) -> String {
    match place(uri) {
        Place::Local(p) => p.display().to_string(),
        Place::Bucket(loc) => loc.uri(),
    }
}

/// The one process of a batch prediction job: `mle exec-predict` over the model in `model_dir`.
pub fn plan_prediction(
    p: &PredictionInput,
    model_dir: &std::path::Path,
    run: &RunDir,
    mle_exe: &std::path::Path,
) -> JobPlan {
    let format = match p.data_format {
        mle_api::DataFormat::Json => "json",
        _ => "text",
    };
    let mut args = vec![
        "exec-predict".to_string(),
        "--model-dir".into(),
        model_dir.display().to_string(),
        "--data-format".into(),
        format.into(),
        "--output-path".into(),
        as_arg(&p.output_path),
        "--batch-size".into(),
        (if p.batch_size.0 > 0 {
            p.batch_size.0
        } else {
            64
        })
        .to_string(),
        "--summary".into(),
        run.0.join("prediction.json").display().to_string(),
        "--".into(),
    ];
    args.extend(p.input_paths.iter().map(|x| as_arg(x)));
    // The server's own binary on the server's behalf: it gets the storage layer's variables.
    let env = mle_storage::ENV_VARS
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    JobPlan {
        replicas: vec![ReplicaPlan {
            task: "master-replica-0".into(),
            program: mle_exe.display().to_string(),
            args,
            env,
            cwd: None,
        }],
        max_running_secs: None,
        trial: None,
        // Only the mle binary, on the server's own files (stored versions): as the server.
        run_as: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A server with runtimes: a job that names none runs on the default.
        let cfg = cfg_with_runtimes();
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

    fn cfg_with_runtimes() -> Config {
        Config {
            slots: 8,
            runtimes: mle_exec::Runtimes {
                default: "python3".into(),
                listed: vec![mle_exec::Runtime::parse("2.11=/opt/tf/bin/python").unwrap()],
            },
            ..Config::local("/tmp".into(), "/bin/mle".into())
        }
    }

    fn env_of<'a>(r: &'a ReplicaPlan, k: &str) -> Option<&'a str> {
        r.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_runtime_version_picks_the_interpreter_and_names_the_primary() {
        let cfg = cfg_with_runtimes();
        let job = |extra: &str| -> Job {
            serde_json::from_str(&format!(
                r#"{{"jobId": "j", "trainingInput": {{"scaleTier": "CUSTOM", "workerCount": "2", "parameterServerCount": "1", {extra}}}}}"#
            ))
            .unwrap()
        };
        let run = RunDir("/nonexistent/run".into());
        let tf2 = plan_training(
            &job(r#""pythonModule": "t.task", "runtimeVersion": "2.11""#),
            &run,
            &cfg,
            None,
        )
        .unwrap();
        let primary = tf2.replicas.last().unwrap();
        assert_eq!(primary.task, "chief-replica-0");
        assert_eq!(primary.program, "/opt/tf/bin/python");
        assert_eq!(env_of(primary, "RANK"), Some("0"));
        assert_eq!(env_of(primary, "WORLD_SIZE"), Some("3"));
        assert!(env_of(primary, "CLUSTER_SPEC").is_none());
        let ranks: Vec<Option<&str>> = tf2.replicas.iter().map(|r| env_of(r, "RANK")).collect();
        assert_eq!(
            ranks,
            vec![None, Some("1"), Some("2"), Some("0")],
            "ps, workers, chief"
        );
        // No runtime version (and 1.x) keep `master` and the default interpreter.
        for extra in [
            r#""pythonModule": "t.task""#,
            r#""pythonModule": "t.task", "runtimeVersion": "1.15""#,
        ] {
            let p = plan_training(&job(extra), &run, &cfg, None);
            let p = match p {
                Ok(p) => p,
                // 1.15 is not a runtime this server has.
                Err(e) => {
                    assert!(e.contains("no runtime version '1.15'"), "{e}");
                    continue;
                }
            };
            assert_eq!(p.replicas.last().unwrap().task, "master-replica-0");
            assert_eq!(p.replicas.last().unwrap().program, "python3");
        }
        // A container command: `master`, with CLUSTER_SPEC; useChiefInTfConfig names it chief.
        let c = plan_training(
            &job(r#""runtimeVersion": "2.11", "masterConfig": {"containerCommand": ["mle", "train"]}"#),
            &run,
            &cfg,
            None,
        )
        .unwrap();
        let primary = c.replicas.last().unwrap();
        assert_eq!(primary.task, "master-replica-0");
        assert!(env_of(primary, "CLUSTER_SPEC").is_some());
        let c = plan_training(
            &job(r#""useChiefInTfConfig": true, "masterConfig": {"containerCommand": ["mle", "train"]}"#),
            &run,
            &cfg,
            None,
        )
        .unwrap();
        assert_eq!(c.replicas.last().unwrap().task, "chief-replica-0");
    }
}
