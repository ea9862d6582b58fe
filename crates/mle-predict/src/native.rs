//! A small interpreter for the ONNX graphs of multilayer perceptrons (MatMul, Add, Sub, Mul,
//! Div, Relu, Tanh, Sigmoid, Elu, Softmax, Erf, Identity over 2-D float tensors with constant
//! weights), which is what an mle export's `model.onnx` holds. A general engine pays a fixed
//! cost per call that dwarfs such a model (tract: about 16 µs per single-row call for the
//! abalone net); here a call is a few loops. Graphs with any other operator return `None` and
//! are run by tract.

use std::collections::HashMap;

use tract_onnx::pb::{ModelProto, TensorProto};

#[derive(Debug, Clone, PartialEq)]
struct Mat {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    MatMul,
    Add,
    Sub,
    Mul,
    Div,
    Relu,
    Tanh,
    Sigmoid,
    Elu(f32),
    Softmax,
    Erf,
    Identity,
}

#[derive(Debug, Clone)]
struct Node {
    op: Op,
    inputs: Vec<usize>,
    output: usize,
}

/// A runnable MLP graph.
#[derive(Debug, Clone)]
pub(crate) struct Native {
    slots: usize,
    input: usize,
    output: usize,
    consts: Vec<(usize, Mat)>,
    nodes: Vec<Node>,
}

fn tensor(t: &TensorProto) -> Option<Mat> {
    const FLOAT: i32 = 1;
    if t.data_type != FLOAT {
        return None;
    }
    let data: Vec<f32> = if !t.float_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let (rows, cols) = match dims.as_slice() {
        [] => (1, 1),
        [c] => (1, *c),
        [r, c] => (*r, *c),
        _ => return None,
    };
    (rows * cols == data.len()).then_some(Mat { rows, cols, data })
}

/// erf by Abramowitz & Stegun, "Handbook of Mathematical Functions", 7.1.26 (|error| ≤ 1.5e-7).
fn erf(x: f32) -> f32 {
    const A: [f64; 5] = [
        0.254_829_592,
        -0.284_496_736,
        1.421_413_741,
        -1.453_152_027,
        1.061_405_429,
    ];
    let x = f64::from(x);
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = A.iter().rev().fold(0.0, |acc, a| acc * t + a) * t;
    let y = 1.0 - poly * (-x * x).exp();
    (if x >= 0.0 { y } else { -y }) as f32
}

impl Native {
    /// The interpreter for `proto`, if every node is supported and the graph reads one
    /// `[batch, features]` input and writes one output.
    pub(crate) fn from_proto(proto: &ModelProto) -> Option<Self> {
        let g = proto.graph.as_ref()?;
        let slot = |name: &str, index: &mut HashMap<String, usize>| -> usize {
            let n = index.len();
            *index.entry(name.to_string()).or_insert(n)
        };
        let mut names: HashMap<String, usize> = HashMap::new();
        let consts: Vec<(usize, Mat)> = g
            .initializer
            .iter()
            .map(|t| Some((slot(&t.name, &mut names), tensor(t)?)))
            .collect::<Option<_>>()?;
        let inputs: Vec<&str> = g
            .input
            .iter()
            .map(|i| i.name.as_str())
            .filter(|n| !names.contains_key(*n))
            .collect();
        if inputs.len() != 1 || g.output.len() != 1 {
            return None;
        }
        let input = slot(inputs[0], &mut names);
        let mut nodes = Vec::new();
        for n in &g.node {
            let attr_f = |k: &str, default: f32| {
                n.attribute
                    .iter()
                    .find(|a| a.name == k)
                    .map_or(default, |a| a.f)
            };
            let op = match n.op_type.as_str() {
                "MatMul" => Op::MatMul,
                "Add" => Op::Add,
                "Sub" => Op::Sub,
                "Mul" => Op::Mul,
                "Div" => Op::Div,
                "Relu" => Op::Relu,
                "Tanh" => Op::Tanh,
                "Sigmoid" => Op::Sigmoid,
                "Elu" => Op::Elu(attr_f("alpha", 1.0)),
                "Softmax" => {
                    let axis = n
                        .attribute
                        .iter()
                        .find(|a| a.name == "axis")
                        .map_or(-1, |a| a.i);
                    if axis != -1 && axis != 1 {
                        return None;
                    }
                    Op::Softmax
                }
                "Erf" => Op::Erf,
                "Identity" => Op::Identity,
                _ => return None,
            };
            let arity = match op {
                Op::MatMul | Op::Add | Op::Sub | Op::Mul | Op::Div => 2,
                _ => 1,
            };
            if n.input.len() != arity || n.output.len() != 1 {
                return None;
            }
            let ins = n
                .input
                .iter()
                .map(|i| names.get(i.as_str()).copied())
                .collect::<Option<Vec<_>>>()?;
            let output = slot(&n.output[0], &mut names);
            nodes.push(Node {
                op,
                inputs: ins,
                output,
            });
        }
        let output = *names.get(g.output[0].name.as_str())?;
        Some(Self {
            slots: names.len(),
            input,
            output,
            consts,
            nodes,
        })
    }

    /// Runs `n` rows of `w` values; returns the output rows (row-major) and their width.
    pub(crate) fn run(&self, x: &[f32], n: usize, w: usize) -> Result<(Vec<f32>, usize), String> {
        let mut vals: Vec<Option<std::borrow::Cow<'_, Mat>>> = vec![None; self.slots];
        for (i, m) in &self.consts {
            vals[*i] = Some(std::borrow::Cow::Borrowed(m));
        }
        vals[self.input] = Some(std::borrow::Cow::Owned(Mat {
            rows: n,
            cols: w,
            data: x.to_vec(),
        }));
        for node in &self.nodes {
            let get = |i: usize| {
                vals[i]
                    .as_deref()
                    .ok_or("a node reads a value not computed yet")
            };
            let out = match node.op {
                Op::MatMul => {
                    let (a, b) = (get(node.inputs[0])?, get(node.inputs[1])?);
                    if a.cols != b.rows {
                        return Err(format!(
                            "MatMul of [{}, {}] by [{}, {}]",
                            a.rows, a.cols, b.rows, b.cols
                        ));
                    }
                    let mut out = vec![0.0f32; a.rows * b.cols];
                    for r in 0..a.rows {
                        let row = &mut out[r * b.cols..(r + 1) * b.cols];
                        for k in 0..a.cols {
                            let av = a.data[r * a.cols + k];
                            let brow = &b.data[k * b.cols..(k + 1) * b.cols];
                            for (o, bv) in row.iter_mut().zip(brow) {
                                *o += av * bv;
                            }
                        }
                    }
                    Mat {
                        rows: a.rows,
                        cols: b.cols,
                        data: out,
                    }
                }
                Op::Add | Op::Sub | Op::Mul | Op::Div => {
                    let (a, b) = (get(node.inputs[0])?, get(node.inputs[1])?);
                    let rows = a.rows.max(b.rows);
                    let cols = a.cols.max(b.cols);
                    let fits = |m: &Mat| {
                        (m.rows == rows || m.rows == 1) && (m.cols == cols || m.cols == 1)
                    };
                    if !fits(a) || !fits(b) {
                        return Err("operands do not broadcast".into());
                    }
                    let at = |m: &Mat, r: usize, c: usize| {
                        m.data[(if m.rows == 1 { 0 } else { r }) * m.cols
                            + if m.cols == 1 { 0 } else { c }]
                    };
                    let f = match node.op {
                        Op::Add => |x: f32, y: f32| x + y,
                        Op::Sub => |x: f32, y: f32| x - y,
                        Op::Mul => |x: f32, y: f32| x * y,
                        _ => |x: f32, y: f32| x / y,
                    };
                    let mut out = Vec::with_capacity(rows * cols);
                    for r in 0..rows {
                        for c in 0..cols {
                            out.push(f(at(a, r, c), at(b, r, c)));
                        }
                    }
                    Mat {
                        rows,
                        cols,
                        data: out,
                    }
                }
                Op::Softmax => {
                    let a = get(node.inputs[0])?;
                    let mut out = a.data.clone();
                    for row in out.chunks_mut(a.cols.max(1)) {
                        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                        let mut sum = 0.0;
                        for v in row.iter_mut() {
                            *v = (*v - m).exp();
                            sum += *v;
                        }
                        for v in row.iter_mut() {
                            *v /= sum;
                        }
                    }
                    Mat {
                        rows: a.rows,
                        cols: a.cols,
                        data: out,
                    }
                }
                op => {
                    let a = get(node.inputs[0])?;
                    let f: Box<dyn Fn(f32) -> f32> = match op {
                        Op::Relu => Box::new(|v: f32| v.max(0.0)),
                        Op::Tanh => Box::new(f32::tanh),
                        Op::Sigmoid => Box::new(|v: f32| 1.0 / (1.0 + (-v).exp())),
                        Op::Elu(alpha) => {
                            Box::new(
                                move |v: f32| if v > 0.0 { v } else { alpha * (v.exp() - 1.0) },
                            )
                        }
                        Op::Erf => Box::new(erf),
                        _ => Box::new(|v: f32| v),
                    };
                    Mat {
                        rows: a.rows,
                        cols: a.cols,
                        data: a.data.iter().map(|v| f(*v)).collect(),
                    }
                }
            };
            vals[node.output] = Some(std::borrow::Cow::Owned(out));
        }
        let out = vals[self.output]
            .take()
            .ok_or("the graph's output was never computed")?
            .into_owned();
        if out.rows != n {
            return Err(format!("the graph returned {} rows for {n}", out.rows));
        }
        Ok((out.data, out.cols))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x})");
        }
    }
}
