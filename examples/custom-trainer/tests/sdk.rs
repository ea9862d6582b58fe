//! The SDK example gets the built-in trainer's services: metric reports, checkpoints, resume.

use std::process::Command;

fn run(job: &std::path::Path, steps: &str, metrics: &std::path::Path) -> std::process::Output {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../abalone/data");
    let out = Command::new(env!("CARGO_BIN_EXE_custom-trainer"))
        .arg("--train-files")
        .arg(data.join("abalone_train.csv"))
        .arg("--eval-files")
        .arg(data.join("abalone_test.csv"))
        .arg("--job-dir")
        .arg(job)
        .args(["--train-steps", steps])
        .env("CLOUD_ML_HP_METRIC_FILE", metrics)
        .env("CLOUD_ML_HP_METRIC_TAG", "rmse")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_custom_burn_model_trains_reports_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("hp.metrics");
    run(&dir.path().join("job"), "1000", &metrics);
    let last = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let rec: serde_json::Value = serde_json::from_str(&last).unwrap();
    let rmse: f64 = rec["rmse"].as_str().unwrap().parse().unwrap();
    assert!(rmse < 2.6, "wide & deep test RMSE {rmse}");
    assert!(
        dir.path()
            .join("job/export/wide_deep/weights.safetensors")
            .is_file()
    );
    let out = run(&dir.path().join("job"), "1500", &metrics);
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming from checkpoint at step 1000"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("final step 1500"));
}

#[test]
fn the_custom_model_trains_with_all_reduce_across_three_processes() {
    let dir = tempfile::tempdir().unwrap();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../abalone/data");
    let port = 24000 + (std::process::id() % 500) as u16 * 8;
    let cluster = format!(
        r#"{{"chief": ["localhost:{}"], "worker": ["localhost:{}", "localhost:{}"]}}"#,
        port,
        port + 1,
        port + 2
    );
    let spawn = |role: &str, index: usize| {
        Command::new(env!("CARGO_BIN_EXE_custom-trainer"))
            .arg("--train-files")
            .arg(data.join("abalone_train.csv"))
            .arg("--eval-files")
            .arg(data.join("abalone_test.csv"))
            .arg("--job-dir")
            .arg(dir.path())
            .args(["--train-steps", "600"])
            .env(
                "TF_CONFIG",
                format!(
                    r#"{{"cluster": {cluster}, "task": {{"type": "{role}", "index": {index}}}}}"#
                ),
            )
            .output()
    };
    let (chief, w0, w1) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("chief", 0));
        let b = s.spawn(|| spawn("worker", 0));
        let c = s.spawn(|| spawn("worker", 1));
        (
            a.join().unwrap().unwrap(),
            b.join().unwrap().unwrap(),
            c.join().unwrap().unwrap(),
        )
    });
    for o in [&chief, &w0, &w1] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(String::from_utf8_lossy(&chief.stdout).contains("final step 600"));
    let w0_out = String::from_utf8_lossy(&w0.stdout);
    assert!(w0_out.contains("replica finished at step 600"), "{w0_out}");
    // Only the primary checkpoints and exports.
    assert!(
        dir.path()
            .join("export/wide_deep/weights.safetensors")
            .is_file()
    );
}
