//! Access with the real binary: `mle server tokens` on a running server's data dir, the CLI
//! with a named token (`MLE_TOKEN`), tokens that survive a restart and a revoked one that
//! never works again, and the audit log (one line per mutating request, never a token).

mod util;

use serde_json::Value;
use util::*;

fn tokens(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = mle();
    c.args(["server", "tokens"])
        .args(args)
        .arg("--data-dir")
        .arg(data);
    c.output().unwrap()
}

fn audit_lines(data: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn named_tokens_work_survive_a_restart_and_revoking_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = start_server(&data, &[], 2);
    let out = tokens(
        &data,
        &["create", "dev", "--role", "developer", "--project", "p"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dev = stdout(&out).trim().to_string();
    assert_eq!(dev.len(), 64, "one token on stdout: {dev}");
    assert!(stderr(&out).contains("developer in p"), "{}", stderr(&out));
    // A bad role is refused by the CLI, naming the choices.
    let bad = tokens(&data, &["create", "x", "--role", "root", "--project", "p"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("modelUser"), "{}", stderr(&bad));
    let taken = tokens(
        &data,
        &["create", "dev", "--role", "viewer", "--project", "p"],
    );
    assert!(!taken.status.success());
    assert!(stderr(&taken).contains("exists"), "{}", stderr(&taken));

    // The CLI with the developer's token: it may create models in p, not in q, and not delete.
    let as_dev = |args: &[&str]| {
        let mut c = s.cli();
        c.env("MLE_TOKEN", &dev).args(args);
        c.output().unwrap()
    };
    let ok = as_dev(&["models", "create", "m1", "--project", "p"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let denied = as_dev(&["models", "create", "m2", "--project", "q"]);
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains("does not hold ml.models.create in project 'q'"),
        "{}",
        stderr(&denied)
    );
    let denied = as_dev(&["models", "delete", "m1", "--project", "p"]);
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains("ml.models.delete"),
        "{}",
        stderr(&denied)
    );

    let list = tokens(&data, &["list"]);
    let text = stdout(&list);
    assert!(
        text.contains("dev") && text.contains("developer") && text.contains(" p"),
        "{text}"
    );
    assert!(!text.contains(&dev), "the list never shows a token");

    // A restart keeps the tokens.
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    s = start_server(&data, &[], 2);
    let again = {
        let mut c = s.cli();
        c.env("MLE_TOKEN", &dev)
            .args(["models", "list", "--project", "p"]);
        c.output().unwrap()
    };
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("m1"));

    // Revoked while the server runs: refused from the next request on, and after a restart.
    let out = tokens(&data, &["revoke", "dev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut c = s.cli();
    c.env("MLE_TOKEN", &dev)
        .args(["models", "list", "--project", "p"]);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid bearer token"),
        "{}",
        stderr(&out)
    );
    let gone = tokens(&data, &["revoke", "dev"]);
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).contains("no token named 'dev'"),
        "{}",
        stderr(&gone)
    );

    // The audit log: the model creation, the two denials, the refused request after the
    // revocation; names, never tokens.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lines = audit_lines(&data);
    let raw = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert!(
        !raw.contains(&dev) && !raw.contains(&s.token()),
        "a token in the audit log"
    );
    let find = |principal: &str, method: &str, status: u64| {
        lines
            .iter()
            .filter(|l| {
                l["principal"] == principal && l["method"] == method && l["status"] == status
            })
            .count()
    };
    assert_eq!(find("dev", "POST", 200), 1, "{lines:?}");
    assert_eq!(find("dev", "POST", 403), 1, "{lines:?}");
    assert_eq!(find("dev", "DELETE", 403), 1, "{lines:?}");
    assert_eq!(find("anonymous", "GET", 401), 1, "{lines:?}");
    assert_eq!(
        lines.len(),
        4,
        "one line per mutating or denied request: {lines:?}"
    );
    let created = lines
        .iter()
        .find(|l| l["principal"] == "dev" && l["status"] == 200)
        .unwrap();
    assert_eq!(created["project"], "p");
    assert_eq!(created["resource"], "/v1/projects/p/models");
    assert_eq!(created["outcome"], "OK");
    // Reads are not audited.
    assert_eq!(find("dev", "GET", 200), 0, "{lines:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("audit.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A token that may submit jobs is not a shell: `containerCommand` starts only the mle binary
/// and the Python interpreter unless the operator allows more, and a job sees none of the
/// server's environment but what the operator passes.
#[test]
fn jobs_run_allowed_commands_only_and_without_the_servers_environment() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("MLE_TEST_SECRET", "s3cr3t-1"), ("PASSED_ON", "visible-2")];
    let s = start_server_bare(&dir.path().join("a"), &env, 2, &[]);
    let (code, v) = s.request(
        "POST",
        "/v1/projects/p/jobs",
        Some(&shell_job("shell", "echo hi")),
    );
    assert_eq!(code, 400, "{v}");
    let msg = v.to_string();
    assert!(
        msg.contains("job.training_input.master_config.container_command")
            && msg.contains("--allow-command"),
        "{msg}"
    );
    let job = serde_json::json!({"jobId": "abs", "trainingInput": {"masterConfig": {"containerCommand": ["/bin/sh", "-c", "true"]}}});
    let (code, _) = s.request("POST", "/v1/projects/p/jobs", Some(&job.to_string()));
    assert_eq!(code, 400, "a path to the same shell is refused too");
    drop(s);

    let flags: Vec<&std::ffi::OsStr> = ["--allow-command", "sh", "--pass-env", "PASSED_ON"]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
    let s = start_server_bare(&dir.path().join("b"), &env, 2, &flags);
    let (code, v) = s.request(
        "POST",
        "/v1/projects/p/jobs",
        Some(&shell_job("env_dump", "env")),
    );
    assert_eq!(code, 200, "{v}");
    s.wait_state("env_dump", &["SUCCEEDED"], 60);
    let logs = s.logs("env_dump");
    assert!(logs.contains("CLOUD_ML_JOB_ID=env_dump"), "{logs}");
    assert!(logs.contains("TF_CONFIG="), "{logs}");
    assert!(logs.contains("PASSED_ON=visible-2"), "{logs}");
    assert!(
        !logs.contains("s3cr3t-1") && !logs.contains("MLE_TEST_SECRET"),
        "{logs}"
    );
    assert!(!logs.contains("MLE_DATA_DIR"), "{logs}");
}

/// As root, a server runs its jobs as an unprivileged user (`--run-as`, `nobody` by default):
/// a trainer a developer submits cannot read the token or the database, nor list the data
/// dir, and sees none of the server's variables; the data dir's files are the server's alone.
#[test]
fn a_job_cannot_read_the_servers_token_or_database() {
    if !root_or_skip("running jobs as another user") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    let env = [("DATA", data_s.as_str()), ("MLE_TEST_SECRET", "s3cr3t-3")];
    // The default --run-as (nobody), not the tests' usual --run-as root.
    let flags: Vec<&std::ffi::OsStr> = ["--allow-command", "sh", "--pass-env", "DATA"]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
    let s = start_server_bare(&data, &env, 2, &flags);
    let out = tokens(
        &data,
        &["create", "dev", "--role", "developer", "--project", "p"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dev = stdout(&out).trim().to_string();
    let script = r#"echo "uid=$(id -u)"
env
cat "$DATA/token" || echo token-refused
head -c 16 "$DATA/mle.db" > /dev/null || echo db-refused
ls "$DATA" > /dev/null || echo list-refused
echo work > "$HOME/probe" && echo home-writable"#;
    let (code, v) = s.request_as(
        &dev,
        "POST",
        "/v1/projects/p/jobs",
        Some(&shell_job("snoop", script)),
    );
    assert_eq!(code, 200, "the developer's submission: {v}");
    let done = s.wait_state("snoop", &["SUCCEEDED", "FAILED"], 60);
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let logs = s.logs("snoop");
    assert!(logs.contains("uid=65534"), "{logs}");
    assert!(logs.contains("Permission denied"), "{logs}");
    for refused in ["token-refused", "db-refused", "list-refused"] {
        assert!(logs.contains(refused), "{refused}: {logs}");
    }
    assert!(logs.contains("home-writable"), "{logs}");
    assert!(logs.contains("CLOUD_ML_JOB_ID=snoop"), "{logs}");
    assert!(
        !logs.contains("s3cr3t-3") && !logs.contains("MLE_"),
        "{logs}"
    );
    assert!(!logs.contains(&s.token()), "the token leaked: {logs}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(data.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("token"), 0o600);
    assert_eq!(mode("mle.db"), 0o600);
    assert_eq!(mode(""), 0o711, "passable, not listable");
}

/// The launch contract holds for another user's jobs too: an unmodified Python sdist, pip
/// installed as `nobody` and run as 8 replicas by it (their files are nobody's).
#[test]
fn a_python_sdist_job_runs_as_the_unprivileged_user() {
    if !root_or_skip("running jobs as another user") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    let job = dir.path().join("job");
    for d in [&probe, &job] {
        std::fs::create_dir_all(d).unwrap();
        // The job's user writes here, as it would write a bucket it was granted.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    // The system's interpreter: the test venv's may live where nobody can reach (a pyenv
    // build under /root), as an operator's interpreter must not.
    let system_python = std::path::Path::new("/usr/bin/python3");
    assert!(
        system_python.exists(),
        "/usr/bin/python3 (with pip) is needed: apt-get install python3-pip"
    );
    let env = probe_env(&probe, system_python);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let flags: Vec<&std::ffi::OsStr> = ["--pass-env", "PROBE_OUT", "--pass-env", "PROBE_EXPECT"]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
    let s = start_server_bare(&dir.path().join("data"), &env, 8, &flags);
    check_standard_1_launch_contract(&s, &probe, &job);
    let owner = std::fs::metadata(probe.join("master-0.json"))
        .unwrap()
        .uid();
    assert_eq!(owner, 65534, "the replicas ran as nobody");
    // The environment nobody's pip built is sealed: the server's, and nobody may change it
    // for the next job.
    let envs: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join("data/envs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(envs.len(), 1, "{envs:?}");
    let mut stack = envs.clone();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            assert_eq!(m.uid(), 0, "{}", e.path().display());
            if !m.file_type().is_symlink() {
                assert_eq!(m.permissions().mode() & 0o022, 0, "{}", e.path().display());
            }
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
}

/// A job dir that does not exist yet is made for the job's user: the built-in trainer, run as
/// nobody, writes its checkpoints and export there.
#[test]
fn a_missing_job_dir_is_made_for_the_jobs_user() {
    if !root_or_skip("running jobs as another user") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let s = start_server_bare(&dir.path().join("data"), &[], 2, &[]);
    let job_dir = dir.path().join("jobs/abalone/run_1");
    let (code, v) = s.request(
        "POST",
        "/v1/projects/p/jobs",
        Some(&builtin_job("as_nobody", "BASIC", &job_dir, 20)),
    );
    assert_eq!(code, 200, "{v}");
    let done = s.wait_state("as_nobody", &["SUCCEEDED", "FAILED"], 120);
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    assert_eq!(std::fs::metadata(&job_dir).unwrap().uid(), 65534);
    let export = std::fs::read_dir(job_dir.join("export/abalone"))
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    assert_eq!(
        export.metadata().unwrap().uid(),
        65534,
        "written by the job's user"
    );
}
