//! Maximising expected improvement over the unit cube: scored candidates (uniform, and with
//! [`BayesOptions::local_candidates`] perturbations of the best trials), then a local search
//! from the best few. With [`BayesOptions::trust_region_min_dims`], the search is confined to a
//! box around the best trial whose size follows the study's successes and failures (TuRBO:
//! Eriksson et al., "Scalable Global Optimization via Local Bayesian Optimization", NeurIPS
//! 2019). Discrete coordinates are snapped through the space's decode and encode, so every
//! candidate is a point the study can run.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::BayesOptions;
use crate::gp::{Gp, expected_improvement};
use crate::space::Space;

/// Uniform candidates scored per proposal.
const UNIFORM: usize = 1500;
/// Best trials whose neighbourhoods are sampled, and the samples per trial and radius.
const LOCAL_CENTRES: usize = 5;
const LOCAL_PER: usize = 60;
/// Radii (standard deviations in the unit cube) of the neighbourhood samples.
const LOCAL_RADII: [f64; 3] = [0.15, 0.04, 0.01];
/// Candidates refined by the local search, and its steps.
const REFINED: usize = 5;
const REFINE_STEPS: usize = 40;

/// TuRBO's trust-region side lengths (in the unit cube, before the length-scale weighting):
/// initial, smallest (below it the region restarts at the initial size) and largest.
const TR_INITIAL: f64 = 0.8;
const TR_MIN: f64 = 0.0078125; // 0.5^7
const TR_MAX: f64 = 1.6;
/// Consecutive improvements that double the region.
const TR_SUCCESSES: usize = 3;

/// The trust region's side length after the study so far: `ys` are the completed values in the
/// order they finished (minimised), the first `initial` of them the initial design. TuRBO's
/// rule, replayed over the history so that a proposal stays a pure function of it: a trial
/// that improves the best by more than 1e-3 of its magnitude is a success, `TR_SUCCESSES` in a
/// row double the side, max(4, dims) failures in a row halve it.
pub(crate) fn trust_length(ys: &[f64], initial: usize, dims: usize) -> f64 {
    let failures = dims.max(4);
    let start = initial.max(1).min(ys.len());
    let mut best = ys[..start].iter().cloned().fold(f64::INFINITY, f64::min);
    let (mut length, mut succ, mut fail) = (TR_INITIAL, 0, 0);
    for &y in ys.iter().skip(start) {
        if y < best - 1e-3 * best.abs() {
            (succ, fail) = (succ + 1, 0);
        } else {
            (succ, fail) = (0, fail + 1);
        }
        best = best.min(y);
        if succ == TR_SUCCESSES {
            (length, succ) = ((2.0 * length).min(TR_MAX), 0);
        }
        if fail == failures {
            (length, fail) = (length / 2.0, 0);
        }
        if length < TR_MIN {
            length = TR_INITIAL;
        }
    }
    length
}

/// A trust region: its centre (the best completed trial, unit cube) and side length.
pub(crate) struct Trust {
    pub(crate) centre: Vec<f64>,
    pub(crate) length: f64,
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The unit-cube point that maximises expected improvement below the best of `ys` (found, not
/// guaranteed: a sampled search), given the GP fitted on `xs` and `ys`; with `trust`, within
/// that trust region.
pub(crate) fn maximise(
    options: &BayesOptions,
    space: &Space,
    gp: &Gp,
    xs: &[Vec<f64>],
    ys: &[f64],
    trust: Option<&Trust>,
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    let best = ys.iter().cloned().fold(f64::INFINITY, f64::min);
    let d = space.dims();
    // The search box: the unit cube, or the trust region, its sides proportional to the GP's
    // length scales with their geometric mean equal to `trust` (TuRBO's weighting). The region
    // bounds ordered coordinates only: a box on one-hot coordinates would pin a categorical
    // to the best trial's category.
    let (lo, hi): (Vec<f64>, Vec<f64>) = match trust {
        None => (vec![0.0; d], vec![1.0; d]),
        Some(Trust { centre, length }) => {
            let ordered = space.ordered();
            let ls = gp.length_scales();
            let logs: Vec<f64> = (0..d).filter(|&k| ordered[k]).map(|k| ls[k].ln()).collect();
            let geo = (logs.iter().sum::<f64>() / logs.len().max(1) as f64).exp();
            (0..d)
                .map(|k| {
                    if !ordered[k] {
                        return (0.0, 1.0);
                    }
                    let half = 0.5 * length * ls[k] / geo;
                    ((centre[k] - half).max(0.0), (centre[k] + half).min(1.0))
                })
                .unzip()
        }
    };
    let clamp = |x: &mut [f64]| {
        for ((v, l), h) in x.iter_mut().zip(&lo).zip(&hi) {
            *v = v.clamp(*l, *h);
        }
    };
    let snap = |u: &[f64]| space.encode(&space.decode(u));
    let ei = |x: &[f64]| {
        let (mu, sd) = gp.predict(x);
        expected_improvement(mu, sd, best)
    };
    let mut points: Vec<Vec<f64>> = (0..UNIFORM)
        .map(|_| {
            let u: Vec<f64> = (0..d)
                .map(|k| lo[k] + (hi[k] - lo[k]) * rng.random::<f64>())
                .collect();
            snap(&u)
        })
        .collect();
    if options.local_candidates {
        let mut order: Vec<usize> = (0..ys.len()).collect();
        order.sort_by(|&a, &b| ys[a].total_cmp(&ys[b]));
        // In more dimensions, perturb a few coordinates at a time (as trust-region and
        // evolutionary searches do), so a neighbour differs from its centre where it matters.
        let p_move = (2.0 / d as f64).min(1.0);
        for &i in order.iter().take(LOCAL_CENTRES) {
            for radius in LOCAL_RADII {
                for _ in 0..LOCAL_PER {
                    let mut x = xs[i].clone();
                    let forced = rng.random_range(0..d);
                    for (k, v) in x.iter_mut().enumerate() {
                        if k == forced || rng.random::<f64>() < p_move {
                            *v += radius * normal(rng);
                        }
                    }
                    clamp(&mut x);
                    points.push(snap(&x));
                }
            }
        }
    }
    let mut candidates: Vec<(f64, Vec<f64>)> = points.into_iter().map(|x| (ei(&x), x)).collect();
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    candidates.truncate(REFINED);
    // Local refinement of the best candidates with shrinking uniform steps.
    for c in candidates.iter_mut() {
        let mut step = if options.local_candidates { 0.05 } else { 0.1 };
        for _ in 0..REFINE_STEPS {
            let mut x: Vec<f64> =
                c.1.iter()
                    .map(|v| v + step * (rng.random::<f64>() * 2.0 - 1.0))
                    .collect();
            clamp(&mut x);
            let x = snap(&x);
            let e = ei(&x);
            if e > c.0 {
                *c = (e, x);
            } else {
                step *= 0.9;
            }
        }
    }
    candidates
        .into_iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|c| c.1)
        .unwrap_or_else(|| vec![0.5; d])
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::space::{Domain, Param, Scale};

    #[test]
    fn the_trust_region_follows_turbos_success_and_failure_counts() {
        // Initial design of 3, then in 2 dimensions: 4 failures halve, 3 successes double.
        let flat = [5.0, 4.0, 6.0, 7.0, 7.0, 7.0, 7.0];
        assert_eq!(trust_length(&flat, 3, 2), TR_INITIAL / 2.0);
        let better = [5.0, 4.0, 6.0, 3.0, 2.0, 1.0];
        assert_eq!(trust_length(&better, 3, 2), (2.0 * TR_INITIAL).min(TR_MAX));
        // A tie or a gain below 1e-3 of the best is a failure; 8 dimensions need 8 in a row.
        let ties = [1.0, 1.0, 1.0, 0.9999, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        assert_eq!(trust_length(&ties, 3, 2), TR_INITIAL / 2.0);
        assert_eq!(trust_length(&ties, 3, 8), TR_INITIAL);
        let mut long = vec![1.0; 3 + 4 * 6];
        assert!((trust_length(&long, 3, 2) - TR_INITIAL / 64.0).abs() < 1e-12);
        // Halving below the smallest side restarts at the initial one.
        long.extend([1.0; 4]);
        assert_eq!(trust_length(&long, 3, 2), TR_INITIAL);
        assert_eq!(trust_length(&[], 3, 2), TR_INITIAL);
    }

    /// A narrow bowl in 8 dimensions: uniform candidates almost never fall inside it, so only
    /// the neighbourhoods of the best trials (inside it) find where expected improvement peaks.
    #[test]
    fn local_candidates_search_around_the_best_trials() {
        let d = 8;
        let space = Space {
            params: (0..d)
                .map(|i| Param {
                    name: format!("x{i}"),
                    domain: Domain::Double {
                        min: 0.0,
                        max: 1.0,
                        scale: Scale::Linear,
                    },
                })
                .collect(),
        };
        let centre = vec![0.3; d];
        let f = |x: &[f64]| {
            let r2 = x
                .iter()
                .zip(&centre)
                .map(|(a, c)| (a - c) * (a - c))
                .sum::<f64>();
            1.0 - (-r2 / 0.02).exp()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut xs: Vec<Vec<f64>> = (0..60)
            .map(|_| (0..d).map(|_| rng.random()).collect())
            .collect();
        xs.extend((0..5).map(|_| centre.iter().map(|c| c + 0.05 * normal(&mut rng)).collect()));
        let ys: Vec<f64> = xs.iter().map(|x| f(x)).collect();
        let best = xs[(0..xs.len())
            .min_by(|&a, &b| ys[a].total_cmp(&ys[b]))
            .unwrap()]
        .clone();
        let gp = Gp::fit(xs.clone(), &ys, &mut rng, false).expect("fit");
        let ei = |x: &[f64]| {
            let (mu, sd) = gp.predict(x);
            expected_improvement(mu, sd, ys.iter().cloned().fold(f64::INFINITY, f64::min))
        };
        let dist = |x: &[f64]| {
            x.iter()
                .zip(&best)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt()
        };
        let (mut wins, mut near, mut uniform_near) = (0, 0, 0);
        for seed in 0..10 {
            let pick = |local_candidates| {
                let options = BayesOptions {
                    local_candidates,
                    ..BayesOptions::default()
                };
                maximise(
                    &options,
                    &space,
                    &gp,
                    &xs,
                    &ys,
                    None,
                    &mut ChaCha8Rng::seed_from_u64(seed),
                )
            };
            let (local, uniform) = (pick(true), pick(false));
            wins += usize::from(ei(&local) > ei(&uniform));
            near += usize::from(dist(&local) < 0.1);
            uniform_near += usize::from(dist(&uniform) < 0.1);
        }
        assert_eq!(near, 10, "every local pick lies near the best trial");
        assert!(
            uniform_near <= 2,
            "{uniform_near} of 10 uniform-only picks lie near it too"
        );
        assert_eq!(
            wins, 10,
            "local candidates found more expected improvement in {wins} of 10"
        );
    }
}
