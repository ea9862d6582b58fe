//! Our tuner's side of the tuner benchmark. `serve` answers proposal requests (a box, an
//! algorithm, a seed and the history; JSON lines on stdin, one answer per line on stdout) so
//! that `bench/tune.py` runs mle's Bayesian optimisation and random search on the same problems,
//! seeds and loop as Optuna and Vizier. `latency` times one proposal with 100 and 1,000 completed
//! trials on Hartmann-6 (Surjanovic & Bingham, "Virtual Library of Simulation Experiments").

use std::io::{BufRead, Write};
use std::time::Instant;

use mle_tune::{Algorithm, BayesOptions, Domain, Goal, Param, Point, Scale, Space, Tuner, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Problem {
    name: &'static str,
    bounds: Vec<(f64, f64)>,
    f: fn(&[f64]) -> f64,
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

fn hartmann6_problem() -> Problem {
    Problem {
        name: "hartmann6",
        bounds: vec![(0.0, 1.0); 6],
        f: hartmann6,
    }
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

/// One proposal request of `mle-bench-tune serve`: a box, an algorithm and seed, the history.
#[derive(serde::Deserialize)]
struct Ask {
    bounds: Vec<(f64, f64)>,
    algorithm: String,
    seed: u64,
    completed: Vec<(Vec<f64>, f64)>,
    #[serde(default)]
    pending: Vec<Vec<f64>>,
    n: usize,
    /// Bayesian optimisation's inner choices, to measure them one by one; absent: the default.
    options: Option<Options>,
}

/// The JSON form of [`BayesOptions`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    initial: usize,
    quasi_random_init: bool,
    local_candidates: bool,
    length_scale_prior: bool,
    #[serde(default)]
    trust_region_min_dims: Option<usize>,
}

fn points(xs: &[Vec<f64>]) -> Vec<Point> {
    xs.iter()
        .map(|x| x.iter().map(|v| Value::Number(*v)).collect())
        .collect()
}

/// Answers one [`Ask`] with `{"points": [[x0, x1, ...], ...]}` or `{"error": "..."}`.
fn answer(line: &str) -> serde_json::Value {
    let ask: Ask = match serde_json::from_str(line) {
        Ok(a) => a,
        Err(e) => return serde_json::json!({ "error": e.to_string() }),
    };
    let algorithm = match ask.algorithm.as_str() {
        "bayesian" => Algorithm::Bayesian,
        "random" => Algorithm::Random,
        other => return serde_json::json!({ "error": format!("unknown algorithm {other}") }),
    };
    let problem = Problem {
        name: "asked",
        bounds: ask.bounds,
        f: |_| f64::NAN,
    };
    let tuner = Tuner {
        space: space_of(&problem),
        goal: Goal::Minimize,
        algorithm,
        seed: ask.seed,
    };
    let completed: Vec<(Point, f64)> = ask
        .completed
        .iter()
        .map(|(x, y)| (points(std::slice::from_ref(x)).remove(0), *y))
        .collect();
    let options = ask
        .options
        .map_or_else(BayesOptions::default, |o| BayesOptions {
            initial: o.initial,
            quasi_random_init: o.quasi_random_init,
            local_candidates: o.local_candidates,
            length_scale_prior: o.length_scale_prior,
            trust_region_min_dims: o.trust_region_min_dims,
        });
    match tuner.propose_with(&options, &completed, &points(&ask.pending), ask.n) {
        Ok(ps) => {
            let xs: Vec<Vec<f64>> = ps
                .iter()
                .map(|p| {
                    p.iter()
                        .map(|v| match v {
                            Value::Number(x) => *x,
                            _ => f64::NAN,
                        })
                        .collect()
                })
                .collect();
            serde_json::json!({ "points": xs })
        }
        Err(e) => serde_json::json!({ "error": e }),
    }
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("latency") => latency(&hartmann6_problem()),
        Some("serve") => {
            let stdin = std::io::stdin();
            let mut out = std::io::stdout().lock();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                if writeln!(out, "{}", answer(&line))
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    break;
                }
            }
        }
        _ => {
            eprintln!(
                "usage: mle-bench-tune serve    (proposals for bench/tune.py, JSON lines on stdin)\n       mle-bench-tune latency  (proposal time with 100 and 1,000 trials)"
            );
            std::process::exit(2);
        }
    }
}
