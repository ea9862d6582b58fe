//! Shared helpers for tests that run the real `mle` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `mle` binary under test.
pub fn mle() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mle"));
    c.env_remove("TF_CONFIG")
        .env_remove("CLOUD_ML_HP_METRIC_FILE")
        .env_remove("CLOUD_ML_HP_METRIC_TAG");
    c
}

/// `examples/` of the repository.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .canonicalize()
        .expect("examples dir")
}

/// Runs and returns output; panics with both streams when the exit status is not `code`.
pub fn run_expect(cmd: &mut Command, code: i32) -> Output {
    let out = cmd.output().expect("spawn mle");
    if out.status.code() != Some(code) {
        panic!(
            "expected exit {code}, got {:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The Python interpreter of the test venv (made by `scripts/test.sh`): `MLE_TEST_PYTHON`, or
/// `target/test-venv/bin/python`. Tests that need it fail (they do not skip) without it.
pub fn test_python() -> PathBuf {
    if let Some(p) = std::env::var_os("MLE_TEST_PYTHON") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/python");
    assert!(
        p.exists(),
        "no test venv at {}: run ./scripts/test.sh, which creates it",
        p.display()
    );
    p
}

/// The abalone tutorial's training command.
pub fn abalone_train(job_dir: &Path, steps: u64, batch: u64) -> Command {
    let ex = examples();
    let mut c = mle();
    c.arg("train")
        .arg("--model")
        .arg(ex.join("abalone/model.yaml"))
        .arg("--train-files")
        .arg(ex.join("abalone/data/abalone_train.csv"))
        .arg("--eval-files")
        .arg(ex.join("abalone/data/abalone_test.csv"))
        .arg("--job-dir")
        .arg(job_dir)
        .args([
            "--train-steps",
            &steps.to_string(),
            "--train-batch-size",
            &batch.to_string(),
        ])
        .args([
            "--eval-batch-size",
            "850",
            "--eval-steps",
            "1",
            "--learning-rate",
            "0.001",
            "--no-progress",
        ]);
    c
}
