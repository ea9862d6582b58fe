//! Properties every algorithm must keep, checked over many seeded random spaces, and a
//! numerical check that Bayesian optimisation uses what it learns.

use mle_tune::{
    Algorithm, BayesOptions, Domain, Goal, Param, Point, Scale, Space, Tuner, Value, grid,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_space(rng: &mut ChaCha8Rng, grid_only: bool) -> Space {
    let n = rng.random_range(1..4);
    let params = (0..n)
        .map(|i| {
            let scale = [Scale::Linear, Scale::Log, Scale::ReverseLog][rng.random_range(0..3)];
            let kind = rng.random_range(if grid_only { 1 } else { 0 }..4);
            let domain = match kind {
                0 => Domain::Double {
                    min: 1e-3,
                    max: rng.random_range(0.01..10.0),
                    scale,
                },
                1 => Domain::Integer {
                    min: rng.random_range(1..4),
                    max: rng.random_range(4..9),
                    scale,
                },
                2 => Domain::Categorical(
                    (0..rng.random_range(1..4))
                        .map(|c| format!("c{c}"))
                        .collect(),
                ),
                _ => Domain::Discrete(vec![0.5, 1.0, 4.0]),
            };
            Param {
                name: format!("p{i}"),
                domain,
            }
        })
        .collect();
    Space { params }
}

#[test]
fn every_proposal_lies_in_the_space_and_the_same_seed_gives_the_same_proposals() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for case in 0..30 {
        let space = random_space(&mut rng, false);
        for algorithm in [Algorithm::Random, Algorithm::Bayesian] {
            let tuner = Tuner {
                space: space.clone(),
                goal: Goal::Maximize,
                algorithm,
                seed: case,
            };
            let mut completed: Vec<(Point, f64)> = Vec::new();
            for round in 0..3 {
                let a = tuner.propose(&completed, &[], 2).unwrap();
                let b = tuner.propose(&completed, &[], 2).unwrap();
                assert_eq!(
                    a, b,
                    "case {case} {algorithm:?} round {round}: not deterministic"
                );
                for p in &a {
                    assert!(
                        space.contains(p),
                        "case {case} {algorithm:?}: {p:?} outside {space:?}"
                    );
                    completed.push((p.clone(), rng.random::<f64>()));
                }
            }
        }
    }
}

#[test]
fn grid_search_enumerates_exactly_the_product_in_a_stable_order() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..20 {
        let space = random_space(&mut rng, true);
        let all = grid(&space).unwrap();
        let product: usize = space
            .params
            .iter()
            .map(|p| match &p.domain {
                Domain::Integer { min, max, .. } => (max - min + 1) as usize,
                Domain::Categorical(c) => c.len(),
                Domain::Discrete(v) => v.len(),
                Domain::Double { .. } => unreachable!(),
            })
            .product();
        assert_eq!(all.len(), product);
        let mut dedup = all.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len(), "no duplicates");
        let tuner = Tuner {
            space: space.clone(),
            goal: Goal::Minimize,
            algorithm: Algorithm::Grid,
            seed: 0,
        };
        let mut done: Vec<(Point, f64)> = Vec::new();
        loop {
            let next = tuner.propose(&done, &[], 3).unwrap();
            if next.is_empty() {
                break;
            }
            done.extend(next.into_iter().map(|p| (p, 0.0)));
        }
        assert_eq!(
            done.into_iter().map(|(p, _)| p).collect::<Vec<_>>(),
            all,
            "proposals walk the grid in order"
        );
    }
    let doubles = Space {
        params: vec![Param {
            name: "lr".into(),
            domain: Domain::Double {
                min: 0.1,
                max: 1.0,
                scale: Scale::Linear,
            },
        }],
    };
    assert!(grid(&doubles).unwrap_err().contains("'lr'"));
}

#[test]
fn parallel_bayesian_proposals_do_not_duplicate_each_other() {
    let tuner = Tuner {
        space: unit_interval(),
        goal: Goal::Minimize,
        algorithm: Algorithm::Bayesian,
        seed: 1,
    };
    let completed: Vec<(Point, f64)> = [0.1, 0.5, 0.9]
        .iter()
        .map(|&x| (vec![Value::Number(x)], (x - 0.3f64).powi(2)))
        .collect();
    let batch = tuner.propose(&completed, &[], 3).unwrap();
    let xs: Vec<f64> = batch
        .iter()
        .map(|p| {
            if let Value::Number(x) = p[0] {
                x
            } else {
                unreachable!()
            }
        })
        .collect();
    for i in 0..xs.len() {
        for j in 0..i {
            assert!((xs[i] - xs[j]).abs() > 1e-3, "duplicate proposals {xs:?}");
        }
    }
}

/// Best value found after `n` trials on f(x, y) = (x-0.7)² + (y-0.2)², proposing one at a time.
fn best_after(algorithm: Algorithm, seed: u64, n: usize) -> f64 {
    let p = |name: &str| Param {
        name: name.into(),
        domain: Domain::Double {
            min: 0.0,
            max: 1.0,
            scale: Scale::Linear,
        },
    };
    let tuner = Tuner {
        space: Space {
            params: vec![p("x"), p("y")],
        },
        goal: Goal::Minimize,
        algorithm,
        seed,
    };
    let f = |pt: &Point| match (&pt[0], &pt[1]) {
        (Value::Number(x), Value::Number(y)) => (x - 0.7).powi(2) + (y - 0.2).powi(2),
        _ => unreachable!(),
    };
    let mut done: Vec<(Point, f64)> = Vec::new();
    for _ in 0..n {
        let p = tuner.propose(&done, &[], 1).unwrap().remove(0);
        let v = f(&p);
        done.push((p, v));
    }
    done.iter().map(|d| d.1).fold(f64::INFINITY, f64::min)
}

#[test]
fn bayesian_optimisation_beats_random_search_on_a_smooth_bowl() {
    let (mut bo, mut rs) = (Vec::new(), Vec::new());
    for seed in 0..5 {
        bo.push(best_after(Algorithm::Bayesian, seed, 15));
        rs.push(best_after(Algorithm::Random, seed, 15));
    }
    bo.sort_by(f64::total_cmp);
    rs.sort_by(f64::total_cmp);
    assert!(
        bo[2] < rs[2] / 5.0,
        "median best: BO {} vs random {}",
        bo[2],
        rs[2]
    );
    assert!(bo[2] < 1e-3, "BO median best {}", bo[2]);
}

/// One real parameter on [0, 1].
fn unit_interval() -> Space {
    Space {
        params: vec![Param {
            name: "x".into(),
            domain: Domain::Double {
                min: 0.0,
                max: 1.0,
                scale: Scale::Linear,
            },
        }],
    }
}

#[test]
fn the_initial_design_spreads_out_and_differs_by_seed() {
    let design = |seed| {
        let t = Tuner {
            space: unit_interval(),
            goal: Goal::Minimize,
            algorithm: Algorithm::Bayesian,
            seed,
        };
        let o = BayesOptions {
            initial: 8,
            ..BayesOptions::default()
        };
        let pts = t.propose_with(&o, &[], &[], 8).unwrap();
        let mut u: Vec<f64> = pts
            .iter()
            .map(|p| match p[0] {
                Value::Number(v) => v,
                _ => unreachable!(),
            })
            .collect();
        u.sort_by(f64::total_cmp);
        u
    };
    let a = design(1);
    assert_eq!(a, design(1), "reproducible");
    assert_ne!(a, design(2), "seeded rotation");
    // Halton points 1..=8 in base 2, rotated: no two closer than 1/16 on the circle (uniform
    // random points almost never are).
    let mut gaps: Vec<f64> = a.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.push(1.0 - a[7] + a[0]);
    assert!(gaps.iter().all(|&g| g > 1.0 / 16.0 - 1e-9), "{a:?}");
}

#[test]
fn the_trust_region_does_not_pin_a_categorical_to_the_best_trials_category() {
    let space = Space {
        params: vec![
            Param {
                name: "x".into(),
                domain: Domain::Double {
                    min: 0.0,
                    max: 1.0,
                    scale: Scale::Linear,
                },
            },
            Param {
                name: "kind".into(),
                domain: Domain::Categorical(vec!["a".into(), "b".into(), "c".into()]),
            },
        ],
    };
    // Ten trials, all of category "a": the other two are unknown, so expected improvement
    // wants to try them, trust region or not.
    let completed: Vec<(Point, f64)> = (0..10)
        .map(|i| {
            let x = i as f64 / 9.0;
            (
                vec![Value::Number(x), Value::Text("a".into())],
                (x - 0.4).powi(2),
            )
        })
        .collect();
    let options = BayesOptions {
        trust_region_min_dims: Some(1),
        ..BayesOptions::default()
    };
    let others = (0..6)
        .filter(|&seed| {
            let t = Tuner {
                space: space.clone(),
                goal: Goal::Minimize,
                algorithm: Algorithm::Bayesian,
                seed,
            };
            let p = t.propose_with(&options, &completed, &[], 1).unwrap();
            p[0][1] != Value::Text("a".into())
        })
        .count();
    assert!(
        others >= 3,
        "only {others} of 6 proposals tried another category"
    );
}
