//! Maximising expected improvement over the unit cube: scored candidates (uniform, and with
//! [`BayesOptions::local_candidates`] perturbations of the best trials), then a local search
//! from the best few. Discrete coordinates are snapped through the space's decode and encode, so
//! every candidate is a point the study can run.

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

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The unit-cube point that maximises expected improvement below the best of `ys` (found, not
/// guaranteed: a sampled search), given the GP fitted on `xs` and `ys`.
pub(crate) fn maximise(
    options: &BayesOptions,
    space: &Space,
    gp: &Gp,
    xs: &[Vec<f64>],
    ys: &[f64],
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    let best = ys.iter().cloned().fold(f64::INFINITY, f64::min);
    let snap = |u: &[f64]| space.encode(&space.decode(u));
    let ei = |x: &[f64]| {
        let (mu, sd) = gp.predict(x);
        expected_improvement(mu, sd, best)
    };
    let d = space.dims();
    let mut points: Vec<Vec<f64>> = (0..UNIFORM)
        .map(|_| snap(&(0..d).map(|_| rng.random::<f64>()).collect::<Vec<_>>()))
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
                            *v = (*v + radius * normal(rng)).clamp(0.0, 1.0);
                        }
                    }
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
            let x: Vec<f64> =
                c.1.iter()
                    .map(|v| (v + step * (rng.random::<f64>() * 2.0 - 1.0)).clamp(0.0, 1.0))
                    .collect();
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
