//! `gs://` and `s3://` against real object-store servers started here from the test venv:
//! `gcp-storage-emulator` (GCS's JSON API, in memory) with `STORAGE_EMULATOR_HOST`, and
//! `moto` in server mode (S3) with the `AWS_*` variables. `mle train` of the abalone model
//! reads its data from a bucket and keeps its job dir there.

mod util;

use std::path::Path;
use std::process::{Child, Command, Stdio};
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ObjectServer {
    fn start(gcs: bool) -> Self {
        let bin = test_python().parent().unwrap().to_path_buf();
        let port = free_port();
        let mut cmd = if gcs {
            let mut c = Command::new(bin.join("gcp-storage-emulator"));
            c.args([
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--in-memory",
            ]);
            c
        } else {
            let mut c = Command::new(bin.join("moto_server"));
            c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            c
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "the object-store servers come with the test venv (tests/python/requirements.txt)",
            );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
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
