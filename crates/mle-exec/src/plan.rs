//! The plan a supervisor executes and the run directory layout.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::ExecError;

/// One replica process.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaPlan {
    /// Task name for logs, e.g. `master-replica-0`.
    pub task: String,
    /// Program to run.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment (`TF_CONFIG`, `CLOUD_ML_*`, ...).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
}

/// A job's processes: the primary is the last replica; the job's outcome is the primary's.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    /// Replicas, primary last.
    pub replicas: Vec<ReplicaPlan>,
    /// Longest run in seconds.
    pub max_running_secs: Option<f64>,
    /// Trial id to stamp on log lines.
    pub trial: Option<String>,
    /// The user and group the replicas run as (`mle server --run-as`), when not the
    /// supervisor's own.
    pub run_as: Option<(u32, u32)>,
}

impl JobPlan {
    /// JSON form (a private file format between the server and its supervisor).
    pub fn to_json(&self) -> Value {
        json!({
            "max_running_secs": self.max_running_secs,
            "trial": self.trial,
            "run_as": self.run_as.map(|(u, g)| json!([u, g])),
            "replicas": self.replicas.iter().map(|r| json!({
                "task": r.task, "program": r.program, "args": r.args,
                "env": r.env.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                "cwd": r.cwd.as_ref().map(|p| p.display().to_string()),
            })).collect::<Vec<_>>(),
        })
    }

    /// Parses [`JobPlan::to_json`].
    pub fn from_json(v: &Value) -> Option<Self> {
        let strings = |v: &Value| -> Option<Vec<String>> {
            v.as_array()?
                .iter()
                .map(|s| s.as_str().map(String::from))
                .collect()
        };
        let replicas = v["replicas"]
            .as_array()?
            .iter()
            .map(|r| {
                Some(ReplicaPlan {
                    task: r["task"].as_str()?.into(),
                    program: r["program"].as_str()?.into(),
                    args: strings(&r["args"])?,
                    env: r["env"]
                        .as_array()?
                        .iter()
                        .map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                        .collect::<Option<Vec<_>>>()?,
                    cwd: r["cwd"].as_str().map(PathBuf::from),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            replicas,
            max_running_secs: v["max_running_secs"].as_f64(),
            trial: v["trial"].as_str().map(String::from),
            run_as: match &v["run_as"] {
                Value::Null => None,
                ids => Some((
                    u32::try_from(ids[0].as_u64()?).ok()?,
                    u32::try_from(ids[1].as_u64()?).ok()?,
                )),
            },
        })
    }
}

/// A job's run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir(pub PathBuf);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExecError + '_ {
    move |source| ExecError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes through a temporary sibling and a rename.
/// Creates `dir` for the user `ids` when it does not exist (a job's `--job-dir`, which CMLE
/// trainers expect to write): the directories made on the way are 0755 (whatever the
/// server's umask), the last one is owned by that user. An existing `dir` is left as it is.
pub fn make_dir_for(dir: &Path, ids: (u32, u32)) -> Result<(), ExecError> {
    use std::os::unix::fs::PermissionsExt;
    if dir.exists() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for m in missing.iter().rev() {
        std::fs::create_dir(m).map_err(io(m))?;
        std::fs::set_permissions(m, std::fs::Permissions::from_mode(0o755)).map_err(io(m))?;
    }
    std::os::unix::fs::chown(dir, Some(ids.0), Some(ids.1)).map_err(io(dir))
}

/// The file holding the space set aside for `result.json` (see `reserve_result_space`).
const RESULT_RESERVE: &str = "result.reserve";
/// How much space is set aside: a result, its temporary copy, and file-system blocks.
pub const RESULT_RESERVE_BYTES: usize = 256 * 1024;

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExecError> {
    // A temporary name of this writer's own: two processes may write the same file (the
    // launcher and the supervisor record the supervisor's pid) and must not rename each
    // other's half-written file away.
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl RunDir {
    /// `work/`: the replicas' working directory (and `HOME`) when they run as another user,
    /// the one place of the run directory they may write.
    pub fn work(&self) -> PathBuf {
        self.0.join("work")
    }

    /// Opens the run directory to the user `ids` the job runs as: every directory from
    /// `root` (the data dir) down to it may be passed through (mode 0711: nothing in them can
    /// be listed, and their files stay the server's, mode 0600), and `work/` and `writable`
    /// (inside the run directory) are created and owned by that user.
    pub fn open_to(
        &self,
        root: &Path,
        ids: (u32, u32),
        writable: &[PathBuf],
    ) -> Result<(), ExecError> {
        use std::os::unix::fs::PermissionsExt;
        let mut dir = self.0.as_path();
        loop {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
                .map_err(io(dir))?;
            if dir == root {
                break;
            }
            match dir.parent() {
                Some(p) if p.starts_with(root) => dir = p,
                _ => break,
            }
        }
        for d in std::iter::once(self.work()).chain(writable.iter().cloned()) {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            std::os::unix::fs::chown(&d, Some(ids.0), Some(ids.1)).map_err(io(&d))?;
        }
        Ok(())
    }

    /// The interpreter a Python trainer's replicas run (its packages' environment), once the
    /// server has prepared it (`python`, holding the path).
    pub fn interpreter(&self) -> Option<PathBuf> {
        let text = std::fs::read_to_string(self.0.join("python")).ok()?;
        Some(PathBuf::from(text.trim_end_matches('\n')))
    }

    /// Records the interpreter of [`RunDir::interpreter`].
    pub fn set_interpreter(&self, python: &Path) -> Result<(), ExecError> {
        write_atomic(
            &self.0.join("python"),
            python.as_os_str().as_encoded_bytes(),
        )
    }

    /// `plan.json`.
    pub fn plan(&self) -> PathBuf {
        self.0.join("plan.json")
    }

    /// `result.json`.
    pub fn result(&self) -> PathBuf {
        self.0.join("result.json")
    }

    /// `supervisor.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.0.join("supervisor.pid")
    }

    /// `logs/`.
    pub fn logs(&self) -> PathBuf {
        self.0.join("logs")
    }

    /// The run directory of tuning trial `id` (`trials/<id>/`), laid out like a job's.
    pub fn trial(&self, id: &str) -> RunDir {
        RunDir(self.0.join("trials").join(id))
    }

    /// Writes the plan.
    pub fn write_plan(&self, plan: &JobPlan) -> Result<(), ExecError> {
        std::fs::create_dir_all(self.logs()).map_err(io(&self.0))?;
        write_atomic(&self.plan(), plan.to_json().to_string().as_bytes())
    }

    /// Reads the plan.
    pub fn read_plan(&self) -> Result<JobPlan, ExecError> {
        let path = self.plan();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ExecError::Format {
            path: path.clone(),
            why: e.to_string(),
        })?;
        JobPlan::from_json(&v).ok_or(ExecError::Format {
            path,
            why: "not a job plan".into(),
        })
    }

    /// The outcome, once the supervisor has written it.
    pub fn read_result(&self) -> Option<crate::Outcome> {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(self.result()).ok()?).ok()?;
        Some(crate::Outcome {
            state: v["state"].as_str()?.into(),
            message: v["message"].as_str().unwrap_or_default().into(),
        })
    }

    /// Records the outcome (atomically; its presence means the job is over).
    pub fn write_result(&self, state: &str, message: &str) -> Result<(), ExecError> {
        let body = json!({"state": state, "message": message}).to_string();
        let first = write_atomic(&self.result(), body.as_bytes());
        let reserve = self.0.join(RESULT_RESERVE);
        let out = match first {
            // The disk filled up while the job ran: spend the space set aside for this.
            Err(ExecError::Io { ref source, .. })
                if source.kind() == std::io::ErrorKind::StorageFull && reserve.exists() =>
            {
                let _ = std::fs::remove_file(&reserve);
                write_atomic(&self.result(), body.as_bytes())
            }
            r => r,
        };
        let _ = std::fs::remove_file(&reserve);
        out
    }

    /// Why a run that has no result and no supervisor any more ended, as far as the run
    /// directory tells: its disk is full (less than [`RESULT_RESERVE_BYTES`] free), or `None`
    /// (then the supervisor was killed, or the machine restarted).
    pub fn lost_to_full_disk(&self) -> Option<String> {
        let st = nix::sys::statvfs::statvfs(&self.0).ok()?;
        // The field types differ between platforms (u32 on some 32-bit ones).
        #[allow(clippy::useless_conversion)]
        let free = u64::from(st.blocks_available()) * u64::from(st.fragment_size());
        (free < RESULT_RESERVE_BYTES as u64).then(|| {
            format!(
                "the disk of the run directory {} is full ({free} bytes free), so the run could not record how it ended; free space and run it again",
                self.0.display()
            )
        })
    }

    /// Sets [`RESULT_RESERVE_BYTES`] aside in the run directory (best effort), so that a run
    /// whose disk fills up can still record how it ended.
    pub fn reserve_result_space(&self) {
        let _ = std::fs::write(self.0.join(RESULT_RESERVE), vec![0u8; RESULT_RESERVE_BYTES]);
    }

    /// Appends a line from the service itself (task `service`) to `logs/service.log`, where
    /// the logs endpoint shows it among the replicas' lines. Best effort: a log line that
    /// cannot be written must not fail the job.
    pub fn service_log(&self, trial: Option<&str>, message: &str) {
        self.task_log("service", trial, message);
    }

    /// Appends an INFO line of task `task` (the service's own work for the job: `service`,
    /// `pip`) to `logs/<task>.log`; best effort, like [`RunDir::service_log`].
    pub fn task_log(&self, task: &str, trial: Option<&str>, message: &str) {
        use std::io::Write;
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut line = json!({"time": time, "severity": "INFO", "task": task, "message": message});
        if let Some(t) = trial {
            line["trial"] = json!(t);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs().join(format!("{task}.log")))
        {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Records `pid` as the run's supervisor with its identity (`pid start-time boot-id`), so
    /// that a reused pid is never taken for it.
    pub fn record_supervisor(&self, pid: u32) -> Result<(), ExecError> {
        let text = match process_identity(pid as i32) {
            Some(id) => format!("{pid} {id}"),
            None => pid.to_string(),
        };
        write_atomic(&self.pid_file(), text.as_bytes())
    }

    /// The supervisor's pid, if it is still alive, is an mle supervisor and is the very
    /// process that was recorded (same start time, same boot).
    pub fn live_supervisor(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.pid_file()).ok()?;
        let mut parts = text.split_whitespace();
        let pid: i32 = parts.next()?.parse().ok()?;
        let recorded: Vec<&str> = parts.collect();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        let same = recorded.is_empty() || process_identity(pid) == Some(recorded.join(" "));
        (!zombie && same && String::from_utf8_lossy(&cmdline).contains("exec-supervise"))
            .then_some(pid)
    }

    /// `replicas`: the process group of each started replica, with its leader's identity.
    fn replicas_file(&self) -> PathBuf {
        self.0.join("replicas")
    }

    /// Records a started replica's process group (its leader's pid) and identity.
    pub fn record_replica(&self, pgid: u32) {
        use std::io::Write;
        if let (Some(id), Ok(mut f)) = (
            process_identity(pgid as i32),
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.replicas_file()),
        ) {
            let _ = writeln!(f, "{pgid} {id}");
        }
    }

    /// The recorded replica groups whose leaders are still the processes that were started
    /// (a supervisor killed by SIGKILL or the OOM killer leaves them behind).
    pub fn live_replica_groups(&self) -> Vec<i32> {
        let text = std::fs::read_to_string(self.replicas_file()).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (pid, id) = l.split_once(' ')?;
                let pid: i32 = pid.parse().ok()?;
                (process_identity(pid).as_deref() == Some(id)).then_some(pid)
            })
            .collect()
    }
}

/// A process's identity that a reused pid does not share: its start time (clock ticks since
/// boot, field 22 of `/proc/<pid>/stat`) and the boot's id.
pub fn process_identity(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let start = stat.rsplit(')').next()?.split_whitespace().nth(19)?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(format!("{start} {}", boot.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_round_trip() {
        let plan = JobPlan {
            replicas: vec![ReplicaPlan {
                task: "master-replica-0".into(),
                program: "python3".into(),
                args: vec!["-m".into(), "t".into()],
                env: vec![("TF_CONFIG".into(), "{}".into())],
                cwd: Some("/tmp".into()),
            }],
            max_running_secs: Some(5.0),
            trial: None,
            run_as: Some((65534, 65534)),
        };
        assert_eq!(JobPlan::from_json(&plan.to_json()), Some(plan.clone()));
        let mine = JobPlan {
            run_as: None,
            ..plan
        };
        assert_eq!(JobPlan::from_json(&mine.to_json()), Some(mine));
    }

    #[test]
    fn a_supervisor_is_known_by_its_identity_not_just_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir(dir.path().to_path_buf());
        // A process whose command line looks like a supervisor's.
        let mut child = std::process::Command::new("bash")
            .args(["-c", "exec -a mle-exec-supervise sleep 30"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let t = std::time::Instant::now();
        while !std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("exec-supervise"))
        {
            assert!(t.elapsed().as_secs() < 10);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        run.record_supervisor(pid).unwrap();
        assert_eq!(run.live_supervisor(), Some(pid as i32));
        // The same pid with another start time (a reused pid) is not the supervisor.
        std::fs::write(run.pid_file(), format!("{pid} 1 {}", "0-0")).unwrap();
        assert_eq!(run.live_supervisor(), None);
        // Replica groups are recorded and recognised the same way.
        run.record_replica(pid);
        assert_eq!(run.live_replica_groups(), vec![pid as i32]);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(run.live_replica_groups().is_empty());
    }
}
