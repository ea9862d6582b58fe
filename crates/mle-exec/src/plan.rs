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
}

impl JobPlan {
    /// JSON form (a private file format between the server and its supervisor).
    pub fn to_json(&self) -> Value {
        json!({
            "max_running_secs": self.max_running_secs,
            "trial": self.trial,
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
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExecError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl RunDir {
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
        write_atomic(
            &self.result(),
            json!({"state": state, "message": message})
                .to_string()
                .as_bytes(),
        )
    }

    /// Appends a line from the service itself (task `service`) to `logs/service.log`, where
    /// the logs endpoint shows it among the replicas' lines. Best effort: a log line that
    /// cannot be written must not fail the job.
    pub fn service_log(&self, trial: Option<&str>, message: &str) {
        use std::io::Write;
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut line =
            json!({"time": time, "severity": "INFO", "task": "service", "message": message});
        if let Some(t) = trial {
            line["trial"] = json!(t);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs().join("service.log"))
        {
            let _ = writeln!(f, "{line}");
        }
    }

    /// The supervisor's pid, if it is still alive (and is an mle process).
    pub fn live_supervisor(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        (!zombie && String::from_utf8_lossy(&cmdline).contains("exec-supervise")).then_some(pid)
    }
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
        };
        assert_eq!(JobPlan::from_json(&plan.to_json()), Some(plan));
    }
}
