//! TLS: a server started with `--tls-cert/--tls-key` (certificates made here with rcgen: a CA
//! and a server certificate for 127.0.0.1 and localhost) answers the CLI (`MLE_CA_CERT`) and
//! Google's Python client (`HTTPLIB2_CA_CERTS`) over https; a client that does not trust the
//! CA is refused, and plain http to the TLS port fails saying why.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use util::*;

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mle test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn the_cli_and_googles_client_work_over_https_and_plain_http_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let flags: Vec<&std::ffi::OsStr> = vec![
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        key.as_os_str(),
    ];
    let s = start_server_with(&dir.path().join("data"), &[], 4, &flags);
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let cli = |extra: &[(&str, &str)], url: &str| {
        let mut c = s.cli();
        c.env("MLE_SERVER", url)
            .args(["jobs", "list", "--project", "p"]);
        for (k, v) in extra {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let ca_s = ca.display().to_string();
    let ok = cli(&[("MLE_CA_CERT", &ca_s)], &s.url);
    assert!(ok.status.success(), "{}", stderr(&ok));
    // Without the CA the server is not trusted.
    let untrusted = cli(&[], &s.url);
    assert!(!untrusted.status.success());
    assert!(
        stderr(&untrusted).to_lowercase().contains("certificate"),
        "{}",
        stderr(&untrusted)
    );
    // Plain http to the TLS port: a clear answer, not a hang-up.
    let plain_url = s.url.replacen("https://", "http://", 1);
    let plain = cli(&[("MLE_CA_CERT", &ca_s)], &plain_url);
    assert!(!plain.status.success());
    assert!(
        stderr(&plain).contains("this port speaks HTTPS"),
        "{}",
        stderr(&plain)
    );
    // Google's client, trusting the CA through httplib2.
    let script = examples().join("../tests/python/google_client.py");
    let out = Command::new(test_python())
        .arg(script)
        .arg(format!("{}/", s.url))
        .arg(s.token())
        .env("HTTPLIB2_CA_CERTS", &ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["final"]["state"], "SUCCEEDED", "{v}");
}

#[test]
fn bad_certificate_files_stop_the_server_at_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificates(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    for (c, k, flag) in [
        (&garbage, &key, "--tls-cert"),
        (&cert, &garbage, "--tls-key"),
        (&cert, &dir.path().join("missing.key"), "--tls-key"),
    ] {
        let out = mle()
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--tls-cert")
            .arg(c)
            .arg("--tls-key")
            .arg(k)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(stderr(&out).contains(flag), "{flag}: {}", stderr(&out));
    }
    // Only one of the two is an error of the command line.
    let out = mle()
        .args(["server", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
