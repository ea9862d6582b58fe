//! `mle server`, `mle exec-supervise` and `mle jobs ...`: the job service and its client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

/// Default data directory: `$MLE_DATA_DIR`, else `~/.mle`.
fn default_data_dir() -> PathBuf {
    std::env::var_os("MLE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".mle")
        })
}

#[derive(Args)]
pub struct ServerArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Database, runs, logs and the token file [default: $MLE_DATA_DIR or ~/.mle].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL URL instead of the SQLite file in the data dir.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Replica slots: jobs wait in the queue rather than run more replicas than this at once.
    #[arg(long, default_value = "16")]
    slots: usize,
    /// Refuse job dirs and packages outside this directory (symlinks and `..` resolved first).
    #[arg(long, value_name = "DIR")]
    allow_root: Option<PathBuf>,
    /// Where jobs run: `local` (supervised processes on this machine) or `slurm` (one Slurm
    /// job per training job, tuning trial or batch prediction job, through sbatch/srun;
    /// SLURM_CONF and PATH select the cluster, and the data dir must be on a file system every
    /// node shares).
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    backend: BackendKind,
    /// Slurm partition for the jobs (default: the cluster's default partition).
    #[arg(long, value_name = "NAME")]
    slurm_partition: Option<String>,
    /// An extra sbatch argument, passed verbatim (repeatable), e.g. `--slurm-sbatch-arg=--account=ml`.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    slurm_sbatch_arg: Vec<String>,
}

/// `mle server --backend`.
#[derive(Clone, Copy, ValueEnum)]
enum BackendKind {
    /// Supervised processes on this machine.
    Local,
    /// Slurm jobs.
    Slurm,
}

pub fn server(a: ServerArgs) -> Result<i32> {
    let data_dir = a.data_dir.unwrap_or_else(default_data_dir);
    let mle_exe = std::env::current_exe().context("locating the mle binary")?;
    let backend = match a.backend {
        BackendKind::Local => mle_exec::Backend::Local {
            mle_exe: mle_exe.clone(),
        },
        BackendKind::Slurm => {
            // Fail at start-up, not at the first job, when the cluster cannot be reached.
            let out = std::process::Command::new("sinfo")
                .args(["-h", "-o", "%P"])
                .output()
                .context("--backend slurm: cannot run sinfo (is Slurm installed and on PATH?)")?;
            if !out.status.success() {
                bail!(
                    "--backend slurm: the Slurm controller does not answer (is SLURM_CONF right?): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            mle_exec::Backend::Slurm(mle_exec::Slurm::new(
                mle_exe.clone(),
                a.slurm_partition.clone(),
                a.slurm_sbatch_arg.clone(),
            ))
        }
    };
    let cfg = mle_server::Config {
        data_dir: data_dir.clone(),
        slots: a.slots.max(1),
        mle_exe,
        backend,
        python: std::env::var("MLE_PYTHON").unwrap_or_else(|_| "python3".into()),
        allow_root: match a.allow_root {
            Some(r) => Some(
                r.canonicalize()
                    .with_context(|| format!("--allow-root {}", r.display()))?,
            ),
            None => None,
        },
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(mle_server::run(&a.listen, cfg, a.database.as_deref()))
        .context("server failed")?;
    Ok(0)
}

/// `mle exec-supervise RUN_DIR` (started by the server, not by users).
pub fn supervise(run_dir: PathBuf) -> Result<i32> {
    let o = mle_exec::supervise(&mle_exec::RunDir(run_dir)).context("supervising the job")?;
    Ok(if o.state == "SUCCEEDED" { 0 } else { 1 })
}

/// `mle replica RUN_DIR` (run by srun in every task of a Slurm job).
pub fn replica(run_dir: PathBuf) -> Result<i32> {
    mle_exec::replica(&mle_exec::RunDir(run_dir)).context("running the replica")
}

/// How to reach the server.
#[derive(Args, Clone)]
pub struct Conn {
    /// Server URL.
    #[arg(
        long,
        env = "MLE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Bearer token [default: the token file in $MLE_DATA_DIR or ~/.mle].
    #[arg(long, env = "MLE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Project.
    #[arg(long, env = "MLE_PROJECT", default_value = "default", global = true)]
    project: String,
    /// Output format of read commands.
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub(crate) format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

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

#[derive(Subcommand)]
pub enum Submit {
    /// Submit a training job (gcloud's flags).
    Training(Box<SubmitTraining>),
    /// Submit a batch prediction job: predict every line of the input files with a model.
    Prediction(Box<crate::serving::SubmitPrediction>),
}

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
    /// Extra package tarballs (comma-separated).
    #[arg(long, value_delimiter = ',')]
    packages: Vec<String>,
    /// Region (informational).
    #[arg(long)]
    region: Option<String>,
    /// Runtime version (informational).
    #[arg(long)]
    runtime_version: Option<String>,
    /// Python version (informational; trainers run with the server's Python).
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

pub(crate) struct Client {
    base: String,
    token: String,
    project: String,
}

impl Client {
    pub(crate) fn new(c: &Conn) -> Result<Self> {
        let token = match &c.token {
            Some(t) => t.clone(),
            None => {
                let path = default_data_dir().join("token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no --token or MLE_TOKEN, and cannot read {}",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(Self {
            base: c.server.trim_end_matches('/').to_string(),
            token,
            project: c.project.clone(),
        })
    }

    pub(crate) fn project(&self) -> &str {
        &self.project
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/projects/{}/{path}", self.base, self.project)
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let req = ureq::request(method, &self.url(path))
            .set("Authorization", &format!("Bearer {}", self.token))
            .timeout(Duration::from_secs(60));
        let resp = match body {
            Some(b) => req.send_json(b.clone()),
            None => req.call(),
        };
        match resp {
            Ok(r) => Ok(r.into_json().context("reading the server's answer")?),
            Err(ureq::Error::Status(code, r)) => {
                let v: Value = r.into_json().unwrap_or(Value::Null);
                // The Google envelope, or prediction's `{"error": "..."}`.
                let msg = v["error"]["message"]
                    .as_str()
                    .or(v["error"].as_str())
                    .unwrap_or("no message")
                    .to_string();
                bail!("the server refused ({code}): {msg}")
            }
            Err(ureq::Error::Transport(t)) => bail!(
                "cannot reach the mle server at {}: {t}\nstart one with `mle server --data-dir DIR`, or point --server/MLE_SERVER at it",
                self.base
            ),
        }
    }
}

pub(crate) fn print(v: &Value, format: Format, table: impl FnOnce(&Value)) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(v)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(v)?),
        Format::Table => table(v),
    }
    Ok(())
}

pub fn jobs(cmd: JobsCommand, conn: Conn) -> Result<i32> {
    let client = Client::new(&conn)?;
    match cmd {
        JobsCommand::Submit(Submit::Training(a)) => submit(&client, *a, conn.format),
        JobsCommand::Submit(Submit::Prediction(a)) => {
            let created = crate::serving::submit_prediction(&client, *a)?;
            if created.1 {
                return stream_logs(&client, &created.0);
            }
            Ok(0)
        }
        JobsCommand::Describe { job, summarize } => {
            let v = client.call("GET", &format!("jobs/{job}"), None)?;
            if summarize && conn.format == Format::Table {
                summary(&v);
            } else {
                print(
                    &v,
                    if conn.format == Format::Table {
                        Format::Yaml
                    } else {
                        conn.format
                    },
                    |_| {},
                )?;
            }
            Ok(0)
        }
        JobsCommand::List { filter, limit } => {
            let mut jobs = Vec::new();
            let mut token = String::new();
            loop {
                let mut q = format!("jobs?pageSize=100&pageToken={token}");
                if let Some(f) = &filter {
                    q += &format!("&filter={}", f.replace(' ', "%20").replace('*', "%2A"));
                }
                let v = client.call("GET", &q, None)?;
                jobs.extend(v["jobs"].as_array().cloned().unwrap_or_default());
                match v["nextPageToken"].as_str() {
                    Some(t) if limit.is_none_or(|l| jobs.len() < l) => token = t.to_string(),
                    _ => break,
                }
            }
            if let Some(l) = limit {
                jobs.truncate(l);
            }
            print(&Value::Array(jobs.clone()), conn.format, |_| {
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
        JobsCommand::StreamLogs { job } => stream_logs(&client, &job),
        JobsCommand::Cancel { job } => {
            client.call("POST", &format!("jobs/{job}:cancel"), Some(&json!({})))?;
            println!("cancel requested for {job}");
            Ok(0)
        }
    }
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

/// Builds the trainer package into an sdist like gcloud: the package's parent with its own
/// setup.py, or a generated minimal one.
fn build_sdist(package: &Path, staging: &Path) -> Result<PathBuf> {
    let package = package
        .canonicalize()
        .with_context(|| format!("--package-path {}", package.display()))?;
    anyhow::ensure!(
        package.is_dir(),
        "--package-path {}: not a directory",
        package.display()
    );
    let parent = package
        .parent()
        .context("the package has no parent directory")?;
    let name = package
        .file_name()
        .and_then(|n| n.to_str())
        .context("package name")?
        .to_string();
    let work = tempfile::tempdir().context("temporary build directory")?;
    let src = work.path().join("src");
    std::fs::create_dir_all(&src)?;
    copy_dir(&package, &src.join(&name))?;
    let setup = parent.join("setup.py");
    if setup.is_file() {
        std::fs::copy(&setup, src.join("setup.py"))?;
    } else {
        std::fs::write(
            src.join("setup.py"),
            format!(
                "from setuptools import find_packages, setup\n\nsetup(name={name:?}, version='0.1', packages=find_packages())\n"
            ),
        )?;
    }
    std::fs::create_dir_all(staging)?;
    let python = std::env::var("MLE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["setup.py", "-q", "sdist", "--formats=gztar", "--dist-dir"])
        .arg(staging)
        .current_dir(&src)
        .output()
        .with_context(|| format!("running {python} setup.py sdist"))?;
    anyhow::ensure!(
        out.status.success(),
        "building the sdist failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut built: Vec<PathBuf> = std::fs::read_dir(staging)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    built.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    built.pop().context("setup.py sdist produced no tarball")
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)?.flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "__pycache__" {
            continue;
        }
        if p.is_dir() {
            copy_dir(&p, &to.join(&name))?
        } else {
            std::fs::copy(&p, to.join(&name)).map(|_| ())?
        }
    }
    Ok(())
}

fn submit(client: &Client, a: SubmitTraining, format: Format) -> Result<i32> {
    let mut job: Value = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --config {}", path.display()))?;
            let v: Value = serde_yaml::from_str(&text)
                .with_context(|| format!("--config {}: not valid YAML or JSON", path.display()))?;
            if v.get("trainingInput").is_some() {
                v
            } else {
                json!({"trainingInput": v})
            }
        }
        None => json!({"trainingInput": {}}),
    };
    job["jobId"] = json!(a.job);
    let t = &mut job["trainingInput"];
    let mut set = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            t[k] = json!(v);
        }
    };
    set("scaleTier", a.scale_tier.clone());
    set(
        "jobDir",
        a.job_dir.clone().map(|d| {
            std::path::absolute(&d)
                .map(|p| p.display().to_string())
                .unwrap_or(d)
        }),
    );
    set("region", a.region.clone());
    set("runtimeVersion", a.runtime_version.clone());
    set("pythonVersion", a.python_version.clone());
    set("pythonModule", a.module_name.clone());
    if t.get("region").is_none_or(Value::is_null) {
        t["region"] = json!("local");
    }
    if !a.args.is_empty() {
        t["args"] = json!(a.args);
    }
    let mut packages: Vec<String> = a
        .packages
        .iter()
        .map(|p| {
            std::path::absolute(p)
                .map(|x| x.display().to_string())
                .unwrap_or(p.clone())
        })
        .collect();
    if let Some(pkg) = &a.package_path {
        let staging = match &a.job_dir {
            Some(d) => PathBuf::from(d).join("packages"),
            None => default_data_dir().join("staging").join(&a.job),
        };
        let sdist = build_sdist(pkg, &staging)?;
        packages.insert(0, std::path::absolute(&sdist)?.display().to_string());
    }
    if !packages.is_empty() {
        t["packageUris"] = json!(packages);
    }
    if a.builtin {
        t["masterConfig"]["containerCommand"] = json!(["mle", "train"]);
    }
    let created = client.call("POST", "jobs", Some(&job))?;
    if !a.stream_logs {
        print(
            &created,
            if format == Format::Table {
                Format::Yaml
            } else {
                format
            },
            |_| {},
        )?;
        println!("Job [{}] submitted successfully.", a.job);
        return Ok(0);
    }
    println!("Job [{}] submitted successfully.", a.job);
    stream_logs(client, &a.job)
}

/// gcloud's stream-logs lines: severity, timestamp, task (and trial), message.
pub(crate) fn stream_logs(client: &Client, job: &str) -> Result<i32> {
    let mut seen = 0usize;
    loop {
        let state = client.call("GET", &format!("jobs/{job}"), None)?;
        let logs = client.call("GET", &format!("jobs/{job}/logs?skip={seen}"), None)?;
        for e in logs["entries"].as_array().cloned().unwrap_or_default() {
            seen += 1;
            let secs = e["time"].as_f64().unwrap_or(0.0);
            let trial = e["trial"]
                .as_str()
                .map(|t| format!(" trial {t}"))
                .unwrap_or_default();
            println!(
                "{}\t{}\t{}{}\t{}",
                e["severity"].as_str().unwrap_or("INFO"),
                format_time(secs),
                e["task"].as_str().unwrap_or(""),
                trial,
                e["message"].as_str().unwrap_or("")
            );
        }
        let s = state["state"].as_str().unwrap_or("");
        if matches!(s, "SUCCEEDED" | "FAILED" | "CANCELLED") {
            // One more read: lines written just before the end.
            let logs = client.call("GET", &format!("jobs/{job}/logs?skip={seen}"), None)?;
            for e in logs["entries"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{}\t{}\t{}\t{}",
                    e["severity"].as_str().unwrap_or("INFO"),
                    format_time(e["time"].as_f64().unwrap_or(0.0)),
                    e["task"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                );
            }
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
