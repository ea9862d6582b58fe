//! `mle`: the command-line interface of the open ML Engine. It parses flags, turns them into the
//! library crates' configurations and maps errors to exit codes; the work lives in the libraries.

mod client;
mod cluster;
mod data_dir;
mod internal;
mod jobs;
mod local;
mod models;
mod runtimes;
mod sdist;
mod server;
mod train;

use clap::{Parser, Subcommand};

/// mle — an open ML Engine: train, tune and serve models locally or as a service.
#[derive(Parser)]
#[command(name = "mle", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the built-in trainer: a model spec plus CSV files (a CMLE-compatible trainer).
    Train(Box<train::TrainArgs>),
    /// Run trainers and predictions on this machine, as `gcloud ml-engine local` does.
    #[command(subcommand)]
    Local(local::LocalCommand),
    /// Run the job service: the ml/v1 REST API, a store and the job scheduler.
    Server(Box<server::ServerArgs>),
    /// Submit, inspect, follow and cancel jobs on an mle server.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Create, list, describe and delete models.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Create, list, describe, delete model versions and choose the default.
    Versions {
        #[command(subcommand)]
        command: models::VersionsCommand,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Online prediction with a deployed model version.
    Predict(Box<models::PredictArgs>),
    /// Internal: run a batch prediction job (started by the job's supervisor).
    #[command(hide = true)]
    ExecPredict(internal::ExecPredictArgs),
    /// Run one replica of a job inside a Slurm job step (started through srun by
    /// `mle server --backend slurm`; SLURM_PROCID picks the replica: 0 the primary, then
    /// workers, parameter servers and evaluators).
    Replica {
        /// The job's (or tuning trial's) run directory, shared by every node.
        run_dir: std::path::PathBuf,
    },
    /// Internal: supervise one job's replicas (started by the server).
    #[command(hide = true)]
    ExecSupervise {
        /// The job's run directory.
        run_dir: std::path::PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train::run(*args),
        Command::Local(cmd) => local::run(cmd),
        Command::Server(args) => server::server(*args),
        Command::Jobs { command, conn } => jobs::jobs(command, conn),
        Command::ExecSupervise { run_dir } => internal::supervise(run_dir),
        Command::Replica { run_dir } => internal::replica(run_dir),
        Command::Models { command, conn } => models::models(command, conn),
        Command::Versions { command, conn } => models::versions(command, conn),
        Command::Predict(args) => models::predict(*args),
        Command::ExecPredict(args) => internal::exec_predict(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}
