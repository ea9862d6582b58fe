//! The native engine against the burn path on the same weights: losses, gradients, outputs
//! and batch-norm statistics of every layer, activation and loss, and whole training runs
//! with every optimizer, within 1e-5 (relative, with a floor for values near zero). And the
//! native engine is bit-for-bit reproducible.

use mle_nn::{
    Activation, Batch, Engine, Initializer, LayerSpec, Loss, Model, Optimizer, OptimizerKind,
    OptimizerSpec, Sequential, Task,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOL: f32 = 1e-5;
/// Element-wise through batch normalisation: burn's autodiff of the batch variance rounds
/// differently in f32 (the native engine reduces in f64); the vector as a whole stays at TOL.
const BN_TOL: f32 = 3e-5;

fn dense(units: usize, activation: Activation) -> LayerSpec {
    LayerSpec::Dense {
        units,
        activation,
        use_bias: true,
        kernel_initializer: Initializer::GlorotUniform,
    }
}

fn close(what: &str, a: &[f32], b: &[f32]) {
    close_within(what, a, b, TOL);
}

fn close_within(what: &str, a: &[f32], b: &[f32], elementwise: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    assert!(
        diff.sqrt() <= f64::from(TOL) * norm.sqrt().max(1e-6),
        "{what}: relative error of the whole vector {:.2e}",
        diff.sqrt() / norm.sqrt()
    );
    let scale = a.iter().chain(b).fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let tol = elementwise * x.abs().max(y.abs()).max(1e-2 * scale).max(1e-3);
        assert!(
            (x - y).abs() <= tol,
            "{what}[{i}]: native {x} vs burn {y} (|diff| {:.2e} > {tol:.2e})",
            (x - y).abs()
        );
    }
}

struct Data {
    x: Vec<f32>,
    y: Vec<f32>,
    rows: usize,
}

fn data(inputs: usize, rows: usize, label: impl Fn(usize) -> f32) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    Data {
        x: (0..rows * inputs)
            .map(|_| rng.random_range(-1.5..1.5))
            .collect(),
        y: (0..rows).map(label).collect(),
        rows,
    }
}

/// One step's loss and gradients, then evaluation, on both engines from the same weights.
fn compare(name: &str, model: Sequential, d: &Data) {
    compare_within(name, model, d, TOL);
}

fn compare_within(name: &str, model: Sequential, d: &Data, elementwise: f32) {
    let mut params = model.init_params(5);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for p in params.iter_mut() {
        *p += rng.random_range(-0.05..0.05);
    }
    let batch = Batch {
        x: &d.x,
        y: &d.y,
        rows: d.rows,
    };
    let mut out = Vec::new();
    for engine in [Engine::Native, Engine::Burn] {
        let mut m = model.clone();
        m.set_engine(engine);
        let mut g = vec![0.0; params.len()];
        let loss = m.loss_and_grad(&params, batch, 3, &mut g).unwrap();
        let (eval_loss, pred) = m.evaluate(&params, batch).unwrap();
        let stats: Vec<f32> = m.buffers().into_iter().flat_map(|(_, v)| v).collect();
        out.push((loss, g, eval_loss, pred, stats));
    }
    let (n, b) = (&out[0], &out[1]);
    close(&format!("{name}: loss"), &[n.0], &[b.0]);
    close_within(&format!("{name}: gradients"), &n.1, &b.1, elementwise);
    close(&format!("{name}: eval loss"), &[n.2], &[b.2]);
    close(&format!("{name}: predictions"), &n.3, &b.3);
    close(&format!("{name}: moving statistics"), &n.4, &b.4);
}

const ACTIVATIONS: [Activation; 7] = [
    Activation::Linear,
    Activation::Relu,
    Activation::Elu,
    Activation::Gelu,
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Softmax,
];

#[test]
fn every_hidden_and_last_activation_agrees() {
    let d = data(4, 16, |r| (r as f32 * 0.37).sin() * 2.0);
    for a in ACTIVATIONS {
        let m = Sequential::new(
            a.name(),
            4,
            &[dense(7, a), dense(5, a), dense(1, Activation::Linear)],
            Loss::Mse,
            Task::Regression,
        )
        .unwrap();
        compare(&format!("hidden {}", a.name()), m, &d);
        // The last layer's own activation (regression predicts act(logits)).
        let m = Sequential::new(
            a.name(),
            4,
            &[dense(6, Activation::Tanh), dense(1, a)],
            Loss::Mse,
            Task::Regression,
        )
        .unwrap();
        compare(&format!("last {}", a.name()), m, &d);
    }
}

#[test]
fn every_loss_agrees() {
    for loss in [Loss::Mse, Loss::Mae, Loss::Huber] {
        // Targets near and far from the outputs: both branches of Huber.
        let d = data(3, 20, |r| if r % 3 == 0 { 4.0 } else { 0.1 * r as f32 });
        let m = Sequential::new(
            loss.name(),
            3,
            &[dense(8, Activation::Relu), dense(1, Activation::Linear)],
            loss,
            Task::Regression,
        )
        .unwrap();
        compare(loss.name(), m, &d);
    }
    let classes = |n: usize| Task::Classification {
        classes: (0..n).map(|i| format!("c{i}")).collect(),
    };
    for (loss, last) in [
        (Loss::SparseCategoricalCrossentropy, Activation::Softmax),
        (Loss::SparseCategoricalCrossentropy, Activation::Linear),
        (Loss::CategoricalCrossentropy, Activation::Softmax),
    ] {
        let d = data(3, 18, |r| (r % 4) as f32);
        let m = Sequential::new(
            loss.name(),
            3,
            &[dense(8, Activation::Elu), dense(4, last)],
            loss,
            classes(4),
        )
        .unwrap();
        compare(&format!("{} over {}", loss.name(), last.name()), m, &d);
    }
    for last in [Activation::Sigmoid, Activation::Linear] {
        let d = data(3, 18, |r| (r % 2) as f32);
        let m = Sequential::new(
            "bce",
            3,
            &[dense(8, Activation::Gelu), dense(1, last)],
            Loss::BinaryCrossentropy,
            classes(2),
        )
        .unwrap();
        compare(&format!("binary_crossentropy over {}", last.name()), m, &d);
    }
}

#[test]
fn dropout_batch_norm_and_layers_without_bias_agree() {
    let d = data(5, 24, |r| (r as f32).cos());
    let layers = [
        dense(9, Activation::Relu),
        LayerSpec::BatchNormalization {
            momentum: 0.9,
            epsilon: 1e-3,
        },
        LayerSpec::Dropout { rate: 0.4 },
        LayerSpec::Dense {
            units: 6,
            activation: Activation::Tanh,
            use_bias: false,
            kernel_initializer: Initializer::HeNormal,
        },
        LayerSpec::BatchNormalization {
            momentum: 0.5,
            epsilon: 1e-2,
        },
        LayerSpec::Dropout { rate: 0.1 },
        dense(1, Activation::Linear),
    ];
    let m = Sequential::new("bn_dropout", 5, &layers, Loss::Mse, Task::Regression).unwrap();
    compare_within("bn_dropout", m, &d, BN_TOL);
    let dnn = LayerSpec::Dnn {
        first_layer_size: 12,
        num_layers: 3,
        scale_factor: 0.6,
        activation: Activation::Relu,
        kernel_initializer: Initializer::GlorotUniform,
    };
    let m = Sequential::new(
        "dnn",
        5,
        &[dnn, dense(1, Activation::Linear)],
        Loss::Mse,
        Task::Regression,
    )
    .unwrap();
    compare("dnn", m, &d);
}

/// Trains `steps` minibatch steps with `kind` on `engine`; the final parameters.
fn train(engine: Engine, spec: OptimizerSpec, steps: u64) -> Vec<f32> {
    let d = data(4, 64, |r| (r as f32 * 0.21).sin());
    let mut m = Sequential::new(
        "train",
        4,
        &[
            dense(10, Activation::Relu),
            LayerSpec::Dropout { rate: 0.2 },
            dense(10, Activation::Tanh),
            dense(1, Activation::Linear),
        ],
        Loss::Mse,
        Task::Regression,
    )
    .unwrap();
    m.set_engine(engine);
    let mut params = m.init_params(1);
    let mut opt = Optimizer::new(spec, params.len());
    let mut g = vec![0.0; params.len()];
    for step in 0..steps {
        let r = (step as usize * 16) % 64;
        let batch = Batch {
            x: &d.x[r * 4..(r + 16) * 4],
            y: &d.y[r..r + 16],
            rows: 16,
        };
        m.loss_and_grad(&params, batch, step, &mut g).unwrap();
        opt.step(&mut params, &g, 0.01);
    }
    params
}

#[test]
fn training_runs_agree_with_every_optimizer() {
    let sgd = OptimizerSpec::new(OptimizerKind::Sgd, 0.01);
    let momentum = OptimizerSpec {
        momentum: 0.9,
        ..sgd
    };
    let nesterov = OptimizerSpec {
        nesterov: true,
        ..momentum
    };
    let rmsprop_momentum = OptimizerSpec {
        momentum: 0.5,
        ..OptimizerSpec::new(OptimizerKind::RmsProp, 0.01)
    };
    for spec in [
        sgd,
        momentum,
        nesterov,
        OptimizerSpec::new(OptimizerKind::Adam, 0.01),
        OptimizerSpec::new(OptimizerKind::AdamW, 0.01),
        OptimizerSpec::new(OptimizerKind::RmsProp, 0.01),
        rmsprop_momentum,
        OptimizerSpec::new(OptimizerKind::Adagrad, 0.01),
    ] {
        let kind = spec;
        let native = train(Engine::Native, spec, 20);
        let burn = train(Engine::Burn, spec, 20);
        // 20 steps compound rounding: a looser bound than one step's.
        let scale = burn.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in native.iter().zip(&burn).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(0.1 * scale),
                "{kind:?} param {i}: native {a} vs burn {b}"
            );
        }
    }
}

#[test]
fn the_native_engine_is_bit_for_bit_reproducible() {
    let adam = OptimizerSpec::new(OptimizerKind::Adam, 0.01);
    let a = train(Engine::Native, adam, 50);
    let b = train(Engine::Native, adam, 50);
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let mut m = Sequential::new(
        "m",
        3,
        &[dense(2, Activation::Relu), dense(1, Activation::Linear)],
        Loss::Mse,
        Task::Regression,
    )
    .unwrap();
    let p = m.init_params(0);
    let mut g = vec![0.0; p.len()];
    let x = [1.0f32; 5];
    let bad = Batch {
        x: &x,
        y: &[1.0, 2.0],
        rows: 2,
    };
    assert!(m.loss_and_grad(&p, bad, 0, &mut g).is_err());
    assert!(m.evaluate(&p, bad).is_err());
    let ok = Batch {
        x: &x[..3],
        y: &[1.0],
        rows: 1,
    };
    assert!(m.loss_and_grad(&p[1..], ok, 0, &mut g).is_err());
    assert!(m.loss_and_grad(&p, ok, 0, &mut g[1..]).is_err());
    let empty = Batch {
        x: &[],
        y: &[],
        rows: 0,
    };
    assert_eq!(m.evaluate(&p, empty).unwrap().1.len(), 0);
}
