//! Seeded weight initialisers, independent of any backend's random generator so that the same
//! seed gives the same model everywhere.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::spec::Initializer;

/// Fills `out` (a `[fan_in, fan_out]` kernel) following `init`.
pub fn fill(
    init: Initializer,
    fan_in: usize,
    fan_out: usize,
    rng: &mut ChaCha8Rng,
    out: &mut [f32],
) {
    match init {
        Initializer::Zeros => out.fill(0.0),
        Initializer::GlorotUniform => {
            // Glorot & Bengio (2010), eq. 16: U(-l, l) with l = sqrt(6 / (fan_in + fan_out)).
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
            for w in out {
                *w = rng.random_range(-limit..limit) as f32;
            }
        }
        Initializer::HeNormal => {
            // He et al. (2015): std sqrt(2 / fan_in); Keras truncates at two standard deviations
            // and rescales by 1/0.8796 to keep that std after truncation.
            let std = (2.0 / fan_in as f64).sqrt() / 0.879_625_660_296_453;
            for w in out {
                *w = loop {
                    let z = standard_normal(rng);
                    if z.abs() <= 2.0 {
                        break (z * std) as f32;
                    }
                };
            }
        }
    }
}

/// A standard normal sample (Box–Muller).
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn glorot_stays_in_bounds_and_he_has_the_right_spread() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut w = vec![0.0; 10_000];
        fill(Initializer::GlorotUniform, 100, 50, &mut rng, &mut w);
        let limit = (6.0f32 / 150.0).sqrt();
        assert!(w.iter().all(|x| x.abs() <= limit));
        fill(Initializer::HeNormal, 50, 100, &mut rng, &mut w);
        let var = w.iter().map(|x| (x * x) as f64).sum::<f64>() / w.len() as f64;
        assert!((var - 2.0 / 50.0).abs() < 0.004, "var {var}");
    }
}
