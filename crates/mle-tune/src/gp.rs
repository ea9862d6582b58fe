//! Gaussian-process regression with a Matérn-5/2 kernel with one length scale per dimension
//! (ARD), hyperparameters fit by maximising the log marginal likelihood (Rasmussen & Williams,
//! "Gaussian Processes for Machine Learning", 2006, eq. 2.30 and 4.17), and expected
//! improvement (Jones, Schonlau & Welch, 1998).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Kernel hyperparameters, in log space.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    /// log length scale per dimension.
    pub log_ls: Vec<f64>,
    /// log signal variance.
    pub log_var: f64,
    /// log noise variance.
    pub log_noise: f64,
}

/// Matérn-5/2 of a scaled squared distance `r2 = Σ ((a_k - b_k) / l_k)²`.
fn matern52_r2(r2: f64, var: f64) -> f64 {
    let r = (5.0 * r2).sqrt();
    var * (1.0 + r + r * r / 3.0) * (-r).exp()
}

/// `1 / l_k²` per dimension.
fn inv_sq_lengths(h: &Hyper) -> Vec<f64> {
    h.log_ls.iter().map(|l| (-2.0 * l).exp()).collect()
}

fn matern52(a: &[f64], b: &[f64], inv_l2: &[f64], var: f64) -> f64 {
    let r2: f64 = a
        .iter()
        .zip(b)
        .zip(inv_l2)
        .map(|((x, y), w)| (x - y) * (x - y) * w)
        .sum();
    matern52_r2(r2, var)
}

/// Dot product with four accumulators (lets the compiler vectorise; the order of additions
/// differs from a plain loop only in rounding).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Lower-triangular Cholesky factor of a symmetric positive-definite matrix (row-major).
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = a[i * n + j] - dot(&l[i * n..i * n + j], &l[j * n..j * n + j]);
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Solves L x = b (forward substitution).
fn solve_lower(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut x = b.to_vec();
    for i in 0..n {
        let s = dot(&l[i * n..i * n + i], &x[..i]);
        x[i] = (x[i] - s) / l[i * n + i];
    }
    x
}

/// Solves Lᵀ x = b (back substitution).
fn solve_upper(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut x = b.to_vec();
    for i in (0..n).rev() {
        for k in i + 1..n {
            x[i] -= l[k * n + i] * x[k];
        }
        x[i] /= l[i * n + i];
    }
    x
}

/// A fitted GP on standardised targets.
pub struct Gp {
    x: Vec<Vec<f64>>,
    l: Vec<f64>,
    alpha: Vec<f64>,
    h: Hyper,
    inv_l2: Vec<f64>,
    mean: f64,
    std: f64,
}

/// Squared coordinate differences of every pair `j <= i` (row-major lower triangle, `d` per
/// pair), computed once per fit: each likelihood evaluation then only reweights them.
fn pair_sq_diffs(x: &[Vec<f64>]) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len() * (x.len() + 1) / 2 * x.first().map_or(0, Vec::len));
    for i in 0..x.len() {
        for j in 0..=i {
            out.extend(x[i].iter().zip(&x[j]).map(|(a, b)| (a - b) * (a - b)));
        }
    }
    out
}

fn log_marginal(n: usize, d2: &[f64], y: &[f64], h: &Hyper) -> Option<(f64, Vec<f64>, Vec<f64>)> {
    let inv_l2 = inv_sq_lengths(h);
    let d = inv_l2.len();
    let var = h.log_var.exp();
    let mut k = vec![0.0; n * n];
    let mut pair = 0;
    for i in 0..n {
        for j in 0..=i {
            let r2: f64 = d2[pair * d..(pair + 1) * d]
                .iter()
                .zip(&inv_l2)
                .map(|(a, w)| a * w)
                .sum();
            pair += 1;
            let v = matern52_r2(r2, var);
            k[i * n + j] = v;
            k[j * n + i] = v;
        }
        k[i * n + i] += h.log_noise.exp() + 1e-9;
    }
    let l = cholesky(&k, n)?;
    let alpha = solve_upper(&l, n, &solve_lower(&l, n, y));
    let fit: f64 = y.iter().zip(&alpha).map(|(a, b)| a * b).sum();
    let logdet: f64 = (0..n).map(|i| l[i * n + i].ln()).sum();
    Some((
        -0.5 * fit - logdet - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln(),
        l,
        alpha,
    ))
}

impl Gp {
    /// Fits hyperparameters (random candidates, then coordinate refinement) and the posterior.
    /// With `prior`, the length scales get a log-normal prior (median 0.5 of the unit cube, one
    /// e-fold of spread) and the fit maximises the posterior density instead of the likelihood,
    /// which keeps a few trials from explaining everything with very short length scales.
    pub fn fit(x: Vec<Vec<f64>>, y: &[f64], rng: &mut ChaCha8Rng, prior: bool) -> Option<Self> {
        let d = x.first()?.len();
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let std = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / y.len() as f64)
            .sqrt()
            .max(1e-9);
        let ys: Vec<f64> = y.iter().map(|v| (v - mean) / std).collect();
        let d2 = pair_sq_diffs(&x);
        let n = x.len();
        let log_prior = |h: &Hyper| {
            if prior {
                let m = 0.5f64.ln();
                -0.5 * h.log_ls.iter().map(|l| (l - m).powi(2)).sum::<f64>()
            } else {
                0.0
            }
        };
        let score = |h: &Hyper| {
            log_marginal(n, &d2, &ys, h)
                .map(|r| r.0 + log_prior(h))
                .unwrap_or(f64::NEG_INFINITY)
        };
        // Priors as bounds: length scales in [0.01, 10] of the unit cube, noise in [1e-6, 1].
        let clamp = |h: &mut Hyper| {
            h.log_ls
                .iter_mut()
                .for_each(|l| *l = l.clamp(0.01f64.ln(), 10f64.ln()));
            h.log_var = h.log_var.clamp(0.05f64.ln(), 20f64.ln());
            h.log_noise = h.log_noise.clamp(1e-6f64.ln(), 0.0);
        };
        let mut best = Hyper {
            log_ls: vec![0.3f64.ln(); d],
            log_var: 0.0,
            log_noise: 1e-3f64.ln(),
        };
        let mut best_score = score(&best);
        for _ in 0..24 {
            let mut h = Hyper {
                log_ls: (0..d)
                    .map(|_| rng.random_range(0.02f64.ln()..3f64.ln()))
                    .collect(),
                log_var: rng.random_range(0.2f64.ln()..5f64.ln()),
                log_noise: rng.random_range(1e-6f64.ln()..0.3f64.ln()),
            };
            clamp(&mut h);
            let s = score(&h);
            if s > best_score {
                (best, best_score) = (h, s);
            }
        }
        for step in [0.5, 0.2, 0.05] {
            for _ in 0..2 {
                for i in 0..d + 2 {
                    for dir in [-1.0, 1.0] {
                        let mut h = best.clone();
                        match i {
                            i if i < d => h.log_ls[i] += dir * step * 2.0,
                            i if i == d => h.log_var += dir * step * 2.0,
                            _ => h.log_noise += dir * step * 4.0,
                        }
                        clamp(&mut h);
                        let s = score(&h);
                        if s > best_score {
                            (best, best_score) = (h, s);
                        }
                    }
                }
            }
        }
        let (_, l, alpha) = log_marginal(n, &d2, &ys, &best)?;
        Some(Self {
            x,
            l,
            alpha,
            inv_l2: inv_sq_lengths(&best),
            h: best,
            mean,
            std,
        })
    }

    /// The fitted length scale per dimension (unit-cube units).
    pub fn length_scales(&self) -> Vec<f64> {
        self.h.log_ls.iter().map(|l| l.exp()).collect()
    }

    /// Posterior mean and standard deviation at `p` (in the targets' units).
    pub fn predict(&self, p: &[f64]) -> (f64, f64) {
        let n = self.x.len();
        let var0 = self.h.log_var.exp();
        let k: Vec<f64> = self
            .x
            .iter()
            .map(|xi| matern52(xi, p, &self.inv_l2, var0))
            .collect();
        let mu: f64 = k.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = solve_lower(&self.l, n, &k);
        let var = (var0 - v.iter().map(|a| a * a).sum::<f64>()).max(1e-12);
        (self.mean + mu * self.std, var.sqrt() * self.std)
    }
}

/// Standard normal density.
fn pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Standard normal CDF via erfc (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
fn cdf(z: f64) -> f64 {
    // erfc(x) ≈ t·exp(-x² + P(t)), t = 1/(1 + x/2), P's coefficients lowest degree first.
    const P: [f64; 10] = [
        -1.265_512_23,
        1.000_023_68,
        0.374_091_96,
        0.096_784_18,
        -0.186_288_06,
        0.278_868_07,
        -1.135_203_98,
        1.488_515_87,
        -0.822_152_23,
        0.170_872_77,
    ];
    let x = -z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = P.iter().rev().fold(0.0, |acc, c| acc * t + c);
    let y = t * (-x * x + poly).exp();
    let erfc = if x >= 0.0 { y } else { 2.0 - y };
    0.5 * erfc
}

/// Expected improvement below `best` (minimisation).
pub fn expected_improvement(mu: f64, sigma: f64, best: f64) -> f64 {
    if sigma <= 1e-12 {
        return (best - mu).max(0.0);
    }
    let z = (best - mu) / sigma;
    (best - mu) * cdf(z) + sigma * pdf(z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn cdf_matches_known_values() {
        assert!((cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((cdf(1.96) - 0.975_002_1).abs() < 1e-6);
        assert!((cdf(-1.0) - 0.158_655_25).abs() < 1e-6);
    }

    #[test]
    fn the_gp_interpolates_a_smooth_function() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let f = |x: f64| (6.0 * x).sin() + x;
        let x: Vec<Vec<f64>> = (0..12).map(|i| vec![i as f64 / 11.0]).collect();
        let y: Vec<f64> = x.iter().map(|p| f(p[0])).collect();
        let gp = Gp::fit(x, &y, &mut rng, false).unwrap();
        for t in [0.05, 0.33, 0.71] {
            let (mu, sd) = gp.predict(&[t]);
            assert!((mu - f(t)).abs() < 0.05, "at {t}: {mu} vs {}", f(t));
            assert!(sd < 0.2);
        }
        // Far outside the data the posterior widens.
        assert!(gp.predict(&[3.0]).1 > gp.predict(&[0.5]).1);
    }
}
