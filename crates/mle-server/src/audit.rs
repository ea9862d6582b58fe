//! The audit log, `<data-dir>/audit.log` (mode 0600): one JSON line per mutating request and
//! per denied one — time, principal name (never a token), project, method, resource (the
//! request path), HTTP status and outcome. A writer thread appends the lines, so a request
//! never waits on the disk; a line that cannot be written is reported on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};

use serde_json::json;

/// A handle on the audit log's writer.
#[derive(Debug, Clone)]
pub struct Audit {
    tx: Sender<String>,
}

/// One audited request.
pub struct Entry<'a> {
    /// Who asked (`anonymous` without a valid token).
    pub principal: &'a str,
    /// The project the request concerns ('' for none).
    pub project: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The request path.
    pub resource: &'a str,
    /// The HTTP status answered.
    pub status: u16,
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Audit {
    /// The audit log of `data_dir`, with its writer thread (which ends with the last handle).
    pub fn new(data_dir: &Path) -> Self {
        let (tx, rx) = channel::<String>();
        let path: PathBuf = data_dir.join("audit.log");
        std::thread::spawn(move || {
            let mut file = None;
            for line in rx {
                if file.is_none() {
                    file = open(&path)
                        .map_err(|e| eprintln!("audit log {}: {e}", path.display()))
                        .ok();
                }
                if let Some(f) = file.as_mut()
                    && let Err(e) = writeln!(f, "{line}")
                {
                    eprintln!("audit log {}: {e}; lost: {line}", path.display());
                    file = None;
                }
            }
        });
        Self { tx }
    }

    /// Appends `e`.
    pub fn record(&self, e: &Entry<'_>) {
        let outcome = match e.status {
            401 | 403 => "DENIED",
            s if s < 400 => "OK",
            _ => "FAILED",
        };
        let line = json!({
            "time": mle_api::now_rfc3339(), "principal": e.principal, "project": e.project,
            "method": e.method, "resource": e.resource, "status": e.status, "outcome": outcome,
        });
        let _ = self.tx.send(line.to_string());
    }
}
