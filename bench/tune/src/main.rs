//! Runs our Bayesian optimisation and random search on Branin, Hartmann-6, Rosenbrock-4 and a
//! noisy Branin, one trial at a time, and prints one JSON line per (problem, algorithm, seed)
//! with the best true value after 20 and 50 trials and the time to propose the 101st trial.
//! Test functions: Surjanovic & Bingham, "Virtual Library of Simulation Experiments".

use std::time::Instant;

use mle_tune::{Algorithm, Domain, Goal, Param, Point, Scale, Space, Tuner, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Problem {
    name: &'static str,
    bounds: Vec<(f64, f64)>,
    f: fn(&[f64]) -> f64,
    noise: f64,
    optimum: f64,
}

fn branin(x: &[f64]) -> f64 {
    let (a, b, c, r, s, t) = (
        1.0,
        5.1 / (4.0 * std::f64::consts::PI.powi(2)),
        5.0 / std::f64::consts::PI,
        6.0,
        10.0,
        1.0 / (8.0 * std::f64::consts::PI),
    );
    a * (x[1] - b * x[0] * x[0] + c * x[0] - r).powi(2) + s * (1.0 - t) * x[0].cos() + s
}

fn hartmann6(x: &[f64]) -> f64 {
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    -(0..4)
        .map(|i| {
            ALPHA[i]
                * (-(0..6)
                    .map(|j| A[i][j] * (x[j] - P[i][j]).powi(2))
                    .sum::<f64>())
                .exp()
        })
        .sum::<f64>()
}

fn rosenbrock(x: &[f64]) -> f64 {
    x.windows(2)
        .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
        .sum()
}

/// A uniformly random point of `p`'s box and its value: a completed trial.
fn random_trial(p: &Problem, rng: &mut ChaCha8Rng) -> (Point, f64) {
    let x: Vec<f64> = p
        .bounds
        .iter()
        .map(|&(a, b)| rng.random_range(a..b))
        .collect();
    (x.iter().map(|v| Value::Number(*v)).collect(), (p.f)(&x))
}

/// A problem's box as a tuning space of DOUBLE parameters `x0`, `x1`, ...
fn space_of(p: &Problem) -> Space {
    Space {
        params: p
            .bounds
            .iter()
            .enumerate()
            .map(|(i, &(min, max))| Param {
                name: format!("x{i}"),
                domain: Domain::Double {
                    min,
                    max,
                    scale: Scale::Linear,
                },
            })
            .collect(),
    }
}

/// `mle-bench-tune latency`: the time of one proposal with 100 and 1,000 completed trials (and
/// 0 or 4 pending, as a study with parallel trials has), median of 5, on `p`.
fn latency(p: &Problem) {
    let tuner = Tuner {
        space: space_of(p),
        goal: Goal::Minimize,
        algorithm: Algorithm::Bayesian,
        seed: 1,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut point = || random_trial(p, &mut rng);
    for completed in [100, 1000] {
        for pending in [0, 4] {
            let hist: Vec<(Point, f64)> = (0..completed).map(|_| point()).collect();
            let wait: Vec<Point> = (0..pending).map(|_| point().0).collect();
            let mut ms: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    tuner.propose(&hist, &wait, 1).expect("continuous space");
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            println!(
                "{{\"problem\": \"{}\", \"completed\": {completed}, \"pending\": {pending}, \"propose_ms\": {:.1}}}",
                p.name, ms[2]
            );
        }
    }
}

fn main() {
    let problems = vec![
        Problem {
            name: "branin",
            bounds: vec![(-5.0, 10.0), (0.0, 15.0)],
            f: branin,
            noise: 0.0,
            optimum: 0.397_887,
        },
        Problem {
            name: "hartmann6",
            bounds: vec![(0.0, 1.0); 6],
            f: hartmann6,
            noise: 0.0,
            optimum: -3.322_37,
        },
        Problem {
            name: "rosenbrock4",
            bounds: vec![(-5.0, 10.0); 4],
            f: rosenbrock,
            noise: 0.0,
            optimum: 0.0,
        },
        Problem {
            name: "noisy_branin",
            bounds: vec![(-5.0, 10.0), (0.0, 15.0)],
            f: branin,
            noise: 1.0,
            optimum: 0.397_887,
        },
    ];
    if std::env::args().nth(1).as_deref() == Some("latency") {
        return latency(&problems[1]);
    }
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    for p in &problems {
        let space = space_of(p);
        for (alg, name) in [
            (Algorithm::Bayesian, "mle_bo"),
            (Algorithm::Random, "mle_random"),
        ] {
            for seed in 0..seeds {
                let tuner = Tuner {
                    space: space.clone(),
                    goal: Goal::Minimize,
                    algorithm: alg,
                    seed,
                };
                let mut noise_rng = ChaCha8Rng::seed_from_u64(1000 + seed);
                let mut done: Vec<(Point, f64)> = Vec::new();
                let mut best_true = f64::INFINITY;
                let mut at20 = 0.0;
                for t in 0..50 {
                    let point = tuner
                        .propose(&done, &[], 1)
                        .expect("continuous space")
                        .remove(0);
                    let x: Vec<f64> = point
                        .iter()
                        .map(|v| {
                            if let Value::Number(x) = v {
                                *x
                            } else {
                                f64::NAN
                            }
                        })
                        .collect();
                    let truth = (p.f)(&x);
                    best_true = best_true.min(truth);
                    let observed =
                        truth + p.noise * (noise_rng.random::<f64>() * 2.0 - 1.0) * 1.7320508;
                    done.push((point, observed));
                    if t == 19 {
                        at20 = best_true - p.optimum;
                    }
                }
                let at50 = best_true - p.optimum;
                // Proposal latency with 100 completed trials (only measured once per problem).
                let latency_ms = if seed == 0 && alg == Algorithm::Bayesian {
                    let mut rng = ChaCha8Rng::seed_from_u64(7);
                    let hist: Vec<(Point, f64)> =
                        (0..100).map(|_| random_trial(p, &mut rng)).collect();
                    let t = Instant::now();
                    tuner.propose(&hist, &[], 1).expect("continuous space");
                    t.elapsed().as_secs_f64() * 1000.0
                } else {
                    -1.0
                };
                println!(
                    r#"{{"problem": "{}", "algorithm": "{name}", "seed": {seed}, "regret20": {at20}, "regret50": {at50}, "propose100_ms": {latency_ms}}}"#,
                    p.name
                );
            }
        }
    }
}
