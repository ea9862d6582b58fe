//! `mle`: the command-line interface of the open ML Engine. It parses flags, turns them into the
//! library crates' configurations and maps errors to exit codes; the work lives in the libraries.

mod cluster;
mod local;
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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train::run(*args),
        Command::Local(cmd) => local::run(cmd),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}
