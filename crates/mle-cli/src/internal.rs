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
    /// Output directory.
    #[arg(long)]
    output_path: PathBuf,
    /// Lines per model call.
    #[arg(long, default_value = "64")]
    batch_size: usize,
    /// Where to write the counts as JSON.
    #[arg(long)]
    summary: PathBuf,
    /// Input paths or patterns.
    #[arg(required = true)]
    inputs: Vec<String>,
}

/// `mle exec-predict` (run by a batch prediction job's supervisor).
pub fn exec_predict(a: ExecPredictArgs) -> Result<i32> {
    let format = match a.data_format.as_str() {
        "json" => mle_predict::LineFormat::Json,
        "text" => mle_predict::LineFormat::Text,
        other => bail!("unknown data format '{other}'"),
    };
    let inputs = mle_predict::expand_inputs(&a.inputs)?;
    println!(
        "predicting {} input file(s) with {}",
        inputs.len(),
        a.model_dir.display()
    );
    let servable = mle_predict::Servable::load(&a.model_dir)?;
    let started = Instant::now();
    let mut last = Instant::now();
    let summary = mle_predict::predict_files(
        &servable,
        format,
        &inputs,
        &a.output_path,
        a.batch_size,
        |done| {
            if last.elapsed() > Duration::from_secs(5) {
                println!("{done} instances done");
                last = Instant::now();
            }
        },
    )?;
    println!(
        "{} predictions, {} errors in {:.1} s; results in {}",
        summary.predictions,
        summary.errors,
        started.elapsed().as_secs_f64(),
        a.output_path.display()
    );
    let text = json!({"prediction_count": summary.predictions, "error_count": summary.errors,
                      "seconds": started.elapsed().as_secs_f64()})
    .to_string();
    let tmp = a.summary.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &a.summary)?;
    Ok(0)
}
