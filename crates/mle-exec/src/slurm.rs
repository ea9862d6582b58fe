//! The Slurm backend: a run directory's plan becomes one Slurm batch job with one task per
//! replica. The batch script is a single `srun` of `mle replica RUN_DIR` (see
//! [`crate::replica`]); the controller is driven through its command-line tools with
//! machine-readable output (`sbatch --parsable`, `squeue --json`, `scontrol show job -o`,
//! `scancel`), which are stable across Slurm versions, and the job-completion log for jobs the
//! controller has already forgotten.
//!
//! Files this module adds to the run directory:
//! - `slurm_job`: the Slurm job id, written as soon as `sbatch` answers (the server's record of
//!   the job; a restarted server re-attaches through it);
//! - `cancel_requested`: written before `scancel`, so that a job that ends without a result is
//!   known to have been cancelled rather than lost;
//! - `logs/slurm-batch.log` and `logs/slurm-task-<N>.log`: Slurm's own output files;
//! - `started` and `slurm/<job>.<step>/rank-<N>`: written by the tasks (see [`crate::replica`]).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::RunDir;
use crate::plan::write_atomic;

/// What each task of a job asks Slurm for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// CPUs per task (`--cpus-per-task`).
    pub cpus: u32,
    /// Memory per task in MiB (sent as `--mem-per-cpu`, so that it holds per task).
    pub mem_mb: Option<u64>,
    /// GPUs per task (`--gres=gpu:N`).
    pub gpus: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpus: 1,
            mem_mb: None,
            gpus: 0,
        }
    }
}

/// How Slurm sees a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Pending, running, completing, suspended...: not over. With Slurm's reason.
    Active(String, String),
    /// Over, with Slurm's state (`COMPLETED`, `FAILED`, `CANCELLED`, `NODE_FAIL`, `TIMEOUT`,
    /// ...) and its reason.
    Ended {
        /// Slurm's job state.
        state: String,
        /// Slurm's reason (may be `None`).
        reason: String,
    },
    /// Neither the controller nor the job-completion log knows the job.
    Unknown,
    /// The controller could not be asked (down, restarting): try again later.
    Unreachable(String),
}

/// A Slurm cluster reached through its command-line tools (`SLURM_CONF` and `PATH` of this
/// process select it).
#[derive(Debug, Clone, Default)]
pub struct Slurm {
    /// `--partition`, when set.
    pub partition: Option<String>,
    /// Extra `sbatch` arguments, given verbatim (e.g. `--account=ml`).
    pub extra_args: Vec<String>,
    /// The `mle` binary the tasks run (must exist at this path on every node).
    pub mle_exe: PathBuf,
    snapshot: Arc<Mutex<Option<Snapshot>>>,
    jobcomp: Arc<OnceLock<Option<PathBuf>>>,
    ended: Arc<Mutex<Completions>>,
}

/// How many ended jobs [`Completions`] remembers (the oldest are forgotten first).
const COMPLETIONS_KEPT: usize = 100_000;

/// What the job-completion log says of the jobs that ended, read incrementally: each check
/// reads only the lines appended since the previous one (the log holds every job the cluster
/// ever ran), and a log that shrank (rotated, truncated) is read again from its start.
#[derive(Debug, Default)]
struct Completions {
    /// How far the log has been read (always the end of a whole line).
    offset: u64,
    /// Job id → (state, exit code), the last line of each job winning.
    ended: HashMap<u64, (String, String)>,
    /// Ids in the order they were first seen, for forgetting the oldest.
    order: VecDeque<u64>,
}

impl Completions {
    /// Reads the lines appended to `log` since the last call; a last line without its newline
    /// (being written) is left for the next call.
    fn refresh(&mut self, log: &Path) -> std::io::Result<()> {
        let mut f = std::fs::File::open(log)?;
        if f.metadata()?.len() < self.offset {
            *self = Self::default();
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut r = std::io::BufReader::new(f);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                return Ok(());
            }
            self.offset += n as u64;
            self.add(&String::from_utf8_lossy(&line));
        }
    }

    fn add(&mut self, line: &str) {
        let (Some(id), Some(state)) = (
            field(line, "JobId").and_then(|i| i.parse::<u64>().ok()),
            field(line, "JobState"),
        ) else {
            return;
        };
        let code = field(line, "ExitCode").unwrap_or("?").to_string();
        if self.ended.insert(id, (state.to_string(), code)).is_none() {
            self.order.push_back(id);
            if self.order.len() > COMPLETIONS_KEPT
                && let Some(old) = self.order.pop_front()
            {
                self.ended.remove(&old);
            }
        }
    }
}

/// Job id → (state, reason), as `squeue` lists them.
type JobTable = HashMap<u64, (String, String)>;

/// When `squeue` was asked, and what it answered.
type Snapshot = (Instant, Result<JobTable, String>);

/// States in which a Slurm job is not over.
const ACTIVE: &[&str] = &[
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "RESV_DEL_HOLD",
    "SPECIAL_EXIT",
];

/// Reasons for which a pending job can never start (slurm's `squeue` reason codes): the job
/// asks for more than its partition, account or QOS can ever give.
pub const NEVER_STARTS: &[&str] = &[
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "DependencyNeverSatisfied",
];

/// How long a `squeue` snapshot answers for.
const SNAPSHOT_AGE: Duration = Duration::from_secs(1);

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Reads `Key=Value` from `scontrol -o` / job-completion lines (values end at a space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

impl Slurm {
    /// A cluster whose tasks run `mle_exe`.
    pub fn new(mle_exe: PathBuf, partition: Option<String>, extra_args: Vec<String>) -> Self {
        Self {
            partition,
            extra_args,
            mle_exe,
            ..Self::default()
        }
    }

    /// The Slurm job id recorded for `run`.
    pub fn job_id(run: &RunDir) -> Option<u64> {
        std::fs::read_to_string(run.0.join("slurm_job"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The `sbatch` arguments for a job of `tasks` tasks (without the script).
    pub fn sbatch_args(
        &self,
        run: &RunDir,
        name: &str,
        tasks: usize,
        res: &Resources,
        max_secs: Option<f64>,
    ) -> Vec<String> {
        let mut a = vec![
            "--parsable".to_string(),
            // A requeued job would start over behind the server's back; fail it instead.
            "--no-requeue".into(),
            format!("--job-name={name}"),
            format!("--ntasks={tasks}"),
            format!("--cpus-per-task={}", res.cpus.max(1)),
            format!("--output={}", run.logs().join("slurm-batch.log").display()),
            format!("--chdir={}", run.0.display()),
        ];
        if let Some(mb) = res.mem_mb {
            a.push(format!(
                "--mem-per-cpu={}M",
                mb.div_ceil(u64::from(res.cpus.max(1)))
            ));
        }
        if res.gpus > 0 {
            a.push(format!("--gres=gpu:{}", res.gpus));
        }
        if let Some(p) = &self.partition {
            a.push(format!("--partition={p}"));
        }
        if let Some(s) = max_secs {
            // The primary's shim enforces the exact limit; Slurm's (whole minutes) is a backstop.
            a.push(format!("--time={}", (s / 60.0).ceil() as u64 + 1));
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// The batch script: one `srun` step with a task per replica, each writing its own
    /// output file.
    pub fn script(&self, run: &RunDir) -> String {
        format!(
            "#!/bin/sh\n# Written by mle: one task per replica, each told its role by `mle replica`.\nexec srun --kill-on-bad-exit=0 --output={} {} replica {}\n",
            quote(&run.logs().join("slurm-task-%t.log").display().to_string()),
            quote(&self.mle_exe.display().to_string()),
            quote(&run.0.display().to_string()),
        )
    }

    /// Submits the plan in `run` and records the job id in `run/slurm_job`.
    pub fn submit(
        &self,
        run: &RunDir,
        name: &str,
        tasks: usize,
        res: &Resources,
        max_secs: Option<f64>,
    ) -> Result<u64, String> {
        std::fs::create_dir_all(run.logs())
            .map_err(|e| format!("cannot create {}: {e}", run.logs().display()))?;
        let mut child = Command::new("sbatch")
            .args(self.sbatch_args(run, name, tasks, res, max_secs))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run sbatch (is Slurm installed and on PATH?): {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(self.script(run).as_bytes())
                .map_err(|e| format!("cannot send the batch script to sbatch: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("sbatch failed: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "Slurm refused the job: {}",
                err.trim().trim_start_matches("sbatch: error: ")
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let id: u64 = text
            .trim()
            .split(';')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("sbatch answered {:?}, not a job id", text.trim()))?;
        write_atomic(&run.0.join("slurm_job"), id.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(id)
    }

    /// Cancels the active Slurm jobs named `name` that run in `run`: jobs an earlier attempt
    /// submitted when the server stopped between `sbatch`'s answer and recording it in
    /// `slurm_job`. Launching again must not leave them running beside the new job (the
    /// earlier attempt's files are gone or about to be replaced). Returns their ids.
    pub fn cancel_strays(&self, run: &RunDir, name: &str) -> Vec<u64> {
        let Ok(out) = Command::new("squeue")
            .args(["--noheader", "--name", name, "--format=%i %Z"])
            .output()
        else {
            return Vec::new();
        };
        let here = run.0.canonicalize().unwrap_or_else(|_| run.0.clone());
        let strays: Vec<u64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (id, dir) = l.trim().split_once(' ')?;
                let dir = Path::new(dir.trim());
                (dir == run.0 || dir == here).then(|| id.parse().ok())?
            })
            .collect();
        for id in &strays {
            Self::scancel(*id);
        }
        strays
    }

    /// `scancel`s the job of `run` (after noting that a cancel was asked for).
    pub fn cancel(&self, run: &RunDir) {
        let Some(id) = Self::job_id(run) else {
            return;
        };
        let _ = std::fs::write(run.0.join("cancel_requested"), b"");
        Self::scancel(id);
    }

    /// `scancel ID`.
    pub fn scancel(id: u64) {
        let _ = Command::new("scancel")
            .arg(id.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn squeue(&self) -> Result<JobTable, String> {
        let mut guard = self.snapshot.lock().map_err(|_| "poisoned".to_string())?;
        // Failures are remembered as long as answers: an unreachable controller (each call
        // can take its MessageTimeout) costs one call a second, not one per job.
        if let Some((at, jobs)) = guard.as_ref()
            && at.elapsed() < SNAPSHOT_AGE
        {
            return jobs.clone();
        }
        let jobs = Self::query_squeue();
        *guard = Some((Instant::now(), jobs.clone()));
        jobs
    }

    fn query_squeue() -> Result<JobTable, String> {
        // `--me`: only the jobs this server's user submitted (newer Slurm filters `--json`
        // output; 22.05 lists every job whatever the filter, so ours are looked up by id).
        let out = Command::new("squeue")
            .args(["--json", "--me"])
            .output()
            .map_err(|e| format!("cannot run squeue: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "squeue: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("squeue --json gave unreadable output: {e}"))?;
        Ok(v["jobs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|j| {
                        Some((
                            j["job_id"].as_u64()?,
                            (
                                j["job_state"].as_str()?.to_string(),
                                j["state_reason"].as_str().unwrap_or("None").to_string(),
                            ),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn jobcomp_log(&self) -> Option<&Path> {
        self.jobcomp
            .get_or_init(|| {
                let out = Command::new("scontrol")
                    .args(["show", "config"])
                    .output()
                    .ok()?;
                let text = String::from_utf8_lossy(&out.stdout);
                let comp_type = text.lines().find(|l| l.starts_with("JobCompType"))?;
                if !comp_type.contains("filetxt") {
                    return None;
                }
                let loc = text.lines().find(|l| l.starts_with("JobCompLoc"))?;
                Some(PathBuf::from(loc.split_once('=')?.1.trim()))
            })
            .as_deref()
    }

    fn status_of(state: &str, reason: &str) -> JobStatus {
        // Some states carry flags (`CANCELLED by 0`).
        let state = state.split_whitespace().next().unwrap_or(state).to_string();
        if ACTIVE.contains(&state.as_str()) {
            JobStatus::Active(state, reason.to_string())
        } else {
            JobStatus::Ended {
                state,
                reason: reason.to_string(),
            }
        }
    }

    /// Where Slurm has job `id`: `squeue` (a shared snapshot, at most a second old), then
    /// `scontrol show job`, then the job-completion log.
    pub fn status(&self, id: u64) -> JobStatus {
        match self.squeue() {
            Ok(jobs) => {
                if let Some((state, reason)) = jobs.get(&id) {
                    return Self::status_of(state, reason);
                }
            }
            Err(e) => return JobStatus::Unreachable(e),
        }
        // Not in the snapshot: submitted after it was taken, or already purged from it.
        match Command::new("scontrol")
            .args(["show", "job", "-o", &id.to_string()])
            .output()
        {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                if let Some(state) = field(&text, "JobState") {
                    return Self::status_of(state, field(&text, "Reason").unwrap_or("None"));
                }
            }
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                if !err.contains("Invalid job id") {
                    return JobStatus::Unreachable(format!("scontrol: {}", err.trim()));
                }
            }
            Err(e) => return JobStatus::Unreachable(format!("cannot run scontrol: {e}")),
        }
        if let Some(log) = self.jobcomp_log() {
            let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = ended.refresh(log) {
                return JobStatus::Unreachable(format!(
                    "cannot read the job-completion log {}: {e}",
                    log.display()
                ));
            }
            if let Some((state, code)) = ended.ended.get(&id) {
                return Self::status_of(state, &format!("exit code {code}"));
            }
        }
        JobStatus::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_completion_log_is_read_once_and_incrementally() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("jobcomp.log");
        let line = |id: u64, state: &str| {
            format!("JobId={id} UserId=root(0) JobState={state} ExitCode=0:0 NodeList=n1\n")
        };
        let mut c = Completions::default();
        std::fs::write(&log, line(1, "COMPLETED") + &line(2, "FAILED")).unwrap();
        c.refresh(&log).unwrap();
        assert_eq!(c.ended[&2].0, "FAILED");
        let read = c.offset;
        assert_eq!(read, std::fs::metadata(&log).unwrap().len());
        // A line being written is left for later; the next call reads only what is new.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let third = line(3, "CANCELLED");
        f.write_all(&third.as_bytes()[..10]).unwrap();
        c.refresh(&log).unwrap();
        assert_eq!(c.offset, read);
        assert!(!c.ended.contains_key(&3));
        f.write_all(&third.as_bytes()[10..]).unwrap();
        f.write_all(line(1, "REQUEUED").as_bytes()).unwrap();
        c.refresh(&log).unwrap();
        assert_eq!(c.ended[&3].0, "CANCELLED");
        assert_eq!(c.ended[&1].0, "REQUEUED", "the last line of a job wins");
        assert_eq!(c.order.len(), 3);
        // A rotated log is read from its start.
        std::fs::write(&log, line(9, "TIMEOUT")).unwrap();
        c.refresh(&log).unwrap();
        assert_eq!((c.ended.len(), c.ended[&9].0.as_str()), (1, "TIMEOUT"));
        // Non-UTF-8 and lines without a job id are skipped.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"\xff\xfe garbage\nJobState=FAILED\n").unwrap();
        c.refresh(&log).unwrap();
        assert_eq!(c.ended.len(), 1);
    }

    #[test]
    fn batch_jobs_ask_for_one_task_per_replica() {
        let s = Slurm::new(
            "/opt/mle/bin/mle".into(),
            Some("gpu".into()),
            vec!["--account=ml".into()],
        );
        let run = RunDir("/data/runs/p/it's".into());
        let res = Resources {
            cpus: 4,
            mem_mb: Some(15_360),
            gpus: 1,
        };
        let a = s.sbatch_args(&run, "mle-p-j", 8, &res, Some(90.0));
        for want in [
            "--ntasks=8",
            "--cpus-per-task=4",
            "--mem-per-cpu=3840M",
            "--gres=gpu:1",
            "--partition=gpu",
            "--time=3",
            "--no-requeue",
            "--output=/data/runs/p/it's/logs/slurm-batch.log",
            "--account=ml",
        ] {
            assert!(a.contains(&want.to_string()), "{want} not in {a:?}");
        }
        let script = s.script(&run);
        assert!(
            script.contains(r"'/opt/mle/bin/mle' replica '/data/runs/p/it'\''s'"),
            "{script}"
        );
    }

    #[test]
    fn states_and_fields_are_read() {
        let line = "JobId=7 JobName=x JobState=NODE_FAIL Reason=NodeDown Dependency=(null)";
        assert_eq!(field(line, "JobState"), Some("NODE_FAIL"));
        assert_eq!(field(line, "Reason"), Some("NodeDown"));
        assert_eq!(field(line, "Job"), None);
        assert_eq!(
            Slurm::status_of("RUNNING", "None"),
            JobStatus::Active("RUNNING".into(), "None".into())
        );
        assert_eq!(
            Slurm::status_of("CANCELLED by 0", "None"),
            JobStatus::Ended {
                state: "CANCELLED".into(),
                reason: "None".into()
            }
        );
    }
}
