//! Loading a model directory and running it with tract.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

use crate::ServeError;

/// Which kind of files a servable came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An mle export bundle (`mle_model.json` + `model.onnx`).
    Mle,
    /// A plain ONNX model.
    Onnx,
}

/// What a prediction row means.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// One number per instance (or a list when the model returns several).
    Regression,
    /// Scores per class.
    Classification {
        /// Class names, in score order.
        classes: Vec<String>,
    },
}

/// A servable's interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// The files' format.
    pub format: Format,
    /// Input feature names in order (`x0`, `x1`, ... when the model names none).
    pub inputs: Vec<String>,
    /// The meaning of the outputs.
    pub output: Output,
    /// Values per prediction row.
    pub width: usize,
}

impl Signature {
    /// One prediction as the ml v1 API returns it.
    pub fn format(&self, row: &[f32]) -> Value {
        // Shortest digits that round-trip the f32 (not the f64 widening's long tail).
        let num = |v: f32| json!(format!("{v}").parse::<f64>().unwrap_or(f64::from(v)));
        match &self.output {
            Output::Regression if row.len() == 1 => num(row[0]),
            Output::Regression => Value::Array(row.iter().map(|v| num(*v)).collect()),
            Output::Classification { classes } => {
                // A single sigmoid unit scores the second class.
                let scores: Vec<f32> = if row.len() == 1 && classes.len() == 2 {
                    vec![1.0 - row[0], row[0]]
                } else {
                    row.to_vec()
                };
                json!({"classes": classes, "scores": scores.iter().map(|v| num(*v)).collect::<Vec<_>>()})
            }
        }
    }
}

/// Appends an f32 as a JSON number with its shortest round-trip digits (`null` if not finite).
fn push_number(out: &mut String, v: f32) {
    use std::fmt::Write;
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

impl Signature {
    /// `{"predictions": [...]}` for `out` (rows of `width` values) as JSON text, written
    /// directly (the same document as [`Signature::format`] per row, without building values).
    pub fn predictions_json(&self, out: &[f32]) -> String {
        let mut s = String::with_capacity(16 + out.len() * 12);
        s.push_str("{\"predictions\":[");
        let classes = match &self.output {
            Output::Classification { classes } => {
                Some(serde_json::to_string(classes).unwrap_or_else(|_| "[]".into()))
            }
            Output::Regression => None,
        };
        for (i, row) in out.chunks(self.width.max(1)).enumerate() {
            if i > 0 {
                s.push(',');
            }
            match &classes {
                None if row.len() == 1 => push_number(&mut s, row[0]),
                None => {
                    s.push('[');
                    for (j, v) in row.iter().enumerate() {
                        if j > 0 {
                            s.push(',');
                        }
                        push_number(&mut s, *v);
                    }
                    s.push(']');
                }
                Some(names) => {
                    s.push_str("{\"classes\":");
                    s.push_str(names);
                    s.push_str(",\"scores\":[");
                    let two = row.len() == 1 && names.matches(',').count() == 1;
                    let scores: &[f32] = if two { &[1.0 - row[0], row[0]] } else { row };
                    for (j, v) in scores.iter().enumerate() {
                        if j > 0 {
                            s.push(',');
                        }
                        push_number(&mut s, *v);
                    }
                    s.push_str("]}");
                }
            }
        }
        s.push_str("]}");
        s
    }
}

type Plan = TypedRunnableModel<TypedModel>;

/// A loaded, optimised model, ready for concurrent use.
pub struct Servable {
    /// Its interface.
    pub signature: Signature,
    plan: Plan,
    /// The MLP interpreter, when the graph is a plain MLP (mle exports are).
    native: Option<crate::native::Native>,
    /// The output holding the scores or values.
    score_output: usize,
}

impl std::fmt::Debug for Servable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servable")
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

fn load_err(what: impl std::fmt::Display) -> ServeError {
    ServeError::Load(what.to_string())
}

/// The single `.onnx` file in `dir` (`model.onnx` preferred).
fn onnx_file(dir: &Path) -> Result<PathBuf, ServeError> {
    let preferred = dir.join("model.onnx");
    if preferred.is_file() {
        return Ok(preferred);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| load_err(format!("cannot read the model directory: {e}")))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx") && p.is_file())
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(load_err(
            "the model directory holds neither an mle export (mle_model.json) nor an .onnx file",
        )),
        n => Err(load_err(format!(
            "the model directory holds {n} .onnx files; keep one (or name it model.onnx)"
        ))),
    }
}

/// Class labels declared by ONNX-ML classifier nodes (`classlabels_strings` or
/// `classlabels_int64s`). String labels are replaced by their indices in `proto`: tract runs
/// integer label outputs only, and serving reads the scores anyway (the names come back here).
fn take_class_labels(proto: &mut tract_onnx::pb::ModelProto) -> Option<Vec<String>> {
    let graph = proto.graph.as_mut()?;
    let mut labels = None;
    for node in &mut graph.node {
        for a in &mut node.attribute {
            if a.name == "classlabels_strings" && !a.strings.is_empty() {
                labels = Some(
                    a.strings
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<Vec<_>>(),
                );
                a.name = "classlabels_int64s".into();
                a.r#type = tract_onnx::pb::attribute_proto::AttributeType::Ints as i32;
                a.ints = (0..a.strings.len() as i64).collect();
                a.strings.clear();
            } else if a.name == "classlabels_int64s" && !a.ints.is_empty() && labels.is_none() {
                labels = Some(a.ints.iter().map(|i| i.to_string()).collect());
            }
        }
    }
    labels
}

/// The parts of `mle_model.json` serving needs.
struct Manifest {
    inputs: Vec<String>,
    output: Output,
}

fn read_manifest(dir: &Path) -> Result<Manifest, ServeError> {
    let m = mle_bundle::read(dir).map_err(load_err)?;
    let output = match m.output.kind.as_str() {
        "regression" => Output::Regression,
        "classification" => Output::Classification {
            classes: m.output.classes.clone(),
        },
        _ => return Err(load_err("mle_model.json has an unknown output kind")),
    };
    Ok(Manifest {
        inputs: m.input_names(),
        output,
    })
}

impl Servable {
    /// Loads `dir`: an mle export bundle (its `model.onnx` with the manifest's names and
    /// classes) or a directory holding one ONNX model.
    pub fn load(dir: &Path) -> Result<Self, ServeError> {
        let manifest = if dir.join(mle_bundle::MANIFEST).is_file() {
            Some(read_manifest(dir)?)
        } else {
            None
        };
        let path = onnx_file(dir)?;
        let onnx = tract_onnx::onnx();
        let cannot_parse =
            |e: TractError| load_err(format!("cannot parse {}: {e:#}", file_name(&path)));
        let mut proto = onnx.proto_model_for_path(&path).map_err(cannot_parse)?;
        let class_labels = take_class_labels(&mut proto);
        let native = crate::native::Native::from_proto(&proto);
        let model = onnx.model_for_proto_model(&proto).map_err(cannot_parse)?;
        let input_fact = model
            .input_fact(0)
            .map_err(|e| load_err(format!("the model has no input: {e}")))?
            .clone();
        let width = input_fact
            .shape
            .dims()
            .nth(1)
            .and_then(|d| d.concretize())
            .and_then(|d| d.to_usize().ok())
            .or_else(|| manifest.as_ref().map(|m| m.inputs.len()))
            .ok_or_else(|| load_err("the model's input is not a [batch, features] matrix"))?;
        let mut model = model;
        let batch = model.sym("N");
        model
            .set_input_fact(0, f32::fact([batch.to_dim(), width.to_dim()]).into())
            .map_err(|e| load_err(format!("cannot set the input shape: {e}")))?;
        let typed = model
            .into_optimized()
            .map_err(|e| load_err(format!("cannot prepare the model: {e:#}")))?;
        // Scores: the (last) float output; a label output beside it means a classifier.
        let outputs = typed.output_outlets().map_err(load_err)?.to_vec();
        let facts: Vec<TypedFact> = outputs
            .iter()
            .map(|o| typed.outlet_fact(*o).cloned())
            .collect::<TractResult<_>>()
            .map_err(load_err)?;
        let score_output = facts
            .iter()
            .rposition(|f| f.datum_type == f32::datum_type())
            .ok_or_else(|| load_err("the model has no float output"))?;
        let fact = &facts[score_output];
        let out_width = match fact.rank() {
            1 => 1,
            2 => fact.shape[1]
                .to_usize()
                .map_err(|_| load_err("the model's output width is not fixed"))?,
            r => {
                return Err(load_err(format!(
                    "the model's output has rank {r}; only [batch] or [batch, values] can be served"
                )));
            }
        };
        let has_labels = facts.len() > 1;
        let (format, inputs, output) = match manifest {
            Some(m) => (Format::Mle, m.inputs, m.output),
            None => {
                let output = if has_labels || out_width > 1 && class_labels.is_some() {
                    let classes = class_labels
                        .filter(|c| c.len() == out_width)
                        .unwrap_or_else(|| (0..out_width).map(|i| i.to_string()).collect());
                    Output::Classification { classes }
                } else {
                    Output::Regression
                };
                (
                    Format::Onnx,
                    (0..width).map(|i| format!("x{i}")).collect(),
                    output,
                )
            }
        };
        if inputs.len() != width {
            return Err(load_err(format!(
                "the manifest names {} inputs but the model reads {width}",
                inputs.len()
            )));
        }
        // Every request divides its values by these widths.
        if width == 0 || out_width == 0 {
            return Err(load_err(format!(
                "the model reads {width} and returns {out_width} values per row; both must be at least 1"
            )));
        }
        let plan = typed
            .into_runnable()
            .map_err(|e| load_err(format!("cannot plan the model: {e}")))?;
        Ok(Self {
            signature: Signature {
                format,
                inputs,
                output,
                width: out_width,
            },
            plan,
            native,
            score_output,
        })
    }

    /// Runs `n` rows (row-major, `inputs.len()` values each); returns `n × width` values.
    pub fn predict(&self, rows: &[f32], n: usize) -> Result<Vec<f32>, ServeError> {
        let w = self.signature.inputs.len();
        if rows.len() != n * w {
            return Err(ServeError::BadInput(format!(
                "expected {n} rows of {w} values, got {} values",
                rows.len()
            )));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        if let Some(native) = &self.native {
            return self.predict_native(native, rows, n, w);
        }
        self.predict_with_tract(rows, n)
    }

    /// Which engine runs this model: `mlp` (the built-in MLP interpreter) or `tract`.
    pub fn engine(&self) -> &'static str {
        if self.native.is_some() {
            "mlp"
        } else {
            "tract"
        }
    }

    fn predict_native(
        &self,
        native: &crate::native::Native,
        rows: &[f32],
        n: usize,
        w: usize,
    ) -> Result<Vec<f32>, ServeError> {
        let (out, width) = native.run(rows, n, w).map_err(ServeError::Run)?;
        if width != self.signature.width {
            return Err(ServeError::Run(format!(
                "the model returned {width} values per row, expected {}",
                self.signature.width
            )));
        }
        Ok(out)
    }

    /// Runs rows with tract, whatever the graph (the MLP interpreter's cross-check).
    pub fn predict_with_tract(&self, rows: &[f32], n: usize) -> Result<Vec<f32>, ServeError> {
        let w = self.signature.inputs.len();
        let input =
            Tensor::from_shape(&[n, w], rows).map_err(|e| ServeError::Run(e.to_string()))?;
        let out = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| ServeError::Run(e.to_string()))?;
        let t = out
            .get(self.score_output)
            .ok_or_else(|| ServeError::Run("the model returned too few outputs".into()))?;
        let view = t
            .to_array_view::<f32>()
            .map_err(|e| ServeError::Run(e.to_string()))?;
        let values: Vec<f32> = view.iter().copied().collect();
        if values.len() != n * self.signature.width {
            return Err(ServeError::Run(format!(
                "the model returned {} values for {n} rows",
                values.len()
            )));
        }
        Ok(values)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
