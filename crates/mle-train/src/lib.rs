//! Training for mle: `train_and_evaluate` over any [`mle_nn::Model`], checkpoints with exact
//! resume, TensorBoard event files, `cloudml-hypertune` metric reports and the export bundle.
//!
//! This crate is also the Rust SDK: a user writes a model (any burn code) implementing
//! [`mle_nn::Model`] and calls [`Trainer::run`] to get the same loop, checkpoints, metric
//! reporting and export as the built-in trainer (`mle train`). See `examples/custom-trainer`.
//!
//! ```no_run
//! use mle_train::{Trainer, TrainConfig};
//! # fn demo(model: mle_nn::Sequential, train: mle_data::Dataset, eval: mle_data::Dataset) -> Result<(), mle_train::TrainError> {
//! let cfg = TrainConfig { train_steps: Some(1000), job_dir: Some("out".into()), ..TrainConfig::default() };
//! let outcome = Trainer::new(model, cfg).run(&train, &eval)?;
//! println!("final step {}", outcome.step);
//! # Ok(()) }
//! ```

pub mod builtin;
pub mod checkpoint;
pub mod exchange;
mod trainer;

/// TensorBoard event files and the hypertune metric file live in `mle-metrics`.
pub use mle_metrics::{events, hypertune};

pub use exchange::{Exchange, Local, Partition, StartState};
pub use trainer::{Outcome, TrainConfig, Trainer, evaluate};

pub use rand::SeedableRng;
/// The seeded generator the initialisers take ([`mle_nn::init::fill`]).
pub use rand_chacha::ChaCha8Rng as SeedRng;

use std::path::{Path, PathBuf};

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Invalid configuration or flags.
    #[error("{0}")]
    Config(String),
    /// Data could not be read.
    #[error(transparent)]
    Data(#[from] mle_data::DataError),
    /// Model errors.
    #[error(transparent)]
    Nn(#[from] mle_nn::NnError),
    /// A checkpoint cannot be used.
    #[error("{0}")]
    Checkpoint(String),
    /// File system errors, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Training produced a non-finite loss.
    #[error("training diverged at step {step}: the loss is {loss} (try a smaller --learning-rate)")]
    Diverged {
        /// The step.
        step: u64,
        /// The loss value.
        loss: f32,
    },
}

impl TrainError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
