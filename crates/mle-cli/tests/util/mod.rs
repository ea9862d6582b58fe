//! Shared helpers for tests that run the real `mle` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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

/// The TensorFlow runtime of the framework tests (tensorflow-cpu and tf_keras 2.21, made by
/// `scripts/test.sh` from `tests/python/tf-requirements.txt`): `MLE_TEST_TF_PYTHON`, or
/// `target/tf-venv/bin/python`. Tests that need it fail (they do not skip) without it.
pub fn tf_python() -> PathBuf {
    if let Some(p) = std::env::var_os("MLE_TEST_TF_PYTHON") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tf-venv/bin/python");
    assert!(
        p.exists(),
        "no TensorFlow venv at {}: run ./scripts/test.sh, which creates it",
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

/// A real `mle server` on 127.0.0.1:0 with its data dir; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mle server` with `env` and `slots` replica slots.
pub fn start_server(data: &Path, env: &[(&str, &str)], slots: usize) -> Server {
    start_server_with(data, env, slots, &[])
}

/// Whether the tests run as root (as CI does).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Whether a test that needs root (`what` does) can run: as root, yes; elsewhere it is
/// skipped with a line saying so — but never in CI, which runs as root.
pub fn root_or_skip(what: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI runs as root, and this test ({what}) must run there"
    );
    eprintln!("skipped: {what} needs root");
    false
}

/// The flags every test server gets: the tests' trainers are shell scripts and `true` or
/// `sleep` (commands a server does not run by default), and the variables a test gives the
/// server (but `MLE_*`, the server's own) reach its jobs.
fn test_flags(env: &[(&str, &str)]) -> Vec<std::ffi::OsString> {
    let mut flags: Vec<std::ffi::OsString> = Vec::new();
    for c in ["sh", "true", "sleep"] {
        flags.push("--allow-command".into());
        flags.push(c.into());
    }
    // As root, a server runs jobs as `nobody` unless told otherwise; the tests' job dirs are
    // the test's own (private temporary directories), so their jobs run as the test's user.
    if is_root() {
        flags.push("--run-as".into());
        flags.push("root".into());
    }
    for (k, _) in env.iter().filter(|(k, _)| !k.starts_with("MLE_")) {
        flags.push("--pass-env".into());
        flags.push(k.into());
    }
    flags
}

/// [`start_server`] with extra server flags.
pub fn start_server_with(
    data: &Path,
    env: &[(&str, &str)],
    slots: usize,
    extra: &[&std::ffi::OsStr],
) -> Server {
    let mut flags = test_flags(env);
    flags.extend(extra.iter().map(|f| f.to_os_string()));
    let flags: Vec<&std::ffi::OsStr> = flags.iter().map(|f| f.as_os_str()).collect();
    start_server_bare(data, env, slots, &flags)
}

/// A server with exactly the flags given (no [`test_flags`]).
pub fn start_server_bare(
    data: &Path,
    env: &[(&str, &str)],
    slots: usize,
    extra: &[&std::ffi::OsStr],
) -> Server {
    let mut cmd = mle();
    cmd.args([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--slots",
        &slots.to_string(),
        "--data-dir",
    ])
    .arg(data)
    .args(extra)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"),
        "{line}"
    );
    Server {
        child,
        url,
        data: data.to_path_buf(),
    }
}

impl Server {
    /// The bearer token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data.join("token")).unwrap()
    }

    /// The `mle` CLI pointed at this server.
    pub fn cli(&self) -> Command {
        let mut c = mle();
        c.env("MLE_SERVER", &self.url)
            .env("MLE_DATA_DIR", &self.data);
        c
    }

    /// A REST request with the server admin's token (curl); status and JSON body.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.request_as(&self.token(), method, path, body)
    }

    /// The output of `mle jobs stream-logs JOB` in project `p`, the job having ended.
    pub fn logs(&self, job: &str) -> String {
        let out = self
            .cli()
            .args(["jobs", "stream-logs", job, "--project", "p"])
            .output()
            .unwrap();
        stdout(&out)
    }

    /// [`Server::request`] with another bearer token.
    pub fn request_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut args = vec![
            "-s".to_string(),
            "-o".into(),
            "-".into(),
            "-w".into(),
            "\n%{http_code}".into(),
            "-X".into(),
            method.into(),
        ];
        args.extend([
            "-H".into(),
            format!("Authorization: Bearer {token}"),
            "-H".into(),
            "Content-Type: application/json".into(),
        ]);
        // Large bodies go through a file (the argument list has a size limit).
        let _file;
        if let Some(b) = body {
            if b.len() > 100_000 {
                let f = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(f.path(), b).unwrap();
                args.extend(["--data-binary".into(), format!("@{}", f.path().display())]);
                _file = Some(f);
            } else {
                args.extend(["--data-binary".into(), b.into()]);
            }
        }
        args.push(format!("{}{path}", self.url));
        let out = Command::new("curl").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (
            code.parse().unwrap(),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    /// Polls job `job` of project `p` until its state is one of `want`.
    pub fn wait_state(&self, job: &str, want: &[&str], secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, v) = self.request("GET", &format!("/v1/projects/p/jobs/{job}"), None);
            if want.contains(&v["state"].as_str().unwrap_or("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "job {job} stuck in {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until at least `n` live processes have `needle` in their command line.
pub fn wait_for_pids(needle: &str, n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while pids_with(needle).len() < n {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} processes with {needle} appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until no live process has `needle` in its command line.
pub fn wait_gone(needle: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pids_with(needle).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            pids_with(needle)
                .iter()
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " "))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A seed script of `examples/` (`script` relative to it) pointed at `s`; callers add
/// `JOB_DIR`, `JOB_NAME` and the like.
pub fn seed_script(s: &Server, script: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(examples().join(script))
        .env("MLE", env!("CARGO_BIN_EXE_mle"))
        .env("MLE_SERVER", &s.url)
        .env("MLE_DATA_DIR", &s.data);
    c
}

/// The book's `examples/iris/scripts/hyper-tune.sh` against `s` as job `iris_hp` (project
/// `default`), 2000 steps per trial.
pub fn hyper_tune_script(s: &Server, job_dir: &Path) -> Command {
    let mut c = seed_script(s, "iris/scripts/hyper-tune.sh");
    c.env("JOB_DIR", job_dir)
        .env("JOB_NAME", "iris_hp")
        .env("TRAIN_STEPS", "2000");
    c
}

/// Live (non-zombie) processes whose command line contains `needle`.
pub fn pids_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            (!zombie && String::from_utf8_lossy(&cmd).contains(needle)).then_some(pid)
        })
        .collect()
}

/// The server environment for [`check_standard_1_launch_contract`].
pub fn probe_env(probe: &Path, py: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("PROBE_OUT", probe.display().to_string()),
        ("PROBE_EXPECT", "8".into()),
        ("MLE_PYTHON", py.display().to_string()),
    ]
}

/// The launch contract (DESIGN §2.1), checked the same way on every backend: an unmodified
/// Python trainer submitted as a STANDARD_1 sdist job runs as 8 replicas, each with the same
/// cluster in `TF_CONFIG` and its own task, the user's args plus `--job-dir`, and the
/// `CLOUD_ML_*` variables. The server must run with [`probe_env`]. Returns the primary's
/// `TF_CONFIG` cluster.
pub fn check_standard_1_launch_contract(s: &Server, probe: &Path, job_dir: &Path) -> Value {
    let py = test_python();
    // The CLI builds and stages the sdist as gcloud does.
    run_expect(
        s.cli()
            .current_dir(examples().join("../tests/fixtures/probe_trainer"))
            .env("MLE_PYTHON", &py)
            .args([
                "jobs",
                "--project",
                "p",
                "submit",
                "training",
                "probe_1",
                "--scale-tier",
                "STANDARD_1",
            ])
            .args([
                "--package-path",
                "trainer",
                "--module-name",
                "trainer.task",
                "--job-dir",
            ])
            .arg(job_dir)
            .args(["--", "--epochs", "2"]),
        0,
    );
    s.wait_state("probe_1", &["SUCCEEDED"], 120);
    let mut seen: Vec<String> = std::fs::read_dir(probe)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "master-0", "ps-0", "ps-1", "ps-2", "worker-0", "worker-1", "worker-2", "worker-3"
        ]
        .map(|n| format!("{n}.json"))
    );
    let master: Value =
        serde_json::from_str(&std::fs::read_to_string(probe.join("master-0.json")).unwrap())
            .unwrap();
    let cluster = &master["tf_config"]["cluster"];
    assert_eq!(
        (
            cluster["master"].as_array().unwrap().len(),
            cluster["worker"].as_array().unwrap().len(),
            cluster["ps"].as_array().unwrap().len()
        ),
        (1, 4, 3)
    );
    let mut addrs: Vec<&str> = ["master", "worker", "ps"]
        .iter()
        .flat_map(|r| cluster[*r].as_array().unwrap())
        .map(|a| a.as_str().unwrap())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 8, "addresses must differ: {cluster}");
    assert_eq!(
        master["argv"],
        serde_json::json!(["--epochs", "2", "--job-dir", job_dir.to_str().unwrap()])
    );
    assert_eq!(master["env"]["CLOUD_ML_JOB_ID"], "probe_1");
    check_torch_variables(probe, cluster, "master");
    for f in &seen {
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(probe.join(f)).unwrap()).unwrap();
        assert_eq!(&r["tf_config"]["cluster"], cluster, "{f}");
        assert_eq!(r["argv"], master["argv"], "{f}");
        assert_eq!(r["env"]["CLOUD_ML_JOB_ID"], "probe_1", "{f}");
        let (role, index) = f.trim_end_matches(".json").split_once('-').unwrap();
        assert_eq!(
            r["tf_config"]["task"],
            serde_json::json!({"type": role, "index": index.parse::<u64>().unwrap()})
        );
        assert_eq!(r["tf_config"]["environment"], "cloud", "{f}");
        assert_eq!(
            r["tf_config"]["job"]["python_module"], "trainer.task",
            "{f}"
        );
    }
    cluster.clone()
}

/// The PyTorch rendezvous variables every trainer of a recorded cluster (the probe trainer's
/// files in `probe`) got: `MASTER_ADDR:MASTER_PORT` is the primary's address in `cluster`,
/// `WORLD_SIZE` the trainers, `RANK` 0 for the primary and `i + 1` for worker `i`; parameter
/// servers and evaluators have none.
pub fn check_torch_variables(probe: &Path, cluster: &Value, primary: &str) {
    let workers = cluster["worker"].as_array().map_or(0, Vec::len);
    let primary_addr = cluster[primary][0].as_str().unwrap();
    for f in std::fs::read_dir(probe).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let r: Value = serde_json::from_str(&std::fs::read_to_string(f.path()).unwrap()).unwrap();
        let env = &r["env"];
        let (role, index) = name.trim_end_matches(".json").split_once('-').unwrap();
        let rank = match role {
            "worker" => Some(index.parse::<usize>().unwrap() + 1),
            r if r == primary => Some(0),
            _ => None,
        };
        match rank {
            Some(rank) => {
                assert_eq!(env["RANK"], rank.to_string(), "{name}: {env}");
                assert_eq!(env["WORLD_SIZE"], (workers + 1).to_string(), "{name}");
                assert_eq!(
                    format!(
                        "{}:{}",
                        env["MASTER_ADDR"].as_str().unwrap(),
                        env["MASTER_PORT"].as_str().unwrap()
                    ),
                    primary_addr,
                    "{name}"
                );
            }
            None => assert!(
                env.get("RANK").is_none() && env.get("WORLD_SIZE").is_none(),
                "{name} is not a rank: {env}"
            ),
        }
    }
}

/// A private Slurm cluster (`scripts/slurm-cluster.sh`: one host, or two in network
/// namespaces), stopped when dropped. Needs root, slurm-wlm and munge (`.ci/run` installs
/// them); `MLE_SKIP_SLURM=1` skips the Slurm tests instead (they say so).
pub struct SlurmCluster {
    /// The cluster's directory (its config, state and logs).
    pub dir: tempfile::TempDir,
}

impl SlurmCluster {
    /// Starts one (`two_hosts`: nodes n1 = 10.250.0.11 and n2 = 10.250.0.12); `None` when
    /// the Slurm tests are skipped.
    pub fn start(two_hosts: bool) -> Option<Self> {
        if std::env::var("MLE_SKIP_SLURM").is_ok_and(|v| v == "1") {
            eprintln!("MLE_SKIP_SLURM=1: Slurm test skipped");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("mle-slurm")
            .tempdir()
            .unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slurm-cluster.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(if two_hosts { "up2" } else { "up" })
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot start a Slurm cluster (root, slurm-wlm and munge are needed; MLE_SKIP_SLURM=1 skips these tests): {}{}",
            stdout(&out),
            stderr(&out)
        );
        Some(Self { dir })
    }

    /// Its `slurm.conf` (what `SLURM_CONF` names).
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A Slurm command-line tool pointed at this cluster.
    pub fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(name);
        c.env("SLURM_CONF", self.conf());
        c
    }

    /// The job-completion log's lines that contain `needle`, waiting up to 30 s for the first:
    /// slurmctld writes a job's line after the job's tasks have gone, which can be a moment
    /// after mle has seen the job's result.
    pub fn completions(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found: Vec<String> = self
                .completed()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect();
            if !found.is_empty() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Lines of the job-completion log.
    pub fn completed(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("log/jobcomp.txt"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slurm-cluster.sh");
        let _ = Command::new("bash")
            .arg(script)
            .arg("down")
            .arg(self.dir.path())
            .output();
    }
}

/// `mle server --backend slurm` on `cluster`.
pub fn start_slurm_server(
    data: &Path,
    env: &[(&str, &str)],
    slots: usize,
    cluster: &SlurmCluster,
) -> Server {
    start_slurm_server_with(data, env, slots, cluster, &[])
}

/// [`start_slurm_server`] with extra server flags.
pub fn start_slurm_server_with(
    data: &Path,
    env: &[(&str, &str)],
    slots: usize,
    cluster: &SlurmCluster,
    extra: &[&str],
) -> Server {
    let conf = cluster.conf().display().to_string();
    let mut env: Vec<(&str, &str)> = env.to_vec();
    env.push(("SLURM_CONF", &conf));
    let mut flags: Vec<&std::ffi::OsStr> = vec!["--backend".as_ref(), "slurm".as_ref()];
    flags.extend(extra.iter().map(|f| std::ffi::OsStr::new(*f)));
    start_server_with(data, &env, slots, &flags)
}

/// A job running the built-in trainer on abalone (batch 32, no evaluation until the end).
pub fn builtin_job(id: &str, tier: &str, job_dir: &Path, steps: u32) -> String {
    let ex = examples();
    json!({"jobId": id, "trainingInput": {
        "scaleTier": tier,
        "masterConfig": {"containerCommand": ["mle", "train"]},
        "jobDir": job_dir,
        "args": ["--model", ex.join("abalone/model.yaml"), "--train-files", ex.join("abalone/data/abalone_train.csv"),
                 "--eval-files", ex.join("abalone/data/abalone_test.csv"), "--train-steps", steps.to_string(),
                 "--train-batch-size", "32", "--eval-every-steps", "1000000", "--no-progress"]}})
    .to_string()
}

/// A job whose primary is `sh -c script`.
pub fn shell_job(id: &str, script: &str) -> String {
    json!({"jobId": id, "trainingInput": {"masterConfig": {"containerCommand": ["sh", "-c", script]}}}).to_string()
}

/// A seeded pseudo-random sequence (Knuth's MMIX linear congruential generator, high bits),
/// so that randomised tests pick the same moments on every run.
pub fn seeded(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    }
}
