//! `mle train`: flags of the seed `task.py` mapped onto the built-in trainer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use mle_dist::{ReplicaRole, TfConfig};
use mle_nn::Overrides;
use mle_train::builtin::{self, BuiltinArgs, DataSource, SpecSource};
use mle_train::{TrainConfig, TrainError};

/// Reference workloads embedded in the binary.
#[derive(Clone, Copy, ValueEnum)]
pub enum Example {
    /// The abalone regressor with the tutorial's data and settings (5000 full-batch SGD steps).
    Abalone,
}

const ABALONE_SPEC: &str = include_str!("../../../examples/abalone/model.yaml");
const ABALONE_TRAIN: &str = include_str!("../../../examples/abalone/data/abalone_train.csv");
const ABALONE_TEST: &str = include_str!("../../../examples/abalone/data/abalone_test.csv");

/// Positive integer flags: negative or zero values are refused with the flag named.
fn positive(s: &str) -> Result<u64, String> {
    match s.parse::<i64>() {
        Ok(v) if v >= 1 => Ok(v as u64),
        Ok(v) => Err(format!("must be at least 1, got {v}")),
        Err(_) => Err(format!("'{s}' is not an integer")),
    }
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        Ok(v) => Err(format!("must be positive, got {v}")),
        Err(_) => Err(format!("'{s}' is not a number")),
    }
}

/// Flags of `mle train`. Both `--flag-name` and `--flag_name` spellings are accepted.
#[derive(Args)]
#[command(
    after_help = "Example:\n  mle train --model examples/abalone/model.yaml \\\n    --train-files examples/abalone/data/abalone_train.csv \\\n    --eval-files examples/abalone/data/abalone_test.csv \\\n    --job-dir out/abalone --train-steps 5000 --train-batch-size 3320 \\\n    --eval-batch-size 850 --eval-steps 1 --learning-rate 0.001"
)]
pub struct TrainArgs {
    /// Train an embedded reference workload; flags given explicitly override its settings.
    #[arg(long)]
    example: Option<Example>,
    /// Model spec file (YAML or JSON): columns, layers, loss, optimizer, metrics.
    #[arg(long, value_name = "SPEC", required_unless_present = "example")]
    model: Option<PathBuf>,
    /// Training CSV files (several values, or comma-separated): paths, or `gs://`/`s3://`
    /// objects, with `*` and `?` allowed in the last segment of a bucket URI.
    #[arg(long, alias = "train_files", num_args = 1.., value_delimiter = ',', required_unless_present = "example")]
    train_files: Vec<PathBuf>,
    /// Evaluation CSV files, like --train-files (default: evaluate on the training files).
    #[arg(long, alias = "eval_files", num_args = 1.., value_delimiter = ',')]
    eval_files: Vec<PathBuf>,
    /// Checkpoints, event files and exports go here; training resumes from its checkpoints. A
    /// `gs://` or `s3://` job dir is worked on through a local copy, pushed as training runs.
    #[arg(long, alias = "job_dir", value_name = "DIR")]
    job_dir: Option<String>,
    /// Training steps (batches); with --num-epochs, whichever ends first.
    #[arg(long, alias = "train_steps", value_parser = positive, allow_hyphen_values = true)]
    train_steps: Option<u64>,
    /// Passes over the training data.
    #[arg(long, alias = "num_epochs", value_parser = positive_f64, allow_hyphen_values = true)]
    num_epochs: Option<f64>,
    /// Evaluation batches per evaluation (default: the whole evaluation set).
    #[arg(long, alias = "eval_steps", value_parser = positive, allow_hyphen_values = true)]
    eval_steps: Option<u64>,
    /// Rows per training step [default: 40].
    #[arg(long, alias = "train_batch_size", value_parser = positive, allow_hyphen_values = true)]
    train_batch_size: Option<u64>,
    /// Rows per evaluation batch [default: 1000].
    #[arg(long, alias = "eval_batch_size", value_parser = positive, allow_hyphen_values = true)]
    eval_batch_size: Option<u64>,
    /// Learning rate (overrides the spec's optimizer.learning_rate).
    #[arg(long, alias = "learning_rate", value_parser = positive_f64, allow_hyphen_values = true)]
    learning_rate: Option<f64>,
    /// Width of the first hidden layer of the spec's `dnn` layer.
    #[arg(long, alias = "first_layer_size", value_parser = positive, allow_hyphen_values = true)]
    first_layer_size: Option<u64>,
    /// Number of hidden layers of the spec's `dnn` layer.
    #[arg(long, alias = "num_layers", value_parser = positive, allow_hyphen_values = true)]
    num_layers: Option<u64>,
    /// Width ratio between consecutive hidden layers of the spec's `dnn` layer.
    #[arg(long, alias = "scale_factor", value_parser = positive_f64, allow_hyphen_values = true)]
    scale_factor: Option<f64>,
    /// Evaluate every N steps (and at the end) [default: 1000].
    #[arg(long, alias = "eval_every_steps", alias = "eval-frequency", value_parser = positive, allow_hyphen_values = true)]
    eval_every_steps: Option<u64>,
    /// Checkpoint every N steps [default: at every evaluation].
    #[arg(long, alias = "checkpoint_every_steps", value_parser = positive, allow_hyphen_values = true)]
    checkpoint_every_steps: Option<u64>,
    /// Also checkpoint when this many seconds passed since the last checkpoint.
    #[arg(long, alias = "checkpoint_every_secs", value_parser = positive_f64, allow_hyphen_values = true)]
    checkpoint_every_secs: Option<f64>,
    /// Checkpoints to keep.
    #[arg(long, alias = "keep_checkpoints", value_parser = positive, default_value = "5", allow_hyphen_values = true)]
    keep_checkpoints: u64,
    /// Write the training loss to the event file every N steps.
    #[arg(long, alias = "log_every_steps", value_parser = positive, default_value = "100", allow_hyphen_values = true)]
    log_every_steps: u64,
    /// Seed for initialisation, shuffling and dropout.
    #[arg(long, default_value = "42")]
    seed: u64,
    /// Name of the export directory under <job-dir>/export/ [default: the spec's name].
    #[arg(long, alias = "export_name")]
    export_name: Option<String>,
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// What computes the model: `native` (fused CPU loops, the default) or `burn` (burn's
    /// tensors and autodiff, kept for comparison). Both give the same numerics (within
    /// float rounding) and the same checkpoints and exports.
    #[arg(long, value_enum, default_value = "native")]
    engine: EngineArg,
    /// Where the model runs: `cpu`, or `cuda` (the first GPU, through burn's CUDA backend, on
    /// an mle built with `--features cuda`). The server sets MLE_DEVICE=cuda for jobs whose
    /// machine types have accelerators; from the environment, an mle without CUDA warns and
    /// trains on the CPU.
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
    /// Data-parallel strategy when TF_CONFIG describes a cluster: parameter servers when the
    /// cluster has `ps` replicas, else ring all-reduce among the chief/master and workers.
    #[arg(long, value_enum, default_value = "auto")]
    distribution_strategy: Strategy,
    /// With parameter servers: average one push from every trainer per step (synchronous)
    /// instead of applying each push as it arrives.
    #[arg(long, alias = "sync_replicas")]
    sync_replicas: bool,
    /// Log level of the seed trainers (accepted for compatibility).
    #[arg(long, hide = true)]
    verbosity: Option<String>,
}

/// Whether to train on CUDA: `--device`, else `MLE_DEVICE` (which, unlike the flag, falls back
/// to the CPU with a warning on an mle built without CUDA).
fn wants_cuda(flag: Option<DeviceArg>) -> anyhow::Result<bool> {
    match flag {
        Some(DeviceArg::Cuda) if !mle_nn::Sequential::cuda_built() => anyhow::bail!(
            "--device cuda: this mle was built without CUDA (cargo build --release --features cuda)"
        ),
        Some(d) => Ok(d == DeviceArg::Cuda),
        None => match std::env::var("MLE_DEVICE").as_deref() {
            Ok("cuda") if !mle_nn::Sequential::cuda_built() => {
                eprintln!(
                    "warning: MLE_DEVICE=cuda, but this mle was built without CUDA: training on the CPU"
                );
                Ok(false)
            }
            Ok("cuda") => Ok(true),
            Ok("cpu") | Ok("") | Err(_) => Ok(false),
            Ok(other) => anyhow::bail!("MLE_DEVICE must be cpu or cuda, not '{other}'"),
        },
    }
}

/// `--device`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The CPU (the engine given by `--engine`).
    Cpu,
    /// The first CUDA GPU.
    Cuda,
}

/// `--engine`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// Fused loops over buffers kept between steps.
    Native,
    /// burn's tensors and autodiff.
    Burn,
}

/// How replicas combine gradients.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Parameter servers if the cluster has any, else all-reduce.
    Auto,
    /// Workers pull parameters and push gradients to the `ps` replicas.
    ParameterServer,
    /// Synchronous ring all-reduce among the chief/master and workers.
    AllReduce,
}

/// Accepts local paths and `file://` URIs; object-store URIs are refused with a clear message.
pub fn local_path(uri: &str) -> Result<PathBuf> {
    mle_api::local_path(uri).map_err(|e| anyhow::anyhow!("{uri}: {e}"))
}

/// The bucket location an argument names, if it names one (`mle_storage::Location` is the one
/// parser of URIs; a malformed bucket URI is an error here, not a local path).
fn remote(arg: &str) -> Result<Option<mle_storage::Location>> {
    if !arg.contains("://") {
        return Ok(None);
    }
    let loc = mle_storage::Location::parse(arg)?;
    Ok(loc.is_remote().then_some(loc))
}

/// `--train-files`/`--eval-files` as a data source: local files as they are; bucket objects
/// and patterns (`gs://b/data/*.csv`) through the storage layer, each object streamed.
fn data_source(
    files: &[PathBuf],
    storage: &mut Option<Arc<mle_storage::Storage>>,
) -> Result<DataSource> {
    let args: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let mut any_remote = false;
    for a in &args {
        any_remote |= remote(a)?.is_some();
    }
    if !any_remote {
        return Ok(DataSource::Files(files.to_vec()));
    }
    let st = storage_of(storage)?;
    let mut names = Vec::new();
    for a in &args {
        for loc in st.glob(a)? {
            names.push(loc.uri());
        }
    }
    let open_st = st.clone();
    Ok(DataSource::Streams(builtin::Streams {
        names,
        open: Arc::new(move |name: &str| {
            let loc = mle_storage::Location::parse(name).map_err(std::io::Error::other)?;
            open_st.reader(&loc).map_err(std::io::Error::other)
        }),
    }))
}

/// The storage layer, made on first use.
fn storage_of(s: &mut Option<Arc<mle_storage::Storage>>) -> Result<Arc<mle_storage::Storage>> {
    if s.is_none() {
        *s = Some(Arc::new(mle_storage::Storage::from_env()?));
    }
    Ok(s.clone().expect("set above"))
}

/// Seconds between pushes of a bucket job dir's local copy (`MLE_JOB_DIR_PUSH_SECS`, 5).
fn push_period() -> Duration {
    std::env::var("MLE_JOB_DIR_PUSH_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .map_or(Duration::from_secs(5), Duration::from_secs_f64)
}

pub fn run(a: TrainArgs) -> Result<i32> {
    let mut storage: Option<Arc<mle_storage::Storage>> = None;
    // A job dir in a bucket is worked on through a local copy: pulled now (a rerun resumes
    // from its newest checkpoint), pushed while training runs and when it ends.
    let job_dir = a.job_dir.as_deref().map(remote).transpose()?.flatten();
    let mirror = match (job_dir, a.job_dir.as_deref()) {
        (Some(loc), Some(d)) => {
            let st = storage_of(&mut storage)?;
            let m = mle_storage::Mirror::pull(st, loc)
                .with_context(|| format!("--job-dir {d}: reading what it holds"))?;
            Some(Arc::new(m))
        }
        _ => None,
    };
    let example = a.example.filter(|_| a.model.is_none());
    let (spec, train, eval) = match (example, &a.model) {
        (Some(Example::Abalone), None) => (
            SpecSource::Inline(ABALONE_SPEC.into()),
            DataSource::Inline {
                name: "abalone_train.csv (embedded)".into(),
                text: ABALONE_TRAIN.into(),
            },
            Some(DataSource::Inline {
                name: "abalone_test.csv (embedded)".into(),
                text: ABALONE_TEST.into(),
            }),
        ),
        (_, Some(model)) => {
            let eval = match a.eval_files.is_empty() {
                true => None,
                false => Some(data_source(&a.eval_files, &mut storage)?),
            };
            (
                SpecSource::File(model.clone()),
                data_source(&a.train_files, &mut storage)?,
                eval,
            )
        }
        (None, None) => bail!("give --model SPEC (or --example abalone)"),
    };
    let (train, eval) = if example.is_some() && !a.train_files.is_empty() {
        let eval = match a.eval_files.is_empty() {
            true => None,
            false => Some(data_source(&a.eval_files, &mut storage)?),
        };
        (data_source(&a.train_files, &mut storage)?, eval)
    } else {
        (train, eval)
    };
    // The embedded example defaults to the tutorial's settings.
    let tutorial = example.is_some();
    let pick = |v: Option<u64>, tutorial_default: u64, default: u64| {
        v.unwrap_or(if tutorial { tutorial_default } else { default })
    };
    let mut train_steps = a.train_steps;
    if train_steps.is_none() && a.num_epochs.is_none() {
        train_steps = Some(if tutorial { 5000 } else { 1000 });
        if !tutorial {
            eprintln!("note: neither --train-steps nor --num-epochs given: training 1000 steps");
        }
    }
    let cfg = TrainConfig {
        job_dir: match &mirror {
            Some(m) => Some(m.local().to_path_buf()),
            None => a.job_dir.as_deref().map(local_path).transpose()?,
        },
        train_steps,
        num_epochs: a.num_epochs,
        train_batch_size: pick(a.train_batch_size, 3320, 40) as usize,
        eval_batch_size: pick(a.eval_batch_size, 850, 1000) as usize,
        eval_steps: a.eval_steps.map(|s| s as usize),
        eval_every_steps: pick(a.eval_every_steps, 1000, 1000),
        checkpoint_every_steps: a.checkpoint_every_steps,
        checkpoint_every_secs: a.checkpoint_every_secs,
        keep_checkpoints: a.keep_checkpoints as usize,
        log_every_steps: a.log_every_steps,
        seed: a.seed,
        hp_metric_tag: std::env::var("CLOUD_ML_HP_METRIC_TAG")
            .ok()
            .filter(|t| !t.is_empty()),
        progress: !a.no_progress,
        ..TrainConfig::default()
    };
    let overrides = Overrides {
        learning_rate: a.learning_rate,
        first_layer_size: a.first_layer_size.map(|v| v as usize),
        num_layers: a.num_layers.map(|v| v as usize),
        scale_factor: a.scale_factor,
    };
    let args = BuiltinArgs {
        spec,
        train,
        eval,
        overrides,
        export_name: a.export_name,
        engine: match a.engine {
            EngineArg::Native => mle_nn::Engine::Native,
            EngineArg::Burn => mle_nn::Engine::Burn,
        },
        cuda: wants_cuda(a.device)?,
        cfg,
    };
    let opts = mle_dist::Options::from_env();
    let strategy = match a.distribution_strategy {
        Strategy::Auto => mle_dist::Strategy::Auto,
        Strategy::ParameterServer => mle_dist::Strategy::ParameterServer,
        Strategy::AllReduce => mle_dist::Strategy::AllReduce,
    };
    let sync = a.sync_replicas;
    // The role is settled before data is read: ps replicas and evaluators never train.
    let tf = TfConfig::from_env().map_err(anyhow::Error::msg)?;
    match tf.role() {
        ReplicaRole::Evaluator if mirror.is_some() => {
            bail!(
                "an evaluator with a job dir in a bucket is not supported yet: give it a local job dir"
            )
        }
        ReplicaRole::Evaluator => {
            let max = args.cfg.train_steps.unwrap_or(u64::MAX);
            builtin::evaluate_checkpoints(args, max).context("evaluator failed")?;
            return Ok(0);
        }
        ReplicaRole::ParameterServer => {
            let cluster = mle_dist::Cluster::from_tf_config(&tf)?;
            eprintln!("{}: serving parameters", cluster.me);
            mle_dist::ps::serve(&cluster, &opts)
                .with_context(|| format!("{} failed", cluster.me))?;
            return Ok(0);
        }
        ReplicaRole::Single | ReplicaRole::Primary | ReplicaRole::Worker => {}
    }
    let primary = matches!(tf.role(), ReplicaRole::Single | ReplicaRole::Primary);
    let make = move |total: usize| -> Result<Option<Box<dyn mle_train::Exchange>>, TrainError> {
        match mle_dist::for_config(&tf, total, strategy, sync, &opts)? {
            mle_dist::Role::Trainer(x) => Ok(Some(x)),
            mle_dist::Role::Single => Ok(None),
            // The role was decided above from the same TF_CONFIG: these never train.
            mle_dist::Role::ParameterServer(_) | mle_dist::Role::Evaluator => Err(
                TrainError::Config("a parameter server or evaluator cannot train".into()),
            ),
        }
    };
    let mut pusher = mirror.as_ref().filter(|_| primary).map(|m| {
        m.every(push_period(), |e| {
            eprintln!("warning: the job dir's copy could not be pushed yet (retried): {e}")
        })
    });
    let outcome = builtin::run(args, &make).context("training failed");
    if let (Some(m), Some(p)) = (&mirror, pusher.as_mut()) {
        // Whatever training did, what it wrote is kept: the last push must land.
        p.stop();
        let pushed = m
            .push()
            .with_context(|| format!("--job-dir {}: the last upload failed", m.remote()))?;
        eprintln!(
            "job dir {} is up to date ({pushed} file(s) in the last push)",
            m.remote()
        );
    }
    let outcome = outcome?;
    if let Some(step) = outcome.resumed_from {
        eprintln!("resumed from the checkpoint of step {step}");
    }
    if outcome.metrics.is_empty() {
        println!("replica finished at step {}", outcome.step);
        return Ok(0);
    }
    let metrics: Vec<String> = outcome
        .metrics
        .iter()
        .map(|(m, v)| format!("{} {v:.4}", m.name()))
        .collect();
    println!("final step {}: {}", outcome.step, metrics.join(", "));
    if let Some(dir) = outcome.export_dir {
        match &mirror {
            Some(m) => {
                let rel = dir.strip_prefix(m.local()).unwrap_or(&dir);
                println!("exported to {}", m.remote().join(&rel.to_string_lossy()));
            }
            None => println!("exported to {}", dir.display()),
        }
    }
    Ok(0)
}
