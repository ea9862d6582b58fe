//! `mle models ...`, `mle versions ...`, `mle predict`, `mle jobs submit prediction` and the
//! hidden `mle exec-predict` (the process a batch prediction job runs).

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::service::{Client, Conn, Format, print};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Create a model (a container for versions).
    Create {
        /// Model name: a letter, then letters, digits and underscores.
        model: String,
        /// Regions (informational).
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Log online predictions (informational).
        #[arg(long)]
        enable_logging: bool,
    },
    /// List models.
    List,
    /// Show a model with its default version.
    Describe {
        /// Model name.
        model: String,
    },
    /// Delete a model (only once it has no versions).
    Delete {
        /// Model name.
        model: String,
    },
}

#[derive(Subcommand)]
pub enum VersionsCommand {
    /// Create a version from exported model files; waits until it is READY (or FAILED).
    Create {
        /// Version name: a letter, then letters, digits and underscores.
        version: String,
        /// The model.
        #[arg(long)]
        model: String,
        /// Model directory: an mle export (or an export root: its newest export is used) or a
        /// directory holding one .onnx file. The files are copied.
        #[arg(long)]
        origin: String,
        /// MLE, ONNX, or leave unset to detect.
        #[arg(long)]
        framework: Option<String>,
        /// Runtime version (informational).
        #[arg(long)]
        runtime_version: Option<String>,
        /// Python version (informational).
        #[arg(long)]
        python_version: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Return at once with the operation instead of waiting.
        #[arg(long = "async")]
        no_wait: bool,
    },
    /// List a model's versions.
    List {
        /// The model.
        #[arg(long)]
        model: String,
    },
    /// Show a version.
    Describe {
        /// Version name.
        version: String,
        /// The model.
        #[arg(long)]
        model: String,
    },
    /// Delete a version (not the default while others remain).
    Delete {
        /// Version name.
        version: String,
        /// The model.
        #[arg(long)]
        model: String,
    },
    /// Make a version the model's default.
    SetDefault {
        /// Version name.
        version: String,
        /// The model.
        #[arg(long)]
        model: String,
    },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["json_instances", "text_instances", "json_request"])))]
pub struct PredictArgs {
    /// The model.
    #[arg(long)]
    model: String,
    /// The version [default: the model's default version].
    #[arg(long)]
    version: Option<String>,
    /// A file of JSON instances, one per line (`-` for stdin).
    #[arg(long)]
    json_instances: Option<PathBuf>,
    /// A file of text instances (CSV lines), one per line (`-` for stdin).
    #[arg(long)]
    text_instances: Option<PathBuf>,
    /// A file holding a whole request, `{"instances": [...]}` (`-` for stdin).
    #[arg(long)]
    json_request: Option<PathBuf>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    /// One CSV line per instance.
    Text,
    /// One JSON instance per line.
    Json,
}

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

fn absolute(p: &str) -> String {
    if p.contains("://") {
        return p.to_string();
    }
    std::path::absolute(p)
        .map(|x| x.display().to_string())
        .unwrap_or_else(|_| p.to_string())
}

fn table_models(v: &Value) {
    println!("{:<24} {:<16}", "NAME", "DEFAULT_VERSION_NAME");
    for m in v["models"].as_array().cloned().unwrap_or_default() {
        let name = m["name"]
            .as_str()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("");
        let default = m["defaultVersion"]["name"]
            .as_str()
            .and_then(|n| n.rsplit('/').next())
            .unwrap_or("");
        println!("{name:<24} {default:<16}");
    }
}

fn table_versions(v: &Value) {
    println!(
        "{:<16} {:<50} {:<10} {:<8}",
        "NAME", "DEPLOYMENT_URI", "STATE", "DEFAULT"
    );
    for x in v["versions"].as_array().cloned().unwrap_or_default() {
        println!(
            "{:<16} {:<50} {:<10} {:<8}",
            x["name"]
                .as_str()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or(""),
            x["deploymentUri"].as_str().unwrap_or(""),
            x["state"].as_str().unwrap_or(""),
            if x["isDefault"] == true { "yes" } else { "" }
        );
    }
}

fn yaml_default(format: Format) -> Format {
    if format == Format::Table {
        Format::Yaml
    } else {
        format
    }
}

pub fn models(cmd: ModelsCommand, conn: Conn) -> Result<i32> {
    let c = Client::new(&conn)?;
    match cmd {
        ModelsCommand::Create {
            model,
            regions,
            description,
            enable_logging,
        } => {
            let body = json!({"name": model, "regions": regions, "description": description.unwrap_or_default(),
                              "onlinePredictionLogging": enable_logging});
            c.call("POST", "models", Some(&body))?;
            eprintln!("Created ml engine model [{model}].");
        }
        ModelsCommand::List => {
            let v = c.call("GET", "models?pageSize=100", None)?;
            print(&v, conn.format, table_models)?;
        }
        ModelsCommand::Describe { model } => {
            let v = c.call("GET", &format!("models/{model}"), None)?;
            print(&v, yaml_default(conn.format), |_| {})?;
        }
        ModelsCommand::Delete { model } => {
            c.call("DELETE", &format!("models/{model}"), None)?;
            eprintln!("Deleted model [{model}].");
        }
    }
    Ok(0)
}

pub fn versions(cmd: VersionsCommand, conn: Conn) -> Result<i32> {
    let c = Client::new(&conn)?;
    match cmd {
        VersionsCommand::Create {
            version,
            model,
            origin,
            framework,
            runtime_version,
            python_version,
            description,
            no_wait,
        } => {
            let mut body = json!({"name": version, "deploymentUri": absolute(&origin)});
            for (k, v) in [
                ("framework", framework.map(|f| f.to_ascii_uppercase())),
                ("runtimeVersion", runtime_version),
                ("pythonVersion", python_version),
                ("description", description),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            let op = c.call("POST", &format!("models/{model}/versions"), Some(&body))?;
            if no_wait {
                print(&op, yaml_default(conn.format), |_| {})?;
                return Ok(0);
            }
            let name = op["name"].as_str().unwrap_or_default();
            let id = name.rsplit('/').next().unwrap_or_default().to_string();
            eprint!("Creating version (this might take a few minutes)...");
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                let op = c.call("GET", &format!("operations/{id}"), None)?;
                if op["done"] == true {
                    if let Some(e) = op["error"]["message"].as_str() {
                        eprintln!("failed.");
                        bail!("version {version} failed: {e}");
                    }
                    eprintln!("done.");
                    break;
                }
                if Instant::now() > deadline {
                    bail!("version {version} is still being created (operation {id})");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        VersionsCommand::List { model } => {
            let v = c.call(
                "GET",
                &format!("models/{model}/versions?pageSize=100"),
                None,
            )?;
            print(&v, conn.format, table_versions)?;
        }
        VersionsCommand::Describe { version, model } => {
            let v = c.call("GET", &format!("models/{model}/versions/{version}"), None)?;
            print(&v, yaml_default(conn.format), |_| {})?;
        }
        VersionsCommand::Delete { version, model } => {
            c.call(
                "DELETE",
                &format!("models/{model}/versions/{version}"),
                None,
            )?;
            eprintln!("Deleted version [{version}].");
        }
        VersionsCommand::SetDefault { version, model } => {
            let v = c.call(
                "POST",
                &format!("models/{model}/versions/{version}:setDefault"),
                Some(&json!({})),
            )?;
            print(&v, yaml_default(conn.format), |_| {})?;
        }
    }
    Ok(0)
}

fn read_input(path: &PathBuf) -> Result<String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(text)
}

pub fn predict(a: PredictArgs) -> Result<i32> {
    let c = Client::new(&a.conn)?;
    let request = if let Some(p) = &a.json_request {
        let v: Value = serde_json::from_str(&read_input(p)?)
            .with_context(|| format!("{}: not valid JSON", p.display()))?;
        if v.get("instances").is_none() {
            bail!("{}: a request is {{\"instances\": [...]}}", p.display());
        }
        v
    } else if let Some(p) = &a.json_instances {
        let text = read_input(p)?;
        let mut instances = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            instances.push(
                serde_json::from_str::<Value>(line)
                    .with_context(|| format!("{}:{}: not valid JSON", p.display(), i + 1))?,
            );
        }
        json!({"instances": instances})
    } else if let Some(p) = &a.text_instances {
        let text = read_input(p)?;
        let instances: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| json!(l))
            .collect();
        json!({"instances": instances})
    } else {
        unreachable!("clap requires one input")
    };
    if request["instances"].as_array().is_none_or(Vec::is_empty) {
        bail!("no instances to predict");
    }
    let path = match &a.version {
        Some(v) => format!("models/{}/versions/{v}:predict", a.model),
        None => format!("models/{}:predict", a.model),
    };
    let resp = c.call("POST", &path, Some(&request))?;
    print(&resp, a.conn.format, |v| {
        for p in v["predictions"].as_array().cloned().unwrap_or_default() {
            println!("{p}");
        }
    })?;
    Ok(0)
}

/// Creates the job; returns its id and whether to stream its logs.
pub fn submit_prediction(c: &Client, a: SubmitPrediction) -> Result<(String, bool)> {
    let mut input = json!({
        "dataFormat": match a.data_format { DataFormat::Text => "TEXT", DataFormat::Json => "JSON" },
        "inputPaths": a.input_paths.iter().map(|p| absolute(p)).collect::<Vec<_>>(),
        "outputPath": absolute(&a.output_path),
        "region": a.region.unwrap_or_else(|| "local".into()),
    });
    match &a.version {
        Some(v) => {
            input["versionName"] = json!(format!(
                "projects/{}/models/{}/versions/{v}",
                c.project(),
                a.model
            ))
        }
        None => input["modelName"] = json!(format!("projects/{}/models/{}", c.project(), a.model)),
    }
    if let Some(b) = a.batch_size {
        input["batchSize"] = json!(b.to_string());
    }
    if let Some(r) = a.runtime_version {
        input["runtimeVersion"] = json!(r);
    }
    c.call(
        "POST",
        "jobs",
        Some(&json!({"jobId": a.job, "predictionInput": input})),
    )?;
    eprintln!("Job [{}] submitted successfully.", a.job);
    Ok((a.job, a.stream_logs))
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
