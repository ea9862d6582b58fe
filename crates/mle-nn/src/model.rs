//! The [`Model`] trait: what a trainer needs from a model. [`crate::Sequential`] implements it;
//! so can any user model written with burn (see the `custom-trainer` example).

use crate::{NnError, ParamLayout};

/// What the model predicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// One real output.
    Regression,
    /// One probability per class (a single sigmoid output for two classes is allowed).
    Classification {
        /// Class names, index order.
        classes: Vec<String>,
    },
}

/// A batch of rows: row-major features and one label per row.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// `rows × width` features.
    pub x: &'a [f32],
    /// `rows` labels (targets or class indices).
    pub y: &'a [f32],
    /// Row count.
    pub rows: usize,
}

/// A trainable model whose parameters live in one flat `f32` vector described by
/// [`Model::layout`]. Keeping parameters outside the model makes optimizers, checkpoints and
/// gradient exchange between replicas independent of the model's structure.
pub trait Model {
    /// Names and shapes of the trainable parameters, in flat order.
    fn layout(&self) -> &ParamLayout;

    /// Freshly initialised parameters; the same seed gives the same vector.
    fn init_params(&self, seed: u64) -> Vec<f32>;

    /// What the outputs mean.
    fn task(&self) -> Task;

    /// Number of feature columns the model reads.
    fn input_width(&self) -> usize;

    /// Output values per row.
    fn output_width(&self) -> usize;

    /// Forward and backward pass on one training batch: writes d(mean loss)/d(params) into
    /// `grads` and returns the mean loss. `step` seeds any randomness (dropout), so a resumed
    /// run replays the same masks.
    fn loss_and_grad(
        &mut self,
        params: &[f32],
        batch: Batch<'_>,
        step: u64,
        grads: &mut [f32],
    ) -> Result<f32, NnError>;

    /// Inference on a labelled batch: the mean loss and the outputs (`rows × output_width`).
    fn evaluate(&self, params: &[f32], batch: Batch<'_>) -> Result<(f32, Vec<f32>), NnError>;

    /// Non-trainable state (batch-norm moving statistics), by name.
    fn buffers(&self) -> Vec<(String, Vec<f32>)> {
        Vec::new()
    }

    /// Restores one buffer written by [`Model::buffers`].
    fn set_buffer(&mut self, name: &str, _values: &[f32]) -> Result<(), NnError> {
        Err(NnError::Checkpoint(format!(
            "the model has no buffer '{name}'"
        )))
    }
}
