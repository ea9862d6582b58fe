//! `mle models ...`, `mle versions ...` and `mle predict`: the serving resources and online
//! prediction, over the REST client with `mle-api`'s types.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use mle_api::{Framework, Model, Version};
use serde_json::{Value, json};

use crate::client::{Client, Conn, absolute, print};

/// `mle models ...`.
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

/// `mle versions ...`.
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
/// `mle predict`'s flags.
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

/// `mle models ...`.
pub fn models(cmd: ModelsCommand, conn: Conn) -> Result<i32> {
    let c = Client::new(&conn)?;
    match cmd {
        ModelsCommand::Create {
            model,
            regions,
            description,
            enable_logging,
        } => {
            let body = Model {
                name: model.clone(),
                regions,
                description: description.unwrap_or_default(),
                online_prediction_logging: enable_logging,
                ..Model::default()
            };
            c.post("models", &body)?;
            eprintln!("Created ml engine model [{model}].");
        }
        ModelsCommand::List => {
            let v = c.get("models?pageSize=100")?;
            print(&v, conn.format, table_models)?;
        }
        ModelsCommand::Describe { model } => {
            let v = c.get(&format!("models/{model}"))?;
            print(&v, conn.format.or_yaml(), |_| {})?;
        }
        ModelsCommand::Delete { model } => {
            c.delete(&format!("models/{model}"))?;
            eprintln!("Deleted model [{model}].");
        }
    }
    Ok(0)
}

/// Waits for a version's creation to end (10 minutes at most).
fn wait_for_operation(c: &Client, version: &str, op: &Value) -> Result<()> {
    let name = op["name"].as_str().unwrap_or_default();
    let id = name.rsplit('/').next().unwrap_or_default().to_string();
    eprint!("Creating version (this might take a few minutes)...");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let op = c.get(&format!("operations/{id}"))?;
        if op["done"] == true {
            if let Some(e) = op["error"]["message"].as_str() {
                eprintln!("failed.");
                bail!("version {version} failed: {e}");
            }
            eprintln!("done.");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("version {version} is still being created (operation {id})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `mle versions ...`.
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
            let framework: Framework = match framework {
                None => Framework::default(),
                Some(f) => serde_json::from_value(json!(f.to_ascii_uppercase()))
                    .with_context(|| format!("--framework {f}: MLE or ONNX"))?,
            };
            let body = Version {
                name: version.clone(),
                deployment_uri: absolute(&origin),
                framework,
                runtime_version: runtime_version.unwrap_or_default(),
                python_version: python_version.unwrap_or_default(),
                description: description.unwrap_or_default(),
                ..Version::default()
            };
            let op = c.post(&format!("models/{model}/versions"), &body)?;
            if no_wait {
                print(&op, conn.format.or_yaml(), |_| {})?;
                return Ok(0);
            }
            wait_for_operation(&c, &version, &op)?;
        }
        VersionsCommand::List { model } => {
            let v = c.get(&format!("models/{model}/versions?pageSize=100"))?;
            print(&v, conn.format, table_versions)?;
        }
        VersionsCommand::Describe { version, model } => {
            let v = c.get(&format!("models/{model}/versions/{version}"))?;
            print(&v, conn.format.or_yaml(), |_| {})?;
        }
        VersionsCommand::Delete { version, model } => {
            c.delete(&format!("models/{model}/versions/{version}"))?;
            eprintln!("Deleted version [{version}].");
        }
        VersionsCommand::SetDefault { version, model } => {
            let v = c.post(
                &format!("models/{model}/versions/{version}:setDefault"),
                &json!({}),
            )?;
            print(&v, conn.format.or_yaml(), |_| {})?;
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

/// `mle predict`: online prediction with a deployed version.
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
    let resp = c.post(&path, &request)?;
    print(&resp, a.conn.format, |v| {
        for p in v["predictions"].as_array().cloned().unwrap_or_default() {
            println!("{p}");
        }
    })?;
    Ok(0)
}
