//! The export bundle: a directory with `mle_model.json` (what the model reads and returns),
//! `weights.safetensors` (parameters and moving statistics) and `model.onnx` (the same
//! function as a standard ONNX graph).

use std::path::Path;

use crate::net::Layer;
use crate::sequential::Sequential;
use crate::spec::{Activation, Initializer, LayerSpec, Loss};
use crate::tensorfile::{TensorFile, write_atomic};
use crate::{Model, NnError, Task};

pub use mle_bundle::{
    FORMAT_VERSION, InputFeature, Manifest, ManifestLayer, Normalization, OutputSpec, latest,
};

/// A loaded export: the model, its parameters and its manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The manifest.
    pub manifest: Manifest,
    /// The model (moving statistics restored).
    pub model: Sequential,
    /// Flat parameters.
    pub params: Vec<f32>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NnError + '_ {
    move |source| NnError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a bundle into `dir` (created; must not exist) through a temporary sibling directory
/// renamed at the end, so readers never see a partial export.
pub fn write(
    dir: &Path,
    model: &Sequential,
    params: &[f32],
    features: &[String],
    normalization: Option<Normalization>,
    global_step: u64,
) -> Result<(), NnError> {
    if features.len() != model.input_width() {
        return Err(NnError::Export(format!(
            "{} feature names for {} inputs",
            features.len(),
            model.input_width()
        )));
    }
    let parent = dir
        .parent()
        .ok_or_else(|| NnError::Export(format!("{}: no parent directory", dir.display())))?;
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("export")
    ));
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let (kind, classes) = match model.task() {
        Task::Regression => ("regression", vec![]),
        Task::Classification { classes } => ("classification", classes),
    };
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: model.name.clone(),
        inputs: features
            .iter()
            .map(|n| InputFeature {
                name: n.clone(),
                dtype: "float32".into(),
            })
            .collect(),
        output: OutputSpec {
            kind: kind.into(),
            width: model.output_width(),
            classes,
        },
        normalization: normalization.clone(),
        layers: model
            .layers
            .iter()
            .map(|l| match *l {
                Layer::Dense {
                    units,
                    activation,
                    bias,
                    ..
                } => ManifestLayer::Dense {
                    units,
                    activation: activation.name().into(),
                    use_bias: bias.is_some(),
                },
                Layer::Dropout { rate } => ManifestLayer::Dropout { rate },
                Layer::BatchNorm {
                    momentum, epsilon, ..
                } => ManifestLayer::BatchNormalization { momentum, epsilon },
            })
            .collect(),
        loss: model.loss.name().into(),
        global_step,
    };
    write_atomic(&tmp.join(mle_bundle::MANIFEST), &manifest.to_json())?;
    weights_file(model, params).write(&tmp.join("weights.safetensors"))?;
    let norm = normalization
        .as_ref()
        .map(|n| (n.mean.as_slice(), n.std.as_slice()));
    write_atomic(
        &tmp.join("model.onnx"),
        &crate::onnx::export(model, params, norm)?,
    )?;
    std::fs::rename(&tmp, dir).map_err(io(dir))
}

/// Parameters and moving statistics as named tensors.
pub fn weights_file(model: &Sequential, params: &[f32]) -> TensorFile {
    let mut f = TensorFile::default();
    for p in model.layout().params() {
        f.push(&p.name, &p.shape, &params[p.range()]);
    }
    for (name, values) in model.buffers() {
        f.push(name, &[values.len()], &values);
    }
    f
}

impl Bundle {
    /// Loads a bundle directory.
    pub fn load(dir: &Path) -> Result<Self, NnError> {
        let manifest_path = dir.join(mle_bundle::MANIFEST);
        let manifest = mle_bundle::read(dir).map_err(NnError::Export)?;
        let bad = |m: String| NnError::Export(format!("{}: {m}", manifest_path.display()));
        let layers = manifest
            .layers
            .iter()
            .map(|l| {
                Ok(match l {
                    ManifestLayer::Dense {
                        units,
                        activation,
                        use_bias,
                    } => LayerSpec::Dense {
                        units: *units,
                        activation: Activation::parse(activation)
                            .ok_or_else(|| bad(format!("unknown activation '{activation}'")))?,
                        use_bias: *use_bias,
                        kernel_initializer: Initializer::Zeros,
                    },
                    ManifestLayer::Dropout { rate } => LayerSpec::Dropout { rate: *rate },
                    ManifestLayer::BatchNormalization { momentum, epsilon } => {
                        LayerSpec::BatchNormalization {
                            momentum: *momentum,
                            epsilon: *epsilon,
                        }
                    }
                })
            })
            .collect::<Result<Vec<_>, NnError>>()?;
        let loss = Loss::parse(&manifest.loss)
            .ok_or_else(|| bad(format!("unknown loss '{}'", manifest.loss)))?;
        let task = match manifest.output.kind.as_str() {
            "regression" => Task::Regression,
            "classification" => Task::Classification {
                classes: manifest.output.classes.clone(),
            },
            other => return Err(bad(format!("unknown output kind '{other}'"))),
        };
        let mut model =
            Sequential::new(&manifest.name, manifest.inputs.len(), &layers, loss, task)?;
        let weights = TensorFile::read(&dir.join("weights.safetensors"))?;
        let mut params = vec![0.0; model.layout().total()];
        for p in model.layout().params() {
            let t = weights
                .get(&p.name)
                .ok_or_else(|| bad(format!("weights.safetensors lacks '{}'", p.name)))?;
            if t.shape != p.shape {
                return Err(bad(format!(
                    "'{}' has shape {:?}, expected {:?}",
                    p.name, t.shape, p.shape
                )));
            }
            params[p.range()].copy_from_slice(&t.values);
        }
        for (name, _) in model.buffers() {
            let t = weights
                .get(&name)
                .ok_or_else(|| bad(format!("weights.safetensors lacks '{name}'")))?;
            model.set_buffer(&name, &t.values)?;
        }
        Ok(Self {
            manifest,
            model,
            params,
        })
    }

    /// Predictions for rows in signature order (normalisation applied here).
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, NnError> {
        let width = self.manifest.inputs.len();
        let mut x = Vec::with_capacity(rows.len() * width);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != width {
                return Err(NnError::Shape(format!(
                    "instance {i} has {} values, the model expects {width}",
                    row.len()
                )));
            }
            if let Some(bad) = row.iter().find(|v| !v.is_finite()) {
                return Err(NnError::Shape(format!(
                    "instance {i} holds a non-finite value ({bad})"
                )));
            }
            match &self.manifest.normalization {
                Some(n) => x.extend(
                    row.iter()
                        .zip(&n.mean)
                        .zip(&n.std)
                        .map(|((v, m), s)| (v - m) / s),
                ),
                None => x.extend_from_slice(row),
            }
        }
        let out = self.model.predict(&self.params, &x, rows.len())?;
        let w = self.model.output_width();
        Ok(out.chunks(w).map(<[f32]>::to_vec).collect())
    }
}
