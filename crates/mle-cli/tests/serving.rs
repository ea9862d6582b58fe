//! Serving end to end: the real server, the book's scripts, the `mle` CLI, REST over ml v1,
//! KServe V1 and the Open Inference Protocol V2, batch prediction jobs, and an ONNX model
//! trained by scikit-learn.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use util::*;

fn script(s: &Server, name: &str, env: &[(&str, &Path)]) -> String {
    let mut cmd = seed_script(s, &format!("iris/scripts/{name}"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = stdout(&out) + &stderr(&out);
    assert!(out.status.success(), "{name}:\n{text}");
    text
}

/// Tunes Iris with the book's script and returns the best finished trial's export root.
fn best_iris_export(s: &Server, dir: &Path) -> PathBuf {
    let job_dir = dir.join("iris_hp");
    script(
        s,
        "hyper-tune.sh",
        &[
            ("JOB_DIR", &job_dir),
            ("JOB_NAME", Path::new("iris_hp")),
            ("TRAIN_STEPS", Path::new("2000")),
        ],
    );
    let (_, job) = s.request("GET", "/v1/projects/default/jobs/iris_hp", None);
    let best = job["trainingOutput"]["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["isTrialStoppedEarly"] == false)
        .unwrap()["trialId"]
        .as_str()
        .unwrap()
        .to_string();
    job_dir.join(best).join("export/iris")
}

fn classes(resp: &Value) -> Vec<String> {
    resp["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("{resp}"))
        .iter()
        .map(|p| {
            let scores: Vec<f64> = p["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let best = (0..scores.len())
                .max_by(|a, b| scores[*a].total_cmp(&scores[*b]))
                .unwrap();
            p["classes"][best].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn the_books_serving_scripts_on_the_best_tuning_trial() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(&dir.path().join("data"), &[], 4);
    let export = best_iris_export(&s, dir.path());
    let text = script(
        &s,
        "create-prediction-service.sh",
        &[("MODEL_BINARIES", &export)],
    );
    assert!(text.contains("done."), "{text}");
    let (code, v) = s.request("GET", "/v1/projects/default/models/iris/versions/v1", None);
    assert_eq!((code, v["state"].as_str()), (200, Some("READY")), "{v}");
    assert_eq!(v["isDefault"], true);
    assert_eq!(v["framework"], "MLE");
    let body = json!({"instances": [[5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]}).to_string();
    let (code, resp) = s.request(
        "POST",
        "/v1/projects/default/models/iris/versions/v1:predict",
        Some(&body),
    );
    assert_eq!(code, 200, "{resp}");
    assert_eq!(classes(&resp), ["setosa", "virginica"]);
    // The default version, named features and CSV lines answer the same.
    let body = json!({"instances": [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
        "7.7,3.0,6.1,2.3"]})
    .to_string();
    let (code, resp2) = s.request(
        "POST",
        "/v1/projects/default/models/iris:predict",
        Some(&body),
    );
    assert_eq!(code, 200, "{resp2}");
    assert_eq!(resp2, resp);
    // The CLI.
    let inst = dir.path().join("instances.json");
    std::fs::write(&inst, "[5.1, 3.5, 1.4, 0.2]\n[7.7, 3.0, 6.1, 2.3]\n").unwrap();
    let out = run_expect(
        s.cli()
            .args(["predict", "--model", "iris", "--json-instances"])
            .arg(&inst),
        0,
    );
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        classes(&json!({"predictions": lines})),
        ["setosa", "virginica"]
    );
    // Batch prediction of the hold-out file: one line per input row, in order.
    let out_dir = dir.path().join("batch");
    let text = script(
        &s,
        "run-batch-prediction.sh",
        &[
            ("OUTPUT_PATH", &out_dir),
            ("JOB_NAME", Path::new("iris_batch")),
        ],
    );
    assert!(text.contains("state: SUCCEEDED"), "{text}");
    let rows = std::fs::read_to_string(examples().join("iris/data/hold_out_test.csv")).unwrap();
    let results =
        std::fs::read_to_string(out_dir.join("prediction.results-00000-of-00001")).unwrap();
    let n = rows.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(results.lines().count(), n);
    let predicted: Vec<Value> = results
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let predicted = classes(&json!({"predictions": predicted}));
    let truth: Vec<&str> = rows.lines().filter_map(|l| l.rsplit(',').next()).collect();
    let right = predicted
        .iter()
        .zip(&truth)
        .filter(|(p, t)| p == *t)
        .count();
    assert!(right as f64 / n as f64 >= 0.9, "{right}/{n} right");
    let (_, job) = s.request("GET", "/v1/projects/default/jobs/iris_batch", None);
    assert_eq!(
        job["predictionOutput"]["predictionCount"],
        n.to_string(),
        "{job}"
    );
    assert_eq!(job["predictionOutput"]["errorCount"], "0");
}

#[test]
fn versions_are_copies_kserve_and_v2_answer_and_bad_input_never_breaks_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(&dir.path().join("data"), &[], 2);
    // A quick abalone export, deployed from a scratch copy that is deleted afterwards.
    let job_dir = dir.path().join("abalone");
    run_expect(&mut abalone_train(&job_dir, 200, 32), 0);
    let src = dir.path().join("src");
    let newest = mle_nn::export::latest(&job_dir.join("export/abalone")).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    for f in std::fs::read_dir(&newest).unwrap().flatten() {
        std::fs::copy(f.path(), src.join(f.file_name())).unwrap();
    }
    run_expect(s.cli().args(["models", "create", "abalone"]), 0);
    run_expect(
        s.cli()
            .args(["versions", "create", "v1", "--model", "abalone", "--origin"])
            .arg(&src),
        0,
    );
    std::fs::remove_dir_all(&src).unwrap();
    let row = [0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15];
    let one = json!({"instances": [row]}).to_string();
    let (code, resp) = s.request(
        "POST",
        "/v1/projects/default/models/abalone:predict",
        Some(&one),
    );
    assert_eq!(code, 200, "{resp}");
    let rings = resp["predictions"][0].as_f64().unwrap();
    assert!(rings.is_finite());
    // KServe V1 and Open Inference Protocol V2 serve the same version.
    let (code, k) = s.request("POST", "/v1/models/abalone:predict", Some(&one));
    assert_eq!((code, &k), (200, &resp));
    assert_eq!(
        s.request("GET", "/v1/models/abalone", None).1["ready"],
        true
    );
    let v2 = json!({"id": "r1", "inputs": [{"name": "input", "shape": [1, 7], "datatype": "FP32", "data": row}]}).to_string();
    let (code, out) = s.request("POST", "/v2/models/abalone/infer", Some(&v2));
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["id"], "r1");
    assert_eq!(out["outputs"][0]["shape"], json!([1, 1]));
    assert!((out["outputs"][0]["data"][0].as_f64().unwrap() - rings).abs() < 1e-5);
    let (code, meta) = s.request("GET", "/v2/models/abalone", None);
    assert_eq!(code, 200);
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 7]));
    assert_eq!(s.request("GET", "/v2/models/abalone/ready", None).0, 200);
    let live = Command::new("curl")
        .args(["-s", &format!("{}/v2/health/live", s.url)])
        .output()
        .unwrap();
    assert_eq!(stdout(&live), r#"{"live":true}"#, "health needs no token");
    // Bad input: a 4xx with {"error": ...}, never a 500, and the server keeps serving.
    let big = format!(r#"{{"instances": [[{}]]}}"#, "1,".repeat(800_000));
    for (body, want) in [
        ("{not json".to_string(), 400),
        (json!({"instances": [[1, 2, 3]]}).to_string(), 400),
        (
            r#"{"instances": [[NaN, 0, 0, 0, 0, 0, 0]]}"#.to_string(),
            400,
        ),
        (json!({"instances": ["1,2,3,4,5,6,NaN"]}).to_string(), 400),
        (
            json!({"instances": [["a", 0, 0, 0, 0, 0, 0]]}).to_string(),
            400,
        ),
        (json!({"instances": []}).to_string(), 400),
        (json!({"rows": [row]}).to_string(), 400),
        (big, 413),
    ] {
        let (code, err) = s.request(
            "POST",
            "/v1/projects/default/models/abalone:predict",
            Some(&body),
        );
        assert_eq!(code, want, "{} → {err}", &body[..body.len().min(60)]);
        assert!(err["error"].is_string(), "{err}");
    }
    for path in [
        "/v1/projects/default/models/nope:predict",
        "/v1/projects/default/models/abalone/versions/v9:predict",
        "/v1/models/nope:predict",
        "/v2/models/nope/infer",
    ] {
        let (code, err) = s.request("POST", path, Some(&one));
        assert_eq!(code, 404, "{path}: {err}");
    }
    let (code, err) = s.request(
        "POST",
        "/v2/models/abalone/infer",
        Some(&json!({"inputs": [{"name": "input", "shape": [2, 7], "datatype": "FP32", "data": row}]}).to_string()),
    );
    assert_eq!(code, 400, "{err}");
    let (code, _) = s.request(
        "POST",
        "/v1/projects/default/models/abalone:predict",
        Some(&one),
    );
    assert_eq!(code, 200, "still serving");
    // A model with versions cannot be deleted; versions, then the model, can.
    let (code, err) = s.request("DELETE", "/v1/projects/default/models/abalone", None);
    assert_eq!(code, 400, "{err}");
    run_expect(
        s.cli()
            .args(["versions", "delete", "v1", "--model", "abalone"]),
        0,
    );
    run_expect(s.cli().args(["models", "delete", "abalone"]), 0);
    let (code, _) = s.request(
        "POST",
        "/v1/projects/default/models/abalone:predict",
        Some(&one),
    );
    assert_eq!(code, 404);
    // A version from a directory without a model fails validation up front.
    run_expect(s.cli().args(["models", "create", "empty"]), 0);
    let out = run_expect(
        s.cli()
            .args(["versions", "create", "v1", "--model", "empty", "--origin"])
            .arg(dir.path()),
        1,
    );
    assert!(
        stderr(&out).contains("neither an mle export"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_scikit_learn_model_converted_to_onnx_predicts_like_scikit_learn() {
    let dir = tempfile::tempdir().unwrap();
    let py = test_python();
    let s = start_server(
        &dir.path().join("data"),
        &[("MLE_PYTHON", py.to_str().unwrap())],
        2,
    );
    let job_dir = dir.path().join("sk");
    let data = examples().join("iris/data");
    run_expect(
        s.cli()
            .current_dir(examples().join("../tests/fixtures/sklearn_trainer"))
            .args(["jobs", "submit", "training", "iris_sklearn"])
            .args([
                "--package-path",
                "trainer",
                "--module-name",
                "trainer.task",
                "--job-dir",
            ])
            .arg(&job_dir)
            .args(["--stream-logs", "--", "--train-files"])
            .arg(data.join("train_data.csv"))
            .arg("--hold-out")
            .arg(data.join("hold_out_test.csv")),
        0,
    );
    run_expect(s.cli().args(["models", "create", "iris_sk"]), 0);
    run_expect(
        s.cli()
            .args([
                "versions",
                "create",
                "v1",
                "--model",
                "iris_sk",
                "--framework",
                "onnx",
                "--origin",
            ])
            .arg(job_dir.join("model")),
        0,
    );
    let (_, v) = s.request(
        "GET",
        "/v1/projects/default/models/iris_sk/versions/v1",
        None,
    );
    assert_eq!(v["framework"], "ONNX", "{v}");
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(job_dir.join("sklearn_predictions.json")).unwrap(),
    )
    .unwrap();
    let body = json!({"instances": want["rows"]}).to_string();
    let (code, resp) = s.request(
        "POST",
        "/v1/projects/default/models/iris_sk:predict",
        Some(&body),
    );
    assert_eq!(code, 200, "{resp}");
    let got = classes(&resp);
    let want: Vec<String> = want["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), 38);
    assert_eq!(got, want);
    // The class names come from the ONNX model itself.
    assert_eq!(
        resp["predictions"][0]["classes"],
        json!(["setosa", "versicolor", "virginica"])
    );
}
