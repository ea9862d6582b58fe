//! Numerics checked against independent references: central finite differences for the
//! gradients of every layer, activation and loss (on both engines), and the closed-form
//! least-squares solution.

use mle_nn::{
    Activation, Batch, Engine, Initializer, LayerSpec, Loss, Model, Optimizer, OptimizerKind,
    OptimizerSpec, Sequential, Task,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn dense(units: usize, activation: Activation) -> LayerSpec {
    LayerSpec::Dense {
        units,
        activation,
        use_bias: true,
        kernel_initializer: Initializer::GlorotUniform,
    }
}

/// Compares each engine's gradients with central differences; the relative error of the whole
/// gradient vector must stay under `tol`.
fn check_gradients(model: Sequential, rows: usize, labels: impl Fn(usize) -> f32, tol: f64) {
    for engine in Engine::ALL {
        let mut m = model.clone();
        m.set_engine(engine);
        check_engine_gradients(m, rows, &labels, tol);
    }
}

fn check_engine_gradients(
    mut model: Sequential,
    rows: usize,
    labels: impl Fn(usize) -> f32,
    tol: f64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let w = model.input_width();
    let x: Vec<f32> = (0..rows * w).map(|_| rng.random_range(-1.0..1.0)).collect();
    let y: Vec<f32> = (0..rows).map(&labels).collect();
    let batch = Batch { x: &x, y: &y, rows };
    let mut params = model.init_params(3);
    // Moves biases off zero so every parameter matters.
    for p in params.iter_mut() {
        *p += rng.random_range(-0.1..0.1);
    }
    let mut grads = vec![0.0; params.len()];
    model.loss_and_grad(&params, batch, 5, &mut grads).unwrap();
    let mut scratch = vec![0.0; params.len()];
    let h = 1e-2f32;
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for i in 0..params.len() {
        let orig = params[i];
        params[i] = orig + h;
        let up = model
            .loss_and_grad(&params, batch, 5, &mut scratch)
            .unwrap() as f64;
        params[i] = orig - h;
        let down = model
            .loss_and_grad(&params, batch, 5, &mut scratch)
            .unwrap() as f64;
        params[i] = orig;
        let fd = (up - down) / (2.0 * h as f64);
        diff += (fd - grads[i] as f64).powi(2);
        norm += (grads[i] as f64).powi(2);
    }
    let rel = diff.sqrt() / norm.sqrt().max(1e-6);
    assert!(
        rel < tol,
        "{} on {}: relative gradient error {rel:.2e} (|g| = {:.3e})",
        model.name,
        model.engine().name(),
        norm.sqrt()
    );
}

fn regression(name: &str, layers: &[LayerSpec], loss: Loss) -> Sequential {
    Sequential::new(name, 3, layers, loss, Task::Regression).unwrap()
}

#[test]
fn every_activation_has_correct_gradients() {
    for a in [
        Activation::Linear,
        Activation::Relu,
        Activation::Elu,
        Activation::Gelu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softmax,
    ] {
        let m = regression(
            a.name(),
            &[dense(5, a), dense(1, Activation::Linear)],
            Loss::Mse,
        );
        check_gradients(m, 8, |r| r as f32 * 0.3 - 1.0, 2e-2);
    }
}

#[test]
fn every_regression_loss_has_correct_gradients() {
    for loss in [Loss::Mse, Loss::Mae, Loss::Huber] {
        let m = regression(
            loss.name(),
            &[dense(4, Activation::Tanh), dense(1, Activation::Linear)],
            loss,
        );
        // Targets far from and near to the outputs exercise both branches of Huber.
        check_gradients(
            m,
            10,
            |r| if r % 2 == 0 { 3.0 } else { 0.05 * r as f32 },
            2e-2,
        );
    }
}

#[test]
fn classification_losses_have_correct_gradients() {
    let classes = |n: usize| Task::Classification {
        classes: (0..n).map(|i| format!("c{i}")).collect(),
    };
    for (loss, act) in [
        (Loss::SparseCategoricalCrossentropy, Activation::Softmax),
        (Loss::CategoricalCrossentropy, Activation::Linear),
    ] {
        let m = Sequential::new(
            loss.name(),
            3,
            &[dense(4, Activation::Tanh), dense(3, act)],
            loss,
            classes(3),
        )
        .unwrap();
        check_gradients(m, 9, |r| (r % 3) as f32, 2e-2);
    }
    let m = Sequential::new(
        "bce",
        3,
        &[dense(4, Activation::Elu), dense(1, Activation::Sigmoid)],
        Loss::BinaryCrossentropy,
        classes(2),
    )
    .unwrap();
    check_gradients(m, 8, |r| (r % 2) as f32, 2e-2);
}

#[test]
fn dropout_and_batch_norm_have_correct_gradients() {
    let layers = [
        dense(6, Activation::Tanh),
        LayerSpec::BatchNormalization {
            momentum: 0.9,
            epsilon: 1e-3,
        },
        LayerSpec::Dropout { rate: 0.3 },
        dense(1, Activation::Linear),
    ];
    let m = regression("bn_dropout", &layers, Loss::Mse);
    check_gradients(m, 12, |r| (r as f32).sin(), 3e-2);
}

#[test]
fn a_wrong_gradient_is_detected() {
    // The checker itself must be able to fail: scale one gradient and expect a large error.
    let mut m = regression("probe", &[dense(1, Activation::Linear)], Loss::Mse);
    let x = [0.5f32, -0.2, 0.1, 1.0, 0.3, -0.7];
    let y = [1.0f32, -1.0];
    let p = m.init_params(1);
    let mut g = vec![0.0; p.len()];
    m.loss_and_grad(
        &p,
        Batch {
            x: &x,
            y: &y,
            rows: 2,
        },
        0,
        &mut g,
    )
    .unwrap();
    let mut q = p.clone();
    q[0] += 1e-2;
    let mut s = vec![0.0; p.len()];
    let up = m
        .loss_and_grad(
            &q,
            Batch {
                x: &x,
                y: &y,
                rows: 2,
            },
            0,
            &mut s,
        )
        .unwrap();
    q[0] -= 2e-2;
    let down = m
        .loss_and_grad(
            &q,
            Batch {
                x: &x,
                y: &y,
                rows: 2,
            },
            0,
            &mut s,
        )
        .unwrap();
    let fd = (up - down) / 2e-2;
    assert!((fd - g[0]).abs() < 1e-3 * g[0].abs().max(1.0));
    assert!(
        (fd - 2.0 * g[0]).abs() > 1e-2,
        "a doubled gradient must not pass"
    );
}

/// Solves the normal equations (XᵀX) β = Xᵀy in f64 by Gaussian elimination.
fn least_squares(x: &[f64], y: &[f64], cols: usize) -> Vec<f64> {
    let n = y.len();
    let mut a = vec![vec![0.0; cols + 1]; cols];
    for r in 0..n {
        for i in 0..cols {
            for j in 0..cols {
                a[i][j] += x[r * cols + i] * x[r * cols + j];
            }
            a[i][cols] += x[r * cols + i] * y[r];
        }
    }
    for c in 0..cols {
        let pivot = (c..cols)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, pivot);
        let pivot_row = a[c].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot_row[c];
                for (v, p) in row.iter_mut().zip(&pivot_row).skip(c) {
                    *v -= f * p;
                }
            }
        }
    }
    (0..cols).map(|i| a[i][cols] / a[i][i]).collect()
}

#[test]
fn linear_regression_converges_to_the_least_squares_solution() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let rows = 200;
    let x: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-2.0..2.0)).collect();
    let y: Vec<f32> = (0..rows)
        .map(|r| {
            1.5 * x[r * 3] - 2.0 * x[r * 3 + 1]
                + 0.5 * x[r * 3 + 2]
                + 0.7
                + rng.random_range(-0.3..0.3)
        })
        .collect();
    // Reference: ordinary least squares with an intercept column.
    let design: Vec<f64> = (0..rows)
        .flat_map(|r| {
            [
                x[r * 3] as f64,
                x[r * 3 + 1] as f64,
                x[r * 3 + 2] as f64,
                1.0,
            ]
        })
        .collect();
    let beta = least_squares(&design, &y.iter().map(|&v| v as f64).collect::<Vec<_>>(), 4);

    let mut m = regression("ols", &[dense(1, Activation::Linear)], Loss::Mse);
    let mut p = m.init_params(0);
    let mut opt = Optimizer::new(OptimizerSpec::new(OptimizerKind::Sgd, 0.1), p.len());
    let mut g = vec![0.0; p.len()];
    for step in 0..2000 {
        m.loss_and_grad(&p, Batch { x: &x, y: &y, rows }, step, &mut g)
            .unwrap();
        opt.step(&mut p, &g, 0.1);
    }
    for (i, b) in beta.iter().enumerate() {
        assert!(
            (p[i] as f64 - b).abs() < 1e-4,
            "coefficient {i}: trained {} vs least squares {b}",
            p[i]
        );
    }
}

#[test]
fn batch_norm_moving_statistics_follow_keras() {
    for engine in Engine::ALL {
        batch_norm_moving_statistics_on(engine);
    }
}

fn batch_norm_moving_statistics_on(engine: Engine) {
    let layers = [
        LayerSpec::BatchNormalization {
            momentum: 0.5,
            epsilon: 1e-3,
        },
        dense(1, Activation::Linear),
    ];
    let mut m = regression("bn", &layers, Loss::Mse);
    m.set_engine(engine);
    let p = m.init_params(0);
    let mut g = vec![0.0; p.len()];
    let x = [1.0f32, 2.0, 3.0, 3.0, 4.0, 9.0];
    m.loss_and_grad(
        &p,
        Batch {
            x: &x,
            y: &[0.0, 1.0],
            rows: 2,
        },
        0,
        &mut g,
    )
    .unwrap();
    // moving = 0.5·initial + 0.5·batch; batch means (2, 3, 6), biased variances (1, 1, 9).
    assert_eq!(m.stats[0].mean, vec![1.0, 1.5, 3.0]);
    assert_eq!(m.stats[0].var, vec![1.0, 1.0, 5.0]);
}
