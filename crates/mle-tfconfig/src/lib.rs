//! `TF_CONFIG` (DESIGN §2.1), typed: the one place that builds, serialises, parses and
//! rewrites it, and the one place that decides a replica's role from it. The local cluster
//! (`mle local train --distributed`), the server's plans, the Slurm shim (`mle replica`) and the
//! trainers (`mle train`, the Rust SDK through `mle-dist`) all go through [`TfConfig`].
//!
//! ```
//! use mle_tfconfig::{ReplicaRole, TfConfig};
//! let tf = TfConfig::parse(r#"{"cluster": {"chief": ["h:1"], "worker": ["h:2"]},
//!     "task": {"type": "worker", "index": 0}, "environment": "cloud"}"#).unwrap();
//! assert_eq!(tf.role(), ReplicaRole::Worker);
//! assert_eq!(TfConfig::parse(&tf.to_json()).unwrap(), tf);
//! ```

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

/// Role name → addresses (`host:port`), e.g. `chief`, `worker`, `ps`.
pub type ClusterMap = BTreeMap<String, Vec<String>>;

/// `TF_CONFIG.task`: this replica's place in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// `master`, `chief`, `worker`, `ps` or `evaluator`.
    pub kind: String,
    /// Index within the role.
    pub index: usize,
}

/// A whole `TF_CONFIG`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TfConfig {
    /// The cluster (empty for a single process).
    pub cluster: ClusterMap,
    /// This replica's task; `None` for a single process.
    pub task: Option<Task>,
    /// `task.trial`: the tuning trial id, if any (a single process of a trial has only this).
    pub trial: Option<String>,
    /// `job`: the training input in proto field names (`Null` when absent).
    pub job: Value,
    /// `environment` (`cloud` as CMLE writes it; empty when absent).
    pub environment: String,
}

/// What a replica does, decided from its `TF_CONFIG` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaRole {
    /// No cluster, or a cluster of one trainer and no parameter servers.
    Single,
    /// The chief or master of a cluster (rank 0).
    Primary,
    /// A worker (trains; ranks after the primary).
    Worker,
    /// A parameter server (never trains).
    ParameterServer,
    /// An evaluator (outside the cluster; evaluates checkpoints).
    Evaluator,
}

/// The names a cluster's primary replica may have.
pub const PRIMARY_NAMES: [&str; 2] = ["chief", "master"];

/// The cluster of a primary named `primary`, `workers` workers and `ps` parameter servers;
/// `addr(role, index)` gives each address (called for the primary, then the workers, then the
/// parameter servers).
pub fn cluster<E>(
    primary: &str,
    workers: usize,
    ps: usize,
    mut addr: impl FnMut(&str, usize) -> Result<String, E>,
) -> Result<ClusterMap, E> {
    let mut c = ClusterMap::new();
    c.insert(primary.to_string(), vec![addr(primary, 0)?]);
    if workers > 0 {
        let list = (0..workers)
            .map(|i| addr("worker", i))
            .collect::<Result<_, _>>()?;
        c.insert("worker".into(), list);
    }
    if ps > 0 {
        let list = (0..ps).map(|i| addr("ps", i)).collect::<Result<_, _>>()?;
        c.insert("ps".into(), list);
    }
    Ok(c)
}

impl TfConfig {
    /// A single process's `TF_CONFIG`: empty cluster and task.
    pub fn single(job: Value) -> Self {
        Self {
            cluster: ClusterMap::new(),
            task: None,
            trial: None,
            job,
            environment: "cloud".into(),
        }
    }

    /// The `TF_CONFIG` of task `kind`/`index` in `cluster`.
    pub fn for_task(cluster: &ClusterMap, kind: &str, index: usize, job: Value) -> Self {
        Self {
            cluster: cluster.clone(),
            task: Some(Task {
                kind: kind.into(),
                index,
            }),
            trial: None,
            job,
            environment: "cloud".into(),
        }
    }

    /// Parses the JSON text of `TF_CONFIG`; every error names the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("TF_CONFIG is not valid JSON: {e}"))?;
        let mut out = TfConfig::default();
        if let Some(cluster) = v.get("cluster").and_then(Value::as_object) {
            for (role, addrs) in cluster {
                let addrs = addrs
                    .as_array()
                    .ok_or_else(|| format!("TF_CONFIG cluster.{role} must be a list"))?
                    .iter()
                    .map(|a| {
                        a.as_str()
                            .map(String::from)
                            .ok_or_else(|| format!("TF_CONFIG cluster.{role} holds a non-string"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                out.cluster.insert(role.clone(), addrs);
            }
        }
        if let Some(task) = v.get("task").and_then(Value::as_object) {
            if task.contains_key("type") || task.contains_key("index") {
                out.task = Some(Task {
                    kind: task
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    index: task.get("index").and_then(Value::as_u64).unwrap_or(0) as usize,
                });
            }
            out.trial = task.get("trial").and_then(|t| match t {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        }
        out.job = v.get("job").cloned().unwrap_or(Value::Null);
        out.environment = v
            .get("environment")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(out)
    }

    /// From the environment; absent or empty means a single process.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("TF_CONFIG") {
            Ok(text) if !text.trim().is_empty() => Self::parse(&text),
            _ => Ok(Self::default()),
        }
    }

    /// The JSON text, as trainers read it.
    pub fn to_json(&self) -> String {
        let mut task = match &self.task {
            None => json!({}),
            Some(t) => json!({"type": t.kind, "index": t.index}),
        };
        if let Some(trial) = &self.trial {
            task["trial"] = json!(trial);
        }
        let mut v = json!({"cluster": self.cluster, "task": task});
        if !self.job.is_null() {
            v["job"] = self.job.clone();
        }
        if !self.environment.is_empty() {
            v["environment"] = json!(self.environment);
        }
        v.to_string()
    }

    /// The task's type (empty for a single process).
    pub fn task_type(&self) -> &str {
        self.task.as_ref().map_or("", |t| t.kind.as_str())
    }

    /// The task's index within its role.
    pub fn task_index(&self) -> usize {
        self.task.as_ref().map_or(0, |t| t.index)
    }

    /// The tuning trial id, if any.
    pub fn trial(&self) -> Option<&str> {
        self.trial.as_deref()
    }

    /// Marks the replica as one of tuning trial `id`.
    pub fn set_trial(&mut self, id: &str) {
        self.trial = Some(id.to_string());
    }

    /// The trainers of the cluster: its primaries and workers.
    pub fn trainer_count(&self) -> usize {
        PRIMARY_NAMES
            .iter()
            .chain(&["worker"])
            .map(|r| self.cluster.get(*r).map_or(0, Vec::len))
            .sum()
    }

    /// The parameter servers of the cluster.
    pub fn ps_count(&self) -> usize {
        self.cluster.get("ps").map_or(0, Vec::len)
    }

    /// What this replica does: the one decision every trainer and shim uses.
    pub fn role(&self) -> ReplicaRole {
        let kind = self.task_type();
        if kind == "evaluator" {
            return ReplicaRole::Evaluator;
        }
        if self.cluster.is_empty() {
            return ReplicaRole::Single;
        }
        if kind == "ps" {
            return ReplicaRole::ParameterServer;
        }
        if self.trainer_count() == 1 && self.ps_count() == 0 {
            return ReplicaRole::Single;
        }
        if kind.is_empty() || PRIMARY_NAMES.contains(&kind) {
            ReplicaRole::Primary
        } else {
            ReplicaRole::Worker
        }
    }

    /// Whether this process is the primary (master/chief) or runs alone.
    pub fn is_primary(&self) -> bool {
        matches!(self.role(), ReplicaRole::Single | ReplicaRole::Primary)
    }

    /// Replaces every cluster address `(role, index)` found in `addrs` (the Slurm shim's
    /// rendezvous), leaving the rest as it is.
    pub fn rewrite_addresses(&mut self, addrs: &HashMap<(String, usize), String>) {
        for (role, list) in self.cluster.iter_mut() {
            for (i, a) in list.iter_mut().enumerate() {
                if let Some(new) = addrs.get(&(role.clone(), i)) {
                    a.clone_from(new);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_roles_and_trial() {
        let c = TfConfig::parse(
            r#"{"cluster": {"chief": ["h:1"], "worker": ["h:2", "h:3"]}, "task": {"type": "worker", "index": 1, "trial": "4"}, "environment": "cloud"}"#,
        )
        .unwrap();
        assert_eq!(c.cluster["worker"], vec!["h:2", "h:3"]);
        assert_eq!(
            (c.task_type(), c.task_index(), c.trial()),
            ("worker", 1, Some("4"))
        );
        assert!(!c.is_primary());
        assert_eq!(c.role(), ReplicaRole::Worker);
        let single = TfConfig::parse(r#"{"cluster": {}, "task": {}}"#).unwrap();
        assert!(single.is_primary());
        assert_eq!(single.role(), ReplicaRole::Single);
        assert!(TfConfig::parse("{").unwrap_err().contains("not valid JSON"));
        assert!(
            TfConfig::parse(r#"{"cluster": {"ps": "h:1"}}"#)
                .unwrap_err()
                .contains("cluster.ps must be a list")
        );
    }

    #[test]
    fn roles_are_decided_from_the_cluster_and_task() {
        let c = cluster::<()>("master", 1, 2, |r, i| Ok(format!("{r}:{i}"))).unwrap();
        let role = |kind: &str| TfConfig::for_task(&c, kind, 0, Value::Null).role();
        assert_eq!(role("master"), ReplicaRole::Primary);
        assert_eq!(role("worker"), ReplicaRole::Worker);
        assert_eq!(role("ps"), ReplicaRole::ParameterServer);
        assert_eq!(role("evaluator"), ReplicaRole::Evaluator);
        let alone = cluster::<()>("chief", 0, 0, |_, _| Ok("h:1".into())).unwrap();
        assert_eq!(
            TfConfig::for_task(&alone, "chief", 0, Value::Null).role(),
            ReplicaRole::Single
        );
        assert_eq!(TfConfig::default().role(), ReplicaRole::Single);
    }

    #[test]
    fn serialises_round_trips_and_rewrites_addresses() {
        let c = cluster::<()>("chief", 2, 1, |r, i| Ok(format!("{r}-{i}:1"))).unwrap();
        let mut tf = TfConfig::for_task(&c, "worker", 1, json!({"python_module": "t"}));
        tf.set_trial("3");
        let v: Value = serde_json::from_str(&tf.to_json()).unwrap();
        assert_eq!(
            v["task"],
            json!({"type": "worker", "index": 1, "trial": "3"})
        );
        assert_eq!(v["cluster"]["worker"], json!(["worker-0:1", "worker-1:1"]));
        assert_eq!(v["environment"], "cloud");
        assert_eq!(TfConfig::parse(&tf.to_json()).unwrap(), tf);
        let mut addrs = HashMap::new();
        addrs.insert(("worker".to_string(), 1), "node2:5".to_string());
        tf.rewrite_addresses(&addrs);
        assert_eq!(tf.cluster["worker"], vec!["worker-0:1", "node2:5"]);
        assert_eq!(tf.trial(), Some("3"));
        let mut one = TfConfig::single(json!({}));
        one.set_trial("2");
        let v: Value = serde_json::from_str(&one.to_json()).unwrap();
        assert_eq!(
            v["task"],
            json!({"trial": "2"}),
            "a single trial replica still names its trial"
        );
        assert_eq!(
            TfConfig::parse(&one.to_json()).unwrap().role(),
            ReplicaRole::Single
        );
        let single: Value = serde_json::from_str(&TfConfig::single(json!({})).to_json()).unwrap();
        assert_eq!(
            single,
            json!({"cluster": {}, "task": {}, "job": {}, "environment": "cloud"})
        );
    }
}
