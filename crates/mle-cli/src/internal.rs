//! The hidden entry points of the processes the service starts: `mle exec-supervise RUN_DIR`
//! (a job's supervisor), `mle replica RUN_DIR` (one Slurm task) and `mle exec-predict` (a batch
//! prediction job's one replica).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

/// `mle exec-supervise RUN_DIR` (started by the server, not by users).
pub fn supervise(run_dir: PathBuf) -> Result<i32> {
    let o = mle_exec::supervise(&mle_exec::RunDir(run_dir)).context("supervising the job")?;
    Ok(if o.state == "SUCCEEDED" { 0 } else { 1 })
}

/// `mle replica RUN_DIR` (run by srun in every task of a Slurm job).
pub fn replica(run_dir: PathBuf) -> Result<i32> {
    mle_exec::replica(&mle_exec::RunDir(run_dir)).context("running the replica")
}

/// `mle exec-predict`'s flags.
#[derive(Args)]
pub struct ExecPredictArgs {
    /// The servable directory.
    #[arg(long)]
    model_dir: PathBuf,
    /// json or text.
    #[arg(long)]
    data_format: String,
    /// Output directory: a path or a `gs://`/`s3://` prefix.
    #[arg(long)]
    output_path: String,
    /// Lines per model call.
    #[arg(long, default_value = "64")]
    batch_size: usize,
    /// Where to write the counts as JSON.
    #[arg(long)]
    summary: PathBuf,
    /// Input paths, URIs or patterns (`*`, `?` in the last segment).
    #[arg(required = true)]
    inputs: Vec<String>,
}

/// `mle exec-predict` (run by a batch prediction job's supervisor). Inputs in buckets are
/// streamed; an output prefix in a bucket gets the two result files, each uploaded whole once
/// they are complete.
pub fn exec_predict(a: ExecPredictArgs) -> Result<i32> {
    use mle_storage::{Location, Storage};
    let format = match a.data_format.as_str() {
        "json" => mle_predict::LineFormat::Json,
        "text" => mle_predict::LineFormat::Text,
        other => bail!("unknown data format '{other}'"),
    };
    let remote = |u: &str| Location::parse(u).is_ok_and(|l| l.is_remote());
    let needs_storage = remote(&a.output_path) || a.inputs.iter().any(|u| remote(u));
    let storage = if needs_storage {
        Some(Storage::shared()?)
    } else {
        None
    };
    let mut inputs = Vec::new();
    for pattern in &a.inputs {
        match storage {
            Some(st) if remote(pattern) => {
                inputs.extend(st.glob(pattern)?.into_iter().map(|l| l.uri()));
            }
            _ => inputs.extend(
                mle_predict::expand_inputs(std::slice::from_ref(pattern))?
                    .into_iter()
                    .map(|p| p.display().to_string()),
            ),
        }
    }
    println!(
        "predicting {} input file(s) with {}",
        inputs.len(),
        a.model_dir.display()
    );
    let servable = mle_predict::Servable::load(&a.model_dir)?;
    let open = |name: &str| -> std::io::Result<Box<dyn std::io::Read>> {
        match (storage, Location::parse(name)) {
            (Some(st), Ok(loc)) if loc.is_remote() => st
                .reader(&loc)
                .map(|r| Box::new(r) as Box<dyn std::io::Read>)
                .map_err(std::io::Error::other),
            _ => Ok(Box::new(std::fs::File::open(name)?)),
        }
    };
    let out_loc = Location::parse(&a.output_path)?;
    let staged = tempfile::Builder::new().prefix("mle-predict-").tempdir()?;
    let out_dir = match &out_loc {
        Location::Local(p) => p.clone(),
        _ => staged.path().to_path_buf(),
    };
    let started = Instant::now();
    let mut last = Instant::now();
    let summary = mle_predict::predict_streams(
        &servable,
        format,
        &inputs,
        &open,
        &out_dir,
        a.batch_size,
        |done| {
            if last.elapsed() > Duration::from_secs(5) {
                println!("{done} instances done");
                last = Instant::now();
            }
        },
    )?;
    if let Some(st) = storage.filter(|_| out_loc.is_remote()) {
        for e in std::fs::read_dir(&out_dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path())?;
            st.put(&out_loc.join(&name), &bytes)?;
        }
    }
    println!(
        "{} predictions, {} errors in {:.1} s; results in {}",
        summary.predictions,
        summary.errors,
        started.elapsed().as_secs_f64(),
        a.output_path
    );
    let text = json!({"prediction_count": summary.predictions, "error_count": summary.errors,
                      "seconds": started.elapsed().as_secs_f64()})
    .to_string();
    let tmp = a.summary.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &a.summary)?;
    Ok(0)
}
