//! `mle local train --distributed`: a cluster of replica processes on localhost with gcloud's
//! semantics. Each replica runs in its own process group so that stopping it stops everything
//! it started; Ctrl-C or SIGTERM to `mle` stops the whole cluster.

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;

use mle_tfconfig::{ClusterMap, TfConfig};

/// The shape of the local cluster.
pub struct LocalCluster {
    /// `chief` or `master`.
    pub primary: &'static str,
    /// Worker count.
    pub workers: usize,
    /// Parameter server count.
    pub ps: usize,
    /// Evaluator count (not in the cluster).
    pub evaluators: usize,
    /// First port.
    pub start_port: u16,
}

impl LocalCluster {
    /// `{primary: [port0], ps: [...], worker: [...]}` on contiguous localhost ports: the
    /// primary first, then the parameter servers, then the workers.
    pub fn spec(&self) -> Result<ClusterMap> {
        let n = 1 + self.ps + self.workers;
        let last = self.start_port as usize + n - 1;
        anyhow::ensure!(
            last <= u16::MAX as usize,
            "--start-port {} leaves no room for {n} ports",
            self.start_port
        );
        let addr = |role: &str, i: usize| -> Result<String, std::convert::Infallible> {
            let offset = match role {
                "ps" => 1 + i,
                "worker" => 1 + self.ps + i,
                _ => 0,
            };
            Ok(format!("localhost:{}", self.start_port as usize + offset))
        };
        mle_tfconfig::cluster(self.primary, self.workers, self.ps, addr).map_err(|e| match e {})
    }
}

/// The child's exit code, or 128 + signal like a shell.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

struct Replica {
    name: String,
    child: Child,
}

fn spawn(mut cmd: Command, name: String) -> Result<Replica> {
    let child = cmd
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Replica { name, child })
}

fn stop_all(replicas: &mut [Replica]) {
    let mut children: Vec<&mut Child> = replicas.iter_mut().map(|r| &mut r.child).collect();
    mle_exec::stop_groups(&mut children, Duration::from_secs(5));
}

/// Starts ps, workers and evaluators, then the primary; returns the primary's exit code once it
/// ends (or 130 on Ctrl-C), after stopping every other replica.
pub fn run_local_cluster(
    shape: &LocalCluster,
    command: impl Fn(&TfConfig) -> Command,
    job: &serde_json::Value,
) -> Result<i32> {
    let cluster = shape.spec()?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted.clone())
            .context("installing signal handlers")?;
    }
    let mut others = Vec::new();
    let start = |role: &str, index: usize| {
        spawn(
            command(&TfConfig::for_task(&cluster, role, index, job.clone())),
            format!("{role}-replica-{index}"),
        )
    };
    let result = (|| -> Result<i32> {
        for i in 0..shape.ps {
            others.push(start("ps", i)?);
        }
        for i in 0..shape.workers {
            others.push(start("worker", i)?);
        }
        for i in 0..shape.evaluators {
            others.push(start("evaluator", i)?);
        }
        let mut primary = vec![start(shape.primary, 0)?];
        let code = loop {
            if let Some(status) = primary[0].child.try_wait()? {
                break exit_code(status);
            }
            if interrupted.load(Ordering::Relaxed) {
                eprintln!("interrupted: stopping {} replicas", others.len() + 1);
                stop_all(&mut primary);
                break 130;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if code != 0 && code != 130 {
            eprintln!("{} exited with status {code}", primary[0].name);
        }
        Ok(code)
    })();
    stop_all(&mut others);
    result
}
