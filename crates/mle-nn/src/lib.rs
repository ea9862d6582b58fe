//! Keras-like neural networks for mle on burn 0.22: model specs, a [`Sequential`] layer stack,
//! losses, optimizers, metrics, and the export bundle (`mle_model.json`, `weights.safetensors`,
//! `model.onnx`).
//!
//! Parameters live in one flat `f32` vector described by a [`ParamLayout`]; a [`Model`] reads
//! them for the forward pass and returns gradients in the same layout. A [`Sequential`] runs
//! on the native CPU engine by default (fused loops over buffers kept between steps) or on
//! burn (tensors and autodiff: [`Engine`]). That
//! keeps [`Optimizer`], checkpoints and (later) gradient exchange between replicas independent
//! of the layer structure.
//!
//! ```
//! use mle_nn::{Activation, Batch, Loss, Model, Optimizer, OptimizerKind, OptimizerSpec, Sequential};
//! let mut model = Sequential::builder("line", 1).dense(1, Activation::Linear).regression(Loss::Mse)?;
//! let mut params = model.init_params(0);
//! let spec = OptimizerSpec::new(OptimizerKind::Sgd, 0.1);
//! let mut opt = Optimizer::new(spec, params.len());
//! let mut grads = vec![0.0; params.len()];
//! let (x, y) = ([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]); // y = 2x + 1
//! for step in 0..500 {
//!     model.loss_and_grad(&params, Batch { x: &x, y: &y, rows: 3 }, step, &mut grads)?;
//!     opt.step(&mut params, &grads, 0.1);
//! }
//! assert!((params[0] - 2.0).abs() < 1e-3 && (params[1] - 1.0).abs() < 1e-3);
//! # Ok::<(), mle_nn::NnError>(())
//! ```

mod dense;
pub mod export;
pub mod init;
mod layout;
pub mod metrics;
mod model;
mod native;
mod net;
pub mod onnx;
mod optim;
pub mod params;
mod sequential;
pub mod spec;
pub mod tensorfile;

/// burn itself, so that SDK users write their models against the exact version mle uses.
pub use burn;
pub use layout::{ParamInfo, ParamLayout};
pub use model::{Batch, Model, Task};
pub use net::{Engine, Layer, MovingStats};
pub use optim::Optimizer;
pub use sequential::{Sequential, SequentialBuilder, activate};
pub use spec::{
    Activation, Initializer, LayerSpec, Loss, Metric, ModelSpec, OptimizerKind, OptimizerSpec,
    Overrides,
};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// The model spec is invalid.
    #[error("{0}")]
    Spec(String),
    /// Tensors or batches do not have the expected shapes.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A checkpoint or weights file cannot be used.
    #[error("{0}")]
    Checkpoint(String),
    /// An export bundle cannot be written or read.
    #[error("{0}")]
    Export(String),
    /// File system error with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}
