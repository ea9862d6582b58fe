//! A full disk: the server's data dir on a small tmpfs (mounting needs root, which CI has),
//! filled up while a job runs. Requests that would write get a clear 503 (never a 500, never
//! a half-written record), records already stored stay readable, the running job still records
//! how it ended and says that its log lines were lost, and once space is freed everything works
//! again.

mod util;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use util::*;

/// A tmpfs mounted at a scratch directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t tmpfs failed (this test needs root)");
        Self(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the file system refuses (ENOSPC); returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut n = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => return n,
            Ok(k) => n += k as u64,
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                return n;
            }
        }
    }
}

#[test]
fn a_full_disk_gives_clear_errors_loses_no_record_and_recovers() {
    if !root_or_skip("mounting a tmpfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _fs = Tmpfs::mount(&data, "16m");
    let s = start_server(&data, &[], 2);
    let (code, r) = s.request(
        "POST",
        "/v1/projects/p/jobs",
        Some(&shell_job("before", "echo hello")),
    );
    assert_eq!(code, 200, "{r}");
    let before = s.wait_state("before", &["SUCCEEDED"], 60);
    // A job that logs for a while: the disk fills up under it.
    let chatty = "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); sleep 0.02; done";
    let (code, r) = s.request(
        "POST",
        "/v1/projects/p/jobs",
        Some(&shell_job("during", chatty)),
    );
    assert_eq!(code, 200, "{r}");
    s.wait_state("during", &["RUNNING"], 60);
    let filler = data.join("filler");
    assert!(fill(&filler) > 0);

    // Writes are refused with a 503 that says why (the database may still find room for a few
    // in pages it already holds); reads go on.
    let mut refused = None;
    let mut stored = Vec::new();
    for i in 0..500 {
        let id = format!("full_{i}");
        let (code, r) = s.request("POST", "/v1/projects/p/jobs", Some(&shell_job(&id, "true")));
        match code {
            200 => stored.push(id),
            503 => {
                refused = Some((id, r));
                break;
            }
            other => panic!("job {i}: {other} {r}"),
        }
    }
    let (refused_id, r) = refused.expect("the full disk never refused a write");
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("disk is full"), "{r}");
    assert_eq!(r["error"]["status"], "UNAVAILABLE", "{r}");
    let (code, r) = s.request(
        "POST",
        "/v1/projects/p/models",
        Some(&json!({"name": "m"}).to_string()),
    );
    assert_eq!(code, 503, "{r}");
    let (code, again) = s.request("GET", "/v1/projects/p/jobs/before", None);
    assert_eq!((code, &again), (200, &before));
    let (code, _) = s.request("GET", "/v1/projects/p/jobs?pageSize=100", None);
    assert_eq!(code, 200);

    // Space comes back: the running job's end is recorded, with the lines it lost said.
    std::thread::sleep(std::time::Duration::from_secs(7));
    std::fs::remove_file(&filler).unwrap();
    let during = s.wait_state("during", &["SUCCEEDED", "FAILED"], 120);
    assert_eq!(during["state"], "SUCCEEDED", "{during}");
    let note = during["errorMessage"].as_str().unwrap_or_default();
    assert!(
        note.contains("log lines were lost: the disk of the run directory is full"),
        "{during}"
    );
    // No half-written record: the refused job does not exist, the stored ones are whole and
    // run, and new work runs.
    let (code, _) = s.request("GET", &format!("/v1/projects/p/jobs/{refused_id}"), None);
    assert_eq!(code, 404);
    for id in &stored {
        let j = s.wait_state(id, &["SUCCEEDED", "FAILED"], 120);
        assert_eq!(j["jobId"], id.as_str());
        if j["state"] == "FAILED" {
            assert!(
                !j["errorMessage"].as_str().unwrap_or_default().is_empty(),
                "{j}"
            );
        }
    }
    let (code, r) = s.request(
        "POST",
        "/v1/projects/p/jobs",
        Some(&shell_job("after", "echo back")),
    );
    assert_eq!(code, 200, "{r}");
    s.wait_state("after", &["SUCCEEDED"], 60);
    let (code, r) = s.request(
        "POST",
        "/v1/projects/p/models",
        Some(&json!({"name": "m"}).to_string()),
    );
    assert_eq!(code, 200, "{r}");
}
