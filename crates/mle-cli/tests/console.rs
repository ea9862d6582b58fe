//! The web console in a real browser: the real server with real jobs (a training job with
//! evaluations, the book's Iris tuning job), then Debian's `chromium` driven by npm's
//! `playwright-core` through `tests/console/console.test.mjs` (node's own test runner). The
//! browser signs in, watches a job turn SUCCEEDED, reads curves and trials, creates a model
//! and a version and predicts from the page, and checks what a viewer may not do.
//! `MLE_CONSOLE_SHOTS=docs/console` also saves a screenshot of each page there (relative to
//! the repository).

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use util::*;

/// Steps of the training job, and how often it evaluates.
const STEPS: u32 = 2000;
const EVAL_EVERY: u32 = 200;

fn repo() -> PathBuf {
    examples().join("..")
}

/// The node test script's directory, with its `node_modules` (`npm ci` there; `.ci/run` and
/// `scripts/test.sh` do it).
fn console_tests() -> PathBuf {
    let dir = repo().join("tests/console");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "the console tests need playwright-core: run `npm ci` in {}",
        dir.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the console tests need Debian's chromium: apt-get install chromium"
    );
    dir
}

#[test]
fn the_console_works_in_a_real_chromium() {
    let dir = console_tests();
    let tmp = tempfile::tempdir().unwrap();
    let s = start_server(&tmp.path().join("data"), &[], 4);

    // A viewer of the project the jobs run in.
    let (code, viewer) = s.request(
        "POST",
        "/v1/tokens",
        Some(&json!({"name": "watcher", "role": "viewer", "projects": ["default"]}).to_string()),
    );
    assert_eq!(code, 200, "{viewer}");

    // A training job that evaluates every EVAL_EVERY steps.
    let ex = examples();
    let job_dir = tmp.path().join("abalone");
    let train = json!({"jobId": "abalone_curves", "labels": {"team": "console"}, "trainingInput": {
        "masterConfig": {"containerCommand": ["mle", "train"]},
        "jobDir": job_dir,
        "args": ["--model", ex.join("abalone/model.yaml"), "--train-files", ex.join("abalone/data/abalone_train.csv"),
                 "--eval-files", ex.join("abalone/data/abalone_test.csv"), "--train-steps", STEPS.to_string(),
                 "--train-batch-size", "32", "--eval-every-steps", EVAL_EVERY.to_string(), "--no-progress"]}});
    let (code, v) = s.request(
        "POST",
        "/v1/projects/default/jobs",
        Some(&train.to_string()),
    );
    assert_eq!(code, 200, "{v}");

    // The book's tuning job (4 trials of the Iris DNN), to its end.
    let out = hyper_tune_script(&s, &tmp.path().join("iris_hp"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let hp = s
        .request("GET", "/v1/projects/default/jobs/iris_hp", None)
        .1;
    assert_eq!(hp["state"], "SUCCEEDED", "{hp}");

    // How many evaluations the trainer logged (its `step N/M ... eval_loss` lines): what
    // the eval curves must hold, one point each.
    let done = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let (_, j) = s.request("GET", "/v1/projects/default/jobs/abalone_curves", None);
            if j["state"] == "SUCCEEDED" {
                break j;
            }
            assert!(
                std::time::Instant::now() < deadline && j["state"] != "FAILED",
                "{j}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let logs = stdout(
        &s.cli()
            .args([
                "jobs",
                "stream-logs",
                "abalone_curves",
                "--project",
                "default",
            ])
            .output()
            .unwrap(),
    );
    let evals = logs.lines().filter(|l| l.contains("eval_loss")).count();
    assert!(evals >= (STEPS / EVAL_EVERY) as usize, "{logs}\n{done}");

    // The log stream of a finished job: every line in `entries` events, then `end`.
    let out = Command::new("curl")
        .args(["-s", "-N", "--max-time", "60", "-H"])
        .arg(format!("Authorization: Bearer {}", s.token()))
        .arg(format!(
            "{}/v1/projects/default/jobs/abalone_curves/logs/stream",
            s.url
        ))
        .output()
        .unwrap();
    let sse = stdout(&out);
    let events: Vec<&str> = sse.split("\n\n").filter(|e| !e.trim().is_empty()).collect();
    let last = events.last().unwrap();
    assert!(
        last.starts_with("event: end\n") && last.contains("\"SUCCEEDED\""),
        "{sse}"
    );
    let streamed: usize = events
        .iter()
        .filter_map(|e| e.strip_prefix("event: entries\ndata: "))
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .flat_map(|v| v["entries"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["message"].as_str().unwrap_or("").contains("eval_loss"))
        .count();
    assert_eq!(streamed, evals, "{sse}");

    let shots = std::env::var_os("MLE_CONSOLE_SHOTS")
        .map(|d| repo().join(d))
        .unwrap_or_default();
    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec", "console.test.mjs"])
        .current_dir(&dir)
        .env("MLE_URL", &s.url)
        .env("MLE_TOKEN", s.token())
        .env("MLE_VIEWER_TOKEN", viewer["token"].as_str().unwrap())
        .env("MLE_TRAIN_JOB", "abalone_curves")
        .env("MLE_EVALS", evals.to_string())
        .env("MLE_TUNE_JOB", "iris_hp")
        .env("MLE_SHOTS", &shots)
        .env("MLE_PROFILES", tmp.path().join("chromium"))
        .env("MLE_EXAMPLES", &ex)
        .env("MLE_WORK", tmp.path())
        .output()
        .unwrap();
    let text = format!("{}\n{}", stdout(&out), stderr(&out));
    println!("{text}");
    assert!(out.status.success(), "the browser tests failed:\n{text}");
    // Every scenario ran (a test runner that found nothing must not pass).
    assert!(text.contains("pass 10"), "{text}");
}
