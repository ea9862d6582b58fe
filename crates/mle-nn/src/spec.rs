//! The model spec file (YAML or JSON): columns, layers, loss, optimizer and metrics.
//!
//! Files are read into permissive "raw" structs and then validated into typed values, so that
//! every problem is reported with the field it concerns and, for names, the list of valid ones.

use serde::{Deserialize, Serialize};

use crate::NnError;

/// A validated model spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The model's name; also the export directory name.
    pub name: String,
    /// How the data files are laid out.
    pub data: DataSpec,
    /// The layer stack, input to output.
    pub layers: Vec<LayerSpec>,
    /// Training loss.
    pub loss: Loss,
    /// Optimizer and its learning rate.
    pub optimizer: OptimizerSpec,
    /// Metrics to report, the first one is the primary metric.
    pub metrics: Vec<Metric>,
}

/// Column schema of the training data.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    /// All columns of the CSV files in order.
    pub columns: Vec<String>,
    /// Feature columns in model input order (default: every column except the label).
    pub features: Vec<String>,
    /// The label column.
    pub label: String,
    /// Class names for classification; empty for regression.
    pub classes: Vec<String>,
    /// Header handling.
    pub header: mle_data::Header,
    /// Standardise features with statistics of the training data.
    pub normalize: bool,
}

/// One entry of the layer stack.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    /// A fully connected layer.
    Dense {
        /// Output width.
        units: usize,
        /// Activation applied to the output.
        activation: Activation,
        /// Whether the layer adds a bias.
        use_bias: bool,
        /// Kernel initializer.
        kernel_initializer: Initializer,
    },
    /// A stack of Dense layers sized `max(2, int(first_layer_size * scale_factor^i))`, the
    /// hidden layers of the Iris `DNNClassifier`; its sizes are hyperparameters.
    Dnn {
        /// Width of the first hidden layer.
        first_layer_size: usize,
        /// Number of hidden layers.
        num_layers: usize,
        /// Width ratio between consecutive layers.
        scale_factor: f64,
        /// Activation of every hidden layer.
        activation: Activation,
        /// Kernel initializer.
        kernel_initializer: Initializer,
    },
    /// Inverted dropout at training time, identity at inference.
    Dropout {
        /// Fraction of units dropped, in `[0, 1)`.
        rate: f32,
    },
    /// Batch normalisation over the feature axis (Keras semantics).
    BatchNormalization {
        /// Moving-average momentum.
        momentum: f32,
        /// Variance epsilon.
        epsilon: f32,
    },
}

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }
        impl $name {
            /// Every accepted spelling, in documentation order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            /// The canonical name.
            pub fn name(self) -> &'static str { match self { $(Self::$variant => $text),+ } }
            /// Parses a name (case-insensitive).
            pub fn parse(text: &str) -> Option<Self> {
                let t = text.to_ascii_lowercase();
                $(if t == $text { return Some(Self::$variant); })+
                None
            }
        }
    };
}

named_enum! {
    /// Element-wise activation functions (softmax is over the feature axis).
    Activation {
        /// Identity.
        Linear = "linear",
        /// max(0, x).
        Relu = "relu",
        /// x for x > 0, exp(x) - 1 otherwise.
        Elu = "elu",
        /// Exact (erf) GELU.
        Gelu = "gelu",
        /// Hyperbolic tangent.
        Tanh = "tanh",
        /// Logistic sigmoid.
        Sigmoid = "sigmoid",
        /// Softmax over the features of each row.
        Softmax = "softmax",
    }
}

named_enum! {
    /// Kernel initializers (biases always start at zero).
    Initializer {
        /// Uniform in ±sqrt(6 / (fan_in + fan_out)) (Keras' default).
        GlorotUniform = "glorot_uniform",
        /// Truncated normal with std sqrt(2 / fan_in).
        HeNormal = "he_normal",
        /// All zeros.
        Zeros = "zeros",
    }
}

named_enum! {
    /// Training losses, mean over the batch.
    Loss {
        /// Mean squared error.
        Mse = "mse",
        /// Mean absolute error.
        Mae = "mae",
        /// Huber loss with delta 1.
        Huber = "huber",
        /// Binary cross-entropy on a sigmoid output.
        BinaryCrossentropy = "binary_crossentropy",
        /// Categorical cross-entropy on a softmax output (labels are class indices here).
        CategoricalCrossentropy = "categorical_crossentropy",
        /// Sparse categorical cross-entropy on a softmax output.
        SparseCategoricalCrossentropy = "sparse_categorical_crossentropy",
    }
}

impl Loss {
    /// Whether the loss is a classification loss.
    pub fn is_classification(self) -> bool {
        matches!(
            self,
            Loss::BinaryCrossentropy
                | Loss::CategoricalCrossentropy
                | Loss::SparseCategoricalCrossentropy
        )
    }
}

named_enum! {
    /// Reported metrics.
    Metric {
        /// Root mean squared error.
        Rmse = "rmse",
        /// Mean absolute error.
        Mae = "mae",
        /// Fraction of rows whose most likely class is the label.
        Accuracy = "accuracy",
        /// The training loss.
        Loss = "loss",
    }
}

named_enum! {
    /// Optimizer families.
    OptimizerKind {
        /// Stochastic gradient descent, optionally with (Nesterov) momentum.
        Sgd = "sgd",
        /// Adam (Kingma & Ba, 2015).
        Adam = "adam",
        /// Adam with decoupled weight decay (Loshchilov & Hutter, 2019).
        AdamW = "adamw",
        /// RMSProp (Hinton, 2012).
        RmsProp = "rmsprop",
        /// Adagrad (Duchi et al., 2011).
        Adagrad = "adagrad",
    }
}

/// A fully specified optimizer (Keras defaults for the fields a spec leaves out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerSpec {
    /// Which optimizer.
    pub kind: OptimizerKind,
    /// Step size.
    pub learning_rate: f64,
    /// SGD/RMSProp momentum.
    pub momentum: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// Adam β1.
    pub beta_1: f64,
    /// Adam β2.
    pub beta_2: f64,
    /// RMSProp ρ.
    pub rho: f64,
    /// Denominator epsilon.
    pub epsilon: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Adagrad initial accumulator value.
    pub initial_accumulator_value: f64,
}

impl OptimizerSpec {
    /// An optimizer with Keras' default hyperparameters.
    pub fn new(kind: OptimizerKind, learning_rate: f64) -> Self {
        Self {
            kind,
            learning_rate,
            momentum: 0.0,
            nesterov: false,
            beta_1: 0.9,
            beta_2: 0.999,
            rho: 0.9,
            epsilon: 1e-7,
            weight_decay: if kind == OptimizerKind::AdamW {
                0.004
            } else {
                0.0
            },
            initial_accumulator_value: 0.1,
        }
    }
}

/// Hyperparameters that trainer flags may override in a spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--learning-rate`.
    pub learning_rate: Option<f64>,
    /// `--first-layer-size` for every `dnn` layer.
    pub first_layer_size: Option<usize>,
    /// `--num-layers` for every `dnn` layer.
    pub num_layers: Option<usize>,
    /// `--scale-factor` for every `dnn` layer.
    pub scale_factor: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Raw file format

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    #[serde(default)]
    task: Option<String>,
    data: RawData,
    layers: Vec<RawLayer>,
    loss: String,
    optimizer: RawOptimizer,
    #[serde(default)]
    metrics: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawData {
    columns: Vec<String>,
    #[serde(default)]
    features: Option<Vec<String>>,
    label: String,
    #[serde(default)]
    classes: Vec<String>,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    normalize: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    #[serde(rename = "type")]
    kind: String,
    units: Option<usize>,
    activation: Option<String>,
    use_bias: Option<bool>,
    kernel_initializer: Option<String>,
    rate: Option<f32>,
    momentum: Option<f32>,
    epsilon: Option<f32>,
    first_layer_size: Option<usize>,
    num_layers: Option<usize>,
    scale_factor: Option<f64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawOptimizer {
    #[serde(rename = "type")]
    kind: String,
    learning_rate: Option<f64>,
    momentum: Option<f64>,
    nesterov: Option<bool>,
    beta_1: Option<f64>,
    beta_2: Option<f64>,
    rho: Option<f64>,
    epsilon: Option<f64>,
    weight_decay: Option<f64>,
    initial_accumulator_value: Option<f64>,
}

const LAYER_NAMES: &[&str] = &["dense", "dnn", "dropout", "batch_normalization"];

fn unknown(what: &str, value: &str, valid: &[&str]) -> NnError {
    NnError::Spec(format!(
        "unknown {what} '{value}' (valid: {})",
        valid.join(", ")
    ))
}

fn parse_named<T>(
    what: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
    valid: &[&str],
) -> Result<T, NnError> {
    parse(value).ok_or_else(|| unknown(what, value, valid))
}

impl ModelSpec {
    /// Reads a spec file; `.json` files are JSON, anything else YAML.
    pub fn from_file(path: &std::path::Path) -> Result<Self, NnError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            NnError::Spec(format!("cannot read model spec {}: {e}", path.display()))
        })?;
        Self::parse(&text).map_err(|e| match e {
            NnError::Spec(msg) => NnError::Spec(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Parses YAML (a superset of JSON) text.
    pub fn parse(text: &str) -> Result<Self, NnError> {
        let raw: RawSpec = serde_yaml::from_str(text).map_err(|e| NnError::Spec(e.to_string()))?;
        raw.validate()
    }

    /// The task implied by the loss.
    pub fn is_classification(&self) -> bool {
        self.loss.is_classification()
    }

    /// Applies trainer-flag overrides; a flag that names something the spec lacks is an error.
    pub fn apply(&mut self, o: &Overrides) -> Result<(), NnError> {
        if let Some(lr) = o.learning_rate {
            if !(lr > 0.0 && lr.is_finite()) {
                return Err(NnError::Spec(format!(
                    "--learning-rate must be positive, got {lr}"
                )));
            }
            self.optimizer.learning_rate = lr;
        }
        let wants_dnn =
            o.first_layer_size.is_some() || o.num_layers.is_some() || o.scale_factor.is_some();
        let mut found = false;
        for layer in &mut self.layers {
            if let LayerSpec::Dnn {
                first_layer_size,
                num_layers,
                scale_factor,
                ..
            } = layer
            {
                found = true;
                if let Some(v) = o.first_layer_size {
                    *first_layer_size = v;
                }
                if let Some(v) = o.num_layers {
                    *num_layers = v;
                }
                if let Some(v) = o.scale_factor {
                    *scale_factor = v;
                }
                check_dnn(*first_layer_size, *num_layers, *scale_factor)?;
            }
        }
        if wants_dnn && !found {
            return Err(NnError::Spec(
                "--first-layer-size/--num-layers/--scale-factor need a 'dnn' layer in the model spec"
                    .into(),
            ));
        }
        Ok(())
    }
}

fn check_dnn(first: usize, num: usize, scale: f64) -> Result<(), NnError> {
    if first == 0 {
        return Err(NnError::Spec(
            "dnn: first_layer_size must be at least 1".into(),
        ));
    }
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(NnError::Spec(format!(
            "dnn: scale_factor must be positive, got {scale}"
        )));
    }
    if num > 64 {
        return Err(NnError::Spec(format!(
            "dnn: num_layers must be at most 64, got {num}"
        )));
    }
    Ok(())
}

impl RawSpec {
    fn validate(self) -> Result<ModelSpec, NnError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(NnError::Spec(format!(
                "name '{}' must be non-empty letters, digits, '_' or '-'",
                self.name
            )));
        }
        let loss = parse_named("loss", &self.loss, Loss::parse, Loss::NAMES)?;
        if let Some(task) = &self.task {
            let want = match task.as_str() {
                "regression" => false,
                "classification" => true,
                other => return Err(unknown("task", other, &["regression", "classification"])),
            };
            if want != loss.is_classification() {
                return Err(NnError::Spec(format!(
                    "loss '{}' does not fit task '{task}'",
                    loss.name()
                )));
            }
        }
        let data = self.data.validate(loss.is_classification())?;
        let layers = self
            .layers
            .iter()
            .map(RawLayer::validate)
            .collect::<Result<Vec<_>, _>>()?;
        if !matches!(layers.last(), Some(LayerSpec::Dense { .. })) {
            return Err(NnError::Spec(
                "the last layer must be a 'dense' layer".into(),
            ));
        }
        let optimizer = self.optimizer.validate()?;
        let metrics = if self.metrics.is_empty() {
            vec![if loss.is_classification() {
                Metric::Accuracy
            } else {
                Metric::Rmse
            }]
        } else {
            self.metrics
                .iter()
                .map(|m| parse_named("metric", m, Metric::parse, Metric::NAMES))
                .collect::<Result<Vec<_>, _>>()?
        };
        for m in &metrics {
            let fits = match m {
                Metric::Accuracy => loss.is_classification(),
                Metric::Rmse | Metric::Mae => !loss.is_classification(),
                Metric::Loss => true,
            };
            if !fits {
                return Err(NnError::Spec(format!(
                    "metric '{}' does not fit loss '{}'",
                    m.name(),
                    loss.name()
                )));
            }
        }
        Ok(ModelSpec {
            name: self.name,
            data,
            layers,
            loss,
            optimizer,
            metrics,
        })
    }
}

impl RawData {
    fn validate(self, classification: bool) -> Result<DataSpec, NnError> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.columns {
            if !seen.insert(c) {
                return Err(NnError::Spec(format!("data.columns: '{c}' appears twice")));
            }
        }
        if !self.columns.contains(&self.label) {
            return Err(NnError::Spec(format!(
                "data.label '{}' is not among data.columns",
                self.label
            )));
        }
        let features = match self.features {
            Some(f) => {
                for name in &f {
                    if !self.columns.contains(name) {
                        return Err(NnError::Spec(format!(
                            "data.features: '{name}' is not among data.columns"
                        )));
                    }
                    if *name == self.label {
                        return Err(NnError::Spec(format!(
                            "data.features: '{name}' is the label"
                        )));
                    }
                }
                f
            }
            None => self
                .columns
                .iter()
                .filter(|c| **c != self.label)
                .cloned()
                .collect(),
        };
        if features.is_empty() {
            return Err(NnError::Spec("data: no feature columns".into()));
        }
        if classification && self.classes.len() < 2 {
            return Err(NnError::Spec(
                "data.classes: a classification model needs at least 2 class names".into(),
            ));
        }
        if !classification && !self.classes.is_empty() {
            return Err(NnError::Spec(
                "data.classes: given, but the loss is a regression loss".into(),
            ));
        }
        let header = match self.header.as_deref() {
            None | Some("auto") => mle_data::Header::Auto,
            Some("present") | Some("true") => mle_data::Header::Present,
            Some("absent") | Some("false") => mle_data::Header::Absent,
            Some(other) => {
                return Err(unknown(
                    "data.header",
                    other,
                    &["auto", "present", "absent"],
                ));
            }
        };
        Ok(DataSpec {
            columns: self.columns,
            features,
            label: self.label,
            classes: self.classes,
            header,
            normalize: self.normalize,
        })
    }
}

impl RawLayer {
    fn validate(&self) -> Result<LayerSpec, NnError> {
        let activation = |default| -> Result<Activation, NnError> {
            self.activation
                .as_deref()
                .map(|a| parse_named("activation", a, Activation::parse, Activation::NAMES))
                .unwrap_or(Ok(default))
        };
        let init = || -> Result<Initializer, NnError> {
            self.kernel_initializer
                .as_deref()
                .map(|a| {
                    parse_named(
                        "kernel_initializer",
                        a,
                        Initializer::parse,
                        Initializer::NAMES,
                    )
                })
                .unwrap_or(Ok(Initializer::GlorotUniform))
        };
        let layer = match self.kind.to_ascii_lowercase().as_str() {
            "dense" => {
                let units = self
                    .units
                    .ok_or_else(|| NnError::Spec("dense layer: 'units' is required".into()))?;
                if units == 0 {
                    return Err(NnError::Spec(
                        "dense layer: 'units' must be at least 1".into(),
                    ));
                }
                LayerSpec::Dense {
                    units,
                    activation: activation(Activation::Linear)?,
                    use_bias: self.use_bias.unwrap_or(true),
                    kernel_initializer: init()?,
                }
            }
            "dnn" => {
                let (f, n, s) = (
                    self.first_layer_size.unwrap_or(256),
                    self.num_layers.unwrap_or(3),
                    self.scale_factor.unwrap_or(0.7),
                );
                check_dnn(f, n, s)?;
                LayerSpec::Dnn {
                    first_layer_size: f,
                    num_layers: n,
                    scale_factor: s,
                    activation: activation(Activation::Relu)?,
                    kernel_initializer: init()?,
                }
            }
            "dropout" => {
                let rate = self
                    .rate
                    .ok_or_else(|| NnError::Spec("dropout layer: 'rate' is required".into()))?;
                if !(0.0..1.0).contains(&rate) {
                    return Err(NnError::Spec(format!(
                        "dropout layer: 'rate' must be in [0, 1), got {rate}"
                    )));
                }
                LayerSpec::Dropout { rate }
            }
            "batch_normalization" | "batchnormalization" => LayerSpec::BatchNormalization {
                momentum: self.momentum.unwrap_or(0.99),
                epsilon: self.epsilon.unwrap_or(1e-3),
            },
            other => return Err(unknown("layer type", other, LAYER_NAMES)),
        };
        Ok(layer)
    }
}

impl RawOptimizer {
    fn validate(&self) -> Result<OptimizerSpec, NnError> {
        let kind = parse_named(
            "optimizer",
            &self.kind,
            OptimizerKind::parse,
            OptimizerKind::NAMES,
        )?;
        let default_lr = match kind {
            OptimizerKind::Sgd => 0.01,
            _ => 0.001,
        };
        let mut o = OptimizerSpec::new(kind, self.learning_rate.unwrap_or(default_lr));
        let set = |slot: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut o.momentum, self.momentum);
        set(&mut o.beta_1, self.beta_1);
        set(&mut o.beta_2, self.beta_2);
        set(&mut o.rho, self.rho);
        set(&mut o.epsilon, self.epsilon);
        set(&mut o.weight_decay, self.weight_decay);
        set(
            &mut o.initial_accumulator_value,
            self.initial_accumulator_value,
        );
        o.nesterov = self.nesterov.unwrap_or(false);
        if !(o.learning_rate > 0.0 && o.learning_rate.is_finite()) {
            return Err(NnError::Spec(format!(
                "optimizer.learning_rate must be positive, got {}",
                o.learning_rate
            )));
        }
        for (name, v) in [
            ("momentum", o.momentum),
            ("beta_1", o.beta_1),
            ("beta_2", o.beta_2),
            ("rho", o.rho),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(NnError::Spec(format!(
                    "optimizer.{name} must be in [0, 1), got {v}"
                )));
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name: m\ndata: {columns: [a, b, y], label: y}\nloss: mse\noptimizer: {type: sgd, learning_rate: 0.1}\n";

    fn check_err(extra: &str, expect: &str) {
        let text = format!("{BASE}{extra}");
        let err = ModelSpec::parse(&text).unwrap_err().to_string();
        assert!(err.contains(expect), "{err}\n does not contain\n{expect}");
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        check_err(
            "layers: [{type: conv9, units: 1}]",
            "unknown layer type 'conv9' (valid: dense, dnn, dropout, batch_normalization)",
        );
        check_err(
            "layers: [{type: dense, units: 1, activation: swish}]",
            "unknown activation 'swish' (valid: linear, relu, elu, gelu, tanh, sigmoid, softmax)",
        );
        let text = BASE.replace("sgd", "adamax") + "layers: [{type: dense, units: 1}]";
        let err = ModelSpec::parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("unknown optimizer 'adamax' (valid: sgd, adam, adamw, rmsprop, adagrad)"),
            "{err}"
        );
    }

    #[test]
    fn structural_errors_are_named() {
        check_err(
            "layers: [{type: dropout, rate: 0.5}]",
            "the last layer must be a 'dense' layer",
        );
        check_err("layers: [{type: dense}]", "'units' is required");
        check_err(
            "layers: [{type: dense, units: 1, unit: 3}]",
            "unknown field `unit`",
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let text = format!("{BASE}layers: [{{type: dnn}}, {{type: dense, units: 1}}]");
        let mut spec = ModelSpec::parse(&text).unwrap();
        assert_eq!(spec.data.features, vec!["a", "b"]);
        assert_eq!(spec.metrics, vec![Metric::Rmse]);
        spec.apply(&Overrides {
            num_layers: Some(2),
            learning_rate: Some(0.5),
            ..Default::default()
        })
        .unwrap();
        assert!(matches!(
            spec.layers[0],
            LayerSpec::Dnn {
                num_layers: 2,
                first_layer_size: 256,
                ..
            }
        ));
        assert_eq!(spec.optimizer.learning_rate, 0.5);
    }
}
