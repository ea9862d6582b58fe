//! The job service end to end: the real `mle server` on 127.0.0.1:0 with a SQLite file in a
//! scratch data dir, the real `mle jobs` client, real supervisors and replica processes.

mod util;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use util::*;

#[test]
fn auth_is_required_everywhere_but_health_and_the_token_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 4);
    let out = Command::new("curl")
        .args(["-s", &format!("{}/healthz", s.url)])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "%{http_code}",
            &format!("{}/v1/projects/p/jobs", s.url),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("401"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.path().join("token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let out = s
        .cli()
        .args(["jobs", "list", "--token", "wrong"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("(401)"), "{}", stderr(&out));
}

#[test]
fn the_cli_says_how_to_start_a_missing_server() {
    let out = mle()
        .args([
            "jobs",
            "list",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach the mle server at http://127.0.0.1:9")
            && stderr(&out).contains("mle server --data-dir"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn submit_with_stream_logs_runs_the_builtin_trainer_to_success() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(&dir.path().join("data"), &[], 4);
    let ex = examples();
    let job_dir = dir.path().join("job");
    let out = run_expect(
        s.cli()
            .args([
                "jobs",
                "submit",
                "training",
                "abalone_1",
                "--builtin",
                "--stream-logs",
                "--job-dir",
            ])
            .arg(&job_dir)
            .arg("--")
            .arg("--model")
            .arg(ex.join("abalone/model.yaml"))
            .arg("--train-files")
            .arg(ex.join("abalone/data/abalone_train.csv"))
            .args([
                "--train-steps",
                "500",
                "--train-batch-size",
                "3320",
                "--eval-every-steps",
                "250",
                "--no-progress",
            ]),
        0,
    );
    let text = stdout(&out);
    // gcloud's stream-logs columns: severity, timestamp, task, message.
    let line = text
        .lines()
        .find(|l| l.contains("step 500/500"))
        .unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = line.split('\t').collect();
    assert_eq!((cols[0], cols[2]), ("INFO", "master-replica-0"), "{line}");
    assert!(cols[1].ends_with('Z') && cols[1].contains('T'));
    assert!(mle_nn::export::latest(&job_dir.join("export/abalone")).is_some());
    let out = run_expect(
        s.cli()
            .args(["jobs", "describe", "abalone_1", "--format", "json"]),
        0,
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["state"], "SUCCEEDED");
    for k in ["createTime", "startTime", "endTime", "etag"] {
        assert!(v[k].as_str().is_some_and(|s| !s.is_empty()), "{k} in {v}");
    }
    let out = run_expect(
        s.cli()
            .args(["jobs", "list", "--filter", "state:SUCCEEDED"]),
        0,
    );
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("abalone_1") && l.contains("SUCCEEDED")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_failing_trainer_fails_the_job_with_a_reason_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 4);
    let (code, _) = s.request(
        "POST",
        "/v1/projects/p/jobs",
        Some(&shell_job("bad_1", "echo trying; exit 7")),
    );
    assert_eq!(code, 200);
    let out = s
        .cli()
        .args(["jobs", "--project", "p", "stream-logs", "bad_1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("trying"));
    let v = s.wait_state("bad_1", &["FAILED"], 30);
    assert_eq!(
        v["errorMessage"],
        "The replica master-replica-0 exited with a non-zero status: exit status 7"
    );
}

#[test]
fn an_unmodified_python_sdist_runs_as_eight_replicas_on_standard_1() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let py = test_python();
    let env = probe_env(&probe, &py);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = start_server(&dir.path().join("data"), &env, 8);
    // The same checks run on the Slurm backend (tests/slurm.rs).
    check_standard_1_launch_contract(&s, &probe, &dir.path().join("job"));
}

#[test]
fn bad_input_is_a_400_with_field_violations_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 4);
    let check = |body: &str, code: u16, field: &str| {
        let (got, v) = s.request("POST", "/v1/projects/p/jobs", Some(body));
        assert_eq!(got, code, "{body} → {v}");
        if code == 400 {
            assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
            let fields: Vec<&str> = v["error"]["details"][0]["fieldViolations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["field"].as_str().unwrap())
                .collect();
            assert!(
                fields.iter().any(|f| f.starts_with(field)),
                "{fields:?} lacks {field}"
            );
        }
    };
    check(&shell_job("9lives", "true"), 400, "job.job_id");
    check(
        r#"{"jobId": "j1", "trainingInput": {"scaleTier": "GIGANTIC", "masterConfig": {"containerCommand": ["true"]}}}"#,
        400,
        "job",
    );
    check(
        r#"{"jobId": "j2", "trainingInput": {"scaleTier": "CUSTOM", "masterConfig": {"containerCommand": ["true"]}}}"#,
        400,
        "job.training_input.master_type",
    );
    check(
        r#"{"jobId": "j3", "trainingInput": {"scaleTier": "CUSTOM", "masterType": "standard", "workerCount": "-1", "masterConfig": {"containerCommand": ["true"]}}}"#,
        400,
        "job.training_input.worker_count",
    );
    check(r#"{"jobId": "j4", "trainingInput": {"#, 400, "body");
    check(
        r#"{"jobId": "j5", "trainingInput": {"pythonModule": "t.task", "packageUris": ["/no/such/pkg.tar.gz"]}}"#,
        400,
        "job.training_input.package_uris[0]",
    );
    let (_, list) = s.request("GET", "/v1/projects/p/jobs", None);
    assert_eq!(list["jobs"], json!([]), "nothing half-created");
    check(&shell_job("dup", "true"), 200, "");
    check(&shell_job("dup", "true"), 409, "");
    let (code, v) = s.request("GET", "/v1/projects/p/jobs/nope", None);
    assert_eq!(
        (code, v["error"]["status"].as_str()),
        (404, Some("NOT_FOUND"))
    );
}

/// PIDs of processes whose command line contains `needle`.
#[test]
fn fifty_concurrent_submissions_complete_and_cancel_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 6);
    std::thread::scope(|sc| {
        for i in 0..50 {
            let s = &s;
            sc.spawn(move || {
                let (code, v) = s.request(
                    "POST",
                    "/v1/projects/p/jobs",
                    Some(&shell_job(&format!("burst_{i}"), "sleep 0.2; echo done")),
                );
                assert_eq!(code, 200, "{v}");
            });
        }
    });
    // With 6 slots most jobs wait: the queue publishes their positions.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, page) = s.request(
            "GET",
            "/v1/projects/p/jobs?pageSize=100&filter=state:QUEUED",
            None,
        );
        let queued = page["jobs"].as_array().unwrap();
        if queued.iter().any(|j| j["jobPosition"] == "0") {
            break;
        }
        assert!(
            Instant::now() < deadline && !queued.is_empty(),
            "no queue position published: {page}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..50 {
        s.wait_state(&format!("burst_{i}"), &["SUCCEEDED"], 120);
    }
    // Paging walks all 50 in creation order.
    let (_, p1) = s.request("GET", "/v1/projects/p/jobs?pageSize=30", None);
    let token = p1["nextPageToken"].as_str().unwrap().to_string();
    let (_, p2) = s.request(
        "GET",
        &format!("/v1/projects/p/jobs?pageSize=30&pageToken={token}"),
        None,
    );
    assert_eq!(
        p1["jobs"].as_array().unwrap().len() + p2["jobs"].as_array().unwrap().len(),
        50
    );
    assert!(p2.get("nextPageToken").is_none());

    let marker = format!("mle-cancel-marker-{}", std::process::id());
    let (code, _) = s.request(
        "POST",
        "/v1/projects/p/jobs",
        Some(&shell_job(
            "long_1",
            &format!("sh -c 'sleep 300; echo {marker}' & sleep 300; echo {marker}"),
        )),
    );
    assert_eq!(code, 200);
    s.wait_state("long_1", &["RUNNING"], 30);
    wait_for_pids(&marker, 2, 10);
    run_expect(
        s.cli().args(["jobs", "--project", "p", "cancel", "long_1"]),
        0,
    );
    s.wait_state("long_1", &["CANCELLED"], 30);
    assert!(
        pids_with(&marker).is_empty(),
        "left behind: {:?}",
        pids_with(&marker)
    );
}

#[test]
fn jobs_survive_kill_9_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = start_server(&data, &[], 8);
    for i in 0..3 {
        let (code, v) = s.request(
            "POST",
            "/v1/projects/p/jobs",
            Some(&builtin_job(
                &format!("long_{i}"),
                "BASIC",
                &dir.path().join(format!("job{i}")),
                60_000,
            )),
        );
        assert_eq!(code, 200, "{v}");
    }
    for i in 0..3 {
        s.wait_state(&format!("long_{i}"), &["RUNNING"], 60);
    }
    // SIGKILL: no chance to clean up.
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let s2 = start_server(&data, &[], 8);
    for i in 0..3 {
        let v = s2.wait_state(&format!("long_{i}"), &["SUCCEEDED", "FAILED"], 180);
        assert_eq!(v["state"], "SUCCEEDED", "{v}");
    }
    let (code, _) = s2.request(
        "POST",
        "/v1/projects/p/jobs",
        Some(&shell_job("after_1", "echo hello")),
    );
    assert_eq!(code, 200);
    s2.wait_state("after_1", &["SUCCEEDED"], 30);
    drop(s);
}

#[test]
fn allow_root_refuses_paths_outside_it_even_through_dot_dot_or_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("pkgs")).unwrap();
    std::fs::write(root.join("pkgs/p.tar.gz"), b"x").unwrap();
    std::fs::write(dir.path().join("outside.tar.gz"), b"x").unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("link")).unwrap();
    let s = start_server_with(
        &dir.path().join("data"),
        &[],
        4,
        &["--allow-root".as_ref(), root.as_os_str()],
    );
    let job = |id: &str, job_dir: &Path, pkg: &Path| {
        json!({"jobId": id, "trainingInput": {"pythonModule": "t.task", "packageUris": [pkg], "jobDir": job_dir}}).to_string()
    };
    let pkg = root.join("pkgs/p.tar.gz");
    for (id, job_dir, pkg, field) in [
        ("ok_1", root.join("jobs/a"), pkg.clone(), None),
        (
            "dots",
            root.join("jobs/../../escape"),
            pkg.clone(),
            Some("job.training_input.job_dir"),
        ),
        (
            "link_dir",
            root.join("link/jobs"),
            pkg.clone(),
            Some("job.training_input.job_dir"),
        ),
        (
            "link_pkg",
            root.join("jobs/b"),
            root.join("link/outside.tar.gz"),
            Some("job.training_input.package_uris[0]"),
        ),
        (
            "outside",
            dir.path().join("elsewhere"),
            pkg.clone(),
            Some("job.training_input.job_dir"),
        ),
    ] {
        let (code, v) = s.request(
            "POST",
            "/v1/projects/p/jobs",
            Some(&job(id, &job_dir, &pkg)),
        );
        match field {
            None => assert_eq!(code, 200, "{id}: {v}"),
            Some(f) => {
                assert_eq!(code, 400, "{id}: {v}");
                assert_eq!(
                    v["error"]["details"][0]["fieldViolations"][0]["field"], f,
                    "{id}"
                );
            }
        }
    }
}

#[test]
fn labels_can_be_patched() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 2);
    assert_eq!(
        s.request(
            "POST",
            "/v1/projects/p/jobs",
            Some(&shell_job("l1", "true"))
        )
        .0,
        200
    );
    let (code, v) = s.request(
        "PATCH",
        "/v1/projects/p/jobs/l1?updateMask=labels",
        Some(r#"{"labels": {"team": "ml-1"}}"#),
    );
    assert_eq!((code, &v["labels"]), (200, &json!({"team": "ml-1"})));
    let (code, _) = s.request(
        "PATCH",
        "/v1/projects/p/jobs/l1?updateMask=labels",
        Some(r#"{"labels": {"Team": "x"}}"#),
    );
    assert_eq!(code, 400);
    let (code, _) = s.request(
        "PATCH",
        "/v1/projects/p/jobs/l1?updateMask=state",
        Some(r#"{"state": "SUCCEEDED"}"#),
    );
    assert_eq!(code, 400);
}

#[test]
fn metrics_are_prometheus_text_behind_auth() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 3);
    assert_eq!(
        s.request(
            "POST",
            "/v1/projects/p/jobs",
            Some(&shell_job("m1", "true"))
        )
        .0,
        200
    );
    s.wait_state("m1", &["SUCCEEDED"], 30);
    let out = Command::new("curl")
        .args([
            "-s",
            "-H",
            &format!("Authorization: Bearer {}", s.token()),
            &format!("{}/metrics", s.url),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("# TYPE mle_jobs gauge\nmle_jobs{state=\"SUCCEEDED\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("mle_slots_total 3\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("mle_http_requests_total ")),
        "{text}"
    );
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &format!("{}/metrics", s.url),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
}

#[test]
fn the_seed_scripts_run_against_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(&dir.path().join("data"), &[], 16);
    for (script, export) in [
        ("abalone/scripts/train-cloud.sh", "export/abalone"),
        ("iris/scripts/single-instance-training.sh", "export/iris"),
        ("iris/scripts/distributed-training.sh", "export/iris"),
    ] {
        let job_dir = dir.path().join(script.replace('/', "_"));
        let out = seed_script(&s, script)
            .env("JOB_DIR", &job_dir)
            .env("JOB_NAME", format!("seed_{}", script.len()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}:\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("state: SUCCEEDED"),
            "{script}: {}",
            stderr(&out)
        );
        assert!(
            mle_nn::export::latest(&job_dir.join(export)).is_some(),
            "{script}: no export"
        );
    }
}

#[test]
fn googles_ml_v1_client_library_works_with_only_the_endpoint_changed() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 4);
    let script = examples().join("../tests/python/google_client.py");
    let out = run_expect(
        Command::new(test_python())
            .arg(script)
            .arg(format!("{}/", s.url))
            .arg(s.token()),
        0,
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["created"]["state"], "QUEUED");
    assert_eq!(v["final"]["state"], "SUCCEEDED", "{v}");
    assert_eq!(v["cancel"], json!({}));
    assert_eq!(
        (v["page1"].clone(), v["page2"].clone()),
        (json!(["google_1"]), json!(["google_2"]))
    );
    assert_eq!(v["error"]["status"], 400);
    assert_eq!(v["error"]["body"]["error"]["status"], "INVALID_ARGUMENT");
    let (_, j) = s.request("GET", "/v1/projects/gp/jobs/google_2", None);
    assert!(
        matches!(j["state"].as_str(), Some("CANCELLING" | "CANCELLED")),
        "{j}"
    );
}

#[test]
fn max_running_time_fails_a_job_that_runs_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 2);
    let job = json!({"jobId": "slow", "trainingInput": {"masterConfig": {"containerCommand": ["sleep", "300"]}, "scheduling": {"maxRunningTime": "1s"}}});
    assert_eq!(
        s.request("POST", "/v1/projects/p/jobs", Some(&job.to_string()))
            .0,
        200
    );
    let v = s.wait_state("slow", &["FAILED"], 30);
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("maximum running time"),
        "{v}"
    );
}

#[test]
fn a_malformed_config_file_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 2);
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "trainingInput: [unclosed\n").unwrap();
    let out = s
        .cli()
        .args([
            "jobs",
            "--project",
            "p",
            "submit",
            "training",
            "x1",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not valid YAML or JSON"),
        "{}",
        stderr(&out)
    );
    let (_, list) = s.request("GET", "/v1/projects/p/jobs", None);
    assert_eq!(list["jobs"], json!([]));
    // A valid config supplies the job; flags override it.
    std::fs::write(&cfg, "trainingInput:\n  scaleTier: BASIC\n  masterConfig:\n    containerCommand: [sh, -c, 'exit 0']\n  region: from-config\n").unwrap();
    run_expect(
        s.cli()
            .args([
                "jobs",
                "--project",
                "p",
                "submit",
                "training",
                "x2",
                "--region",
                "from-flag",
                "--config",
            ])
            .arg(&cfg),
        0,
    );
    let (_, j) = s.request("GET", "/v1/projects/p/jobs/x2", None);
    assert_eq!(j["trainingInput"]["region"], "from-flag");
    run_expect(
        s.cli()
            .args([
                "jobs",
                "--project",
                "p",
                "submit",
                "training",
                "x3",
                "--config",
            ])
            .arg(&cfg),
        0,
    );
    let (_, j) = s.request("GET", "/v1/projects/p/jobs/x3", None);
    assert_eq!(
        j["trainingInput"]["region"], "from-config",
        "flags that are not given do not override the config"
    );
}

/// A client that never finishes its headers is dropped after `--header-timeout`; connections
/// over `--max-connections` are closed at once; once they are gone the server answers again.
#[test]
fn slow_and_surplus_connections_cannot_hold_the_server() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let s = start_server_with(
        dir.path(),
        &[],
        2,
        &[
            "--header-timeout".as_ref(),
            "1".as_ref(),
            "--max-connections".as_ref(),
            "2".as_ref(),
        ],
    );
    let addr = s.url.trim_start_matches("http://").to_string();
    let open = || {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        c
    };
    let (mut a, mut b) = (open(), open());
    // Give the server a moment to take both, then a third is over the cap.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(c.read(&mut buf).unwrap_or(0), 0, "over the cap: closed");
    // The slow ones are dropped by the header timeout (a read returns end of file or a reset,
    // not the 20 s read timeout).
    let t = std::time::Instant::now();
    for conn in [&mut a, &mut b] {
        let n = conn.read(&mut buf);
        assert!(
            !matches!(&n, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{n:?}"
        );
    }
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        t.elapsed()
    );
    drop((a, b));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, _) = s.request("GET", "/v1/projects/p/jobs", None);
    assert_eq!(code, 200);
    // An idle keep-alive connection is dropped by the same timeout after its answer.
    let mut k = TcpStream::connect(&addr).unwrap();
    k.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    k.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 256];
    assert!(k.read(&mut answer).unwrap() > 0);
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let t = std::time::Instant::now();
    let n = k.read(&mut answer);
    assert!(
        matches!(n, Ok(0) | Err(_)) && t.elapsed() < std::time::Duration::from_secs(15),
        "{n:?}"
    );
    assert!(
        !matches!(&n, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{n:?}"
    );
}

/// A second server on the same data dir is refused, naming the first.
#[test]
fn one_data_dir_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let _first = start_server(dir.path(), &[], 2);
    let mut second = mle()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while second.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if second.try_wait().unwrap().is_none() {
        let _ = second.kill();
        panic!("a second server on the same data dir kept running");
    }
    let out = second.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another mle server (pid"),
        "{}",
        stderr(&out)
    );
}

/// A cancel while the job's packages install stops pip (and what it started) at once.
#[test]
fn a_cancel_while_packages_install_stops_pip() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("slowpkg-1");
    std::fs::create_dir_all(&src).unwrap();
    let marker = format!("slow-build-{}", std::process::id());
    std::fs::write(
        src.join("setup.py"),
        format!("import time  # {marker}\ntime.sleep(120)\nfrom setuptools import setup\nsetup(name='slowpkg', version='1')\n"),
    )
    .unwrap();
    let tarball = dir.path().join("slowpkg-1.tar.gz");
    let ok = Command::new("tar")
        .arg("czf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.path())
        .arg("slowpkg-1")
        .status()
        .unwrap();
    assert!(ok.success());
    let py = test_python();
    let s = start_server(
        &dir.path().join("data"),
        &[("MLE_PYTHON", py.to_str().unwrap())],
        2,
    );
    let job = json!({"jobId": "slow_pip", "trainingInput": {"pythonModule": "slowpkg.task",
        "packageUris": [tarball]}});
    let (code, v) = s.request("POST", "/v1/projects/p/jobs", Some(&job.to_string()));
    assert_eq!(code, 200, "{v}");
    wait_for_pids(tarball.to_str().unwrap(), 1, 60);
    let (code, v) = s.request("POST", "/v1/projects/p/jobs/slow_pip:cancel", Some("{}"));
    assert_eq!(code, 200, "{v}");
    let job = s.wait_state("slow_pip", &["CANCELLED", "FAILED", "SUCCEEDED"], 20);
    assert_eq!(job["state"], "CANCELLED", "{job}");
    wait_gone(tarball.to_str().unwrap(), 10);
}

/// `stream-logs` follows two replicas that print while it reads: every line arrives exactly
/// once (page tokens carry per-file offsets; an offset into a merge of growing files would
/// skip and repeat lines).
#[test]
fn stream_logs_sees_every_line_of_growing_logs_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 4);
    let burst = "for j in $(seq 1 30); do seq 1 400 | sed \"s/^/$j-/\"; sleep 0.1; done";
    // The master ends only once the worker has printed everything (no race on a slow machine).
    let done = dir.path().join("worker-done");
    let script = format!(
        "{burst}; case \"$TF_CONFIG\" in *'\"type\": \"master\"'*|*'\"type\":\"master\"'*) while [ ! -e '{d}' ]; do sleep 0.05; done;; *) touch '{d}'; sleep 60;; esac",
        d = done.display()
    );
    let job = json!({"jobId": "chatty", "trainingInput": {"scaleTier": "CUSTOM", "masterType": "standard",
        "workerType": "standard", "workerCount": "1",
        "masterConfig": {"containerCommand": ["sh", "-c", script]}}});
    let (code, v) = s.request("POST", "/v1/projects/default/jobs", Some(&job.to_string()));
    assert_eq!(code, 200, "{v}");
    let out = s
        .cli()
        .args(["jobs", "stream-logs", "chatty"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts = std::collections::HashMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() == 4 && cols[3].contains('-') && cols[2].ends_with("-replica-0") {
            *counts
                .entry((cols[2].to_string(), cols[3].to_string()))
                .or_insert(0) += 1;
        }
    }
    for task in ["master-replica-0", "worker-replica-0"] {
        let n = counts.keys().filter(|(t, _)| t == task).count();
        assert_eq!(n, 30 * 400, "{task}: {n} distinct lines");
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(3).collect();
    assert!(repeated.is_empty(), "repeated: {repeated:?}");
}

/// A supervisor killed with SIGKILL (as the OOM killer does) leaves no replica behind: the
/// server fails the job and kills the replicas it had started.
#[test]
fn replicas_do_not_outlive_a_killed_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 2);
    let marker = format!("orphan-{}", std::process::id());
    let (code, v) = s.request(
        "POST",
        "/v1/projects/p/jobs",
        Some(&shell_job("orphan", &format!("sleep 300; echo {marker}"))),
    );
    assert_eq!(code, 200, "{v}");
    s.wait_state("orphan", &["RUNNING"], 30);
    wait_for_pids(&marker, 1, 30);
    let pid_file = dir.path().join("runs/p/orphan/supervisor.pid");
    let text = std::fs::read_to_string(&pid_file).unwrap();
    let pid = text.split_whitespace().next().unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", pid])
            .status()
            .unwrap()
            .success()
    );
    let job = s.wait_state("orphan", &["FAILED", "SUCCEEDED", "CANCELLED"], 30);
    assert_eq!(job["state"], "FAILED", "{job}");
    assert!(
        job["errorMessage"]
            .as_str()
            .unwrap()
            .contains("disappeared"),
        "{job}"
    );
    wait_gone(&marker, 10);
}

/// Cancel races: 200 submissions, half of them cancelled at random moments while others run.
/// Every job ends; a job cancelled before it ever started never runs (its trainer would leave
/// a marker); cancelled jobs hold no process.
#[test]
fn a_job_cancelled_before_it_starts_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(&dir.path().join("data"), &[], 2);
    let ran = dir.path().join("ran");
    std::fs::create_dir_all(&ran).unwrap();
    let n = 200;
    let script = format!("touch '{}'/$CLOUD_ML_JOB_ID; sleep 0.2", ran.display());
    // A fixed-seed LCG picks which jobs to cancel and when.
    let mut next = seeded(0x2545_f491_4f6c_dd1d);
    let mut to_cancel = Vec::new();
    for i in 0..n {
        let id = format!("race_{i}");
        let (code, v) = s.request(
            "POST",
            "/v1/projects/p/jobs",
            Some(&shell_job(&id, &script)),
        );
        assert_eq!(code, 200, "{v}");
        if next().is_multiple_of(2) {
            to_cancel.push(id);
        }
        // Now and then cancel a few of the picked ones, while the queue moves.
        if next().is_multiple_of(4) {
            for id in to_cancel.drain(..) {
                let (code, v) = s.request(
                    "POST",
                    &format!("/v1/projects/p/jobs/{id}:cancel"),
                    Some("{}"),
                );
                assert!(code == 200 || code == 400, "{code} {v}");
            }
        }
    }
    for id in to_cancel.drain(..) {
        let (code, v) = s.request(
            "POST",
            &format!("/v1/projects/p/jobs/{id}:cancel"),
            Some("{}"),
        );
        assert!(code == 200 || code == 400, "{code} {v}");
    }
    let mut cancelled_unstarted = 0;
    for i in 0..n {
        let id = format!("race_{i}");
        let job = s.wait_state(&id, &["SUCCEEDED", "FAILED", "CANCELLED"], 120);
        assert_ne!(job["state"], "FAILED", "{job}");
        let started = job["startTime"].as_str().is_some_and(|t| !t.is_empty());
        if job["state"] == "CANCELLED" && !started {
            cancelled_unstarted += 1;
            assert!(
                !ran.join(&id).exists(),
                "{id} was cancelled before it started, yet ran: {job}"
            );
        }
        if job["state"] == "SUCCEEDED" {
            assert!(ran.join(&id).exists(), "{id}");
        }
    }
    assert!(cancelled_unstarted > 0, "no cancel hit a queued job");
    wait_gone(&ran.display().to_string(), 10);
}

/// The server's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// How much a flooding trainer prints.
const FLOOD_BYTES: u64 = 1 << 30;
/// What the server may hold at its peak while the flood is paged through (its log file is
/// larger than this by far).
const FLOOD_PEAK_RSS: u64 = 256 << 20;

/// A trainer that prints 1 GiB of log lines: the logs feed returns them in pages of about
/// 1 MiB (never the whole file in one answer), every line once, and the server's memory stays
/// bounded while it pages through the whole file.
#[test]
fn a_flood_of_log_lines_is_served_in_bounded_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[], 2);
    let script = format!("head -c {FLOOD_BYTES} /dev/zero | tr '\\0' x | fold -w 1023");
    let (code, v) = s.request(
        "POST",
        "/v1/projects/p/jobs",
        Some(&shell_job("flood", &script)),
    );
    assert_eq!(code, 200, "{v}");
    s.wait_state("flood", &["SUCCEEDED"], 600);
    let mut token = String::new();
    let (mut lines, mut pages, mut biggest) = (0u64, 0, 0usize);
    loop {
        let out = Command::new("curl")
            .args(["-s", "-H"])
            .arg(format!("Authorization: Bearer {}", s.token()))
            .arg(format!(
                "{}/v1/projects/p/jobs/flood/logs?pageToken={token}",
                s.url
            ))
            .output()
            .unwrap();
        biggest = biggest.max(out.stdout.len());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let entries = v["entries"].as_array().unwrap();
        if entries.is_empty() {
            break;
        }
        lines += entries
            .iter()
            .filter(|e| e["message"].as_str().is_some_and(|m| m.len() == 1023))
            .count() as u64;
        pages += 1;
        token = v["nextPageToken"].as_str().unwrap().to_string();
        assert!(pages < 4000, "the feed does not end");
    }
    // fold cuts the stream into lines of 1023 characters (and a shorter last one).
    assert_eq!(lines, FLOOD_BYTES / 1023, "every line once");
    assert!(pages >= 1024, "{pages} pages");
    assert!(biggest < 3 << 20, "a page of {biggest} bytes");
    let log = std::fs::metadata(s.data.join("runs/p/flood/logs/master-replica-0.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    let peak = peak_rss(s.child.id());
    eprintln!("log file {log} bytes, {pages} pages, server peak RSS {peak} bytes");
    assert!(
        peak < FLOOD_PEAK_RSS,
        "the server's peak RSS was {peak} bytes"
    );
}

/// Fault injection: a workload of jobs (training, a tuning job, a batch prediction job) while
/// the server is killed with -9 at pseudo-random moments (and restarted) and some training
/// supervisors are killed with -9 too. Every job ends in the state its fate calls for — a job
/// whose supervisor was killed FAILS saying so, every other one SUCCEEDS, the tuning job with
/// all its trials and the batch job with all its predictions — none is lost, and no trainer
/// process is left.
#[test]
fn jobs_end_right_when_the_server_and_supervisors_are_killed_at_random() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let marker = format!("fault-{}", std::process::id());
    let n = 16;
    let mut s = start_server(&data, &[], 4);
    let mut next = seeded(0x9e37_79b9_7f4a_7c15);
    let mut killed_supervisors = std::collections::BTreeSet::new();
    let mut server_kills = 0;
    // A tuning job of slow trials and a batch prediction job, across the kills below.
    let trial = format!(
        r#"sleep 1.5; echo {marker}; mkdir -p "$(dirname "$CLOUD_ML_HP_METRIC_FILE")"
echo "{{\"loss\": \"0.$CLOUD_ML_TRIAL_ID\", \"global_step\": \"1\", \"timestamp\": \"1\"}}" > "$CLOUD_ML_HP_METRIC_FILE""#
    );
    let tuning = json!({"jobId": "fault_hp", "trainingInput": {
        "masterConfig": {"containerCommand": ["sh", "-c", trial]},
        "hyperparameters": {"goal": "MINIMIZE", "hyperparameterMetricTag": "loss", "maxTrials": 4,
            "maxParallelTrials": 2, "algorithm": "GRID_SEARCH",
            "params": [{"parameterName": "x", "type": "INTEGER", "minValue": 1, "maxValue": 4}]}}});
    let job_dir = dir.path().join("abalone");
    run_expect(&mut abalone_train(&job_dir, 50, 32), 0);
    let rows = dir.path().join("rows.csv");
    let row = "0.57,0.465,0.18,1.295,0.339,0.2225,0.44\n";
    std::fs::write(&rows, row.repeat(5000)).unwrap();
    let batch = json!({"jobId": "fault_batch", "predictionInput": {
        "uri": job_dir.join("export/abalone"), "dataFormat": "TEXT",
        "inputPaths": [rows], "outputPath": dir.path().join("predictions")}});
    for body in [tuning, batch] {
        let (code, v) = s.request("POST", "/v1/projects/p/jobs", Some(&body.to_string()));
        assert_eq!(code, 200, "{v}");
    }
    for i in 0..n {
        let id = format!("fault_{i}");
        let ms = 300 + next() % 900;
        let script = format!("sleep {}.{:03}; echo {marker}", ms / 1000, ms % 1000);
        let (code, v) = s.request(
            "POST",
            "/v1/projects/p/jobs",
            Some(&shell_job(&id, &script)),
        );
        assert_eq!(code, 200, "{v}");
        std::thread::sleep(Duration::from_millis(next() % 300));
        match next() % 6 {
            // The server, mid-flight.
            0 => {
                s.child.kill().unwrap();
                s.child.wait().unwrap();
                s = start_server(&data, &[], 4);
                server_kills += 1;
            }
            // A running job's supervisor (waiting up to 2 s for one to run).
            1 => {
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(2) {
                    let (_, list) =
                        s.request("GET", "/v1/projects/p/jobs?filter=state:RUNNING", None);
                    let running: Vec<String> = list["jobs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|j| j["jobId"].as_str().map(String::from))
                        // Training jobs only: the tuning and batch jobs must succeed.
                        .filter(|j| {
                            j.strip_prefix("fault_")
                                .is_some_and(|i| i.parse::<u32>().is_ok())
                        })
                        .filter(|j| !killed_supervisors.contains(j))
                        .collect();
                    if let Some(victim) = running.first() {
                        let pid_file = data.join("runs/p").join(victim).join("supervisor.pid");
                        if let Ok(text) = std::fs::read_to_string(&pid_file)
                            && let Some(pid) = text.split_whitespace().next()
                            && Command::new("kill")
                                .args(["-9", pid])
                                .status()
                                .unwrap()
                                .success()
                        {
                            killed_supervisors.insert(victim.clone());
                            break;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            _ => {}
        }
    }
    for i in 0..n {
        let id = format!("fault_{i}");
        let job = s.wait_state(&id, &["SUCCEEDED", "FAILED", "CANCELLED"], 120);
        if killed_supervisors.contains(&id) {
            // Killed just as it ended, it may have written its result first.
            if job["state"] != "SUCCEEDED" {
                assert_eq!(job["state"], "FAILED", "{job}");
                assert!(
                    job["errorMessage"]
                        .as_str()
                        .unwrap()
                        .contains("disappeared"),
                    "{job}"
                );
            }
        } else {
            assert_eq!(job["state"], "SUCCEEDED", "{id}: {job}");
        }
    }
    let hp = s.wait_state("fault_hp", &["SUCCEEDED", "FAILED"], 120);
    assert_eq!(hp["state"], "SUCCEEDED", "{hp}");
    let trials = hp["trainingOutput"]["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4, "{hp}");
    assert!(trials.iter().all(|t| t["state"] == "SUCCEEDED"), "{hp}");
    let batch = s.wait_state("fault_batch", &["SUCCEEDED", "FAILED"], 120);
    assert_eq!(
        (
            batch["state"].as_str(),
            batch["predictionOutput"]["predictionCount"].as_str()
        ),
        (Some("SUCCEEDED"), Some("5000")),
        "{batch}"
    );
    wait_gone(&marker, 10);
    let (_, list) = s.request("GET", "/v1/projects/p/jobs?pageSize=100", None);
    assert_eq!(
        list["jobs"].as_array().unwrap().len(),
        n as usize + 2,
        "none is lost"
    );
    assert!(
        server_kills > 0 && !killed_supervisors.is_empty(),
        "the seed must kill both: {server_kills} server kills, {killed_supervisors:?}"
    );
}
