//! The native CPU engine of [`crate::Sequential`]: forward, backward and evaluation as fused loops
//! over buffers kept between steps, on the flat parameter vector (the [`crate::ParamLayout`]
//! is unchanged, so checkpoints, exchange between replicas and exports do not know which
//! engine ran). Safe code only: the dense products are `crate::dense`'s, the element-wise
//! loops run over contiguous slices that the compiler vectorises without bounds checks.
//!
//! The numerics are the burn path's: the same layers, the last dense layer's pre-activation
//! output ("logits") fed to the cross-entropies in their log-sum-exp forms, mean losses,
//! dropout masks from the same seeded stream (so both engines drop the same units), and batch
//! normalisation with the biased batch variance. `tests/numerics.rs` checks the two engines
//! against each other and against finite differences.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::Batch;
use crate::net::{Layer, MovingStats, Net};
use crate::spec::{Activation, Loss};
use crate::{NnError, dense};

/// The seed of a step's dropout masks (shared with the burn path).
pub(crate) fn dropout_rng(step: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(step ^ 0xD1B5_4A32_D192_ED03)
}

/// What one layer keeps from the forward pass for the backward pass.
#[derive(Debug, Clone, Default)]
struct Saved {
    /// The layer's output (`rows × width`).
    out: Vec<f32>,
    /// Dense: the pre-activation (when the activation's derivative needs it). Dropout: the
    /// mask (scaled). Batch norm: the normalised input.
    aux: Vec<f32>,
    /// Batch norm: `1 / sqrt(var + eps)` per feature, and the batch mean and variance.
    inv_std: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

/// Buffers kept between steps (sized for the largest batch seen).
#[derive(Debug, Clone, Default)]
pub struct Workspace {
    saved: Vec<Saved>,
    /// Each layer's output width.
    widths: Vec<usize>,
    /// Gradient with respect to the current layer's output, and its input.
    d_out: Vec<f32>,
    d_in: Vec<f32>,
    /// Scratch: the predictions (regression losses) and batch-norm sums.
    scratch: Vec<f32>,
    sums: Vec<f32>,
}

impl Workspace {
    fn prepare(&mut self, net: &Net<'_>) {
        if self.saved.len() != net.layers.len() {
            self.saved = vec![Saved::default(); net.layers.len()];
            self.widths = net.widths();
        }
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

const SQRT_2: f32 = std::f32::consts::SQRT_2;
/// 1 / sqrt(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `v = act(v)` in place, row by row (`width` values a row).
fn activate(a: Activation, v: &mut [f32], width: usize) {
    match a {
        Activation::Linear => {}
        Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        Activation::Elu => v
            .iter_mut()
            .for_each(|x| *x = if *x > 0.0 { *x } else { x.exp() - 1.0 }),
        Activation::Gelu => v
            .iter_mut()
            .for_each(|x| *x = 0.5 * *x * (1.0 + libm::erff(*x / SQRT_2))),
        Activation::Tanh => v.iter_mut().for_each(|x| *x = x.tanh()),
        Activation::Sigmoid => v.iter_mut().for_each(|x| *x = sigmoid(*x)),
        Activation::Softmax => v.chunks_exact_mut(width).for_each(softmax_in_place),
    }
}

fn softmax_in_place(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    v.iter_mut().for_each(|x| *x /= sum);
}

/// Whether the activation's derivative needs the pre-activation (its output does not give it).
fn needs_z(a: Activation) -> bool {
    a == Activation::Gelu
}

/// `d` (the gradient with respect to `y = act(z)`) becomes the gradient with respect to `z`,
/// in place; `z` is only read for [`needs_z`] activations.
fn activation_backward(act: Activation, z: &[f32], y: &[f32], width: usize, d: &mut [f32]) {
    match act {
        Activation::Linear => {}
        // relu(z) > 0 exactly when z > 0 (the derivative at 0 is 0, as burn's).
        Activation::Relu => d
            .iter_mut()
            .zip(y)
            .for_each(|(g, &o)| *g = if o > 0.0 { *g } else { 0.0 }),
        // elu'(z) = 1 for z > 0, exp(z) = y + 1 otherwise.
        Activation::Elu => d
            .iter_mut()
            .zip(y)
            .for_each(|(g, &o)| *g *= if o > 0.0 { 1.0 } else { o + 1.0 }),
        Activation::Gelu => d.iter_mut().zip(z).for_each(|(g, &v)| {
            let cdf = 0.5 * (1.0 + libm::erff(v / SQRT_2));
            let pdf = INV_SQRT_2PI * (-0.5 * v * v).exp();
            *g *= cdf + v * pdf;
        }),
        Activation::Tanh => d.iter_mut().zip(y).for_each(|(g, &o)| *g *= 1.0 - o * o),
        Activation::Sigmoid => d.iter_mut().zip(y).for_each(|(g, &o)| *g *= o * (1.0 - o)),
        Activation::Softmax => {
            for (g, o) in d.chunks_exact_mut(width).zip(y.chunks_exact(width)) {
                let dot: f32 = g.iter().zip(o).map(|(a, b)| a * b).sum();
                g.iter_mut()
                    .zip(o)
                    .for_each(|(gi, &oi)| *gi = oi * (*gi - dot));
            }
        }
    }
}

/// The activation that turns logits into predictions: the last layer's, or (for a
/// classification loss over linear logits) the sigmoid or softmax.
fn output_activation(net: &Net<'_>) -> Activation {
    match (net.last_activation(), net.loss) {
        (Activation::Linear, Loss::BinaryCrossentropy) => Activation::Sigmoid,
        (Activation::Linear, l) if l.is_classification() => Activation::Softmax,
        (a, _) => a,
    }
}

/// The sign, 0 at 0 (as burn's `abs` differentiates).
fn sign(e: f32) -> f32 {
    if e > 0.0 {
        1.0
    } else if e < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The mean loss of `logits` (`rows × width`) against `y`, and, with `grad`, its gradient with
/// respect to the logits. `scratch` holds the predictions of the regression losses.
fn loss(
    net: &Net<'_>,
    logits: &[f32],
    y: &[f32],
    width: usize,
    scratch: &mut Vec<f32>,
    mut grad: Option<&mut [f32]>,
) -> f32 {
    let rows = y.len();
    let n = (rows * width) as f32;
    let mut total = 0.0f64;
    match net.loss {
        Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => {
            for (r, (z, &label)) in logits.chunks_exact(width).zip(y).enumerate() {
                // The class a label names (clamped, as the burn path's one-hot is).
                let c = (label as usize).min(width - 1);
                let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = z.iter().map(|v| (v - max).exp()).sum();
                total += f64::from(max + sum.ln() - z[c]);
                if let Some(g) = grad.as_deref_mut() {
                    let g = &mut g[r * width..(r + 1) * width];
                    for (j, (gj, v)) in g.iter_mut().zip(z).enumerate() {
                        let p = (v - max).exp() / sum;
                        *gj = (p - if j == c { 1.0 } else { 0.0 }) / rows as f32;
                    }
                }
            }
            (total / rows as f64) as f32
        }
        Loss::BinaryCrossentropy => {
            for (i, (&z, &t)) in logits.iter().zip(y).enumerate() {
                // max(z, 0) - z·y + log(1 + exp(-|z|))
                total += f64::from(z.max(0.0) - z * t + (-z.abs()).exp().ln_1p());
                if let Some(g) = grad.as_deref_mut() {
                    g[i] = (sigmoid(z) - t) / n;
                }
            }
            (total / f64::from(n)) as f32
        }
        Loss::Mse | Loss::Mae | Loss::Huber => {
            scratch.clear();
            scratch.extend_from_slice(logits);
            let act = output_activation(net);
            activate(act, scratch, width);
            for (i, (&o, &t)) in scratch.iter().zip(y).enumerate() {
                let e = o - t;
                let (l, d) = match net.loss {
                    Loss::Mse => (e * e, 2.0 * e),
                    Loss::Mae => (e.abs(), sign(e)),
                    // 0.5·q² + (|e| - q) with q = min(|e|, 1).
                    _ if e.abs() <= 1.0 => (0.5 * e * e, e),
                    _ => (e.abs() - 0.5, sign(e)),
                };
                total += f64::from(l);
                if let Some(g) = grad.as_deref_mut() {
                    g[i] = d / n;
                }
            }
            if let Some(g) = grad {
                activation_backward(act, logits, scratch, width, g);
            }
            (total / f64::from(n)) as f32
        }
    }
}

/// Sizes `v` to `n` values, keeping its allocation.
fn sized(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
}

/// The forward pass of `x` (`rows` rows) into `ws`, each layer's output saved; `train` (the
/// step, which seeds dropout) selects training behaviour (dropout, batch statistics).
fn forward(
    net: &Net<'_>,
    stats: &[MovingStats],
    params: &[f32],
    x: &[f32],
    rows: usize,
    ws: &mut Workspace,
    train: Option<u64>,
) {
    ws.prepare(net);
    // The dropout stream costs a ChaCha key schedule: made at the first layer that drops.
    let mut rng: Option<ChaCha8Rng> = None;
    let layout = net.layout.params();
    let last = net.layers.len() - 1;
    for (i, layer) in net.layers.iter().enumerate() {
        let (before, rest) = ws.saved.split_at_mut(i);
        let input: &[f32] = if i == 0 { x } else { &before[i - 1].out };
        let s = &mut rest[0];
        let width = ws.widths[i];
        sized(&mut s.out, rows * width);
        match *layer {
            Layer::Dense {
                units,
                activation,
                kernel,
                bias,
                ..
            } => {
                let k = &params[layout[kernel].range()];
                let b = bias.map(|b| &params[layout[b].range()]);
                dense::forward(input, k, b, units, &mut s.out);
                // The last layer's output stays the logits.
                if i != last {
                    if needs_z(activation) {
                        s.aux.clone_from(&s.out);
                    }
                    activate(activation, &mut s.out, units);
                }
            }
            Layer::Dropout { rate } => match train {
                Some(step) if rate > 0.0 => {
                    let rng = rng.get_or_insert_with(|| dropout_rng(step));
                    let keep = 1.0 - rate;
                    sized(&mut s.aux, rows * width);
                    for ((o, m), v) in s.out.iter_mut().zip(s.aux.iter_mut()).zip(input) {
                        *m = if rng.random::<f32>() < keep {
                            1.0 / keep
                        } else {
                            0.0
                        };
                        *o = v * *m;
                    }
                }
                _ => {
                    s.aux.clear();
                    s.out.copy_from_slice(input);
                }
            },
            Layer::BatchNorm {
                epsilon,
                gamma,
                beta,
                stats: at,
                features,
                ..
            } => {
                let g = &params[layout[gamma].range()];
                let b = &params[layout[beta].range()];
                sized(&mut s.mean, features);
                sized(&mut s.var, features);
                sized(&mut s.inv_std, features);
                if train.is_some() {
                    // Per feature, in f64: the batch mean, then the biased variance.
                    for j in 0..features {
                        let col = || input.iter().skip(j).step_by(features);
                        let mean = col().map(|&v| f64::from(v)).sum::<f64>() / rows as f64;
                        let var = col().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>()
                            / rows as f64;
                        s.mean[j] = mean as f32;
                        s.var[j] = var as f32;
                    }
                } else {
                    s.mean.copy_from_slice(&stats[at].mean);
                    s.var.copy_from_slice(&stats[at].var);
                }
                for (is, v) in s.inv_std.iter_mut().zip(&s.var) {
                    *is = 1.0 / (v + epsilon).sqrt();
                }
                sized(&mut s.aux, rows * features);
                for ((o, h), r) in s
                    .out
                    .chunks_exact_mut(features)
                    .zip(s.aux.chunks_exact_mut(features))
                    .zip(input.chunks_exact(features))
                {
                    for j in 0..features {
                        h[j] = (r[j] - s.mean[j]) * s.inv_std[j];
                        o[j] = h[j] * g[j] + b[j];
                    }
                }
            }
        }
    }
}

/// Two disjoint ranges of `grads` as mutable slices (the second may be absent).
fn two_mut(
    grads: &mut [f32],
    a: std::ops::Range<usize>,
    b: Option<std::ops::Range<usize>>,
) -> (&mut [f32], Option<&mut [f32]>) {
    match b {
        None => (&mut grads[a], None),
        Some(b) if a.end <= b.start => {
            let (lo, hi) = grads.split_at_mut(b.start);
            (&mut lo[a], Some(&mut hi[..b.end - b.start]))
        }
        Some(b) => {
            let (lo, hi) = grads.split_at_mut(a.start);
            (&mut hi[..a.end - a.start], Some(&mut lo[b]))
        }
    }
}

/// `Model::loss_and_grad` on the native engine: the mean loss, its gradient into `grads`, and
/// the batch-norm moving statistics updated (after the step, as the burn path does).
pub(crate) fn loss_and_grad(
    net: &Net<'_>,
    stats: &mut [MovingStats],
    ws: &mut Workspace,
    params: &[f32],
    batch: Batch<'_>,
    step: u64,
    grads: &mut [f32],
) -> Result<f32, NnError> {
    net.check(params, &batch)?;
    if grads.len() != params.len() {
        return Err(NnError::Shape(format!(
            "{} gradients for {} parameters",
            grads.len(),
            params.len()
        )));
    }
    let rows = batch.rows;
    grads.fill(0.0);
    if rows == 0 {
        return Ok(0.0);
    }
    forward(net, stats, params, batch.x, rows, ws, Some(step));
    let layout = net.layout.params();
    let last = net.layers.len() - 1;
    let out_w = ws.widths[last];
    sized(&mut ws.d_out, rows * out_w);
    let value = loss(
        net,
        &ws.saved[last].out,
        batch.y,
        out_w,
        &mut ws.scratch,
        Some(&mut ws.d_out),
    );
    for i in (0..=last).rev() {
        let in_w = if i == 0 { net.inputs } else { ws.widths[i - 1] };
        let input: &[f32] = if i == 0 {
            batch.x
        } else {
            &ws.saved[i - 1].out
        };
        let s = &ws.saved[i];
        let need_dx = i > 0;
        sized(&mut ws.d_in, if need_dx { rows * in_w } else { 0 });
        match net.layers[i] {
            Layer::Dense {
                units,
                activation,
                kernel,
                bias,
                ..
            } => {
                if i != last {
                    activation_backward(activation, &s.aux, &s.out, units, &mut ws.d_out);
                }
                let k = layout[kernel].range();
                let (dk, db) = two_mut(grads, k.clone(), bias.map(|b| layout[b].range()));
                dense::backward(
                    input,
                    &params[k],
                    &ws.d_out,
                    units,
                    dk,
                    db,
                    need_dx.then_some(&mut ws.d_in[..]),
                );
            }
            Layer::Dropout { .. } => {
                if s.aux.is_empty() {
                    ws.d_in.copy_from_slice(&ws.d_out);
                } else {
                    for ((d, g), m) in ws.d_in.iter_mut().zip(&ws.d_out).zip(&s.aux) {
                        *d = g * m;
                    }
                }
            }
            Layer::BatchNorm {
                features,
                gamma,
                beta,
                ..
            } => {
                let g = &params[layout[gamma].range()];
                let (dg, db) = two_mut(grads, layout[gamma].range(), Some(layout[beta].range()));
                let db = db.expect("batch norm has an offset");
                // Σ dx̂ and Σ dx̂·x̂ per feature (dx̂ = dout·γ), and γ's and β's gradients, in
                // f64.
                ws.sums.clear();
                ws.sums.resize(2 * features, 0.0);
                let (sum_d, sum_dh) = ws.sums.split_at_mut(features);
                for j in 0..features {
                    let (mut sd, mut sh, mut sg) = (0.0f64, 0.0f64, 0.0f64);
                    for (d, h) in ws
                        .d_out
                        .iter()
                        .skip(j)
                        .step_by(features)
                        .zip(s.aux.iter().skip(j).step_by(features))
                    {
                        let (d, h) = (f64::from(*d), f64::from(*h));
                        sg += d * h;
                        sd += d;
                        sh += d * h;
                    }
                    let gj = f64::from(g[j]);
                    dg[j] += sg as f32;
                    db[j] += sd as f32;
                    sum_d[j] = (sd * gj) as f32;
                    sum_dh[j] = (sh * gj) as f32;
                }
                if need_dx {
                    let n = rows as f64;
                    for ((dx, d), h) in ws
                        .d_in
                        .chunks_exact_mut(features)
                        .zip(ws.d_out.chunks_exact(features))
                        .zip(s.aux.chunks_exact(features))
                    {
                        for j in 0..features {
                            // In f64: the three terms nearly cancel.
                            let dh = f64::from(d[j]) * f64::from(g[j]);
                            let t = n * dh
                                - f64::from(sum_d[j])
                                - f64::from(h[j]) * f64::from(sum_dh[j]);
                            dx[j] = (f64::from(s.inv_std[j]) / n * t) as f32;
                        }
                    }
                }
            }
        }
        std::mem::swap(&mut ws.d_out, &mut ws.d_in);
    }
    for (layer, s) in net.layers.iter().zip(&ws.saved) {
        if let Layer::BatchNorm {
            momentum,
            stats: at,
            ..
        } = *layer
        {
            let st = &mut stats[at];
            for (m, b) in st.mean.iter_mut().zip(&s.mean) {
                *m = *m * momentum + b * (1.0 - momentum);
            }
            for (v, b) in st.var.iter_mut().zip(&s.var) {
                *v = *v * momentum + b * (1.0 - momentum);
            }
        }
    }
    Ok(value)
}

/// `Model::evaluate` on the native engine: the mean loss (when `with_loss`) and the
/// predictions (`rows × outputs`), without dropout and with the moving statistics.
pub(crate) fn evaluate(
    net: &Net<'_>,
    stats: &[MovingStats],
    params: &[f32],
    batch: Batch<'_>,
    with_loss: bool,
) -> Result<(f32, Vec<f32>), NnError> {
    net.check(params, &batch)?;
    if batch.rows == 0 {
        return Ok((0.0, Vec::new()));
    }
    let mut ws = Workspace::default();
    forward(net, stats, params, batch.x, batch.rows, &mut ws, None);
    let last = net.layers.len() - 1;
    let width = ws.widths[last];
    let logits = std::mem::take(&mut ws.saved[last].out);
    let value = if with_loss {
        loss(net, &logits, batch.y, width, &mut ws.scratch, None)
    } else {
        0.0
    };
    let mut out = logits;
    activate(output_activation(net), &mut out, width);
    Ok((value, out))
}
