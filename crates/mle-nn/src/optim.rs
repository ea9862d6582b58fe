//! Optimizers over flat parameter slices, with Keras' update rules and defaults.
//!
//! Every rule is element-wise, so a parameter server can run one [`Optimizer`] over its own
//! shard of the vector and get the same result as one optimizer over the whole vector.

use crate::spec::{OptimizerKind, OptimizerSpec};

/// An optimizer and its per-element state ("slots").
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    /// Hyperparameters.
    pub spec: OptimizerSpec,
    /// Updates applied so far (Adam's bias correction uses it).
    pub iterations: u64,
    /// Named state vectors, each as long as the parameters.
    pub slots: Vec<(String, Vec<f32>)>,
}

impl Optimizer {
    /// A fresh optimizer for `len` parameters.
    pub fn new(spec: OptimizerSpec, len: usize) -> Self {
        let names: &[&str] = match spec.kind {
            OptimizerKind::Sgd if spec.momentum > 0.0 => &["momentum"],
            OptimizerKind::Sgd => &[],
            OptimizerKind::Adam | OptimizerKind::AdamW => &["m", "v"],
            OptimizerKind::RmsProp if spec.momentum > 0.0 => &["velocity", "momentum"],
            OptimizerKind::RmsProp => &["velocity"],
            OptimizerKind::Adagrad => &["accumulator"],
        };
        let init = |n: &str| {
            let v = if n == "accumulator" {
                spec.initial_accumulator_value as f32
            } else {
                0.0
            };
            (n.to_string(), vec![v; len])
        };
        Self {
            spec,
            iterations: 0,
            slots: names.iter().map(|n| init(n)).collect(),
        }
    }

    /// Applies one update `params -= f(grads)` with learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f64) {
        assert_eq!(params.len(), grads.len(), "parameter and gradient lengths");
        self.iterations += 1;
        let s = self.spec;
        let lr = lr as f32;
        let eps = s.epsilon as f32;
        match (s.kind, self.slots.as_mut_slice()) {
            (OptimizerKind::Sgd, []) => {
                for (w, g) in params.iter_mut().zip(grads) {
                    *w -= lr * g;
                }
            }
            (OptimizerKind::Sgd, [(_, vel)]) => {
                // Keras SGD: v = m·v - lr·g; w += v, or w += m·v - lr·g with Nesterov.
                let m = s.momentum as f32;
                for ((w, g), v) in params.iter_mut().zip(grads).zip(vel.iter_mut()) {
                    *v = m * *v - lr * g;
                    *w += if s.nesterov { m * *v - lr * g } else { *v };
                }
            }
            (OptimizerKind::Adam | OptimizerKind::AdamW, [(_, m), (_, v)]) => {
                // Kingma & Ba (2015), Algorithm 1 with the bias corrections folded into the step
                // size, as Keras does; AdamW first decays w by lr·λ (Loshchilov & Hutter, 2019).
                let t = self.iterations as i32;
                let (b1, b2) = (s.beta_1, s.beta_2);
                let alpha = (lr as f64 * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t))) as f32;
                let (b1, b2) = (b1 as f32, b2 as f32);
                let decay = if s.kind == OptimizerKind::AdamW {
                    lr * s.weight_decay as f32
                } else {
                    0.0
                };
                for (((w, g), m), v) in params
                    .iter_mut()
                    .zip(grads)
                    .zip(m.iter_mut())
                    .zip(v.iter_mut())
                {
                    *w -= decay * *w;
                    *m += (g - *m) * (1.0 - b1);
                    *v += (g * g - *v) * (1.0 - b2);
                    *w -= alpha * *m / (v.sqrt() + eps);
                }
            }
            (OptimizerKind::RmsProp, slots) => {
                // Keras RMSprop: v = ρ·v + (1-ρ)·g²; w -= lr·g / (sqrt(v) + ε), or through a
                // momentum buffer when momentum > 0.
                let rho = s.rho as f32;
                let mom = s.momentum as f32;
                let (vel, rest) = slots
                    .split_first_mut()
                    .expect("rmsprop has a velocity slot");
                let mut momentum = rest.first_mut().map(|(_, m)| m);
                for (i, (w, g)) in params.iter_mut().zip(grads).enumerate() {
                    let v = &mut vel.1[i];
                    *v = rho * *v + (1.0 - rho) * g * g;
                    let inc = lr * g / (v.sqrt() + eps);
                    match momentum.as_deref_mut() {
                        Some(m) => {
                            m[i] = mom * m[i] + inc;
                            *w -= m[i];
                        }
                        None => *w -= inc,
                    }
                }
            }
            (OptimizerKind::Adagrad, [(_, acc)]) => {
                // Duchi et al. (2011): a += g²; w -= lr·g / (sqrt(a) + ε).
                for ((w, g), a) in params.iter_mut().zip(grads).zip(acc.iter_mut()) {
                    *a += g * g;
                    *w -= lr * g / (a.sqrt() + eps);
                }
            }
            (kind, _) => unreachable!("slots of {kind:?} are created by Optimizer::new"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimises f(w) = ½·Σ (w - 3)² from w = 0; every optimizer must get close to 3.
    fn converges(spec: OptimizerSpec, steps: usize) -> f32 {
        let mut w = vec![0.0f32; 4];
        let mut opt = Optimizer::new(spec, 4);
        for _ in 0..steps {
            let g: Vec<f32> = w.iter().map(|w| w - 3.0).collect();
            opt.step(&mut w, &g, spec.learning_rate);
        }
        w[0]
    }

    #[test]
    fn every_optimizer_minimises_a_quadratic() {
        let mut sgd = OptimizerSpec::new(OptimizerKind::Sgd, 0.1);
        assert!((converges(sgd, 200) - 3.0).abs() < 1e-4);
        sgd.momentum = 0.9;
        assert!((converges(sgd, 400) - 3.0).abs() < 1e-3);
        sgd.nesterov = true;
        assert!((converges(sgd, 400) - 3.0).abs() < 1e-3);
        // Adagrad's step shrinks as 1/sqrt(Σg²), so it needs a larger rate.
        for (kind, lr) in [
            (OptimizerKind::Adam, 0.05),
            (OptimizerKind::RmsProp, 0.01),
            (OptimizerKind::Adagrad, 0.5),
        ] {
            let w = converges(OptimizerSpec::new(kind, lr), 3000);
            assert!((w - 3.0).abs() < 0.05, "{kind:?}: {w}");
        }
        // AdamW's decay pulls the optimum slightly towards 0.
        let w = converges(OptimizerSpec::new(OptimizerKind::AdamW, 0.05), 3000);
        assert!(w < 3.0 && w > 2.8, "adamw: {w}");
    }

    #[test]
    fn adam_first_step_matches_the_closed_form() {
        // With bias correction the first Adam step is lr·g/(|g| + ε·...) ≈ lr·sign(g).
        let mut w = vec![1.0f32];
        let mut opt = Optimizer::new(OptimizerSpec::new(OptimizerKind::Adam, 0.01), 1);
        opt.step(&mut w, &[0.5], 0.01);
        assert!((w[0] - (1.0 - 0.01)).abs() < 1e-6, "{}", w[0]);
    }

    #[test]
    fn sharded_updates_equal_whole_updates() {
        let spec = OptimizerSpec::new(OptimizerKind::Adam, 0.01);
        let g = [0.3f32, -1.0, 2.0, 0.1];
        let mut whole = vec![1.0f32, 2.0, 3.0, 4.0];
        let mut a = whole[..2].to_vec();
        let mut b = whole[2..].to_vec();
        let (mut o, mut oa, mut ob) = (
            Optimizer::new(spec, 4),
            Optimizer::new(spec, 2),
            Optimizer::new(spec, 2),
        );
        for _ in 0..3 {
            o.step(&mut whole, &g, 0.01);
            oa.step(&mut a, &g[..2], 0.01);
            ob.step(&mut b, &g[2..], 0.01);
        }
        assert_eq!(&whole[..2], &a[..]);
        assert_eq!(&whole[2..], &b[..]);
    }
}
