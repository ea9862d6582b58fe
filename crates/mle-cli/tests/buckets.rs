//! `gs://` and `s3://` against real object-store servers started here from the test venv:
//! `gcp-storage-emulator` (GCS's JSON API, in memory) with `STORAGE_EMULATOR_HOST`, and
//! `moto` in server mode (S3) with the `AWS_*` variables. `mle train` of the abalone model
//! reads its data from a bucket and keeps its job dir there; through the server, the seed's
//! scripts run with `gs://` paths for their data, job dirs, staged package, model and batch
//! prediction input and output.

mod util;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use util::*;

/// An object-store server on a free localhost port, stopped when dropped.
struct ObjectServer {
    child: Child,
    port: u16,
    gcs: bool,
}

impl Drop for ObjectServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay in front of an object store. `cut` resets every connection and every new one
/// until `resume`: what a client sees of the store restarting. The store process itself keeps
/// running, because killing the GCS emulator can catch it rewriting its index file (`.meta`,
/// written in place) and the restarted emulator then fails on the truncated JSON.
struct Relay {
    port: u16,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn to(port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let me = Relay {
            port: listener.local_addr().unwrap().port(),
            down: Arc::new(AtomicBool::new(false)),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        let (down, open) = (me.down.clone(), me.open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if down.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees a reset
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let pipes = [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ];
                open.lock().unwrap().extend([client, server]);
                for (mut from, mut into) in pipes {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        me
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn resume(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ObjectServer {
    /// On a free port, the GCS emulator in memory.
    fn start(gcs: bool) -> Self {
        let port = free_port();
        let bin = test_python().parent().unwrap().to_path_buf();
        let mut cmd = if gcs {
            let mut c = Command::new(bin.join("gcp-storage-emulator"));
            c.args(["start", "--host", "127.0.0.1", "--port", &port.to_string()]);
            c.arg("--in-memory");
            c
        } else {
            let mut c = Command::new(bin.join("moto_server"));
            c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            c
        };
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "the object-store servers come with the test venv (tests/python/requirements.txt)",
            );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the object-store server exited ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "the object-store server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port, gcs }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The variables a client needs for this server.
    fn env(&self) -> Vec<(&'static str, String)> {
        if self.gcs {
            vec![("STORAGE_EMULATOR_HOST", format!("127.0.0.1:{}", self.port))]
        } else {
            vec![
                ("AWS_ENDPOINT_URL", self.url()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_ALLOW_HTTP", "true".into()),
            ]
        }
    }

    fn scheme(&self) -> &'static str {
        if self.gcs { "gs" } else { "s3" }
    }

    fn curl(&self, args: &[&str]) -> String {
        let out = Command::new("curl")
            .args(["-s", "-f", "-S"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    fn make_bucket(&self, bucket: &str) {
        if self.gcs {
            self.curl(&[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                &format!("{{\"name\": \"{bucket}\"}}"),
                &format!("{}/storage/v1/b?project=test", self.url()),
            ]);
        } else {
            self.curl(&["-X", "PUT", &format!("{}/{bucket}", self.url())]);
        }
    }

    fn upload(&self, bucket: &str, key: &str, file: &Path) {
        let data = format!("@{}", file.display());
        if self.gcs {
            self.curl(&[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &data,
                &format!(
                    "{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={key}",
                    self.url()
                ),
            ]);
        } else {
            // A content type of its own: curl's default (a form) is eaten by moto's framework.
            self.curl(&[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &data,
                &format!("{}/{bucket}/{key}", self.url()),
            ]);
        }
    }

    /// An object's bytes, as text.
    fn download(&self, bucket: &str, key: &str) -> String {
        if self.gcs {
            self.curl(&[&format!(
                "{}/storage/v1/b/{bucket}/o/{}?alt=media",
                self.url(),
                key.replace('/', "%2F")
            )])
        } else {
            self.curl(&[&format!("{}/{bucket}/{key}", self.url())])
        }
    }

    /// The keys of the bucket's objects below `prefix`.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let text = if self.gcs {
            self.curl(&[&format!(
                "{}/storage/v1/b/{bucket}/o?prefix={prefix}",
                self.url()
            )])
        } else {
            self.curl(&[&format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.url()
            )])
        };
        let mut keys: Vec<String> = if self.gcs {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|o| o["name"].as_str().unwrap().to_string())
                .collect()
        } else {
            text.split("<Key>")
                .skip(1)
                .filter_map(|s| s.split("</Key>").next())
                .map(String::from)
                .collect()
        };
        keys.sort();
        keys
    }
}

fn abalone(job_dir: &str, train: &str, eval: &str, steps: u64) -> Command {
    let mut c = mle();
    c.arg("train")
        .arg("--model")
        .arg(examples().join("abalone/model.yaml"))
        .args([
            "--train-files",
            train,
            "--eval-files",
            eval,
            "--job-dir",
            job_dir,
        ])
        .args([
            "--train-steps",
            &steps.to_string(),
            "--train-batch-size",
            "32",
        ])
        .args([
            "--eval-every-steps",
            "100",
            "--checkpoint-every-steps",
            "100",
            "--no-progress",
        ]);
    c
}

fn final_rmse(out: &std::process::Output) -> f64 {
    let text = stdout(out);
    let line = text
        .lines()
        .find(|l| l.starts_with("final step"))
        .unwrap_or_else(|| panic!("no final line in\n{text}\n{}", stderr(out)));
    line.split("rmse ")
        .nth(1)
        .unwrap()
        .split([',', ' '])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The abalone tutorial with its data and job dir in a bucket: the same RMSE as on local
/// disk, export, checkpoints and event files in the bucket, and a rerun resumes.
fn train_in_a_bucket(gcs: bool) {
    let server = ObjectServer::start(gcs);
    let (scheme, bucket) = (server.scheme(), "smiling-beaming-abalone");
    server.make_bucket(bucket);
    let data = examples().join("abalone/data");
    for f in ["abalone_train.csv", "abalone_test.csv"] {
        server.upload(bucket, &format!("data/{f}"), &data.join(f));
    }
    let env = server.env();
    let local = tempfile::tempdir().unwrap();
    let want = final_rmse(&run_expect(
        &mut abalone(
            local.path().join("job").to_str().unwrap(),
            data.join("abalone_train.csv").to_str().unwrap(),
            data.join("abalone_test.csv").to_str().unwrap(),
            300,
        ),
        0,
    ));
    let job = format!("{scheme}://{bucket}/jobs/abalone_1");
    // A pattern names the training file, as the seed's `gs://.../abalone_*.csv` would.
    let train = format!("{scheme}://{bucket}/data/abalone_tr*.csv");
    let eval = format!("{scheme}://{bucket}/data/abalone_test.csv");
    let mut cmd = abalone(&job, &train, &eval, 300);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = run_expect(&mut cmd, 0);
    let got = final_rmse(&out);
    assert!(
        (got - want).abs() <= 1e-6 * want.max(1.0),
        "bucket {got} vs local {want}"
    );
    assert!(
        stdout(&out).contains(&format!("exported to {job}/export/")),
        "{}",
        stdout(&out)
    );
    let keys = server.keys(bucket, "jobs/abalone_1/");
    for part in ["/checkpoints/", "/export/", "events.out.tfevents"] {
        assert!(
            keys.iter().any(|k| k.contains(part)),
            "no {part} in {keys:?}"
        );
    }
    // Run again with more steps: it resumes from the bucket's newest checkpoint.
    let mut cmd = abalone(&job, &train, &eval, 400);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = run_expect(&mut cmd, 0);
    assert!(
        stderr(&out).contains("resumed from the checkpoint of step 300"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("final step 400"), "{}", stdout(&out));
    // Errors name the URI and the cause, with no library noise.
    for (train, why) in [
        (
            format!("{scheme}://{bucket}/data/missing.csv"),
            "no such object",
        ),
        (format!("{scheme}://no-such-bucket-x/data/a.csv"), "no such"),
    ] {
        let mut cmd = abalone(
            &format!("{}", local.path().join("e").display()),
            &train,
            &eval,
            10,
        );
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let out = run_expect(&mut cmd, 1);
        assert!(
            stderr(&out).contains(&train) && stderr(&out).contains(why),
            "{train}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn abalone_trains_with_its_data_and_job_dir_in_a_gcs_bucket() {
    train_in_a_bucket(true);
}

#[test]
fn abalone_trains_with_its_data_and_job_dir_in_an_s3_bucket() {
    train_in_a_bucket(false);
}

#[test]
fn an_unreachable_store_is_named_after_the_retries() {
    let port = free_port();
    let out = run_expect(
        abalone(
            "gs://some-bucket/jobs/x",
            "gs://some-bucket/a.csv",
            "gs://some-bucket/b.csv",
            10,
        )
        .env("STORAGE_EMULATOR_HOST", format!("127.0.0.1:{port}"))
        .env("MLE_STORAGE_RETRY_SECS", "1"),
        1,
    );
    assert!(
        stderr(&out).contains("gs://some-bucket/jobs/x") && stderr(&out).contains("unreachable"),
        "{}",
        stderr(&out)
    );
}

/// A seed script pointed at `s`, with the object store's variables for the CLI.
fn seed(s: &Server, store: &ObjectServer, script: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = seed_script(s, script);
    cmd.envs(store.env().iter().map(|(k, v)| (*k, v.as_str())));
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let text = stdout(&out) + &stderr(&out);
    assert!(out.status.success(), "{script}:\n{text}");
    text
}

#[test]
fn the_seed_scripts_run_on_the_server_with_their_paths_in_gcs_buckets() {
    let store = ObjectServer::start(true);
    let (abalone_bucket, iris_bucket) = ("smiling-beaming-abalone", "iris-seed-bucket");
    store.make_bucket(abalone_bucket);
    store.make_bucket(iris_bucket);
    store.make_bucket("not-allowed-bucket");
    let data = examples().join("abalone/data");
    for f in ["abalone_train.csv", "abalone_test.csv"] {
        store.upload(abalone_bucket, f, &data.join(f));
    }
    let iris = examples().join("iris/data");
    for f in ["train_data.csv", "test_data.csv", "hold_out_test.csv"] {
        store.upload(iris_bucket, &format!("data/{f}"), &iris.join(f));
    }
    let env = store.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let py = test_python();
    let mut server_env = env.clone();
    server_env.push(("MLE_PYTHON", py.to_str().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let s = start_server_with(
        &dir.path().join("data"),
        &server_env,
        16,
        &[
            "--allow-bucket".as_ref(),
            abalone_bucket.as_ref(),
            "--allow-bucket".as_ref(),
            iris_bucket.as_ref(),
        ],
    );
    // The tutorial's STANDARD_1 job: data and job dir in the bucket.
    let text = seed(
        &s,
        &store,
        "abalone/scripts/train-cloud.sh",
        &[
            ("JOB_NAME", "abalone_1"),
            ("JOB_DIR", "gs://smiling-beaming-abalone/jobs/abalone_1"),
            (
                "TRAIN_DATA",
                "gs://smiling-beaming-abalone/abalone_train.csv",
            ),
            ("EVAL_DATA", "gs://smiling-beaming-abalone/abalone_test.csv"),
        ],
    );
    assert!(text.contains("state: SUCCEEDED"), "{text}");
    let keys = store.keys(abalone_bucket, "jobs/abalone_1/");
    for part in ["/checkpoints/", "/export/abalone/", "events.out.tfevents"] {
        assert!(
            keys.iter().any(|k| k.contains(part)),
            "no {part} in {keys:?}"
        );
    }
    // The book's tuning job: four trials, each in <jobDir>/<trial>/ in the bucket.
    let iris_job = format!("gs://{iris_bucket}/jobs/iris_hp");
    let train = format!("gs://{iris_bucket}/data/train_data.csv");
    let eval = format!("gs://{iris_bucket}/data/test_data.csv");
    let text = seed(
        &s,
        &store,
        "iris/scripts/hyper-tune.sh",
        &[
            ("JOB_NAME", "iris_hp"),
            ("JOB_DIR", &iris_job),
            ("TRAIN_DATA", &train),
            ("EVAL_DATA", &eval),
            ("TRAIN_STEPS", "1000"),
        ],
    );
    assert!(text.contains("state: SUCCEEDED"), "{text}");
    let (_, job) = s.request("GET", "/v1/projects/default/jobs/iris_hp", None);
    let trials = job["trainingOutput"]["trials"].as_array().unwrap().clone();
    assert_eq!(trials.len(), 4, "{job}");
    assert!(
        trials
            .iter()
            .all(|t| t["finalMetric"]["objectiveValue"].is_number()),
        "{job}"
    );
    let best = trials[0]["trialId"].as_str().unwrap().to_string();
    let keys = store.keys(iris_bucket, &format!("jobs/iris_hp/{best}/export/iris/"));
    assert!(
        keys.iter().any(|k| k.ends_with("mle_model.json")),
        "{keys:?}"
    );
    // A version from the bucket's export root (its newest export) predicts.
    let text = seed(
        &s,
        &store,
        "iris/scripts/create-prediction-service.sh",
        &[("MODEL_BINARIES", &format!("{iris_job}/{best}/export/iris"))],
    );
    assert!(text.contains("done."), "{text}");
    let (code, v) = s.request("GET", "/v1/projects/default/models/iris/versions/v1", None);
    assert_eq!((code, v["state"].as_str()), (200, Some("READY")), "{v}");
    let body = serde_json::json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}).to_string();
    let (code, resp) = s.request(
        "POST",
        "/v1/projects/default/models/iris/versions/v1:predict",
        Some(&body),
    );
    assert_eq!(code, 200, "{resp}");
    assert_eq!(resp["predictions"][0]["classes"][0], "setosa", "{resp}");
    // Batch prediction: a pattern of inputs in the bucket, the results written to it.
    let text = seed(
        &s,
        &store,
        "iris/scripts/run-batch-prediction.sh",
        &[
            ("JOB_NAME", "iris_batch"),
            (
                "INPUT_PATHS",
                &format!("gs://{iris_bucket}/data/hold_out*.csv"),
            ),
            ("OUTPUT_PATH", &format!("gs://{iris_bucket}/predictions")),
        ],
    );
    assert!(text.contains("state: SUCCEEDED"), "{text}");
    let results = store.download(iris_bucket, "predictions/prediction.results-00000-of-00001");
    let rows = std::fs::read_to_string(iris.join("hold_out_test.csv")).unwrap();
    assert_eq!(
        results.lines().count(),
        rows.lines().filter(|l| !l.trim().is_empty()).count(),
        "{results}"
    );
    assert!(
        results.lines().all(|l| l.contains("\"classes\"")),
        "{results}"
    );
    // A package staged in a bucket (gcloud's --staging-bucket) is fetched and installed.
    let out = run_expect(
        s.cli()
            .envs(env.iter().copied())
            .args(["jobs", "submit", "training", "staged_1"])
            .args(["--staging-bucket", &format!("gs://{iris_bucket}")])
            .arg("--package-path")
            .arg(examples().join("../tests/fixtures/hp_trainer/trainer"))
            .args(["--module-name", "trainer.task", "--stream-logs"])
            .arg("--job-dir")
            .arg(dir.path().join("staged_1")),
        0,
    );
    let text = stdout(&out) + &stderr(&out);
    assert!(text.contains("state: SUCCEEDED"), "{text}");
    let keys = store.keys(iris_bucket, "staged_1/packages/");
    assert!(keys.iter().any(|k| k.ends_with(".tar.gz")), "{keys:?}");
    // What is missing in an allowed bucket fails the job (or the version) naming the URI.
    let missing = format!("gs://{iris_bucket}/no/such-package.tar.gz");
    let job = serde_json::json!({"jobId": "missing_pkg", "trainingInput": {
        "scaleTier": "BASIC", "pythonModule": "trainer.task", "packageUris": [missing]}})
    .to_string();
    let (code, v) = s.request("POST", "/v1/projects/p/jobs", Some(&job));
    assert_eq!(code, 200, "{v}");
    let v = s.wait_state("missing_pkg", &["FAILED"], 60);
    let why = v["errorMessage"].as_str().unwrap_or_default();
    assert!(
        why.contains(&missing) && why.contains("no such object"),
        "{v}"
    );
    let body = serde_json::json!({"name": "v9",
        "deploymentUri": format!("gs://{iris_bucket}/no/model")})
    .to_string();
    let (code, v) = s.request(
        "POST",
        "/v1/projects/default/models/iris/versions",
        Some(&body),
    );
    assert_eq!(code, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        let (_, v) = s.request("GET", "/v1/projects/default/models/iris/versions/v9", None);
        if v["state"] != "CREATING" || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["state"], "FAILED", "{v}");
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("holds neither"),
        "{v}"
    );
    // A bucket the operator did not allow is refused at submission, naming the flag.
    let job = serde_json::json!({"jobId": "refused_1", "trainingInput": {
        "scaleTier": "BASIC", "jobDir": "gs://not-allowed-bucket/j",
        "masterConfig": {"containerCommand": ["true"]}}})
    .to_string();
    let (code, v) = s.request("POST", "/v1/projects/default/jobs", Some(&job));
    assert_eq!(code, 400, "{v}");
    assert!(
        v.to_string().contains("--allow-bucket not-allowed-bucket"),
        "{v}"
    );
}

#[test]
fn a_job_dir_in_a_bucket_survives_the_store_restarting_mid_training() {
    let store = ObjectServer::start(true);
    let relay = Relay::to(store.port);
    store.make_bucket("restart-bucket");
    let data = examples().join("abalone/data");
    let job = "gs://restart-bucket/jobs/long";
    let mut cmd = abalone(
        job,
        data.join("abalone_train.csv").to_str().unwrap(),
        data.join("abalone_test.csv").to_str().unwrap(),
        1_000_000,
    );
    cmd.env("STORAGE_EMULATOR_HOST", format!("127.0.0.1:{}", relay.port))
        .env("MLE_JOB_DIR_PUSH_SECS", "0.5")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Once the first checkpoint is in the bucket, the store goes away for 3 s: every
    // connection, open or new, is reset.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store
        .keys("restart-bucket", "jobs/long/checkpoints/")
        .iter()
        .any(|k| k.contains("ckpt") || k.ends_with(".json") || k.ends_with(".safetensors"))
    {
        assert!(Instant::now() < deadline, "no checkpoint was pushed");
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!("mle train ended early ({status}): {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    relay.cut();
    std::thread::sleep(Duration::from_secs(3));
    relay.resume();
    // The trainer kept trying (its pushes every 0.5 s) while the store was away.
    // The outage fell inside the training (the trainer is still running).
    assert!(
        child.try_wait().unwrap().is_none(),
        "the training ended before the store came back: make it longer"
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("final step 1000000"),
        "{}",
        stdout(&out)
    );
    let keys = store.keys("restart-bucket", "jobs/long/");
    assert!(
        keys.iter().any(|k| k.contains("/export/abalone/")),
        "no export after the restart: {keys:?}"
    );
    // Of the 10,000 checkpoints written, the bucket keeps what the trainer keeps: the newest 5.
    let ckpts: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains("/checkpoints/ckpt-"))
        .collect();
    assert_eq!(ckpts.len(), 5, "{ckpts:?}");
    assert!(
        ckpts
            .iter()
            .any(|k| k.ends_with("ckpt-1000000.safetensors")),
        "{ckpts:?}"
    );
}
