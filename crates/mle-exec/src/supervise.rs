//! The supervisor: runs a plan's replicas, captures their output line by line, and records the
//! job's outcome.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;

use crate::plan::RunDir;
use crate::{ExecError, JobPlan};

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `SUCCEEDED`, `FAILED` or `CANCELLED`.
    pub state: String,
    /// Why (empty on success).
    pub message: String,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The longest log line kept as one record; a longer line is split into records of this size.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How long the pumps of a finished run may take to see the end of their streams (a process
/// that left the replica's process group can hold them open).
const PUMP_DRAIN: Duration = Duration::from_secs(5);

/// The next line of `r` (without its end of line), at most [`MAX_LINE_BYTES`] of it, decoded
/// lossily: a trainer's bytes that are not UTF-8 never end its log. `None` at the end.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> Option<String> {
    use std::io::Read;
    buf.clear();
    match r
        .by_ref()
        .take(MAX_LINE_BYTES as u64)
        .read_until(b'\n', buf)
    {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            Some(String::from_utf8_lossy(buf).into_owned())
        }
    }
}

/// Log lines a run could not write (its disk filled up, most often), counted by the pumps and
/// reported in the run's outcome instead of vanishing.
#[derive(Debug, Default)]
pub(crate) struct LogLoss {
    lines: AtomicU64,
    disk_full: AtomicBool,
}

impl LogLoss {
    fn note(&self, e: &std::io::Error) {
        self.lines.fetch_add(1, Ordering::Relaxed);
        if e.kind() == std::io::ErrorKind::StorageFull {
            self.disk_full.store(true, Ordering::Relaxed);
        }
    }

    /// `message` with what was lost said after it.
    pub(crate) fn annotate(&self, message: &str) -> String {
        let n = self.lines.load(Ordering::Relaxed);
        if n == 0 {
            return message.to_string();
        }
        let why = if self.disk_full.load(Ordering::Relaxed) {
            "the disk of the run directory is full"
        } else {
            "the log file could not be written"
        };
        let sep = if message.is_empty() { "" } else { "; " };
        format!("{message}{sep}{n} log lines were lost: {why}")
    }
}

/// Copies one output stream of a replica into `log` (its log file, or a Slurm task's standard
/// output), one JSON object per line. It reads to the end whatever happens to the log, so a
/// replica never blocks or dies on a full pipe.
pub(crate) fn pump(
    stream: impl std::io::Read + Send + 'static,
    severity: &'static str,
    task: String,
    trial: Option<String>,
    log: Arc<Mutex<dyn Write + Send>>,
    loss: Arc<LogLoss>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        while let Some(message) = next_line(&mut reader, &mut buf) {
            let mut rec =
                json!({"time": now(), "severity": severity, "task": task, "message": message});
            if let Some(t) = &trial {
                rec["trial"] = json!(t);
            }
            if let Ok(mut f) = log.lock()
                && let Err(e) = writeln!(f, "{rec}").and_then(|()| f.flush())
            {
                loss.note(&e);
            }
        }
    })
}

struct Running {
    task: String,
    child: Child,
    pumps: Vec<std::thread::JoinHandle<()>>,
}

fn stop(replicas: &mut [Running]) {
    let mut children: Vec<&mut Child> = replicas.iter_mut().map(|r| &mut r.child).collect();
    stop_groups(&mut children, Duration::from_secs(5));
}

/// Stops processes that each lead their own process group: SIGTERM to every group, up to
/// `grace` for them to exit, then SIGKILL to every group (which may still hold grandchildren
/// even when its leader has exited), and reaps the leaders.
pub fn stop_groups(children: &mut [&mut Child], grace: Duration) {
    let signal = |c: &Child, s| {
        let _ = killpg(Pid::from_raw(c.id() as i32), s);
    };
    // Every group, also one whose leader has exited: what it left behind (a backgrounded
    // child) is still in the group.
    for c in children.iter() {
        signal(c, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && children
            .iter_mut()
            .any(|c| c.try_wait().ok().flatten().is_none())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in children.iter_mut() {
        signal(c, Signal::SIGKILL);
        let _ = c.wait();
    }
}

/// Waits up to `limit` for the pumps to finish; the ones still blocked (a stream held open by a
/// process outside the replicas' groups) are left behind rather than holding up the result.
pub(crate) fn join_pumps(pumps: Vec<std::thread::JoinHandle<()>>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && pumps.iter().any(|p| !p.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in pumps.into_iter().filter(|p| p.is_finished()) {
        let _ = p.join();
    }
}

pub(crate) fn exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".into(),
    }
}

/// A flag that SIGTERM or SIGINT sets (errors name `run`).
pub(crate) fn cancel_flag(run: &RunDir) -> Result<Arc<AtomicBool>, ExecError> {
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, cancel.clone()).map_err(|source| ExecError::Io {
            path: run.0.clone(),
            source,
        })?;
    }
    Ok(cancel)
}

/// Runs the plan in `run`: starts every replica (primary last), waits for the primary, stops
/// the rest, and writes `result.json`. SIGTERM means cancel.
pub fn supervise(run: &RunDir) -> Result<Outcome, ExecError> {
    let cancel = cancel_flag(run)?;
    run.record_supervisor(std::process::id())?;
    // The server's umask is 077; the replicas (which inherit this one) write their outputs
    // with the usual permissions, and the logs stay private by their own mode.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    run.reserve_result_space();
    let loss = Arc::new(LogLoss::default());
    let plan: JobPlan = run.read_plan()?;
    let started = Instant::now();
    let mut running: Vec<Running> = Vec::new();
    let mut outcome = None;
    for r in &plan.replicas {
        let path = run.logs().join(format!("{}.log", r.task));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| ExecError::Io {
                path: path.clone(),
                source,
            })?;
        let log: Arc<Mutex<dyn Write + Send>> = Arc::new(Mutex::new(log));
        let mut cmd = Command::new(&r.program);
        cmd.args(&r.args)
            .env_clear()
            .envs(crate::env::inherited())
            .envs(r.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(d) = &r.cwd {
            cmd.current_dir(d);
        }
        if let Some((uid, gid)) = plan.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }

        match cmd.spawn() {
            Ok(mut child) => {
                run.record_replica(child.id());
                let out = child.stdout.take().expect("piped");
                let err = child.stderr.take().expect("piped");
                let pumps = vec![
                    pump(
                        out,
                        "INFO",
                        r.task.clone(),
                        plan.trial.clone(),
                        log.clone(),
                        loss.clone(),
                    ),
                    pump(
                        err,
                        "ERROR",
                        r.task.clone(),
                        plan.trial.clone(),
                        log,
                        loss.clone(),
                    ),
                ];
                running.push(Running {
                    task: r.task.clone(),
                    child,
                    pumps,
                });
            }
            Err(e) => {
                let who = plan
                    .run_as
                    .map(|(uid, _)| format!(" as uid {uid} (mle server --run-as)"))
                    .unwrap_or_default();
                outcome = Some(Outcome {
                    state: "FAILED".into(),
                    message: format!("{} could not start {}{who}: {e}", r.task, r.program),
                });
                break;
            }
        }
    }
    let outcome = match outcome {
        Some(o) => {
            stop(&mut running);
            o
        }
        None => loop {
            let primary = running.last_mut().expect("a plan has a primary");
            if let Some(status) = primary.child.try_wait().ok().flatten() {
                let task = primary.task.clone();
                // The primary's own group too: a child it left (a backgrounded tensorboard)
                // would keep its output open and the run from ending.
                stop(&mut running);
                break if status.success() {
                    Outcome {
                        state: "SUCCEEDED".into(),
                        message: String::new(),
                    }
                } else {
                    Outcome {
                        state: "FAILED".into(),
                        message: format!(
                            "The replica {task} exited with a non-zero status: {}",
                            exit_text(status)
                        ),
                    }
                };
            }
            if cancel.load(Ordering::Relaxed) {
                stop(&mut running);
                break Outcome {
                    state: "CANCELLED".into(),
                    message: "Job cancelled by user request".into(),
                };
            }
            if plan
                .max_running_secs
                .is_some_and(|m| started.elapsed().as_secs_f64() > m)
            {
                stop(&mut running);
                break Outcome {
                    state: "FAILED".into(),
                    message: format!(
                        "Job exceeded its maximum running time ({} s)",
                        plan.max_running_secs.unwrap_or(0.0)
                    ),
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        },
    };
    join_pumps(
        running.into_iter().flat_map(|r| r.pumps).collect(),
        PUMP_DRAIN,
    );
    let outcome = Outcome {
        message: loss.annotate(&outcome.message),
        ..outcome
    };
    run.write_result(&outcome.state, &outcome.message)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplicaPlan;

    fn sh(task: &str, script: &str) -> ReplicaPlan {
        ReplicaPlan {
            task: task.into(),
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("X".into(), "42".into())],
            cwd: None,
        }
    }

    fn run(replicas: Vec<ReplicaPlan>, max: Option<f64>) -> (tempfile::TempDir, Outcome, RunDir) {
        let dir = tempfile::tempdir().unwrap();
        let rd = RunDir(dir.path().to_path_buf());
        rd.write_plan(&JobPlan {
            replicas,
            max_running_secs: max,
            trial: Some("2".into()),
            run_as: None,
        })
        .unwrap();
        let o = supervise(&rd).unwrap();
        assert_eq!(rd.read_result().unwrap(), o);
        (dir, o, rd)
    }

    #[test]
    fn the_primary_decides_and_others_are_stopped() {
        // The primary ends once the worker has written its line (on a loaded machine the
        // worker could otherwise be stopped before it ever ran `echo`).
        let m = tempfile::tempdir().unwrap();
        let said = m.path().join("said");
        let (_d, o, rd) = run(
            vec![
                sh(
                    "worker-replica-0",
                    &format!("echo w; touch '{}'; sleep 60", said.display()),
                ),
                sh(
                    "master-replica-0",
                    &format!(
                        "while [ ! -e '{}' ]; do sleep 0.01; done; echo $X; echo oops >&2",
                        said.display()
                    ),
                ),
            ],
            None,
        );
        assert_eq!(o.state, "SUCCEEDED");
        let logs = crate::logs::read_all(&rd);
        let msgs: Vec<(String, String, String)> = logs
            .iter()
            .map(|l| {
                (
                    l["task"].as_str().unwrap().into(),
                    l["severity"].as_str().unwrap().into(),
                    l["message"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert!(
            msgs.contains(&("master-replica-0".into(), "INFO".into(), "42".into())),
            "{msgs:?}"
        );
        assert!(msgs.contains(&("master-replica-0".into(), "ERROR".into(), "oops".into())));
        assert!(msgs.contains(&("worker-replica-0".into(), "INFO".into(), "w".into())));
        assert_eq!(logs[0]["trial"], "2");
    }

    #[test]
    fn bytes_that_are_not_utf8_and_huge_lines_do_not_end_the_log() {
        let script = format!(
            "printf 'caf\\351 ok\\n'; head -c {} /dev/zero | tr '\\0' x; echo; echo after",
            MAX_LINE_BYTES * 2 + 10
        );
        let (_d, o, rd) = run(vec![sh("master-replica-0", &script)], None);
        assert_eq!(o.state, "SUCCEEDED", "{o:?}");
        let msgs: Vec<String> = crate::logs::read_all(&rd)
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(msgs[0], "caf\u{fffd} ok", "{:?}", &msgs[0]);
        // The long line arrives whole, in records of at most MAX_LINE_BYTES.
        let xs: usize = msgs
            .iter()
            .filter(|m| m.starts_with('x'))
            .map(String::len)
            .sum();
        assert_eq!(xs, MAX_LINE_BYTES * 2 + 10);
        assert!(msgs.iter().all(|m| m.len() <= MAX_LINE_BYTES));
        assert_eq!(msgs.last().map(String::as_str), Some("after"));
    }

    #[test]
    fn a_child_left_in_the_primarys_group_does_not_hold_up_the_result() {
        let t = Instant::now();
        let (_d, o, _) = run(
            vec![sh("master-replica-0", "sleep 120 & echo started")],
            None,
        );
        assert_eq!(o.state, "SUCCEEDED", "{o:?}");
        assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    }

    #[test]
    fn failures_and_time_limits_are_reported() {
        let (_d, o, _) = run(vec![sh("master-replica-0", "exit 3")], None);
        assert_eq!(
            o,
            Outcome {
                state: "FAILED".into(),
                message:
                    "The replica master-replica-0 exited with a non-zero status: exit status 3"
                        .into()
            }
        );
        let t = Instant::now();
        let (_d, o, _) = run(vec![sh("master-replica-0", "sleep 60")], Some(0.3));
        assert_eq!(o.state, "FAILED");
        assert!(o.message.contains("maximum running time"));
        assert!(t.elapsed() < Duration::from_secs(10));
        let (_d, o, _) = run(
            vec![ReplicaPlan {
                program: "/no/such/program".into(),
                ..sh("master-replica-0", "")
            }],
            None,
        );
        assert!(
            o.message.contains("could not start /no/such/program"),
            "{o:?}"
        );
    }
}
