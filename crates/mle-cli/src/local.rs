//! `mle local train` and `mle local predict`, with `gcloud ml-engine local` semantics.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum LocalCommand {
    /// Run a trainer on this machine: an unmodified Python package (`python3 -m MODULE`) or the
    /// built-in trainer (`--builtin`), with TF_CONFIG set as the service would set it.
    #[command(
        after_help = "Examples:\n  mle local train --package-path trainer --module-name trainer.task --job-dir out -- --train-steps 100\n  mle local train --builtin --job-dir out -- --model examples/iris/model.yaml --train-files ..."
    )]
    Train(LocalTrainArgs),
    /// Predict with an exported model on this machine.
    Predict(LocalPredictArgs),
}

#[derive(Args)]
pub struct LocalTrainArgs {
    /// Directory of the Python package holding the trainer (its parent becomes the working directory).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "builtin",
        conflicts_with = "builtin"
    )]
    package_path: Option<PathBuf>,
    /// Python module to run with `python3 -m`, e.g. `trainer.task`.
    #[arg(
        long,
        value_name = "MODULE",
        required_unless_present = "builtin",
        conflicts_with = "builtin"
    )]
    module_name: Option<String>,
    /// Run the built-in trainer (`mle train`) instead of a Python package.
    #[arg(long)]
    builtin: bool,
    /// Job directory, passed to the trainer as `--job-dir`.
    #[arg(long, value_name = "DIR")]
    job_dir: Option<String>,
    /// Run a cluster on this machine: parameter servers and workers first, the primary last
    /// in the foreground; every other replica is stopped when the primary ends.
    #[arg(long)]
    distributed: bool,
    /// Workers (with --distributed).
    #[arg(long, default_value = "2", requires = "distributed")]
    worker_count: usize,
    /// Parameter servers (with --distributed).
    #[arg(long, default_value = "2", requires = "distributed")]
    parameter_server_count: usize,
    /// Evaluators (with --distributed); they are not part of the cluster.
    #[arg(long, default_value = "0", requires = "distributed")]
    evaluator_count: usize,
    /// First of the contiguous localhost ports: primary, then ps, then workers.
    #[arg(long, default_value = "27182", requires = "distributed")]
    start_port: u16,
    /// Name the primary `master` instead of `chief`.
    #[arg(long, requires = "distributed")]
    use_master: bool,
    /// The runtime version the job asks for, as the service takes it: it picks the interpreter
    /// (--runtime) and names the primary as the service would (`chief` for 2.1 and later,
    /// `master` before). Without it the primary is `chief` and the interpreter --python.
    #[arg(long, value_name = "VERSION")]
    runtime_version: Option<String>,
    /// The Python version the job asks for (with --runtime-version).
    #[arg(long, value_name = "VERSION", requires = "runtime_version")]
    python_version: Option<String>,
    #[command(flatten)]
    runtimes: crate::runtimes::RuntimeFlags,
    /// Arguments for the trainer (after `--`).
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Args)]
pub struct LocalPredictArgs {
    /// An export directory (`.../export/NAME/TIMESTAMP`), or its parent to use the newest export.
    #[arg(long, value_name = "DIR")]
    model_dir: PathBuf,
    /// File with one instance per line: a JSON list of numbers in signature order, or a JSON
    /// object of named features. `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    json_instances: PathBuf,
}

pub fn run(cmd: LocalCommand) -> Result<i32> {
    match cmd {
        LocalCommand::Train(a) => train(a),
        LocalCommand::Predict(a) => predict(a),
    }
}

/// What every replica runs, before `TF_CONFIG` is set.
struct Launch {
    program: std::ffi::OsString,
    args: Vec<String>,
    cwd: Option<PathBuf>,
    job: serde_json::Value,
    /// Whether it is a container command (the built-in trainer), which gets `CLUSTER_SPEC`.
    container: bool,
}

impl Launch {
    /// The replica's command: `TF_CONFIG` and the variables derived from it set.
    fn command(&self, tf: &mle_tfconfig::TfConfig) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args).envs(tf.replica_env(self.container));
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c
    }
}

fn train(a: LocalTrainArgs) -> Result<i32> {
    let mut args = a.args.clone();
    if let Some(d) = &a.job_dir {
        // A path or a bucket URI (the trainer reads and writes it: `mle train` through the
        // storage layer, a Python trainer through its own client); a bad URI stops here.
        mle_storage::Location::parse(d)?;
        args.push("--job-dir".into());
        args.push(d.clone());
    }
    let launch = if a.builtin {
        let exe = std::env::current_exe().context("locating the mle binary")?;
        let mut full = vec!["train".to_string()];
        full.extend(args.iter().cloned());
        Launch {
            program: exe.into(),
            args: full,
            cwd: None,
            job: serde_json::json!({"args": args, "job_dir": a.job_dir}),
            container: true,
        }
    } else {
        let package = a
            .package_path
            .clone()
            .expect("clap requires --package-path");
        let module = a.module_name.clone().expect("clap requires --module-name");
        if !package.is_dir() {
            bail!("--package-path {}: not a directory", package.display());
        }
        let package = package
            .canonicalize()
            .with_context(|| format!("resolving {}", package.display()))?;
        let parent = package.parent().unwrap_or(Path::new("/")).to_path_buf();
        let python = a
            .runtimes
            .runtimes()
            .pick(
                a.runtime_version.as_deref().unwrap_or_default(),
                a.python_version.as_deref().unwrap_or_default(),
            )
            .map_err(|e| anyhow::anyhow!("--runtime-version: {e}"))?
            .to_string();
        let mut full = vec!["-m".to_string(), module.clone()];
        full.extend(args.iter().cloned());
        Launch {
            program: python.into(),
            args: full,
            cwd: Some(parent),
            job: serde_json::json!({"python_module": module, "args": args, "job_dir": a.job_dir,
                "runtime_version": a.runtime_version, "python_version": a.python_version}),
            container: false,
        }
    };
    if a.distributed {
        return crate::cluster::run_local_cluster(
            &launch_spec(&a),
            |tf| launch.command(tf),
            &launch.job,
        );
    }
    let status = launch
        .command(&mle_tfconfig::TfConfig::single(launch.job.clone()))
        .status()
        .context("starting the trainer")?;
    Ok(crate::cluster::exit_code(status))
}

fn launch_spec(a: &LocalTrainArgs) -> crate::cluster::LocalCluster {
    crate::cluster::LocalCluster {
        primary: match (&a.runtime_version, a.use_master) {
            (_, true) => "master",
            (Some(v), false) => mle_tfconfig::primary_name(v, a.builtin, false),
            (None, false) => "chief",
        },
        workers: a.worker_count,
        ps: a.parameter_server_count,
        evaluators: a.evaluator_count,
        start_port: a.start_port,
    }
}

/// The model directory `--model-dir` names: an export, or its parent (the newest export).
fn export_dir(model_dir: &Path) -> PathBuf {
    if model_dir.join(mle_bundle::MANIFEST).exists() {
        model_dir.to_path_buf()
    } else {
        mle_bundle::latest(model_dir).unwrap_or(model_dir.to_path_buf())
    }
}

/// Predicts every line of `--json-instances` with the server's engine and instance parser
/// (`mle-predict`), one prediction per line in the server's format.
fn predict(a: LocalPredictArgs) -> Result<i32> {
    let servable = mle_predict::Servable::load(&export_dir(&a.model_dir))?;
    let sig = &servable.signature;
    let reader: Box<dyn BufRead> = if a.json_instances.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&a.json_instances)
            .with_context(|| format!("cannot read {}", a.json_instances.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut rows = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", a.json_instances.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let file = a.json_instances.display();
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{file}: line {}: not valid JSON", i + 1))?;
        let row = mle_predict::parse_instance(&v, &sig.inputs)
            .map_err(|e| anyhow::anyhow!("{file}: line {}: {e}", i + 1))?;
        rows.extend(row);
    }
    if rows.is_empty() {
        bail!("{}: no instances to predict", a.json_instances.display());
    }
    let n = rows.len() / sig.inputs.len();
    let out = servable.predict(&rows, n)?;
    for row in out.chunks(sig.width) {
        println!("{}", sig.format(row));
    }
    Ok(0)
}
