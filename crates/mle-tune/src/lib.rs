//! Hyperparameter search for mle, pure and deterministic (no I/O; the same seed and history give
//! the same proposals): a Vizier-like study over a [`Space`] with Gaussian-process Bayesian
//! optimisation (the default), random search and grid search, plus the median stopping rule.
//!
//! ```
//! use mle_tune::{Algorithm, Domain, Goal, Param, Scale, Space, Tuner};
//! let space = Space { params: vec![Param { name: "lr".into(), domain: Domain::Double { min: 1e-4, max: 1e-1, scale: Scale::Log } }] };
//! let tuner = Tuner { space, goal: Goal::Maximize, algorithm: Algorithm::Random, seed: 7 };
//! let points = tuner.propose(&[], &[], 2).unwrap();
//! assert_eq!(points.len(), 2);
//! assert!(points.iter().all(|p| tuner.space.contains(p)));
//! ```

mod acquisition;
mod gp;
mod space;
mod stopping;

pub use gp::expected_improvement;
pub use space::{Domain, Param, Point, Scale, Space, Value};
pub use stopping::median_stop;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Whether larger objective values are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Larger is better.
    Maximize,
    /// Smaller is better.
    Minimize,
}

impl Goal {
    /// Whether `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Goal::Maximize => a > b,
            Goal::Minimize => a < b,
        }
    }
}

/// Search algorithm (`ALGORITHM_UNSPECIFIED` is Bayesian optimisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Gaussian-process Bayesian optimisation with expected improvement.
    Bayesian,
    /// Every combination, in a stable order.
    Grid,
    /// Uniform in the scaled unit cube.
    Random,
}

/// A study's search settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuner {
    /// The space.
    pub space: Space,
    /// Optimisation direction.
    pub goal: Goal,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Seed.
    pub seed: u64,
}

/// Bayesian optimisation's inner choices. [`BayesOptions::default`] is what studies use; the
/// others exist so that the benchmark can measure each choice (see BENCHMARKS.md).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BayesOptions {
    /// Trials of the initial design before the GP takes over.
    pub initial: usize,
    /// The initial design is a rotated Halton sequence rather than uniform random points.
    pub quasi_random_init: bool,
    /// Acquisition candidates also include perturbations of the best trials so far.
    pub local_candidates: bool,
    /// Length scales get a log-normal prior (maximum a posteriori rather than likelihood).
    pub length_scale_prior: bool,
    /// In spaces of at least this many unit-cube dimensions, the acquisition is confined to a
    /// trust region around the best trial (TuRBO); `None`: never.
    pub trust_region_min_dims: Option<usize>,
}

impl Default for BayesOptions {
    fn default() -> Self {
        Self {
            // Measured on the whole benchmark suite (BENCHMARKS.md, "Tuner ablation"): the
            // quasi-random design and the local candidates won overall, the prior did not;
            // in a second round, the trust region won in every dimension.
            initial: 3,
            quasi_random_init: true,
            local_candidates: true,
            length_scale_prior: false,
            trust_region_min_dims: Some(1),
        }
    }
}

/// The most completed trials the GP is fitted on. Each fit is cubic in the trials, so a long
/// study is fitted on its best half of this and its most recent other half (measured with
/// `mle-bench-tune latency` on Hartmann-6: one proposal with 1,000 completed trials took 7.9 s
/// fitted on all of them).
pub const MAX_GP_TRIALS: usize = 200;

/// The indices of the trials the GP is fitted on: all of them up to [`MAX_GP_TRIALS`], else
/// the best half (lowest `ys`) and the most recent of the rest, in their original order.
fn gp_subset(ys: &[f64]) -> Vec<usize> {
    if ys.len() <= MAX_GP_TRIALS {
        return (0..ys.len()).collect();
    }
    let mut by_value: Vec<usize> = (0..ys.len()).collect();
    by_value.sort_by(|&a, &b| ys[a].total_cmp(&ys[b]).then(a.cmp(&b)));
    let mut keep = vec![false; ys.len()];
    for &i in &by_value[..MAX_GP_TRIALS / 2] {
        keep[i] = true;
    }
    let mut recent = MAX_GP_TRIALS - MAX_GP_TRIALS / 2;
    for i in (0..ys.len()).rev() {
        if recent == 0 {
            break;
        }
        if !keep[i] {
            keep[i] = true;
            recent -= 1;
        }
    }
    (0..ys.len()).filter(|&i| keep[i]).collect()
}

/// Every grid point in a stable order (the last parameter varies fastest); `Err` names a
/// parameter that cannot be enumerated.
pub fn grid(space: &Space) -> Result<Vec<Point>, String> {
    let mut axes: Vec<Vec<Value>> = Vec::new();
    for p in &space.params {
        axes.push(match &p.domain {
            Domain::Double { .. } => {
                return Err(format!(
                    "parameter '{}': GRID_SEARCH cannot enumerate a DOUBLE",
                    p.name
                ));
            }
            Domain::Integer { min, max, .. } => (*min..=*max).map(Value::Int).collect(),
            Domain::Discrete(v) => v.iter().map(|x| Value::Number(*x)).collect(),
            Domain::Categorical(c) => c.iter().map(|x| Value::Text(x.clone())).collect(),
        });
    }
    let mut out: Vec<Point> = vec![Vec::new()];
    for axis in &axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                axis.iter()
                    .map(move |v| [prefix.clone(), vec![v.clone()]].concat())
            })
            .collect();
    }
    Ok(out)
}

impl Tuner {
    fn rng(&self, salt: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn random_point(&self, rng: &mut ChaCha8Rng) -> Point {
        let u: Vec<f64> = (0..self.space.dims())
            .map(|_| rng.random::<f64>())
            .collect();
        self.space.decode(&u)
    }

    /// Proposes `n` new points given the completed trials (point, objective) and the pending
    /// ones (already proposed, no result yet). Grid search returns fewer when it runs out.
    pub fn propose(
        &self,
        completed: &[(Point, f64)],
        pending: &[Point],
        n: usize,
    ) -> Result<Vec<Point>, String> {
        let history = (completed.len() + pending.len()) as u64;
        match self.algorithm {
            Algorithm::Grid => {
                let used: Vec<&Point> = completed.iter().map(|(p, _)| p).chain(pending).collect();
                Ok(grid(&self.space)?
                    .into_iter()
                    .filter(|p| !used.contains(&p))
                    .take(n)
                    .collect())
            }
            Algorithm::Random => Ok((0..n as u64)
                .map(|i| self.random_point(&mut self.rng(history + i)))
                .collect()),
            Algorithm::Bayesian => {
                Ok(self.bayesian(&BayesOptions::default(), completed, pending, n))
            }
        }
    }

    /// [`Tuner::propose`] with Bayesian optimisation's inner choices spelled out; the benchmark
    /// (`bench/tune`) uses it to measure each choice against the others. Other algorithms
    /// ignore `options`.
    #[doc(hidden)]
    pub fn propose_with(
        &self,
        options: &BayesOptions,
        completed: &[(Point, f64)],
        pending: &[Point],
        n: usize,
    ) -> Result<Vec<Point>, String> {
        match self.algorithm {
            Algorithm::Bayesian => Ok(self.bayesian(options, completed, pending, n)),
            _ => self.propose(completed, pending, n),
        }
    }

    /// The initial design's point number `index` (counting completed and pending trials).
    fn initial_point(&self, options: &BayesOptions, index: u64) -> Point {
        if options.quasi_random_init {
            // A Halton sequence with a seeded Cranley–Patterson rotation (Owen, "Monte Carlo
            // theory, methods and examples", 2013, §15.9), so different seeds spread differently.
            let mut shift = self.rng(0x4A17);
            let u: Vec<f64> = (0..self.space.dims())
                .map(|k| {
                    (halton(index + 1, PRIMES[k % PRIMES.len()]) + shift.random::<f64>()).fract()
                })
                .collect();
            self.space.decode(&u)
        } else {
            self.random_point(&mut self.rng(index))
        }
    }

    fn bayesian(
        &self,
        options: &BayesOptions,
        completed: &[(Point, f64)],
        pending: &[Point],
        n: usize,
    ) -> Vec<Point> {
        let history = (completed.len() + pending.len()) as u64;
        let mut rng = self.rng(history.wrapping_add(0xB0));
        let finite: Vec<&(Point, f64)> = completed.iter().filter(|(_, v)| v.is_finite()).collect();
        if finite.len() < options.initial.max(1) {
            return (0..n as u64)
                .map(|i| self.initial_point(options, history + i))
                .collect();
        }
        // Work on minimisation of the (sign-adjusted) objective.
        let sign = if self.goal == Goal::Maximize {
            -1.0
        } else {
            1.0
        };
        let signed: Vec<f64> = finite.iter().map(|(_, v)| sign * v).collect();
        let subset = gp_subset(&signed);
        let mut xs: Vec<Vec<f64>> = subset
            .iter()
            .map(|&i| self.space.encode(&finite[i].0))
            .collect();
        // Output warping (Vizier warps outputs too): ln(1 + y - min y) is monotone, so the
        // argmin is unchanged, but a few huge values (Rosenbrock's) no longer flatten the rest.
        let raw: Vec<f64> = subset.iter().map(|&i| signed[i]).collect();
        let low = raw.iter().cloned().fold(f64::INFINITY, f64::min);
        let mut ys: Vec<f64> = raw.iter().map(|y| (1.0 + y - low).ln()).collect();
        let fit = |xs: Vec<Vec<f64>>, ys: &[f64], rng: &mut ChaCha8Rng| {
            gp::Gp::fit(xs, ys, rng, options.length_scale_prior)
        };
        let Some(mut gp) = fit(xs.clone(), &ys, &mut rng) else {
            return (0..n as u64)
                .map(|i| self.random_point(&mut self.rng(history + i)))
                .collect();
        };
        // The trust region is centred on the best completed trial, before pending trials and
        // this batch's earlier picks join `xs` at their believed values.
        let trust = options
            .trust_region_min_dims
            .filter(|&m| self.space.dims() >= m)
            .map(|_| {
                let best = (0..raw.len()).min_by(|&a, &b| raw[a].total_cmp(&raw[b]));
                acquisition::Trust {
                    centre: xs[best.unwrap_or(0)].clone(),
                    length: acquisition::trust_length(&signed, options.initial, self.space.dims()),
                }
            });
        // Pending trials and earlier picks of this batch count as observed at the posterior mean
        // ("kriging believer"), so parallel proposals spread out instead of duplicating.
        let believe = |x: Vec<f64>,
                       gp: &mut gp::Gp,
                       xs: &mut Vec<Vec<f64>>,
                       ys: &mut Vec<f64>,
                       rng: &mut ChaCha8Rng| {
            let (mu, _) = gp.predict(&x);
            xs.push(x);
            ys.push(mu);
            if let Some(g) = fit(xs.clone(), ys, rng) {
                *gp = g;
            }
        };
        for p in pending {
            believe(self.space.encode(p), &mut gp, &mut xs, &mut ys, &mut rng);
        }
        let mut out = Vec::new();
        for _ in 0..n {
            let pick = acquisition::maximise(
                options,
                &self.space,
                &gp,
                &xs,
                &ys,
                trust.as_ref(),
                &mut rng,
            );
            out.push(self.space.decode(&pick));
            if out.len() < n {
                believe(pick, &mut gp, &mut xs, &mut ys, &mut rng);
            }
        }
        out
    }
}

/// The first primes: Halton bases, one per dimension (cycled beyond 16).
const PRIMES: [u64; 16] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53];

/// The radical inverse of `i` in `base`: the Halton sequence's coordinate (Halton, 1960).
fn halton(mut i: u64, base: u64) -> f64 {
    let (mut f, mut r) = (1.0, 0.0);
    while i > 0 {
        f /= base as f64;
        r += f * (i % base) as f64;
        i /= base;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halton_is_the_radical_inverse() {
        // Base 2: 1 -> .1b, 2 -> .01b, 3 -> .11b, 6 -> .011b; base 3: 5 = 12_3 -> .21_3.
        let got: Vec<f64> = [1, 2, 3, 6].iter().map(|&i| halton(i, 2)).collect();
        assert_eq!(got, vec![0.5, 0.25, 0.75, 0.375]);
        assert!((halton(5, 3) - (2.0 / 3.0 + 1.0 / 9.0)).abs() < 1e-15);
    }

    #[test]
    fn long_studies_are_fitted_on_their_best_and_most_recent_trials() {
        let ys: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1000) as f64).collect();
        let keep = gp_subset(&ys);
        assert_eq!(keep.len(), MAX_GP_TRIALS);
        assert!(keep.windows(2).all(|w| w[0] < w[1]), "original order");
        // The best 100 values (0..100) are all in, and so is the newest trial.
        let kept: Vec<f64> = keep.iter().map(|&i| ys[i]).collect();
        assert!((0..100).all(|v| kept.contains(&(v as f64))));
        assert_eq!(*keep.last().unwrap(), 999);
        assert!(keep.contains(&(1000 - 100)), "the 100 most recent others");
        assert_eq!(gp_subset(&ys[..150]), (0..150).collect::<Vec<_>>());
    }
}
