//! `mle train` end to end: the reference workloads' accuracy bars, the metric file, the export,
//! exact resume after SIGKILL, and clear errors on bad input.

mod util;

use std::time::{Duration, Instant};

use util::*;

fn last_metric(path: &std::path::Path, tag: &str) -> f64 {
    let text = std::fs::read_to_string(path).expect("metric file");
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a record")).unwrap();
    last[tag].as_str().expect("string value").parse().unwrap()
}

#[test]
fn abalone_tutorial_reaches_the_tutorial_rmse_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("hp/output.metrics");
    let out = run_expect(
        abalone_train(&dir.path().join("job"), 5000, 3320)
            .env("CLOUD_ML_HP_METRIC_TAG", "rmse")
            .env("CLOUD_ML_HP_METRIC_FILE", &metrics),
        0,
    );
    let rmse = last_metric(&metrics, "rmse");
    assert!(
        rmse <= 2.40,
        "test RMSE {rmse} above the tutorial's bar\n{}",
        stdout(&out)
    );
    // One line per evaluation (every 1000 steps) with step, loss, metric and throughput.
    let text = stdout(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("step "))
        .map(str::trim)
        .collect::<Vec<_>>();
    assert_eq!(lines.len(), 5, "{}", stdout(&out));
    assert!(
        lines[4].starts_with("step 5000/5000  loss ")
            && lines[4].contains("eval_rmse")
            && lines[4].ends_with("examples/s)")
    );
    let export = mle_nn::export::latest(&dir.path().join("job/export/abalone")).expect("an export");
    for f in ["mle_model.json", "weights.safetensors", "model.onnx"] {
        assert!(
            export.join(f).is_file(),
            "{f} missing in {}",
            export.display()
        );
    }
}

#[test]
fn iris_book_split_reaches_the_accuracy_bar() {
    let dir = tempfile::tempdir().unwrap();
    let ex = examples();
    let metrics = dir.path().join("m");
    run_expect(
        mle()
            .arg("train")
            .arg("--model")
            .arg(ex.join("iris/model.yaml"))
            .arg("--train-files")
            .arg(ex.join("iris/data/train_data.csv"))
            .arg("--eval-files")
            .arg(ex.join("iris/data/test_data.csv"))
            .arg("--job-dir")
            .arg(dir.path().join("job"))
            .args([
                "--train-steps",
                "5000",
                "--train_batch_size",
                "20",
                "--first-layer-size=256",
                "--num_layers=3",
                "--scale-factor",
                "0.7",
            ])
            .env("CLOUD_ML_HP_METRIC_TAG", "accuracy")
            .env("CLOUD_ML_HP_METRIC_FILE", &metrics),
        0,
    );
    let acc = last_metric(&metrics, "accuracy");
    assert!(acc >= 0.92, "test accuracy {acc}");
    let manifest = std::fs::read_to_string(
        mle_nn::export::latest(&dir.path().join("job/export/iris"))
            .unwrap()
            .join("mle_model.json"),
    )
    .unwrap();
    // Hidden sizes max(2, int(256 · 0.7^i)): 256, 179, 125.
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let units: Vec<u64> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["units"].as_u64().unwrap())
        .collect();
    assert_eq!(units, vec![256, 179, 125, 3]);
    assert_eq!(
        m["output"]["classes"],
        serde_json::json!(["setosa", "versicolor", "virginica"])
    );
}

#[test]
fn default_metric_tag_reports_the_primary_metric_to_the_hypertune_file() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m");
    run_expect(
        abalone_train(&dir.path().join("job"), 20, 3320).env("CLOUD_ML_HP_METRIC_FILE", &metrics),
        0,
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    let rec: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(rec["global_step"], "20");
    assert!(
        rec["training/hptuning/metric"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 1.0
    );
}

fn export_weights(job: &std::path::Path) -> Vec<u8> {
    let e = mle_nn::export::latest(&job.join("export/abalone")).expect("export");
    std::fs::read(e.join("weights.safetensors")).unwrap()
}

#[test]
fn a_sigkilled_run_resumes_from_its_last_checkpoint_and_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let steps = 40_000;
    let killed = dir.path().join("killed");
    let mut child = abalone_train(&killed, steps, 32)
        .args([
            "--checkpoint-every-steps",
            "500",
            "--eval-every-steps",
            "10000",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ckpts = mle_train::checkpoint::list(&killed.join("checkpoints"));
        if ckpts.last().is_some_and(|(s, _)| *s >= 2000) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "training ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no checkpoint within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: no chance to clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = mle_train::checkpoint::list(&killed.join("checkpoints"))
        .last()
        .unwrap()
        .0;
    assert!(at_kill < steps, "the run finished before the kill");

    let out = run_expect(
        abalone_train(&killed, steps, 32).args([
            "--checkpoint-every-steps",
            "500",
            "--eval-every-steps",
            "10000",
        ]),
        0,
    );
    let err = stderr(&out);
    let resumed: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("resuming from checkpoint at step "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resume line in\n{err}"));
    assert!(
        resumed >= at_kill && resumed > 0,
        "resumed from {resumed}, last checkpoint at kill was {at_kill}"
    );
    assert!(
        stdout(&out).contains(&format!("final step {steps}:")),
        "{}",
        stdout(&out)
    );

    // The same run without interruption ends with bit-identical weights: resume is exact.
    let straight = dir.path().join("straight");
    run_expect(
        abalone_train(&straight, steps, 32).args([
            "--checkpoint-every-steps",
            "500",
            "--eval-every-steps",
            "10000",
        ]),
        0,
    );
    assert!(
        export_weights(&killed) == export_weights(&straight),
        "resumed weights differ from an uninterrupted run"
    );
}

#[test]
fn a_finished_job_dir_is_not_trained_again() {
    let dir = tempfile::tempdir().unwrap();
    run_expect(&mut abalone_train(dir.path(), 10, 3320), 0);
    let out = run_expect(&mut abalone_train(dir.path(), 10, 3320), 0);
    assert!(
        stderr(&out).contains("training already reached step 10"),
        "{}",
        stderr(&out)
    );
}

fn train_err(args: &[&str], spec: &str, data: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("model.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let data_path = dir.path().join("train.csv");
    std::fs::write(&data_path, data).unwrap();
    let out = mle()
        .arg("train")
        .arg("--model")
        .arg(&spec_path)
        .arg("--train-files")
        .arg(&data_path)
        .args(args)
        .output()
        .unwrap();
    let err = stderr(&out).replace(&dir.path().display().to_string(), "DIR");
    assert!(!err.contains("panicked"), "a panic: {err}");
    (out.status.code().unwrap_or(-1), err)
}

const SPEC: &str = "name: m\ndata: {columns: [a, b, y], label: y, header: absent}\nlayers: [{type: dense, units: 1}]\nloss: mse\noptimizer: {type: sgd}\n";

fn check_error(args: &[&str], spec: &str, data: &str, expect: &str) {
    let (code, err) = train_err(args, spec, data);
    assert_ne!(code, 0, "expected a failure for {args:?}");
    assert!(
        err.contains(expect),
        "error output\n{err}\ndoes not contain\n{expect}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_a_nonzero_exit() {
    let ok = "1,2,3\n4,5,6\n";
    check_error(
        &[],
        SPEC,
        "1,2,3\n4,5\n",
        "DIR/train.csv:2: expected 3 columns, found 2",
    );
    check_error(
        &[],
        SPEC,
        "1,2,3\n4,x5,6\n",
        "DIR/train.csv:2: column 2 ('b'): 'x5' is not a number",
    );
    check_error(
        &[],
        &SPEC.replace("dense", "densse"),
        ok,
        "unknown layer type 'densse' (valid: dense, dnn, dropout, batch_normalization)",
    );
    check_error(
        &[],
        &SPEC.replace("units: 1}", "units: 1, activation: swish}"),
        ok,
        "unknown activation 'swish' (valid: linear, relu, elu, gelu, tanh, sigmoid, softmax)",
    );
    check_error(
        &[],
        &SPEC.replace("sgd", "adamax"),
        ok,
        "unknown optimizer 'adamax' (valid: sgd, adam, adamw, rmsprop, adagrad)",
    );
    check_error(
        &["--eval-files", "/no/such/eval.csv"],
        SPEC,
        ok,
        "cannot read /no/such/eval.csv",
    );
    check_error(
        &["--train-steps", "0"],
        SPEC,
        ok,
        "invalid value '0' for '--train-steps <TRAIN_STEPS>': must be at least 1, got 0",
    );
    check_error(
        &["--train-batch-size", "-4"],
        SPEC,
        ok,
        "invalid value '-4' for '--train-batch-size <TRAIN_BATCH_SIZE>': must be at least 1, got -4",
    );
    check_error(
        &["--train-stepz", "3"],
        SPEC,
        ok,
        "unexpected argument '--train-stepz'",
    );
    let (_, err) = train_err(&[], SPEC, ok);
    assert!(
        err.is_empty() || !err.contains("error"),
        "a valid run fails: {err}"
    );
}

#[test]
fn a_missing_spec_names_the_path() {
    let out = mle()
        .args([
            "train",
            "--model",
            "/no/such/model.yaml",
            "--train-files",
            "x.csv",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read model spec /no/such/model.yaml"),
        "{}",
        stderr(&out)
    );
}

/// The last `eval_rmse N` an `mle train` run printed.
fn final_rmse(out: &std::process::Output) -> f64 {
    let text = stdout(out);
    let at = text.rfind("eval_rmse ").unwrap_or_else(|| panic!("{text}")) + "eval_rmse ".len();
    let v = text[at..].split_whitespace().next().unwrap();
    v.parse().unwrap_or_else(|_| panic!("{text}"))
}

#[test]
fn both_engines_train_the_tutorial_to_the_same_model_and_checkpoints_cross_over() {
    let dir = tempfile::tempdir().unwrap();
    let native = run_expect(&mut abalone_train(&dir.path().join("n"), 3000, 32), 0);
    let burn = run_expect(
        abalone_train(&dir.path().join("b"), 3000, 32).args(["--engine", "burn"]),
        0,
    );
    let (a, b) = (final_rmse(&native), final_rmse(&burn));
    assert!((a - b).abs() <= 1e-4 * a, "native {a} vs burn {b}");
    // A checkpoint written by one engine resumes on the other (the layout is the contract).
    let out = run_expect(
        abalone_train(&dir.path().join("n"), 4000, 32).args(["--engine", "burn"]),
        0,
    );
    assert!(
        stderr(&out).contains("resuming from checkpoint at step 3000"),
        "{}",
        stderr(&out)
    );
    let resumed = final_rmse(&out);
    let straight = final_rmse(&run_expect(
        &mut abalone_train(&dir.path().join("s"), 4000, 32),
        0,
    ));
    assert!(
        (resumed - straight).abs() <= 1e-4 * straight,
        "{resumed} vs {straight}"
    );
}

#[test]
fn devices_and_engines_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bad = |args: &[&str], env: Option<&str>, want: &str| {
        let mut c = abalone_train(dir.path(), 10, 32);
        c.args(args);
        if let Some(v) = env {
            c.env("MLE_DEVICE", v);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    };
    bad(&["--engine", "tensorflow"], None, "native");
    bad(&["--device", "tpu"], None, "cuda");
    bad(&[], Some("tpu"), "MLE_DEVICE must be cpu or cuda");
    if !cfg!(feature = "cuda") {
        bad(&["--device", "cuda"], None, "built without CUDA");
        // From the environment (the server's MLE_DEVICE for GPU machine types): a warning, and
        // the job trains on the CPU.
        let out = run_expect(
            abalone_train(dir.path(), 10, 32).env("MLE_DEVICE", "cuda"),
            0,
        );
        assert!(
            stderr(&out).contains("training on the CPU"),
            "{}",
            stderr(&out)
        );
    }
}
