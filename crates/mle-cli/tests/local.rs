//! `mle local train` and `mle local predict` with gcloud's semantics.

mod util;

use util::*;

/// `mle local predict --model-dir DIR --json-instances FILE`.
fn predict(model_dir: &std::path::Path, instances: &std::path::Path) -> std::process::Command {
    let mut c = mle();
    c.args(["local", "predict", "--model-dir"])
        .arg(model_dir)
        .arg("--json-instances")
        .arg(instances);
    c
}

fn fixture() -> std::path::PathBuf {
    examples().join("../tests/fixtures/probe_trainer")
}

#[test]
fn an_unmodified_python_trainer_runs_with_the_cmle_contract() {
    let out_dir = tempfile::tempdir().unwrap();
    let job = out_dir.path().join("job");
    run_expect(
        mle()
            .current_dir(fixture())
            .args([
                "local",
                "train",
                "--package-path",
                "trainer",
                "--module-name",
                "trainer.task",
                "--job-dir",
            ])
            .arg(&job)
            .args(["--", "--train-steps", "7", "--learning_rate=0.1"])
            .env("PROBE_OUT", out_dir.path())
            .env("MLE_PYTHON", test_python()),
        0,
    );
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("single-0.json")).unwrap(),
    )
    .unwrap();
    // User args first, then --job-dir; working directory = the package's parent.
    assert_eq!(
        rec["argv"],
        serde_json::json!([
            "--train-steps",
            "7",
            "--learning_rate=0.1",
            "--job-dir",
            job.to_str().unwrap()
        ])
    );
    assert_eq!(
        rec["cwd"],
        fixture().canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(rec["tf_config"]["cluster"], serde_json::json!({}));
    assert_eq!(rec["tf_config"]["task"], serde_json::json!({}));
    assert_eq!(rec["tf_config"]["environment"], "cloud");
}

#[test]
fn the_exit_code_is_the_trainers() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = mle()
        .current_dir(fixture())
        .args([
            "local",
            "train",
            "--package-path",
            "trainer",
            "--module-name",
            "trainer.task",
        ])
        .env("PROBE_OUT", out_dir.path())
        .env("PROBE_EXIT", "3")
        .env("MLE_PYTHON", test_python())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let out = mle()
        .args([
            "local",
            "train",
            "--package-path",
            "/no/such/pkg",
            "--module-name",
            "t.task",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--package-path /no/such/pkg: not a directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn builtin_local_train_then_local_predict() {
    let dir = tempfile::tempdir().unwrap();
    let ex = examples();
    run_expect(
        mle()
            .args(["local", "train", "--builtin", "--job-dir"])
            .arg(dir.path())
            .arg("--")
            .arg("--model")
            .arg(ex.join("iris/model.yaml"))
            .arg("--train-files")
            .arg(ex.join("iris/data/train_data.csv"))
            .arg("--eval-files")
            .arg(ex.join("iris/data/test_data.csv"))
            .args([
                "--train-steps",
                "3000",
                "--train-batch-size",
                "20",
                "--no-progress",
            ]),
        0,
    );
    let instances = dir.path().join("instances.json");
    std::fs::write(
        &instances,
        "[5.1, 3.5, 1.4, 0.2]\n\n{\"sepal_length\": 7.7, \"sepal_width\": 3.0, \"petal_length\": 6.1, \"petal_width\": 2.3}\n",
    )
    .unwrap();
    // The parent of the timestamped exports picks the newest one.
    let out = run_expect(&mut predict(&dir.path().join("export/iris"), &instances), 0);
    let preds: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(preds.len(), 2);
    let best = |p: &serde_json::Value| {
        let scores: Vec<f64> = p["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        let i = (0..3)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap();
        p["classes"][i].as_str().unwrap().to_string()
    };
    assert_eq!(best(&preds[0]), "setosa");
    assert_eq!(best(&preds[1]), "virginica");

    std::fs::write(&instances, "[5.1, 3.5, 1.4]\n").unwrap();
    let out = predict(&dir.path().join("export/iris"), &instances)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        // The server's instance parser (mle-predict) and its message.
        stderr(&out).contains("line 1: has 3 values, the model reads 4"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&instances, "{\"sepal_length\": \"x\"}\n").unwrap();
    let out = predict(&dir.path().join("export/iris"), &instances)
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("line 1: feature 'sepal_length' is not a number"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn regression_predictions_are_plain_numbers() {
    let dir = tempfile::tempdir().unwrap();
    run_expect(&mut abalone_train(dir.path(), 200, 3320), 0);
    let instances = dir.path().join("i.json");
    std::fs::write(
        &instances,
        "[0.465, 0.39, 0.14, 0.5555, 0.213, 0.1075, 0.215]\n",
    )
    .unwrap();
    let out = run_expect(
        &mut predict(&dir.path().join("export/abalone"), &instances),
        0,
    );
    let v: f64 = stdout(&out).trim().parse().unwrap();
    assert!(v > 1.0 && v < 30.0, "{v}");
}
