//! Trainers written for Cloud ML Engine with real frameworks, unchanged: TensorFlow 2
//! (tensorflow-cpu and tf_keras 2.21 in `target/tf-venv`) under MultiWorkerMirroredStrategy and
//! ParameterServerStrategy (`examples/tf2`), with `mle local train --distributed`, through
//! `mle server` as CUSTOM jobs with `runtimeVersion: "2.11"` (also through Google's own client)
//! and on the Slurm backend; trainer packages whose dependencies the runtime lacks; and, with
//! `MLE_TEST_TORCH=1`, a real `torch.distributed` (gloo) job (`examples/pytorch`).

mod util;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};

use serde_json::{Value, json};
use util::*;

/// Contiguous localhost ports for a local cluster, distinct per test of this binary.
fn ports(n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Below Linux's ephemeral range (32768+), where outgoing connections take their ports.
    let base = 20000 + (std::process::id() % 100) as u16 * 100;
    base + NEXT.fetch_add(n, Ordering::SeqCst)
}

fn tf2() -> PathBuf {
    examples().join("tf2")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `--runtime 2.11=<the TensorFlow venv>`.
fn tf_runtime() -> String {
    format!("2.11={}", tf_python().display())
}

/// `mle local train --distributed` of `examples/tf2`'s `module` with `workers` and `ps`.
fn local_tf(module: &str, workers: usize, ps: usize, job_dir: &Path) -> std::process::Output {
    let start = ports(1 + workers as u16 + ps as u16);
    mle()
        .current_dir(tf2())
        .args(["local", "train", "--distributed", "--worker-count"])
        .arg(workers.to_string())
        .arg("--parameter-server-count")
        .arg(ps.to_string())
        .args(["--start-port", &start.to_string()])
        .args(["--package-path", "trainer", "--module-name", module])
        .args(["--runtime-version", "2.11", "--runtime", &tf_runtime()])
        .arg("--job-dir")
        .arg(job_dir)
        .output()
        .unwrap()
}

#[test]
fn local_clusters_run_real_tensorflow_strategies() {
    let dir = tempfile::tempdir().unwrap();
    let mwms = dir.path().join("mwms");
    let out = local_tf("trainer.mwms", 1, 0, &mwms);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let r = read_json(&mwms.join("mwms.json"));
    assert_eq!(r["num_replicas_in_sync"], 2, "{r}");
    assert_eq!(r["task"]["type"], "chief");
    let pss = dir.path().join("pss");
    let out = local_tf("trainer.pss", 1, 1, &pss);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let r = read_json(&pss.join("pss.json"));
    assert_eq!(r["moved"], true, "{r}");
    assert!(
        r["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d.as_str().unwrap().starts_with("/job:ps/")),
        "{r}"
    );
}

/// A CUSTOM job config with `workers` workers and `ps` parameter servers on `runtime`.
fn custom_config(dir: &Path, name: &str, workers: usize, ps: usize, runtime: &str) -> PathBuf {
    let cfg = dir.join(format!("{name}.yaml"));
    let mut t = json!({"scaleTier": "CUSTOM", "masterType": "n1-highcpu-2", "workerCount": workers.to_string(),
        "parameterServerCount": ps.to_string(), "runtimeVersion": runtime, "pythonVersion": "3.11"});
    if workers > 0 {
        t["workerType"] = json!("n1-highcpu-2");
    }
    if ps > 0 {
        t["parameterServerType"] = json!("n1-highcpu-2");
    }
    std::fs::write(&cfg, json!({"trainingInput": t}).to_string()).unwrap();
    cfg
}

/// Submits `examples/tf2`'s `module` with the CLI, which stages the sdist as gcloud does.
fn submit_tf(s: &Server, job: &str, module: &str, cfg: &Path, job_dir: &Path) {
    run_expect(
        s.cli()
            .current_dir(tf2())
            .env("MLE_PYTHON", test_python())
            .args(["jobs", "--project", "p", "submit", "training", job])
            .arg("--config")
            .arg(cfg)
            .args(["--package-path", "trainer", "--module-name", module])
            .arg("--job-dir")
            .arg(job_dir),
        0,
    );
}

/// Waits for `job` to end and says, with its logs, when it did not succeed.
fn expect_success(s: &Server, job: &str) -> Value {
    let v = s.wait_state(job, &["SUCCEEDED", "FAILED", "CANCELLED"], 600);
    assert_eq!(v["state"], "SUCCEEDED", "{v}\n{}", s.logs(job));
    v
}

/// The checks of the TensorFlow jobs, the same on every backend: MWMS with one worker is 2
/// replicas in sync under a chief; PSS with a worker and a ps trains variables on the ps.
fn check_tf_jobs(s: &Server, dir: &Path) -> Value {
    let mwms = dir.join("mwms");
    submit_tf(
        s,
        "tf_mwms",
        "trainer.mwms",
        &custom_config(dir, "mwms", 1, 0, "2.11"),
        &mwms,
    );
    let pss = dir.join("pss");
    submit_tf(
        s,
        "tf_pss",
        "trainer.pss",
        &custom_config(dir, "pss", 1, 1, "2.11"),
        &pss,
    );
    let job = expect_success(s, "tf_mwms");
    let r = read_json(&mwms.join("mwms.json"));
    assert_eq!(
        (
            r["num_replicas_in_sync"].as_u64(),
            r["task"]["type"].as_str()
        ),
        (Some(2), Some("chief")),
        "{r}"
    );
    let logs = s.logs("tf_mwms");
    assert!(
        logs.contains("chief-replica-0") && logs.contains("worker-replica-0"),
        "{logs}"
    );
    expect_success(s, "tf_pss");
    let r = read_json(&pss.join("pss.json"));
    assert_eq!(r["moved"], true, "{r}");
    assert!(
        r["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d.as_str().unwrap().starts_with("/job:ps/")),
        "{r}"
    );
    job
}

#[test]
fn the_server_runs_real_tensorflow_trainers_as_cloud_ml_engine_does() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let py = test_python();
    let env = [
        ("PROBE_OUT", probe.to_str().unwrap()),
        ("MLE_PYTHON", py.to_str().unwrap()),
    ];
    let runtime_115 = format!("1.15={}", py.display());
    let s = start_server_with(
        &dir.path().join("data"),
        &env,
        8,
        &[
            "--runtime".as_ref(),
            tf_runtime().as_ref(),
            "--runtime".as_ref(),
            runtime_115.as_ref(),
        ],
    );
    let mwms = check_tf_jobs(&s, dir.path());
    // Google's own client submits the same package (the staged sdist) as new jobs: their
    // environment is the one the first job built.
    let uris = mwms["trainingInput"]["packageUris"].clone();
    let google = |job: &str, module: &str, ps: &str| {
        let body = json!({"jobId": job, "trainingInput": {"scaleTier": "CUSTOM", "masterType": "n1-highcpu-2",
            "workerType": "n1-highcpu-2", "workerCount": "1", "parameterServerType": "n1-highcpu-2",
            "parameterServerCount": ps, "runtimeVersion": "2.11", "pythonModule": module,
            "packageUris": uris, "jobDir": dir.path().join(job), "region": "local"}});
        let out = run_expect(
            std::process::Command::new(&py)
                .arg(examples().join("../tests/python/google_submit.py"))
                .args([&s.url, &s.token(), "p", &body.to_string()]),
            0,
        );
        let got: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(got["state"], "SUCCEEDED", "{got}\n{}", s.logs(job));
        let logs = s.logs(job);
        assert!(logs.contains("using the cached environment"), "{logs}");
    };
    google("tf_google", "trainer.mwms", "0");
    assert_eq!(
        read_json(&dir.path().join("tf_google/mwms.json"))["num_replicas_in_sync"],
        2
    );
    google("tf_google_ps", "trainer.pss", "1");
    assert_eq!(
        read_json(&dir.path().join("tf_google_ps/pss.json"))["moved"],
        true
    );
    // A 1.x runtime keeps `master`, as does a job naming no runtime version.
    for (job, rv) in [("probe_115", "1.15"), ("probe_none", "")] {
        let body = json!({"jobId": job, "trainingInput": {"scaleTier": "CUSTOM", "masterType": "standard",
            "workerType": "standard", "workerCount": "1", "runtimeVersion": rv, "pythonModule": "trainer.task",
            "packageUris": [stage_probe(&s, dir.path())]}});
        let (code, v) = s.request("POST", "/v1/projects/p/jobs", Some(&body.to_string()));
        assert_eq!(code, 200, "{v}");
        expect_success(&s, job);
        let r = read_json(&probe.join("master-0.json"));
        assert_eq!(r["tf_config"]["task"]["type"], "master", "{job}: {r}");
        assert!(r["tf_config"]["cluster"].get("chief").is_none(), "{r}");
        std::fs::remove_file(probe.join("master-0.json")).unwrap();
    }
    // A runtime this server lacks is refused up front, naming those it has.
    let body = json!({"jobId": "tf_bad", "trainingInput": {"runtimeVersion": "2.3", "pythonModule": "trainer.mwms",
        "packageUris": uris}});
    let (code, v) = s.request("POST", "/v1/projects/p/jobs", Some(&body.to_string()));
    assert_eq!(code, 400, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("runtime_version") && text.contains("2.11") && text.contains("1.15"),
        "{text}"
    );
}

/// The probe trainer's sdist, built once by the CLI's stager for `s` (a BASIC job that runs it).
fn stage_probe(s: &Server, dir: &Path) -> String {
    let staged = dir.join("probe_uri");
    if let Ok(u) = std::fs::read_to_string(&staged) {
        return u;
    }
    run_expect(
        s.cli()
            .current_dir(examples().join("../tests/fixtures/probe_trainer"))
            .env("MLE_PYTHON", test_python())
            .args([
                "jobs",
                "--project",
                "p",
                "submit",
                "training",
                "probe_stage",
            ])
            .args(["--package-path", "trainer", "--module-name", "trainer.task"]),
        0,
    );
    let job = expect_success(s, "probe_stage");
    std::fs::remove_file(dir.join("probe/single-0.json")).unwrap();
    let uri = job["trainingInput"]["packageUris"][0]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(&staged, &uri).unwrap();
    uri
}

#[test]
fn real_tensorflow_trainers_run_on_slurm() {
    let Some(cluster) = SlurmCluster::start(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tf_runtime();
    let s = start_slurm_server_with(
        &dir.path().join("data"),
        &[],
        8,
        &cluster,
        &["--runtime", &runtime],
    );
    check_tf_jobs(&s, dir.path());
}

/// A directory holding the wheel of `mle-testdep-7f3a` 1.0, built by hand (no index, no
/// network): what a site's `--find-links` directory holds.
fn find_links(dir: &Path) -> PathBuf {
    let links = dir.join("wheels");
    run_expect(
        std::process::Command::new(test_python())
            .arg(examples().join("../tests/python/make_wheel.py"))
            .arg(&links)
            .args(["mle-testdep-7f3a", "1.0"]),
        0,
    );
    links
}

#[test]
fn a_package_gets_its_dependencies_installed_once_for_all_its_trials() {
    let dir = tempfile::tempdir().unwrap();
    let links = find_links(dir.path());
    let py = test_python();
    let s = start_server_with(
        &dir.path().join("data"),
        &[("MLE_PYTHON", py.to_str().unwrap())],
        4,
        &["--find-links".as_ref(), links.as_os_str()],
    );
    let fixture = examples().join("../tests/fixtures/deps_trainer");
    let cfg = dir.path().join("hp.yaml");
    std::fs::write(
        &cfg,
        json!({"trainingInput": {"hyperparameters": {"goal": "MINIMIZE", "hyperparameterMetricTag": "loss",
            "maxTrials": 6, "maxParallelTrials": 2, "algorithm": "RANDOM_SEARCH",
            "params": [{"parameterName": "x", "type": "DOUBLE", "minValue": 0.0, "maxValue": 1.0}]}}})
        .to_string(),
    )
    .unwrap();
    run_expect(
        s.cli()
            .current_dir(&fixture)
            .args(["jobs", "--project", "p", "submit", "training", "deps_hp"])
            .arg("--config")
            .arg(&cfg)
            .args(["--package-path", "trainer", "--module-name", "trainer.task"])
            .arg("--job-dir")
            .arg(dir.path().join("hp")),
        0,
    );
    let job = expect_success(&s, "deps_hp");
    let trials = job["trainingOutput"]["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6, "{job}");
    assert!(trials.iter().all(|t| t["state"] == "SUCCEEDED"), "{job}");
    let logs = s.logs("deps_hp");
    let installs = logs.matches("Successfully installed").count();
    assert_eq!(installs, 1, "one install for 6 trials:\n{logs}");
    assert!(
        logs.contains("mle-testdep-7f3a-1.0"),
        "pip's output is in the job's logs:\n{logs}"
    );
    assert!(logs.contains("mle_testdep_7f3a 1.0 from"), "{logs}");
    // The same package as a plain job reuses that environment: no second install.
    let uris = job["trainingInput"]["packageUris"].clone();
    let body = json!({"jobId": "deps_again", "trainingInput": {"pythonModule": "trainer.task", "packageUris": uris}});
    let (code, v) = s.request("POST", "/v1/projects/p/jobs", Some(&body.to_string()));
    assert_eq!(code, 200, "{v}");
    expect_success(&s, "deps_again");
    let logs = s.logs("deps_again");
    assert!(
        logs.contains("using the cached environment") && !logs.contains("Successfully installed"),
        "{logs}"
    );
}

#[test]
fn a_dependency_nobody_has_fails_the_job_naming_the_package_and_pip() {
    let dir = tempfile::tempdir().unwrap();
    let py = test_python();
    // No --find-links: the library is nowhere.
    let s = start_server(
        &dir.path().join("data"),
        &[("MLE_PYTHON", py.to_str().unwrap())],
        2,
    );
    run_expect(
        s.cli()
            .current_dir(examples().join("../tests/fixtures/deps_trainer"))
            .args([
                "jobs",
                "--project",
                "p",
                "submit",
                "training",
                "deps_missing",
            ])
            .args(["--package-path", "trainer", "--module-name", "trainer.task"]),
        0,
    );
    let v = s.wait_state("deps_missing", &["SUCCEEDED", "FAILED", "CANCELLED"], 300);
    assert_eq!(v["state"], "FAILED", "{v}");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("installing package(s) deps-trainer-0.1.tar.gz failed"),
        "{msg}"
    );
    assert!(
        msg.contains("No matching distribution found for mle-testdep-7f3a"),
        "pip's last lines: {msg}"
    );
    // Nothing half-built is left to be used by the next job.
    let envs: Vec<String> = std::fs::read_dir(dir.path().join("data/envs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(envs.is_empty(), "{envs:?}");
}

/// `MLE_TEST_TORCH=1`: a real `torch.distributed` job (gloo, `init_method="env://"`) of 2
/// replicas through the server, on the interpreter `MLE_TEST_TORCH_PYTHON` (a venv with
/// torch; `scripts/torch-venv.sh` makes one). Off by default: torch's PyPI wheel pulls ~3 GB.
#[test]
fn a_real_torch_distributed_job_runs_when_asked() {
    if std::env::var("MLE_TEST_TORCH").as_deref() != Ok("1") {
        eprintln!("MLE_TEST_TORCH is not 1: the real torch.distributed test is skipped");
        return;
    }
    let torch = std::env::var("MLE_TEST_TORCH_PYTHON")
        .expect("MLE_TEST_TORCH_PYTHON names a Python with torch");
    let dir = tempfile::tempdir().unwrap();
    let runtime = format!("2.1={torch}");
    let s = start_server_with(
        &dir.path().join("data"),
        &[],
        4,
        &["--runtime".as_ref(), runtime.as_ref()],
    );
    let cfg = dir.path().join("torch.yaml");
    std::fs::write(
        &cfg,
        json!({"trainingInput": {"scaleTier": "CUSTOM", "masterType": "standard", "workerType": "standard",
            "workerCount": "1", "runtimeVersion": "2.1"}})
        .to_string(),
    )
    .unwrap();
    let job_dir = dir.path().join("job");
    run_expect(
        s.cli()
            .current_dir(examples().join("pytorch"))
            .env("MLE_PYTHON", test_python())
            .args(["jobs", "--project", "p", "submit", "training", "torch_ddp"])
            .arg("--config")
            .arg(&cfg)
            .args(["--package-path", "trainer", "--module-name", "trainer.task"])
            .arg("--job-dir")
            .arg(&job_dir),
        0,
    );
    expect_success(&s, "torch_ddp");
    let r = read_json(&job_dir.join("torch.json"));
    assert_eq!(r["world_size"], 2, "{r}");
    assert_eq!(r["all_reduce"], 3.0, "ranks 0 + 1, plus one each: {r}");
}

#[test]
fn two_jobs_that_ship_the_same_package_at_once_install_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let links = find_links(dir.path());
    let py = test_python();
    let s = start_server_with(
        &dir.path().join("data"),
        &[("MLE_PYTHON", py.to_str().unwrap())],
        4,
        &["--find-links".as_ref(), links.as_os_str()],
    );
    // The CLI stages the sdist (job `first`); `second` ships the very same file, submitted
    // while `first` still prepares, so both wait on the one environment.
    let staged = dir.path().join("staged");
    run_expect(
        s.cli()
            .current_dir(examples().join("../tests/fixtures/deps_trainer"))
            .args(["jobs", "--project", "p", "submit", "training", "first"])
            .args(["--package-path", "trainer", "--module-name", "trainer.task"])
            .arg("--job-dir")
            .arg(&staged),
        0,
    );
    let (_, first) = s.request("GET", "/v1/projects/p/jobs/first", None);
    let body = json!({"jobId": "second", "trainingInput": {"pythonModule": "trainer.task",
        "packageUris": first["trainingInput"]["packageUris"]}});
    let (code, v) = s.request("POST", "/v1/projects/p/jobs", Some(&body.to_string()));
    assert_eq!(code, 200, "{v}");
    expect_success(&s, "first");
    expect_success(&s, "second");
    let logs = format!("{}{}", s.logs("first"), s.logs("second"));
    assert_eq!(logs.matches("Successfully installed").count(), 1, "{logs}");
    assert_eq!(
        logs.matches("using the cached environment").count(),
        1,
        "{logs}"
    );
}

#[test]
fn bad_runtime_flags_and_unknown_runtimes_are_refused_with_what_there_is() {
    let dir = tempfile::tempdir().unwrap();
    // A malformed flag is a usage error; an interpreter that does not exist stops the server
    // at start-up.
    let out = mle()
        .args(["server", "--runtime", "2.11"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("VERSION[/PYTHON_VERSION]=INTERPRETER"),
        "{}",
        stderr(&out)
    );
    let out = mle()
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--runtime",
            "2.11=/nonexistent/python",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no such interpreter"),
        "{}",
        stderr(&out)
    );
    // `mle local train` chooses as the server does.
    let out = mle()
        .current_dir(examples().join("../tests/fixtures/probe_trainer"))
        .args([
            "local",
            "train",
            "--package-path",
            "trainer",
            "--module-name",
            "trainer.task",
        ])
        .args(["--runtime-version", "9.9", "--runtime", "2.11=python3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no runtime version '9.9'")
            && stderr(&out).contains("2.11 (python3)"),
        "{}",
        stderr(&out)
    );
}
