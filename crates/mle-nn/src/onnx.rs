//! A minimal ONNX writer: the protobuf messages we need, declared by hand with the field numbers
//! of `onnx/onnx.proto` (ONNX IR version 8), and the lowering of a [`Sequential`] to a graph of
//! standard operators (opset 13) that any ONNX runtime can execute.

use prost::Message;

use crate::net::Layer;
use crate::sequential::Sequential;
use crate::spec::Activation;
use crate::{Model, NnError};

/// `onnx.ModelProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// Field 1.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Field 8.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Field 2.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Field 3.
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// Field 7.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

/// `onnx.OperatorSetIdProto`.
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    /// Field 1.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Field 2.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `onnx.GraphProto`.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// Field 1.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Field 2.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Field 5.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Field 11.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Field 12.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `onnx.NodeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// Field 1.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Field 2.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Field 3.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Field 4.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Field 5.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// `onnx.AttributeProto` (float and int attributes only).
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// Field 1.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Field 20: 1 = FLOAT, 2 = INT.
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    /// Field 2.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// Field 3.
    #[prost(int64, tag = "3")]
    pub i: i64,
}

/// `onnx.TensorProto` (float data only).
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// Field 1.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// Field 2: 1 = FLOAT.
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Field 4.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// Field 8.
    #[prost(string, tag = "8")]
    pub name: String,
}

/// `onnx.ValueInfoProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    /// Field 1.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Field 2.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `onnx.TypeProto` with its `tensor_type` case.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    /// Field 1 (`tensor_type`).
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// `onnx.TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    /// Field 1.
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// Field 2.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `onnx.TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    /// Field 1.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `onnx.TensorShapeProto.Dimension`: a fixed size or a symbolic name.
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    /// Field 1 (`dim_value`).
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// Field 2 (`dim_param`).
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

const FLOAT: i32 = 1;

fn value_info(name: &str, width: usize) -> ValueInfoProto {
    let dim = vec![
        Dimension {
            dim_value: None,
            dim_param: Some("batch".into()),
        },
        Dimension {
            dim_value: Some(width as i64),
            dim_param: None,
        },
    ];
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    counter: usize,
}

impl GraphBuilder {
    fn constant(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> String {
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            float_data: values,
            name: name.into(),
        });
        name.into()
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.counter += 1;
        let out = format!("{}_{}", op.to_ascii_lowercase(), self.counter);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.into(),
            attribute: attrs,
        });
        out
    }

    fn activation(&mut self, a: Activation, x: String) -> String {
        let int = |name: &str, i| AttributeProto {
            name: name.into(),
            r#type: 2,
            i,
            f: 0.0,
        };
        let float = |name: &str, f| AttributeProto {
            name: name.into(),
            r#type: 1,
            f,
            i: 0,
        };
        match a {
            Activation::Linear => x,
            Activation::Relu => self.node("Relu", &[&x], vec![]),
            Activation::Tanh => self.node("Tanh", &[&x], vec![]),
            Activation::Sigmoid => self.node("Sigmoid", &[&x], vec![]),
            Activation::Elu => self.node("Elu", &[&x], vec![float("alpha", 1.0)]),
            Activation::Softmax => self.node("Softmax", &[&x], vec![int("axis", -1)]),
            Activation::Gelu => {
                // 0.5·x·(1 + erf(x/√2)); the Gelu operator itself needs opset 20.
                let n = self.counter;
                let c = self.constant(
                    &format!("gelu_{n}_invsqrt2"),
                    &[],
                    vec![std::f32::consts::FRAC_1_SQRT_2],
                );
                let one = self.constant(&format!("gelu_{n}_one"), &[], vec![1.0]);
                let half = self.constant(&format!("gelu_{n}_half"), &[], vec![0.5]);
                let s = self.node("Mul", &[&x, &c], vec![]);
                let e = self.node("Erf", &[&s], vec![]);
                let p = self.node("Add", &[&e, &one], vec![]);
                let m = self.node("Mul", &[&x, &p], vec![]);
                self.node("Mul", &[&m, &half], vec![])
            }
        }
    }
}

/// The model's final activation as it is applied at prediction time.
fn output_activation(model: &Sequential, a: Activation) -> Activation {
    match (a, model.loss) {
        (Activation::Linear, crate::Loss::BinaryCrossentropy) => Activation::Sigmoid,
        (Activation::Linear, l) if l.is_classification() => Activation::Softmax,
        (a, _) => a,
    }
}

/// Lowers a model with its parameters (and optional input normalisation) to ONNX bytes. The
/// graph reads `features` `[batch, inputs]` and writes `output` `[batch, outputs]`, the same
/// values as [`Sequential::predict`].
pub fn export(
    model: &Sequential,
    params: &[f32],
    norm: Option<(&[f32], &[f32])>,
) -> Result<Vec<u8>, NnError> {
    let layout = model.layout();
    if params.len() != layout.total() {
        return Err(NnError::Export(format!(
            "expected {} parameters, got {}",
            layout.total(),
            params.len()
        )));
    }
    let mut g = GraphBuilder::default();
    let mut x = "features".to_string();
    if let Some((mean, std)) = norm {
        let w = mean.len();
        let m = g.constant("norm_mean", &[1, w], mean.to_vec());
        let s = g.constant("norm_std", &[1, w], std.to_vec());
        let d = g.node("Sub", &[&x, &m], vec![]);
        x = g.node("Div", &[&d, &s], vec![]);
    }
    let last = model.layers.len() - 1;
    for (i, layer) in model.layers.iter().enumerate() {
        match *layer {
            Layer::Dense {
                activation,
                kernel,
                bias,
                ..
            } => {
                let kp = &layout.params()[kernel];
                let k = g.constant(&kp.name, &kp.shape, params[kp.range()].to_vec());
                x = g.node("MatMul", &[&x, &k], vec![]);
                if let Some(b) = bias {
                    let bp = &layout.params()[b];
                    let b = g.constant(&bp.name, &bp.shape, params[bp.range()].to_vec());
                    x = g.node("Add", &[&x, &b], vec![]);
                }
                let a = if i == last {
                    output_activation(model, activation)
                } else {
                    activation
                };
                x = g.activation(a, x);
            }
            Layer::Dropout { .. } => {}
            Layer::BatchNorm {
                epsilon,
                gamma,
                beta,
                stats,
                features,
                ..
            } => {
                // Folded into y = x·scale + shift with scale = γ/√(var+ε), shift = β - mean·scale.
                let s = &model.stats[stats];
                let gp = &params[layout.params()[gamma].range()];
                let bp = &params[layout.params()[beta].range()];
                let scale: Vec<f32> = (0..features)
                    .map(|j| gp[j] / (s.var[j] + epsilon).sqrt())
                    .collect();
                let shift: Vec<f32> = (0..features)
                    .map(|j| bp[j] - s.mean[j] * scale[j])
                    .collect();
                let sc = g.constant(&format!("{}.scale", s.name), &[1, features], scale);
                let sh = g.constant(&format!("{}.shift", s.name), &[1, features], shift);
                let m = g.node("Mul", &[&x, &sc], vec![]);
                x = g.node("Add", &[&m, &sh], vec![]);
            }
        }
    }
    let out = g.node("Identity", &[&x], vec![]);
    g.nodes.last_mut().expect("just added").output = vec!["output".into()];
    let _ = out;
    let graph = GraphProto {
        node: g.nodes,
        name: model.name.clone(),
        initializer: g.inits,
        input: vec![value_info("features", model.input_width())],
        output: vec![value_info("output", model.output_width())],
    };
    let proto = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "mle".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
    };
    Ok(proto.encode_to_vec())
}
