//! `mle`: the command-line interface of the open ML Engine. It parses flags, turns them into the
//! library crates' configurations and maps errors to exit codes; the work lives in the libraries.

mod cluster;
mod local;
mod service;
mod serving;
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
    Server(service::ServerArgs),
    /// Submit, inspect, follow and cancel jobs on an mle server.
    Jobs {
        #[command(subcommand)]
        command: service::JobsCommand,
        #[command(flatten)]
        conn: service::Conn,
    },
    /// Create, list, describe and delete models.
    Models {
        #[command(subcommand)]
        command: serving::ModelsCommand,
        #[command(flatten)]
        conn: service::Conn,
    },
    /// Create, list, describe, delete model versions and choose the default.
    Versions {
        #[command(subcommand)]
        command: serving::VersionsCommand,
        #[command(flatten)]
        conn: service::Conn,
    },
    /// Online prediction with a deployed model version.
    Predict(Box<serving::PredictArgs>),
    /// Internal: run a batch prediction job (started by the job's supervisor).
    #[command(hide = true)]
    ExecPredict(serving::ExecPredictArgs),
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
        Command::Server(args) => service::server(args),
        Command::Jobs { command, conn } => service::jobs(command, conn),
        Command::ExecSupervise { run_dir } => service::supervise(run_dir),
        Command::Replica { run_dir } => service::replica(run_dir),
        Command::Models { command, conn } => serving::models(command, conn),
        Command::Versions { command, conn } => serving::versions(command, conn),
        Command::Predict(args) => serving::predict(*args),
        Command::ExecPredict(args) => serving::exec_predict(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}
