//! `mle jobs ...`: submit training jobs (gcloud's flags, a `--config` file, the trainer package
//! built into an sdist) and batch prediction jobs, describe, list, stream logs, cancel.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use mle_api::{
    DataFormat as WireFormat, Int64, Job, PredictionInput, ReplicaConfig, TrainingInput,
};
use serde_json::{Value, json};

use crate::client::{Client, Conn, Format, absolute, print};
use crate::data_dir::default_data_dir;
use crate::sdist::build_sdist;

/// `mle jobs ...`.
#[derive(Subcommand)]
pub enum JobsCommand {
    /// Submit a job.
    #[command(subcommand)]
    Submit(Submit),
    /// Show one job.
    Describe {
        /// Job id.
        job: String,
        /// A short summary: state and times, and for tuning jobs the trials, best first.
        #[arg(long)]
        summarize: bool,
    },
    /// List jobs, oldest first.
    List {
        /// `state:RUNNING`, `jobId:abc*`.
        #[arg(long)]
        filter: Option<String>,
        /// At most this many jobs.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Print a job's logs until it ends; the exit code is 0 only if it SUCCEEDED.
    StreamLogs {
        /// Job id.
        job: String,
    },
    /// Cancel a job: every replica process is stopped.
    Cancel {
        /// Job id.
        job: String,
    },
}

/// `mle jobs submit ...`.
#[derive(Subcommand)]
pub enum Submit {
    /// Submit a training job (gcloud's flags).
    Training(Box<SubmitTraining>),
    /// Submit a batch prediction job: predict every line of the input files with a model.
    Prediction(Box<SubmitPrediction>),
}

/// `mle jobs submit training`'s flags (gcloud's).
#[derive(Args)]
pub struct SubmitTraining {
    /// Job id: a letter, then letters, digits and underscores.
    job: String,
    /// BASIC, STANDARD_1, PREMIUM_1, BASIC_GPU or CUSTOM.
    #[arg(long)]
    scale_tier: Option<String>,
    /// Job directory, passed to the trainer as --job-dir.
    #[arg(long)]
    job_dir: Option<String>,
    /// Trainer package directory: built into an sdist and staged for the job.
    #[arg(long)]
    package_path: Option<PathBuf>,
    /// Python module to run, e.g. trainer.task.
    #[arg(long)]
    module_name: Option<String>,
    /// A bucket (`gs://B` or `s3://B`, or a prefix in one) to stage the built package in, as
    /// `<bucket>/<job>/packages/<sdist>` (gcloud's flag). Without it a package is staged in
    /// `<job-dir>/packages/` (in the job dir's bucket when it is one).
    #[arg(long, value_name = "URI")]
    staging_bucket: Option<String>,
    /// Extra package tarballs (comma-separated; paths or bucket URIs).
    #[arg(long, value_delimiter = ',')]
    packages: Vec<String>,
    /// Region (informational).
    #[arg(long)]
    region: Option<String>,
    /// Runtime version: picks the server's interpreter for a Python trainer (`mle server
    /// --runtime`; a version it lacks is refused, naming those it has) and names the primary
    /// replica as Cloud ML Engine does (`chief` for 2.1 and later, `master` before or when
    /// absent).
    #[arg(long)]
    runtime_version: Option<String>,
    /// Python version, matched against the server's runtimes with --runtime-version.
    #[arg(long)]
    python_version: Option<String>,
    /// YAML or JSON file with a Job (or its trainingInput); flags override its fields.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run the built-in trainer (`mle train`) instead of a Python module.
    #[arg(long)]
    builtin: bool,
    /// Stream the job's logs until it ends; exit 0 only if it SUCCEEDED.
    #[arg(long)]
    stream_logs: bool,
    /// Trainer arguments (after `--`).
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
/// Input format of a batch prediction job.
pub enum DataFormat {
    /// One CSV line per instance.
    Text,
    /// One JSON instance per line.
    Json,
}

/// `mle jobs submit prediction`'s flags.
#[derive(Args)]
pub struct SubmitPrediction {
    /// Job id: a letter, then letters, digits and underscores.
    job: String,
    /// The model (its default version unless --version).
    #[arg(long)]
    model: String,
    /// The version.
    #[arg(long)]
    version: Option<String>,
    /// Input format.
    #[arg(long, value_enum)]
    data_format: DataFormat,
    /// Input files (comma-separated; `*` and `?` allowed in file names).
    #[arg(long, value_delimiter = ',', required = true)]
    input_paths: Vec<String>,
    /// Output directory for prediction.results-* and prediction.errors_stats-*.
    #[arg(long)]
    output_path: String,
    /// Instances per model call [default: 64].
    #[arg(long)]
    batch_size: Option<u64>,
    /// Region (informational).
    #[arg(long)]
    region: Option<String>,
    /// Runtime version (informational).
    #[arg(long)]
    runtime_version: Option<String>,
    /// Stream the job's logs until it ends; exit 0 only if it SUCCEEDED.
    #[arg(long)]
    stream_logs: bool,
}

/// `mle jobs ...`.
pub fn jobs(cmd: JobsCommand, conn: Conn) -> Result<i32> {
    let client = Client::new(&conn)?;
    match cmd {
        JobsCommand::Submit(Submit::Training(a)) => submit(&client, *a, conn.format),
        JobsCommand::Submit(Submit::Prediction(a)) => {
            let (job, stream) = submit_prediction(&client, *a)?;
            if stream {
                return stream_logs(&client, &job);
            }
            Ok(0)
        }
        JobsCommand::Describe { job, summarize } => {
            let v = client.get(&format!("jobs/{job}"))?;
            if summarize && conn.format == Format::Table {
                summary(&v);
            } else {
                print(&v, conn.format.or_yaml(), |_| {})?;
            }
            Ok(0)
        }
        JobsCommand::List { filter, limit } => list(&client, filter, limit, conn.format),
        JobsCommand::StreamLogs { job } => stream_logs(&client, &job),
        JobsCommand::Cancel { job } => {
            client.post(&format!("jobs/{job}:cancel"), &json!({}))?;
            println!("cancel requested for {job}");
            Ok(0)
        }
    }
}

fn list(
    client: &Client,
    filter: Option<String>,
    limit: Option<usize>,
    format: Format,
) -> Result<i32> {
    let mut jobs = Vec::new();
    let mut token = String::new();
    loop {
        let mut q = format!("jobs?pageSize=100&pageToken={token}");
        if let Some(f) = &filter {
            q += &format!("&filter={}", f.replace(' ', "%20").replace('*', "%2A"));
        }
        let v = client.get(&q)?;
        jobs.extend(v["jobs"].as_array().cloned().unwrap_or_default());
        match v["nextPageToken"].as_str() {
            Some(t) if limit.is_none_or(|l| jobs.len() < l) => token = t.to_string(),
            _ => break,
        }
    }
    if let Some(l) = limit {
        jobs.truncate(l);
    }
    print(&Value::Array(jobs.clone()), format, |_| {
        println!("{:<32} {:<11} CREATED", "JOB_ID", "STATUS");
        for j in &jobs {
            println!(
                "{:<32} {:<11} {}",
                j["jobId"].as_str().unwrap_or(""),
                j["state"].as_str().unwrap_or(""),
                j["createTime"].as_str().unwrap_or("")
            );
        }
    })?;
    Ok(0)
}

/// `describe --summarize`: the job's state line, then tuning trials (already best first).
fn summary(v: &Value) {
    let field = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    println!(
        "{:<24} {:<11} {:<25} {:<25} {:<25}",
        "JOB_ID", "STATUS", "CREATED", "STARTED", "ENDED"
    );
    println!(
        "{:<24} {:<11} {:<25} {:<25} {:<25}",
        field("jobId"),
        field("state"),
        field("createTime"),
        field("startTime"),
        field("endTime")
    );
    if let Some(e) = v["errorMessage"].as_str() {
        println!("error: {e}");
    }
    let trials = v["trainingOutput"]["trials"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !trials.is_empty() {
        println!();
        println!(
            "{:<8} {:<11} {:>14} {:<7}  HYPERPARAMETERS",
            "TRIAL", "STATE", "OBJECTIVE", "STOPPED"
        );
        for t in trials {
            let objective = t["finalMetric"]["objectiveValue"]
                .as_f64()
                .map_or("-".into(), |o| format!("{o:.6}"));
            let hp = t["hyperparameters"].as_object().map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            let stopped = if t["isTrialStoppedEarly"].as_bool() == Some(true) {
                "early"
            } else {
                "-"
            };
            println!(
                "{:<8} {:<11} {:>14} {:<7}  {}",
                t["trialId"].as_str().unwrap_or("-"),
                t["state"].as_str().unwrap_or("-"),
                objective,
                stopped,
                hp.unwrap_or_default()
            );
            if let Some(e) = t["errorMessage"].as_str() {
                println!("{:<8} {e}", "");
            }
        }
    }
}

/// The job a `--config` file describes: a Job, or just its trainingInput.
fn job_from_config(path: &std::path::Path) -> Result<Job> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --config {}", path.display()))?;
    let v: Value = serde_yaml::from_str(&text)
        .with_context(|| format!("--config {}: not valid YAML or JSON", path.display()))?;
    let v = if v.get("trainingInput").is_some() {
        v
    } else {
        json!({"trainingInput": v})
    };
    serde_json::from_value(v).with_context(|| format!("--config {}", path.display()))
}

/// The training job the flags (over `--config`) describe.
fn training_job(a: &SubmitTraining) -> Result<Job> {
    let mut job = match &a.config {
        Some(path) => job_from_config(path)?,
        None => Job::default(),
    };
    job.job_id = a.job.clone();
    let t: &mut TrainingInput = job.training_input.get_or_insert_with(Default::default);
    if let Some(tier) = &a.scale_tier {
        t.scale_tier = serde_json::from_value(json!(tier)).with_context(|| {
            format!("--scale-tier {tier}: BASIC, STANDARD_1, PREMIUM_1, BASIC_GPU or CUSTOM")
        })?;
    }
    let set = |field: &mut String, v: &Option<String>| {
        if let Some(v) = v {
            field.clone_from(v);
        }
    };
    set(&mut t.job_dir, &a.job_dir.as_deref().map(absolute));
    set(&mut t.region, &a.region);
    set(&mut t.runtime_version, &a.runtime_version);
    set(&mut t.python_version, &a.python_version);
    set(&mut t.python_module, &a.module_name);
    if t.region.is_empty() {
        t.region = "local".into();
    }
    if !a.args.is_empty() {
        t.args.clone_from(&a.args);
    }
    let mut packages: Vec<String> = a.packages.iter().map(|p| absolute(p)).collect();
    if let Some(pkg) = &a.package_path {
        packages.insert(0, stage_package(a, pkg)?);
    }
    if !packages.is_empty() {
        t.package_uris = packages;
    }
    if a.builtin {
        let mc = t.master_config.get_or_insert_with(ReplicaConfig::default);
        mc.container_command = vec!["mle".into(), "train".into()];
    }
    Ok(job)
}

/// Builds the trainer package and stages it where the server can read it: under
/// `--staging-bucket` (`<bucket>/<job>/packages/`), else in the job dir's `packages/` (a
/// bucket's, or a local one), else in the local data dir. Returns its path or URI.
fn stage_package(a: &SubmitTraining, pkg: &std::path::Path) -> Result<String> {
    use mle_storage::{Location, Storage};
    let remote = match (&a.staging_bucket, &a.job_dir) {
        (Some(b), _) => {
            let loc = Location::parse(b)?;
            if !loc.is_remote() {
                bail!("--staging-bucket {b}: not a gs:// or s3:// bucket");
            }
            Some(loc.join(&a.job).join("packages"))
        }
        (None, Some(d)) => Some(Location::parse(d)?)
            .filter(Location::is_remote)
            .map(|l| l.join("packages")),
        (None, None) => None,
    };
    let Some(remote) = remote else {
        let staging = match &a.job_dir {
            Some(d) => PathBuf::from(d).join("packages"),
            None => default_data_dir().join("staging").join(&a.job),
        };
        let sdist = build_sdist(pkg, &staging)?;
        return Ok(std::path::absolute(&sdist)?.display().to_string());
    };
    let local = tempfile::Builder::new().prefix("mle-sdist-").tempdir()?;
    let sdist = build_sdist(pkg, local.path())?;
    let name = sdist
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the built package has no file name")?;
    let to = remote.join(&name);
    let bytes = std::fs::read(&sdist).with_context(|| format!("reading {}", sdist.display()))?;
    Storage::shared()?.put(&to, &bytes)?;
    eprintln!("Staged {name} at {to}");
    Ok(to.uri())
}

fn submit(client: &Client, a: SubmitTraining, format: Format) -> Result<i32> {
    let job = training_job(&a)?;
    let created = client.post("jobs", &job)?;
    if !a.stream_logs {
        print(&created, format.or_yaml(), |_| {})?;
        println!("Job [{}] submitted successfully.", a.job);
        return Ok(0);
    }
    println!("Job [{}] submitted successfully.", a.job);
    stream_logs(client, &a.job)
}

/// Creates the batch prediction job; returns its id and whether to stream its logs.
fn submit_prediction(c: &Client, a: SubmitPrediction) -> Result<(String, bool)> {
    let mut input = PredictionInput {
        data_format: match a.data_format {
            DataFormat::Text => WireFormat::Text,
            DataFormat::Json => WireFormat::Json,
        },
        input_paths: a.input_paths.iter().map(|p| absolute(p)).collect(),
        output_path: absolute(&a.output_path),
        region: a.region.unwrap_or_else(|| "local".into()),
        batch_size: Int64(a.batch_size.map_or(0, |b| b as i64)),
        runtime_version: a.runtime_version.unwrap_or_default(),
        ..PredictionInput::default()
    };
    match &a.version {
        Some(v) => {
            input.version_name = format!("projects/{}/models/{}/versions/{v}", c.project(), a.model)
        }
        None => input.model_name = format!("projects/{}/models/{}", c.project(), a.model),
    }
    let job = Job {
        job_id: a.job.clone(),
        prediction_input: Some(input),
        ..Job::default()
    };
    c.post("jobs", &job)?;
    eprintln!("Job [{}] submitted successfully.", a.job);
    Ok((a.job, a.stream_logs))
}

/// gcloud's stream-logs line: severity, timestamp, task (and trial), message.
fn print_entry(e: &Value) {
    let trial = e["trial"]
        .as_str()
        .map(|t| format!(" trial {t}"))
        .unwrap_or_default();
    println!(
        "{}\t{}\t{}{}\t{}",
        e["severity"].as_str().unwrap_or("INFO"),
        format_time(e["time"].as_f64().unwrap_or(0.0)),
        e["task"].as_str().unwrap_or(""),
        trial,
        e["message"].as_str().unwrap_or("")
    );
}

/// Prints the job's logs until it ends (every line once: the server's page tokens carry on
/// where the last page ended); the exit code is 0 only if it SUCCEEDED.
pub fn stream_logs(client: &Client, job: &str) -> Result<i32> {
    let mut token = String::new();
    let next_page = |token: &mut String| -> Result<usize> {
        let logs = client.get(&format!("jobs/{job}/logs?pageToken={token}"))?;
        let entries = logs["entries"].as_array().cloned().unwrap_or_default();
        entries.iter().for_each(print_entry);
        if let Some(t) = logs["nextPageToken"].as_str() {
            *token = t.to_string();
        }
        Ok(entries.len())
    };
    loop {
        let state = client.get(&format!("jobs/{job}"))?;
        while next_page(&mut token)? > 0 {}
        let s = state["state"].as_str().unwrap_or("");
        if matches!(s, "SUCCEEDED" | "FAILED" | "CANCELLED") {
            // Lines written just before the end.
            while next_page(&mut token)? > 0 {}
            let msg = state["errorMessage"].as_str().unwrap_or("");
            eprintln!(
                "state: {s}{}",
                if msg.is_empty() {
                    String::new()
                } else {
                    format!(" ({msg})")
                }
            );
            return Ok(if s == "SUCCEEDED" { 0 } else { 1 });
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn format_time(secs: f64) -> String {
    mle_api::rfc3339(secs)
}
