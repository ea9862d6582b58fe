//! [`Sequential`]: a Keras-like layer stack resolved from a [`ModelSpec`] (or built in Rust),
//! trained and evaluated by its [`Engine`]: the native engine (`crate::native`, the default) or
//! burn with autodiff (this file's forward pass and losses).

use burn::tensor::{Device, Tensor, TensorData, activation};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::{Batch, Model, Task};
use crate::native::{self, Workspace};
use crate::net::{Engine, Layer, MovingStats, Net};
use crate::spec::{Activation, Initializer, LayerSpec, Loss, ModelSpec};
use crate::{NnError, ParamLayout, init};

/// A sequential model: layers, loss and task, with parameters kept outside (see [`Model`]).
#[derive(Debug, Clone)]
pub struct Sequential {
    /// Model name.
    pub name: String,
    /// The layers, input to output.
    pub layers: Vec<Layer>,
    /// Training loss.
    pub loss: Loss,
    task: Task,
    inputs: usize,
    outputs: usize,
    layout: ParamLayout,
    /// Batch-norm moving statistics.
    pub stats: Vec<MovingStats>,
    device: Device,
    train_device: Device,
    engine: Engine,
    workspace: Workspace,
}

/// Incremental construction of a [`Sequential`] in Rust.
///
/// ```
/// use mle_nn::{Sequential, Activation, Loss};
/// let model = Sequential::builder("abalone", 7)
///     .dense(10, Activation::Relu)
///     .dense(10, Activation::Relu)
///     .dense(1, Activation::Linear)
///     .regression(Loss::Mse)
///     .unwrap();
/// assert_eq!(mle_nn::Model::layout(&model).total(), 7 * 10 + 10 + 10 * 10 + 10 + 10 + 1);
/// ```
pub struct SequentialBuilder {
    name: String,
    inputs: usize,
    layers: Vec<LayerSpec>,
}

impl SequentialBuilder {
    /// Adds a Dense layer with bias and Glorot-uniform kernel.
    pub fn dense(mut self, units: usize, activation: Activation) -> Self {
        self.layers.push(LayerSpec::Dense {
            units,
            activation,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
        });
        self
    }

    /// Adds any layer.
    pub fn layer(mut self, layer: LayerSpec) -> Self {
        self.layers.push(layer);
        self
    }

    /// Finishes a regression model.
    pub fn regression(self, loss: Loss) -> Result<Sequential, NnError> {
        Sequential::new(
            &self.name,
            self.inputs,
            &self.layers,
            loss,
            Task::Regression,
        )
    }

    /// Finishes a classification model.
    pub fn classification(self, loss: Loss, classes: &[&str]) -> Result<Sequential, NnError> {
        let classes = classes.iter().map(|c| c.to_string()).collect();
        Sequential::new(
            &self.name,
            self.inputs,
            &self.layers,
            loss,
            Task::Classification { classes },
        )
    }
}

fn dnn_sizes(first: usize, num: usize, scale: f64) -> Vec<usize> {
    // The book's model.py: max(2, int(first_layer_size * scale_factor**i)).
    (0..num)
        .map(|i| ((first as f64 * scale.powi(i as i32)) as usize).max(2))
        .collect()
}

impl Sequential {
    /// Starts a builder for a model reading `inputs` features.
    pub fn builder(name: &str, inputs: usize) -> SequentialBuilder {
        SequentialBuilder {
            name: name.into(),
            inputs,
            layers: Vec::new(),
        }
    }

    /// Resolves a spec (after overrides) for its feature columns.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, NnError> {
        let task = if spec.is_classification() {
            Task::Classification {
                classes: spec.data.classes.clone(),
            }
        } else {
            Task::Regression
        };
        Self::new(
            &spec.name,
            spec.data.features.len(),
            &spec.layers,
            spec.loss,
            task,
        )
    }

    /// Resolves layer specs into concrete layers and a parameter layout.
    pub fn new(
        name: &str,
        inputs: usize,
        specs: &[LayerSpec],
        loss: Loss,
        task: Task,
    ) -> Result<Self, NnError> {
        let mut layout = ParamLayout::default();
        let mut layers = Vec::new();
        let mut stats = Vec::new();
        let mut width = inputs;
        let (mut n_dense, mut n_bn) = (0, 0);
        let mut push_dense = |layers: &mut Vec<Layer>,
                              layout: &mut ParamLayout,
                              width: &mut usize,
                              units: usize,
                              activation: Activation,
                              use_bias: bool,
                              init: Initializer| {
            let prefix = if n_dense == 0 {
                "dense".to_string()
            } else {
                format!("dense_{n_dense}")
            };
            n_dense += 1;
            let kernel = layout.push(format!("{prefix}.kernel"), &[*width, units]);
            let bias = use_bias.then(|| layout.push(format!("{prefix}.bias"), &[1, units]));
            layers.push(Layer::Dense {
                inputs: *width,
                units,
                activation,
                init,
                kernel,
                bias,
            });
            *width = units;
        };
        for spec in specs {
            match *spec {
                LayerSpec::Dense {
                    units,
                    activation,
                    use_bias,
                    kernel_initializer,
                } => push_dense(
                    &mut layers,
                    &mut layout,
                    &mut width,
                    units,
                    activation,
                    use_bias,
                    kernel_initializer,
                ),
                LayerSpec::Dnn {
                    first_layer_size,
                    num_layers,
                    scale_factor,
                    activation,
                    kernel_initializer,
                } => {
                    for units in dnn_sizes(first_layer_size, num_layers, scale_factor) {
                        push_dense(
                            &mut layers,
                            &mut layout,
                            &mut width,
                            units,
                            activation,
                            true,
                            kernel_initializer,
                        );
                    }
                }
                LayerSpec::Dropout { rate } => layers.push(Layer::Dropout { rate }),
                LayerSpec::BatchNormalization { momentum, epsilon } => {
                    let prefix = if n_bn == 0 {
                        "batch_normalization".to_string()
                    } else {
                        format!("batch_normalization_{n_bn}")
                    };
                    n_bn += 1;
                    let gamma = layout.push(format!("{prefix}.gamma"), &[1, width]);
                    let beta = layout.push(format!("{prefix}.beta"), &[1, width]);
                    stats.push(MovingStats {
                        name: prefix,
                        mean: vec![0.0; width],
                        var: vec![1.0; width],
                    });
                    layers.push(Layer::BatchNorm {
                        features: width,
                        momentum,
                        epsilon,
                        gamma,
                        beta,
                        stats: stats.len() - 1,
                    });
                }
            }
        }
        let Some(Layer::Dense {
            units, activation, ..
        }) = layers.last()
        else {
            return Err(NnError::Spec(
                "the last layer must be a 'dense' layer".into(),
            ));
        };
        let (units, last) = (*units, *activation);
        match (&task, loss) {
            (Task::Regression, l) if !l.is_classification() => {
                if units != 1 {
                    return Err(NnError::Spec(format!(
                        "a regression model needs 1 output unit, the last layer has {units}"
                    )));
                }
            }
            (Task::Classification { classes }, Loss::BinaryCrossentropy) => {
                if classes.len() != 2
                    || units != 1
                    || !matches!(last, Activation::Sigmoid | Activation::Linear)
                {
                    return Err(NnError::Spec("binary_crossentropy needs 2 classes and a last layer of 1 unit with sigmoid (or linear) activation".into()));
                }
            }
            (Task::Classification { classes }, l) if l.is_classification() => {
                if units != classes.len()
                    || !matches!(last, Activation::Softmax | Activation::Linear)
                {
                    return Err(NnError::Spec(format!(
                        "{} needs a last layer of {} units (one per class) with softmax (or linear) activation",
                        l.name(),
                        classes.len()
                    )));
                }
            }
            _ => {
                return Err(NnError::Spec(format!(
                    "loss '{}' does not fit the task",
                    loss.name()
                )));
            }
        }
        let device = Device::flex();
        Ok(Self {
            name: name.into(),
            layers,
            loss,
            task,
            inputs,
            outputs: units,
            layout,
            stats,
            train_device: device.clone().autodiff(),
            device,
            engine: Engine::default(),
            workspace: Workspace::default(),
        })
    }

    /// Trains and evaluates on `engine` from now on (the native engine by default).
    pub fn set_engine(&mut self, engine: Engine) {
        self.engine = engine;
    }

    /// The engine it runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Trains and evaluates on the first CUDA GPU, through burn's CUDA backend (the burn
    /// engine; the native engine is CPU only). An error when mle was built without the `cuda`
    /// feature.
    pub fn use_cuda(&mut self) -> Result<(), NnError> {
        #[cfg(feature = "cuda")]
        {
            self.device = Device::cuda(0);
            self.train_device = self.device.clone().autodiff();
            self.engine = Engine::Burn;
            Ok(())
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err(NnError::Spec(
                "this mle was built without CUDA: rebuild with `cargo build --release --features cuda`"
                    .into(),
            ))
        }
    }

    /// Whether mle was built with the `cuda` feature.
    pub fn cuda_built() -> bool {
        cfg!(feature = "cuda")
    }

    /// The view the native engine works on.
    fn net(&self) -> Net<'_> {
        Net {
            name: &self.name,
            layers: &self.layers,
            loss: self.loss,
            layout: &self.layout,
            inputs: self.inputs,
        }
    }

    fn tensors(&self, params: &[f32], device: &Device, grad: bool) -> Vec<Tensor<2>> {
        crate::params::param_tensors(&self.layout, params, device, grad)
    }

    /// Runs the layers; returns the last layer's pre-activation output ("logits").
    fn forward(
        &self,
        p: &[Tensor<2>],
        mut x: Tensor<2>,
        mut train: Option<&mut TrainCtx>,
    ) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = match *layer {
                Layer::Dense {
                    activation,
                    kernel,
                    bias,
                    ..
                } => {
                    let mut z = x.matmul(p[kernel].clone());
                    if let Some(b) = bias {
                        z = z + p[b].clone();
                    }
                    if i == last {
                        z
                    } else {
                        activate(activation, z)
                    }
                }
                Layer::Dropout { rate } => match train.as_deref_mut() {
                    Some(ctx) if rate > 0.0 => {
                        let [rows, cols] = x.dims();
                        let keep = 1.0 - rate;
                        let mask: Vec<f32> = (0..rows * cols)
                            .map(|_| {
                                if ctx.rng.random::<f32>() < keep {
                                    1.0 / keep
                                } else {
                                    0.0
                                }
                            })
                            .collect();
                        let mask = Tensor::<2>::from_data(
                            TensorData::new(mask, [rows, cols]),
                            &x.device(),
                        );
                        x * mask
                    }
                    _ => x,
                },
                Layer::BatchNorm {
                    epsilon,
                    gamma,
                    beta,
                    stats,
                    features,
                    ..
                } => {
                    let (mean, var) = match train.as_deref_mut() {
                        Some(ctx) => {
                            let (var, mean) = x.clone().var_mean_bias(0);
                            ctx.batch_stats.push((stats, mean.clone(), var.clone()));
                            (mean, var)
                        }
                        None => {
                            let s = &self.stats[stats];
                            let t = |v: &[f32]| {
                                Tensor::<2>::from_data(
                                    TensorData::new(v.to_vec(), [1, features]),
                                    &x.device(),
                                )
                            };
                            (t(&s.mean), t(&s.var))
                        }
                    };
                    (x - mean) / var.add_scalar(epsilon).sqrt() * p[gamma].clone() + p[beta].clone()
                }
            };
        }
        x
    }

    fn last_activation(&self) -> Activation {
        self.net().last_activation()
    }

    /// Turns pre-activation outputs into predictions.
    fn outputs_of(&self, logits: Tensor<2>) -> Tensor<2> {
        match (self.last_activation(), self.loss) {
            // Classification with linear logits still predicts probabilities.
            (Activation::Linear, Loss::BinaryCrossentropy) => activation::sigmoid(logits),
            (Activation::Linear, l) if l.is_classification() => activation::softmax(logits, 1),
            (a, _) => activate(a, logits),
        }
    }

    fn targets(&self, y: &[f32], device: &Device) -> Tensor<2> {
        let rows = y.len();
        match self.loss {
            Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => {
                let mut onehot = vec![0.0; rows * self.outputs];
                for (r, &c) in y.iter().enumerate() {
                    let c = (c as usize).min(self.outputs - 1);
                    onehot[r * self.outputs + c] = 1.0;
                }
                Tensor::from_data(TensorData::new(onehot, [rows, self.outputs]), device)
            }
            _ => Tensor::from_data(TensorData::new(y.to_vec(), [rows, 1]), device),
        }
    }

    /// Mean loss over the batch, from the logits (cross-entropies are computed in their
    /// numerically stable log-sum-exp forms rather than from probabilities).
    fn loss_of(&self, logits: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
        match self.loss {
            Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => {
                (activation::log_softmax(logits, 1) * y)
                    .sum_dim(1)
                    .mean()
                    .neg()
            }
            Loss::BinaryCrossentropy => {
                // max(z, 0) - z·y + log(1 + exp(-|z|))
                let z = logits;
                (z.clone().clamp_min(0.0) - z.clone() * y
                    + z.abs().neg().exp().add_scalar(1.0).log())
                .mean()
            }
            Loss::Mse => (self.outputs_of(logits) - y).powi_scalar(2).mean(),
            Loss::Mae => (self.outputs_of(logits) - y).abs().mean(),
            Loss::Huber => {
                // 0.5·q² + (|e| - q) with q = min(|e|, 1): quadratic inside, linear outside.
                let a = (self.outputs_of(logits) - y).abs();
                let q = a.clone().clamp_max(1.0);
                (q.clone() * q.clone() * 0.5 + (a - q)).mean()
            }
        }
    }

    fn input(&self, batch: &Batch<'_>, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(batch.x.to_vec(), [batch.rows, self.inputs]),
            device,
        )
    }

    /// Predictions (`rows × outputs`) for unlabelled rows.
    pub fn predict(&self, params: &[f32], x: &[f32], rows: usize) -> Result<Vec<f32>, NnError> {
        let y = vec![0.0; rows];
        let (_, out) = self.evaluate_inner(params, Batch { x, y: &y, rows }, false)?;
        Ok(out)
    }

    fn evaluate_inner(
        &self,
        params: &[f32],
        batch: Batch<'_>,
        with_loss: bool,
    ) -> Result<(f32, Vec<f32>), NnError> {
        if self.engine == Engine::Native {
            return native::evaluate(&self.net(), &self.stats, params, batch, with_loss);
        }
        self.net().check(params, &batch)?;
        if batch.rows == 0 {
            return Ok((0.0, Vec::new()));
        }
        let p = self.tensors(params, &self.device, false);
        let x = self.input(&batch, &self.device);
        let logits = self.forward(&p, x, None);
        let loss = if with_loss {
            let y = self.targets(batch.y, &self.device);
            scalar(self.loss_of(logits.clone(), y))
        } else {
            0.0
        };
        let out = self
            .outputs_of(logits)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| NnError::Shape(format!("{e:?}")))?;
        Ok((loss, out))
    }
}

struct TrainCtx {
    rng: ChaCha8Rng,
    batch_stats: Vec<(usize, Tensor<2>, Tensor<2>)>,
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_data()
        .try_to_vec::<f32>()
        .map(|v| v[0])
        .unwrap_or(f32::NAN)
}

/// Applies an activation function.
pub fn activate(a: Activation, x: Tensor<2>) -> Tensor<2> {
    match a {
        Activation::Linear => x,
        Activation::Relu => activation::relu(x),
        Activation::Elu => activation::elu(x, 1.0),
        Activation::Gelu => activation::gelu(x),
        Activation::Tanh => activation::tanh(x),
        Activation::Sigmoid => activation::sigmoid(x),
        Activation::Softmax => activation::softmax(x, 1),
    }
}

impl Model for Sequential {
    fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = vec![0.0; self.layout.total()];
        for layer in &self.layers {
            match *layer {
                Layer::Dense {
                    inputs,
                    units,
                    init,
                    kernel,
                    ..
                } => {
                    let r = self.layout.params()[kernel].range();
                    init::fill(init, inputs, units, &mut rng, &mut params[r]);
                }
                Layer::BatchNorm { gamma, .. } => {
                    params[self.layout.params()[gamma].range()].fill(1.0)
                }
                Layer::Dropout { .. } => {}
            }
        }
        params
    }

    fn task(&self) -> Task {
        self.task.clone()
    }

    fn input_width(&self) -> usize {
        self.inputs
    }

    fn output_width(&self) -> usize {
        self.outputs
    }

    fn loss_and_grad(
        &mut self,
        params: &[f32],
        batch: Batch<'_>,
        step: u64,
        grads: &mut [f32],
    ) -> Result<f32, NnError> {
        if self.engine == Engine::Native {
            let net = Net {
                name: &self.name,
                layers: &self.layers,
                loss: self.loss,
                layout: &self.layout,
                inputs: self.inputs,
            };
            return native::loss_and_grad(
                &net,
                &mut self.stats,
                &mut self.workspace,
                params,
                batch,
                step,
                grads,
            );
        }
        self.net().check(params, &batch)?;
        let device = self.train_device.clone();
        let p = self.tensors(params, &device, true);
        let x = self.input(&batch, &device);
        let y = self.targets(batch.y, &device);
        let mut ctx = TrainCtx {
            rng: native::dropout_rng(step),
            batch_stats: Vec::new(),
        };
        let logits = self.forward(&p, x, Some(&mut ctx));
        let loss = self.loss_of(logits, y);
        let g = loss.backward();
        crate::params::write_grads(&self.layout, &p, &g, grads)?;
        for (idx, mean, var) in ctx.batch_stats {
            let m = self.layers.iter().find_map(|l| match l {
                Layer::BatchNorm {
                    stats, momentum, ..
                } if *stats == idx => Some(*momentum),
                _ => None,
            });
            let momentum = m.expect("batch stats come from a batch-norm layer");
            let (mean, var) = (crate::params::to_vec(mean)?, crate::params::to_vec(var)?);
            let s = &mut self.stats[idx];
            for (m, b) in s.mean.iter_mut().zip(mean) {
                *m = *m * momentum + b * (1.0 - momentum);
            }
            for (v, b) in s.var.iter_mut().zip(var) {
                *v = *v * momentum + b * (1.0 - momentum);
            }
        }
        Ok(scalar(loss.inner()))
    }

    fn evaluate(&self, params: &[f32], batch: Batch<'_>) -> Result<(f32, Vec<f32>), NnError> {
        self.evaluate_inner(params, batch, true)
    }

    fn buffers(&self) -> Vec<(String, Vec<f32>)> {
        self.stats
            .iter()
            .flat_map(|s| {
                [
                    (format!("{}.moving_mean", s.name), s.mean.clone()),
                    (format!("{}.moving_variance", s.name), s.var.clone()),
                ]
            })
            .collect()
    }

    fn set_buffer(&mut self, name: &str, values: &[f32]) -> Result<(), NnError> {
        for s in &mut self.stats {
            let slot = if name == format!("{}.moving_mean", s.name) {
                &mut s.mean
            } else if name == format!("{}.moving_variance", s.name) {
                &mut s.var
            } else {
                continue;
            };
            if slot.len() != values.len() {
                return Err(NnError::Checkpoint(format!(
                    "buffer '{name}' has {} values, expected {}",
                    values.len(),
                    slot.len()
                )));
            }
            slot.copy_from_slice(values);
            return Ok(());
        }
        Err(NnError::Checkpoint(format!(
            "the model has no buffer '{name}'"
        )))
    }
}
