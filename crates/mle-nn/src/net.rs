//! The resolved network both engines run: its layers with concrete widths and the indices of
//! their parameters in the layout, the batch-norm moving statistics, the [`Engine`] choice,
//! and [`Net`], the borrowed view of a [`crate::Sequential`] that the native engine works on.

use crate::model::Batch;
use crate::spec::{Activation, Initializer, Loss};
use crate::{NnError, ParamLayout};

/// A resolved layer with concrete widths and the indices of its parameters in the layout.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// `act(x · kernel + bias)`.
    Dense {
        /// Input width.
        inputs: usize,
        /// Output width.
        units: usize,
        /// Activation.
        activation: Activation,
        /// Kernel initializer.
        init: Initializer,
        /// Layout index of the `[inputs, units]` kernel.
        kernel: usize,
        /// Layout index of the `[1, units]` bias, if any.
        bias: Option<usize>,
    },
    /// Inverted dropout.
    Dropout {
        /// Drop probability.
        rate: f32,
    },
    /// Batch normalisation with moving statistics.
    BatchNorm {
        /// Feature count.
        features: usize,
        /// Moving-average momentum.
        momentum: f32,
        /// Variance epsilon.
        epsilon: f32,
        /// Layout index of the `[1, features]` scale.
        gamma: usize,
        /// Layout index of the `[1, features]` offset.
        beta: usize,
        /// Index into the model's moving statistics.
        stats: usize,
    },
}

/// Moving mean and variance of one batch-norm layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MovingStats {
    /// Buffer name prefix, e.g. `batch_normalization_1`.
    pub name: String,
    /// Moving mean.
    pub mean: Vec<f32>,
    /// Moving variance.
    pub var: Vec<f32>,
}

/// Which code trains and evaluates a [`crate::Sequential`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Engine {
    /// Fused loops over buffers kept between steps (`crate::native`): the default.
    #[default]
    Native,
    /// burn's tensors and autodiff (the path custom models use), kept for comparison.
    Burn,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 2] = [Engine::Native, Engine::Burn];

    /// The name `--engine` takes.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Native => "native",
            Engine::Burn => "burn",
        }
    }

    /// The engine named `s`.
    pub fn parse(s: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == s)
    }
}

/// A network as the native engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Net<'a> {
    /// Model name (for errors).
    pub name: &'a str,
    /// The layers, input to output; the last is dense.
    pub layers: &'a [Layer],
    /// Training loss.
    pub loss: Loss,
    /// The parameters' layout.
    pub layout: &'a ParamLayout,
    /// Feature columns read.
    pub inputs: usize,
}

impl Net<'_> {
    /// The last (dense) layer's activation.
    pub fn last_activation(&self) -> Activation {
        match self.layers.last() {
            Some(Layer::Dense { activation, .. }) => *activation,
            _ => Activation::Linear,
        }
    }

    /// `params` must fill the layout and `batch` be as wide as the input (both engines' rule).
    pub fn check(&self, params: &[f32], batch: &Batch<'_>) -> Result<(), NnError> {
        if params.len() != self.layout.total() {
            return Err(NnError::Shape(format!(
                "model '{}' has {} parameters, got {}",
                self.name,
                self.layout.total(),
                params.len()
            )));
        }
        if batch.x.len() != batch.rows * self.inputs || batch.y.len() != batch.rows {
            return Err(NnError::Shape(format!(
                "batch of {} rows needs {} features and {} labels, got {} and {}",
                batch.rows,
                batch.rows * self.inputs,
                batch.rows,
                batch.x.len(),
                batch.y.len()
            )));
        }
        Ok(())
    }

    /// Each layer's output width.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = self.inputs;
        self.layers
            .iter()
            .map(|l| {
                if let Layer::Dense { units, .. } = l {
                    w = *units;
                }
                w
            })
            .collect()
    }
}
