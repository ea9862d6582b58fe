//! Interoperability with peer tools, run in the test venv made by `scripts/test.sh`: event files
//! read back by the `tensorboard` package, and `model.onnx` executed by onnxruntime giving the
//! native model's predictions.

mod util;

use std::io::Write;
use std::process::{Command, Stdio};

use util::*;

fn script(name: &str) -> std::path::PathBuf {
    examples().join("../tests/python").join(name)
}

#[test]
fn tensorboard_reads_the_event_files() {
    let dir = tempfile::tempdir().unwrap();
    run_expect(
        abalone_train(dir.path(), 300, 64)
            .args(["--eval-every-steps", "100", "--log-every-steps", "50"])
            .env("CLOUD_ML_HP_METRIC_TAG", "rmse"),
        0,
    );
    let out = run_expect(
        Command::new(test_python())
            .arg(script("read_events.py"))
            .arg(dir.path()),
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let steps = |split: &str, tag: &str| -> Vec<i64> {
        v[split][tag]
            .as_array()
            .unwrap_or_else(|| panic!("no {split}/{tag} in {v}"))
            .iter()
            .map(|p| p[0].as_i64().unwrap())
            .collect()
    };
    assert_eq!(steps("train", "loss"), vec![50, 100, 150, 200, 250, 300]);
    assert_eq!(steps("eval", "rmse"), vec![100, 200, 300]);
    assert_eq!(steps("eval", "loss"), vec![100, 200, 300]);
    // The eval loss is the MSE, so rmse² equals it at every step.
    for (l, r) in v["eval"]["loss"]
        .as_array()
        .unwrap()
        .iter()
        .zip(v["eval"]["rmse"].as_array().unwrap())
    {
        let (l, r) = (l[1].as_f64().unwrap(), r[1].as_f64().unwrap());
        assert!((r * r - l).abs() < 1e-3 * l, "rmse {r} vs loss {l}");
    }
}

fn onnx_vs_native(spec_dir: &str, train: &str, rows_file: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let ex = examples();
    run_expect(
        mle()
            .arg("train")
            .arg("--model")
            .arg(ex.join(spec_dir).join("model.yaml"))
            .arg("--train-files")
            .arg(ex.join(spec_dir).join("data").join(train))
            .arg("--job-dir")
            .arg(dir.path())
            .args(["--train-steps", "300", "--no-progress"])
            .args(extra),
        0,
    );
    let name = if spec_dir == "abalone" {
        "abalone"
    } else {
        "iris"
    };
    let export = mle_nn::export::latest(&dir.path().join("export").join(name)).unwrap();
    let bundle = mle_nn::export::Bundle::load(&export).unwrap();
    let width = bundle.manifest.inputs.len();
    let text = std::fs::read_to_string(ex.join(spec_dir).join("data").join(rows_file)).unwrap();
    let rows: Vec<Vec<f32>> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<f32> = l
                .split(',')
                .take(width)
                .filter_map(|v| v.trim().parse().ok())
                .collect();
            (f.len() == width).then_some(f)
        })
        .collect();
    assert!(rows.len() > 5);
    let native = bundle.predict(&rows).unwrap();
    let mut child = Command::new(test_python())
        .arg(script("onnx_predict.py"))
        .arg(&export)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&rows).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "onnxruntime failed");
    let onnx: Vec<Vec<f32>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(onnx.len(), native.len());
    for (a, b) in onnx.iter().flatten().zip(native.iter().flatten()) {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "onnxruntime {a} vs native {b}"
        );
    }
}

#[test]
fn onnx_export_matches_native_predictions_in_onnxruntime_regression() {
    onnx_vs_native(
        "abalone",
        "abalone_train.csv",
        "abalone_test.csv",
        &["--train-batch-size", "64"],
    );
}

#[test]
fn onnx_export_matches_native_predictions_in_onnxruntime_with_normalisation_bn_and_softmax() {
    // A spec with every layer kind and input normalisation, on the iris data.
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(examples().join("iris/model.yaml"))
        .unwrap()
        .replace("header: auto", "header: auto\n  normalize: true")
        .replace(
            "  - {type: dense, units: 3, activation: softmax}",
            "  - {type: batch_normalization}\n  - {type: dropout, rate: 0.2}\n  - {type: dense, units: 8, activation: gelu}\n  - {type: dense, units: 8, activation: elu}\n  - {type: dense, units: 3, activation: softmax}",
        );
    let spec_dir = dir.path().join("iris");
    std::fs::create_dir_all(spec_dir.join("data")).unwrap();
    std::fs::write(spec_dir.join("model.yaml"), spec).unwrap();
    for f in ["train_data.csv", "test_data.csv"] {
        std::fs::copy(
            examples().join("iris/data").join(f),
            spec_dir.join("data").join(f),
        )
        .unwrap();
    }
    let rel = pathdiff(&spec_dir);
    onnx_vs_native(
        &rel,
        "train_data.csv",
        "test_data.csv",
        &["--train-batch-size", "16", "--learning-rate", "0.01"],
    );
}

/// `spec_dir` relative to `examples/` (the helper joins it onto examples()).
fn pathdiff(p: &std::path::Path) -> String {
    let ups = examples().components().count();
    format!(
        "{}{}",
        "../".repeat(ups - 1),
        p.display().to_string().trim_start_matches('/')
    )
}
