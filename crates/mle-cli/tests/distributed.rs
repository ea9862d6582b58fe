//! Distributed training with real replica processes on loopback: the launch contract of
//! `mle local train --distributed`, accuracy of parameter-server and all-reduce training against
//! one process, exactness of synchronous all-reduce, and failure handling with no process left.

mod util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use util::*;

/// Non-overlapping port blocks for tests running in parallel (and for parallel test binaries).
fn ports(n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Below Linux's ephemeral range (32768+), where outgoing connections take their ports.
    let base = 10000 + (std::process::id() % 100) as u16 * 100;
    base + NEXT.fetch_add(n, Ordering::SeqCst)
}

/// PIDs of live processes whose environment holds `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&env).contains(marker) {
            out.push(pid);
        }
    }
    out
}

fn marker() -> String {
    format!("MLE_TEST_MARKER=dist-{}-{}", std::process::id(), ports(1))
}

fn abalone_args(job: &Path, steps: u64, batch: u64) -> Vec<String> {
    let ex = examples();
    [
        "--model".into(),
        ex.join("abalone/model.yaml").display().to_string(),
        "--train-files".into(),
        ex.join("abalone/data/abalone_train.csv")
            .display()
            .to_string(),
        "--eval-files".into(),
        ex.join("abalone/data/abalone_test.csv")
            .display()
            .to_string(),
        "--job-dir".into(),
        job.display().to_string(),
        "--train-steps".into(),
        steps.to_string(),
        "--train-batch-size".into(),
        batch.to_string(),
        "--eval-every-steps".into(),
        "100000".into(),
        "--no-progress".into(),
    ]
    .to_vec()
}

fn local_cluster(workers: usize, ps: usize, extra: &[String]) -> Command {
    let mut c = mle();
    c.args(["local", "train", "--distributed", "--builtin"])
        .args([
            "--worker-count",
            &workers.to_string(),
            "--parameter-server-count",
            &ps.to_string(),
        ])
        .args(["--start-port", &ports(8).to_string(), "--"])
        .args(extra);
    c
}

fn rmse_of(out: &std::process::Output) -> f64 {
    let text = stdout(out);
    let line = text
        .lines()
        .find(|l| l.starts_with("final step"))
        .unwrap_or_else(|| panic!("no final line in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn single_rmse(steps: u64, batch: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    rmse_of(&run_expect(
        mle()
            .arg("train")
            .args(abalone_args(dir.path(), steps, batch)),
        0,
    ))
}

#[test]
fn a_python_trainer_cluster_gets_the_gcloud_launch_contract() {
    let out_dir = tempfile::tempdir().unwrap();
    let job = out_dir.path().join("job");
    let mark = marker();
    let start = ports(4);
    let begun = Instant::now();
    run_expect(
        mle()
            .current_dir(examples().join("../tests/fixtures/probe_trainer"))
            .args([
                "local",
                "train",
                "--distributed",
                "--worker-count",
                "2",
                "--parameter-server-count",
                "1",
            ])
            .args([
                "--start-port",
                &start.to_string(),
                "--package-path",
                "trainer",
                "--module-name",
                "trainer.task",
            ])
            .arg("--job-dir")
            .arg(&job)
            .args(["--", "--epochs", "3"])
            .env("PROBE_OUT", out_dir.path())
            .env("PROBE_HANG_OTHERS", "1")
            .env("PROBE_EXPECT", "4")
            .env("MLE_PYTHON", test_python())
            .env(
                mark.split_once('=').unwrap().0,
                mark.split_once('=').unwrap().1,
            ),
        0,
    );
    // The others hang until stopped: the command ends with the primary, well before their 1 h.
    assert!(begun.elapsed() < Duration::from_secs(30));
    assert!(
        processes_with(&mark).is_empty(),
        "replicas left running: {:?}",
        processes_with(&mark)
    );
    let mut files: Vec<String> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec![
            "chief-0.json",
            "ps-0.json",
            "worker-0.json",
            "worker-1.json"
        ],
        "exactly 4 processes"
    );
    let addr = |i: u16| format!("localhost:{}", start + i);
    let cluster =
        serde_json::json!({"chief": [addr(0)], "ps": [addr(1)], "worker": [addr(2), addr(3)]});
    check_torch_variables(out_dir.path(), &cluster, "chief");
    for f in files {
        let rec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.path().join(&f)).unwrap())
                .unwrap();
        assert_eq!(rec["tf_config"]["cluster"], cluster, "{f}");
        let (role, index) = f.trim_end_matches(".json").split_once('-').unwrap();
        assert_eq!(
            rec["tf_config"]["task"],
            serde_json::json!({"type": role, "index": index.parse::<u64>().unwrap()})
        );
        assert_eq!(
            rec["argv"],
            serde_json::json!(["--epochs", "3", "--job-dir", job.to_str().unwrap()]),
            "{f}"
        );
    }
}

#[test]
fn asynchronous_parameter_servers_match_single_process_rmse() {
    let single = single_rmse(3000, 32);
    let dir = tempfile::tempdir().unwrap();
    let out = run_expect(
        &mut local_cluster(2, 1, &abalone_args(dir.path(), 3000, 32)),
        0,
    );
    let ps = rmse_of(&out);
    assert!(
        (ps - single).abs() <= 0.05 * single,
        "ps {ps} vs single {single}"
    );
    assert!(
        mle_nn::export::latest(&dir.path().join("export/abalone")).is_some(),
        "the primary exports"
    );
}

#[test]
fn three_replica_all_reduce_matches_single_process_rmse() {
    // Same examples seen: 3 replicas × 32 rows vs one process × 96 rows, 2000 steps each.
    let single = single_rmse(2000, 96);
    let dir = tempfile::tempdir().unwrap();
    let out = run_expect(
        &mut local_cluster(2, 0, &abalone_args(dir.path(), 2000, 32)),
        0,
    );
    let ar = rmse_of(&out);
    assert!(
        (ar - single).abs() <= 0.05 * single,
        "all-reduce {ar} vs single {single}"
    );
}

#[test]
fn synchronous_all_reduce_equals_one_process_at_the_global_batch() {
    let (n, b, k) = (3u64, 8u64, 50u64);
    let one = tempfile::tempdir().unwrap();
    run_expect(
        mle().arg("train").args(abalone_args(one.path(), k, n * b)),
        0,
    );
    let many = tempfile::tempdir().unwrap();
    run_expect(
        &mut local_cluster(n as usize - 1, 0, &abalone_args(many.path(), k, b)),
        0,
    );
    let load = |d: &Path| {
        mle_nn::export::Bundle::load(&mle_nn::export::latest(&d.join("export/abalone")).unwrap())
            .unwrap()
            .params
    };
    let (a, c) = (load(one.path()), load(many.path()));
    let worst = a
        .iter()
        .zip(&c)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "largest parameter difference {worst}");
    assert_ne!(
        a,
        mle_nn::Model::init_params(
            &mle_nn::export::Bundle::load(
                &mle_nn::export::latest(&one.path().join("export/abalone")).unwrap()
            )
            .unwrap()
            .model,
            42
        ),
        "training moved the parameters"
    );
}

/// Starts a long cluster, SIGKILLs worker 1 once training runs, and returns the command's
/// output and how long it took to end after the kill.
fn kill_worker_during(workers: usize, ps: usize, steps: u64) -> (std::process::Output, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker();
    let (k, v) = mark.split_once('=').unwrap();
    let child = local_cluster(workers, ps, &abalone_args(dir.path(), steps, 32))
        .env(k, v)
        .env("MLE_PEER_TIMEOUT_SECS", "5")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until every replica is up and the primary has checkpointed once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        let found = processes_with(&mark).into_iter().find(|pid| {
            let env = String::from_utf8_lossy(
                &std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default(),
            )
            .into_owned();
            env.contains(r#""task":{"index":1,"type":"worker"}"#)
        });
        // The primary creates <job-dir>/eval once it trains.
        if let Some(pid) = found
            && dir.path().join("eval").exists()
        {
            std::thread::sleep(Duration::from_millis(500));
            break pid;
        }
        assert!(Instant::now() < deadline, "the cluster did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    let killed = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = killed.elapsed();
    let left = processes_with(&mark);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    (out, took)
}

#[test]
fn a_killed_worker_fails_an_all_reduce_job_quickly_and_names_it() {
    let (out, took) = kill_worker_during(2, 0, 10_000_000);
    assert_ne!(out.status.code(), Some(0));
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let err = stderr(&out);
    assert!(
        err.contains("worker 1 at localhost:") && err.contains("stopped answering"),
        "{err}"
    );
}

#[test]
fn a_killed_worker_does_not_stop_an_asynchronous_parameter_server_job() {
    let (out, _) = kill_worker_during(2, 1, 60_000);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("final step 60000"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn synchronous_parameter_servers_train_to_single_process_rmse() {
    // Two trainers, one push each per step: 2 × 32 rows a step, like one process at 64.
    let single = single_rmse(2000, 64);
    let dir = tempfile::tempdir().unwrap();
    let mut args = abalone_args(dir.path(), 2000, 32);
    args.push("--sync-replicas".into());
    let out = run_expect(&mut local_cluster(1, 2, &args), 0);
    let sync = rmse_of(&out);
    assert!(
        (sync - single).abs() <= 0.05 * single,
        "sync ps {sync} vs single {single}"
    );
}

/// Runs a cluster until the primary has checkpointed at step ≥ 1000, stops it with SIGTERM to
/// the launcher, and starts it again on the same job dir.
fn restart_resumes(workers: usize, ps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = abalone_args(dir.path(), 40_000, 32);
    args.extend(["--checkpoint-every-steps".into(), "500".into()]);
    let mark = marker();
    let (k, v) = mark.split_once('=').unwrap();
    let mut child = local_cluster(workers, ps, &args)
        .env(k, v)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while mle_train::checkpoint::list(&dir.path().join("checkpoints"))
        .last()
        .is_none_or(|(s, _)| *s < 1000)
    {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "no checkpoint before the end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        child.wait().unwrap().code(),
        Some(130),
        "Ctrl-C/SIGTERM exit status"
    );
    assert!(
        processes_with(&mark).is_empty(),
        "replicas left after SIGTERM"
    );
    let saved = mle_train::checkpoint::list(&dir.path().join("checkpoints"))
        .last()
        .unwrap()
        .0;
    assert!(saved < 40_000);
    let mut again = abalone_args(dir.path(), saved + 2000, 32);
    again.extend(["--checkpoint-every-steps".into(), "500".into()]);
    let out = run_expect(&mut local_cluster(workers, ps, &again), 0);
    assert!(
        stderr(&out).contains(&format!("resuming from checkpoint at step {saved}")),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains(&format!("final step {}", saved + 2000)),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_restarted_all_reduce_cluster_resumes_from_the_primary_checkpoint() {
    restart_resumes(1, 0);
}

#[test]
fn a_restarted_parameter_server_cluster_resumes_from_the_primary_checkpoint() {
    restart_resumes(1, 1);
}

#[test]
fn a_restarted_worker_rejoins_an_asynchronous_parameter_server_job() {
    let dir = tempfile::tempdir().unwrap();
    let base = ports(4);
    let cluster = format!(
        r#"{{"chief": ["localhost:{}"], "ps": ["localhost:{}"], "worker": ["localhost:{}", "localhost:{}"]}}"#,
        base,
        base + 1,
        base + 2,
        base + 3
    );
    let start = |role: &str, index: usize| {
        mle()
            .arg("train")
            .args(abalone_args(dir.path(), 150_000, 32))
            .env(
                "TF_CONFIG",
                format!(
                    r#"{{"cluster": {cluster}, "task": {{"type": "{role}", "index": {index}}}}}"#
                ),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ps = start("ps", 0);
    let w0 = start("worker", 0);
    let mut w1 = start("worker", 1);
    let chief = start("chief", 0);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(w1.try_wait().unwrap().is_none(), "worker 1 ended early");
    w1.kill().unwrap();
    w1.wait().unwrap();
    let rejoined = start("worker", 1).wait_with_output().unwrap();
    let chief = chief.wait_with_output().unwrap();
    assert!(chief.status.success(), "{}", stderr(&chief));
    assert!(
        stdout(&chief).contains("final step 150000"),
        "{}",
        stdout(&chief)
    );
    assert!(rejoined.status.success(), "{}", stderr(&rejoined));
    assert!(
        stdout(&rejoined).contains("replica finished"),
        "{}",
        stdout(&rejoined)
    );
    for c in [ps, w0] {
        assert!(c.wait_with_output().unwrap().status.success());
    }
}

#[test]
fn an_evaluator_evaluates_the_primary_checkpoints_outside_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = abalone_args(dir.path(), 3000, 32);
    args.extend(["--checkpoint-every-steps".into(), "1000".into()]);
    let mut c = mle();
    c.args([
        "local",
        "train",
        "--distributed",
        "--builtin",
        "--worker-count",
        "1",
        "--parameter-server-count",
        "0",
    ])
    .args([
        "--evaluator-count",
        "1",
        "--start-port",
        &ports(4).to_string(),
        "--",
    ])
    .args(&args);
    let out = run_expect(&mut c, 0);
    assert!(stdout(&out).contains("final step 3000"), "{}", stdout(&out));
    let eval_dir = dir.path().join("eval_evaluator");
    let files: Vec<_> = std::fs::read_dir(&eval_dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one evaluator event file");
    let scalars = mle_train::events::read_scalars(&files[0].path()).unwrap();
    assert!(scalars.iter().any(|s| s.tag == "rmse"), "{scalars:?}");
}
