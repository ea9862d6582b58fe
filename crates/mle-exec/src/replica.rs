//! `mle replica RUN_DIR`: the shim that runs in every task of a Slurm job step.
//!
//! Task `SLURM_PROCID` runs one replica of the plan: rank 0 is the primary, then the workers,
//! the parameter servers and the evaluators, each in index order. Replica addresses cannot be
//! known when the job is submitted (Slurm picks the nodes), so the tasks meet in the run
//! directory, which the server and every node share as they share Slurm's output files: each
//! task picks a free port on its node, writes `slurm/<job>.<step>/rank-<N>` (`host:port`, the
//! host being the node's `NodeAddr`), waits for every rank, and rewrites the `cluster` of its
//! `TF_CONFIG` with those addresses, and the variables derived from it (`CLUSTER_SPEC`,
//! `MASTER_ADDR`, ...) — so every replica sees the same cluster, as on the local
//! backend, and its own task type and index.
//!
//! The trainer's output goes to this task's standard output as the same JSON lines the local
//! supervisor writes (Slurm stores them in `logs/slurm-task-<N>.log`). The primary's exit
//! decides the job: its shim writes `started` (the time its trainer started) and
//! `result.json`; the other shims stop their replicas when that file appears. SIGTERM
//! (`scancel`) stops the replica's whole process group.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::plan::write_atomic;
use crate::supervise::{LogLoss, cancel_flag, exit_text, join_pumps, pump};
use crate::{ExecError, JobPlan, RunDir, stop_groups};

/// How long a primary whose replica died waits for its own SIGTERM before calling it a failure.
const SIGNAL_WAIT: Duration = Duration::from_millis(500);

/// How long tasks wait for each other at the rendezvous.
const RENDEZVOUS: Duration = Duration::from_secs(300);

/// `(role, index)` of a task name such as `worker-replica-2`.
fn role_of(task: &str) -> Option<(&str, usize)> {
    let (role, index) = task.rsplit_once("-replica-")?;
    Some((role, index.parse().ok()?))
}

/// Indices into `plan.replicas` in Slurm rank order: the primary (the plan's last replica),
/// then workers, parameter servers and the rest, each in plan order.
pub fn rank_order(plan: &JobPlan) -> Vec<usize> {
    let n = plan.replicas.len();
    if n == 0 {
        return Vec::new();
    }
    let class = |i: usize| match role_of(&plan.replicas[i].task).map(|r| r.0) {
        Some("worker") => 0,
        Some("ps") => 1,
        _ => 2,
    };
    let mut rest: Vec<usize> = (0..n - 1).collect();
    rest.sort_by_key(|&i| class(i));
    std::iter::once(n - 1).chain(rest).collect()
}

fn env_usize(name: &str) -> Result<usize, ExecError> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ExecError::Replica(format!(
                "{name} is not set: `mle replica` runs inside a Slurm job step (srun)"
            ))
        })
}

/// The address other nodes reach this one at: Slurm's `NodeAddr` for this node.
fn node_addr() -> String {
    let name = std::env::var("SLURMD_NODENAME").unwrap_or_default();
    if !name.is_empty()
        && let Ok(out) = Command::new("scontrol")
            .args(["show", "node", "-o", &name])
            .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(addr) = text
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("NodeAddr="))
        {
            return addr.to_string();
        }
    }
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Registers this rank's address and waits for everyone's.
fn rendezvous(
    dir: &Path,
    rank: usize,
    n: usize,
    cancel: &AtomicBool,
) -> Result<Vec<String>, ExecError> {
    let io = |source| ExecError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map_err(io)?
        .port();
    let me = format!("{}:{port}", node_addr());
    write_atomic(&dir.join(format!("rank-{rank}")), me.as_bytes())?;
    let deadline = Instant::now() + RENDEZVOUS;
    loop {
        let addrs: Vec<Option<String>> = (0..n)
            .map(|r| {
                std::fs::read_to_string(dir.join(format!("rank-{r}")))
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .collect();
        if addrs.iter().all(Option::is_some) {
            return Ok(addrs.into_iter().flatten().collect());
        }
        if Instant::now() > deadline || cancel.load(Ordering::Relaxed) {
            let missing: Vec<String> = addrs
                .iter()
                .enumerate()
                .filter(|(_, a)| a.is_none())
                .map(|(r, _)| r.to_string())
                .collect();
            return Err(ExecError::Replica(format!(
                "tasks {} never registered in {} (is the run directory shared by every node?)",
                missing.join(", "),
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs this task's replica of the plan in `run`; returns the exit code for the task.
pub fn replica(run: &RunDir) -> Result<i32, ExecError> {
    let cancel = cancel_flag(run)?;
    let rank = env_usize("SLURM_PROCID")?;
    let tasks = env_usize("SLURM_NTASKS")?;
    let job = std::env::var("SLURM_JOB_ID").unwrap_or_else(|_| "job".into());
    let step = std::env::var("SLURM_STEP_ID").unwrap_or_else(|_| "0".into());
    let plan = run.read_plan()?;
    let order = rank_order(&plan);
    if order.len() != tasks {
        return Err(ExecError::Replica(format!(
            "the plan has {} replicas but the step has {tasks} tasks",
            order.len()
        )));
    }
    let me = &plan.replicas[order[rank]];
    let primary = rank == 0;
    let addrs = rendezvous(
        &run.0.join("slurm").join(format!("{job}.{step}")),
        rank,
        tasks,
        &cancel,
    )?;
    let by_role: HashMap<(String, usize), String> = order
        .iter()
        .zip(&addrs)
        .filter_map(|(&i, a)| {
            let (role, index) = role_of(&plan.replicas[i].task)?;
            Some(((role.to_string(), index), a.clone()))
        })
        .collect();
    // TF_CONFIG and every variable derived from the cluster (CLUSTER_SPEC, MASTER_ADDR, ...).
    let mut env = me.env.clone();
    mle_tfconfig::rewrite_env(&mut env, &by_role);
    let out: Arc<Mutex<dyn Write + Send>> = Arc::new(Mutex::new(std::io::stdout()));
    let loss = Arc::new(LogLoss::default());
    if primary {
        run.reserve_result_space();
    }
    let mut cmd = Command::new(&me.program);
    cmd.args(&me.args)
        .env_clear()
        .envs(crate::env::inherited())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(d) = &me.cwd {
        cmd.current_dir(d);
    }
    if primary {
        // The job is running from here on (the server's startTime).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        write_atomic(&run.0.join("started"), now.to_string().as_bytes())?;
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let message = format!("{} could not start {}: {e}", me.task, me.program);
            if primary {
                run.write_result("FAILED", &message)?;
            }
            return Err(ExecError::Replica(message));
        }
    };
    let pumps = vec![
        pump(
            child.stdout.take().expect("piped"),
            "INFO",
            me.task.clone(),
            plan.trial.clone(),
            out.clone(),
            loss.clone(),
        ),
        pump(
            child.stderr.take().expect("piped"),
            "ERROR",
            me.task.clone(),
            plan.trial.clone(),
            out,
            loss.clone(),
        ),
    ];
    let started = Instant::now();
    let grace = Duration::from_secs(5);
    // The task's exit code, and the job's outcome when this task decides it (the primary).
    let (code, outcome) = loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            // Leftovers of the replica (its process group) go with it.
            stop_groups(&mut [&mut child], Duration::ZERO);
            let code = status.code().unwrap_or(1);
            if !primary {
                break (code, None);
            }
            if !status.success() {
                // `scancel` and Slurm's time limit signal every process of the step at once:
                // the replica may die before this shim sees its own SIGTERM.
                let t = Instant::now();
                while t.elapsed() < SIGNAL_WAIT && !cancel.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if cancel.load(Ordering::Relaxed) || run.0.join("cancel_requested").exists() {
                // Not the trainer's failure: the server (or Slurm) ended the job, and the
                // server writes the outcome from Slurm's state.
                break (143, None);
            }
            let outcome = if status.success() {
                ("SUCCEEDED", String::new())
            } else {
                (
                    "FAILED",
                    format!(
                        "The replica {} exited with a non-zero status: {}",
                        me.task,
                        exit_text(status)
                    ),
                )
            };
            break (code, Some(outcome));
        }
        if cancel.load(Ordering::Relaxed) {
            stop_groups(&mut [&mut child], grace);
            break (143, None);
        }
        if !primary && run.result().exists() {
            // The primary has ended the job.
            stop_groups(&mut [&mut child], grace);
            break (0, None);
        }
        if let Some(max) = plan.max_running_secs
            && primary
            && started.elapsed().as_secs_f64() > max
        {
            stop_groups(&mut [&mut child], grace);
            let message = format!("Job exceeded its maximum running time ({max} s)");
            break (1, Some(("FAILED", message)));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    join_pumps(pumps, grace);
    if let Some((state, message)) = outcome {
        run.write_result(state, &loss.annotate(&message))?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplicaPlan;
    use serde_json::{Value, json};

    fn replica(task: &str) -> ReplicaPlan {
        ReplicaPlan {
            task: task.into(),
            program: "true".into(),
            args: vec![],
            env: vec![],
            cwd: None,
        }
    }

    #[test]
    fn rank_zero_is_the_primary_then_workers_then_ps() {
        let plan = JobPlan {
            replicas: [
                "ps-replica-0",
                "ps-replica-1",
                "worker-replica-0",
                "worker-replica-1",
                "evaluator-replica-0",
                "master-replica-0",
            ]
            .into_iter()
            .map(replica)
            .collect(),
            max_running_secs: None,
            trial: None,
            run_as: None,
        };
        let tasks: Vec<&str> = rank_order(&plan)
            .into_iter()
            .map(|i| plan.replicas[i].task.as_str())
            .collect();
        assert_eq!(
            tasks,
            [
                "master-replica-0",
                "worker-replica-0",
                "worker-replica-1",
                "ps-replica-0",
                "ps-replica-1",
                "evaluator-replica-0"
            ]
        );
    }

    #[test]
    fn cluster_addresses_are_replaced_and_the_task_kept() {
        let tf = r#"{"cluster":{"master":["localhost:1"],"worker":["localhost:2","localhost:3"]},"task":{"type":"worker","index":1},"environment":"cloud"}"#;
        let addrs: HashMap<(String, usize), String> = [
            (("master".to_string(), 0), "n1:5000".to_string()),
            (("worker".to_string(), 0), "n1:5001".to_string()),
            (("worker".to_string(), 1), "n2:5002".to_string()),
        ]
        .into_iter()
        .collect();
        let mut env = vec![("TF_CONFIG".to_string(), tf.to_string())];
        mle_tfconfig::rewrite_env(&mut env, &addrs);
        let v: Value = serde_json::from_str(&env[0].1).unwrap();
        assert_eq!(
            v["cluster"],
            json!({"master": ["n1:5000"], "worker": ["n1:5001", "n2:5002"]})
        );
        assert_eq!(v["task"], json!({"type": "worker", "index": 1}));
        assert_eq!(v["environment"], "cloud");
    }
}
