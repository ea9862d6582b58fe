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
