//! `TF_CONFIG` (DESIGN §2.1), typed: the one place that builds, serialises, parses and
//! rewrites it, and the one place that decides a replica's role from it. The local cluster
//! (`mle local train --distributed`), the server's plans, the Slurm shim (`mle replica`) and the
//! trainers (`mle train`, the Rust SDK through `mle-dist`) all go through [`TfConfig`].
//!
//! It also derives every other variable a replica's place in the cluster decides
//! ([`TfConfig::replica_env`]): `CLUSTER_SPEC` for container-command jobs and the PyTorch
//! rendezvous variables (`MASTER_ADDR`, `MASTER_PORT`, `WORLD_SIZE`, `RANK`); and the name of
//! the primary, which the runtime version decides ([`primary_name`]).
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

/// The name Cloud ML Engine gives a cluster's primary replica (the ml-engine docs, "TF_CONFIG
/// and distributed training details", section "chief versus master"): `chief` for runtime
/// versions 2.1 and later, `master` for earlier ones and when none is given (TensorFlow 1's
/// Estimators expect it); a custom container's primary (here: a `containerCommand` job) is
/// `master` whatever the version. `useChiefInTfConfig` names it `chief` in every case.
pub fn primary_name(runtime_version: &str, container: bool, use_chief: bool) -> &'static str {
    if use_chief {
        return "chief";
    }
    let mut parts = runtime_version.trim().split('.');
    let major: Option<u32> = parts.next().and_then(|p| p.parse().ok());
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    match major {
        Some(m) if !container && (m, minor) >= (2, 1) => "chief",
        _ => "master",
    }
}

/// The variables [`TfConfig::replica_env`] sets; the Slurm shim recomputes them all from the
/// rewritten `TF_CONFIG` ([`rewrite_env`]).
pub const CLUSTER_VARS: [&str; 6] = [
    "TF_CONFIG",
    "CLUSTER_SPEC",
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "RANK",
];

/// Replaces, in a replica's environment, every cluster address `(role, index)` found in
/// `addrs` and every variable derived from them ([`CLUSTER_VARS`]). `CLUSTER_SPEC` stays
/// present only where it was. A `TF_CONFIG` that does not parse is left as it is (the trainer
/// reports it).
pub fn rewrite_env(env: &mut Vec<(String, String)>, addrs: &HashMap<(String, usize), String>) {
    let Some(Ok(mut tf)) = env
        .iter()
        .find(|(k, _)| k == "TF_CONFIG")
        .map(|(_, v)| TfConfig::parse(v))
    else {
        return;
    };
    tf.rewrite_addresses(addrs);
    let container = env.iter().any(|(k, _)| k == "CLUSTER_SPEC");
    env.retain(|(k, _)| !CLUSTER_VARS.contains(&k.as_str()));
    env.extend(tf.replica_env(container));
}

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

    /// Every variable this replica's place in the cluster decides, `TF_CONFIG` first:
    /// - `CLUSTER_SPEC` when `container` (the ml-engine docs, "Distributed training with
    ///   containers"): the same cluster, task and job, the primary always named `master`;
    /// - for the trainers of a cluster (the primary and the workers), the variables AI
    ///   Platform gives PyTorch trainers, so that `init_method="env://"` works: `MASTER_ADDR`
    ///   and `MASTER_PORT` (the primary's address), `WORLD_SIZE` (the trainers) and `RANK`
    ///   (the primary 0, then worker `i` is `i + 1`). Parameter servers and evaluators are not
    ///   ranks and get none of them, nor does a process that runs alone.
    pub fn replica_env(&self, container: bool) -> Vec<(String, String)> {
        let mut env = vec![("TF_CONFIG".to_string(), self.to_json())];
        if container {
            let mut spec = self.clone();
            if let Some(chief) = spec.cluster.remove("chief") {
                spec.cluster.insert("master".into(), chief);
            }
            if let Some(t) = spec.task.as_mut().filter(|t| t.kind == "chief") {
                t.kind = "master".into();
            }
            env.push(("CLUSTER_SPEC".into(), spec.to_json()));
        }
        let primary = PRIMARY_NAMES
            .iter()
            .find_map(|n| self.cluster.get(*n).and_then(|a| a.first()));
        let rank = match self.task_type() {
            "worker" => Some(self.task_index() + 1),
            k if PRIMARY_NAMES.contains(&k) => Some(0),
            _ => None,
        };
        if let (Some(addr), Some(rank)) = (primary, rank) {
            let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), ""));
            env.extend([
                ("MASTER_ADDR".to_string(), host.to_string()),
                ("MASTER_PORT".to_string(), port.to_string()),
                ("WORLD_SIZE".to_string(), self.trainer_count().to_string()),
                ("RANK".to_string(), rank.to_string()),
            ]);
        }
        env
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
    fn the_runtime_version_names_the_primary() {
        for (version, container, chief, want) in [
            ("", false, false, "master"),
            ("1.15", false, false, "master"),
            ("2.0", false, false, "master"),
            ("2.1", false, false, "chief"),
            ("2.11", false, false, "chief"),
            ("3", false, false, "chief"),
            ("nightly", false, false, "master"),
            ("2.11", true, false, "master"),
            ("2.11", true, true, "chief"),
            ("1.15", false, true, "chief"),
        ] {
            assert_eq!(
                primary_name(version, container, chief),
                want,
                "{version:?} container={container} useChief={chief}"
            );
        }
    }

    fn var<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_trainer_gets_the_pytorch_variables_and_containers_a_cluster_spec() {
        let c = cluster::<()>("chief", 2, 1, |r, i| Ok(format!("{r}{i}.host:{}", 10 + i))).unwrap();
        let env_of = |kind: &str, index: usize| {
            TfConfig::for_task(&c, kind, index, json!({"a": 1})).replica_env(true)
        };
        let chief = env_of("chief", 0);
        assert_eq!(var(&chief, "MASTER_ADDR"), Some("chief0.host"));
        assert_eq!(var(&chief, "MASTER_PORT"), Some("10"));
        assert_eq!(var(&chief, "WORLD_SIZE"), Some("3"));
        assert_eq!(var(&chief, "RANK"), Some("0"));
        let w1 = env_of("worker", 1);
        assert_eq!(var(&w1, "RANK"), Some("2"));
        assert_eq!(var(&w1, "MASTER_ADDR"), Some("chief0.host"));
        for (kind, i) in [("ps", 0), ("evaluator", 0)] {
            let e = env_of(kind, i);
            assert!(
                var(&e, "RANK").is_none() && var(&e, "WORLD_SIZE").is_none(),
                "{kind}"
            );
        }
        // CLUSTER_SPEC names the primary `master` even when TF_CONFIG says `chief`.
        let spec: Value = serde_json::from_str(var(&chief, "CLUSTER_SPEC").unwrap()).unwrap();
        assert_eq!(spec["task"], json!({"type": "master", "index": 0}));
        assert_eq!(spec["cluster"]["master"], json!(["chief0.host:10"]));
        assert!(spec["cluster"].get("chief").is_none());
        assert_eq!(spec["job"], json!({"a": 1}));
        let tf: Value = serde_json::from_str(var(&chief, "TF_CONFIG").unwrap()).unwrap();
        assert_eq!(tf["task"]["type"], "chief");
        // A Python-module job gets no CLUSTER_SPEC; a process alone gets no ranks.
        let plain = TfConfig::for_task(&c, "worker", 0, Value::Null).replica_env(false);
        assert!(var(&plain, "CLUSTER_SPEC").is_none());
        let alone = TfConfig::single(json!({})).replica_env(false);
        assert_eq!(alone.len(), 1);
    }

    #[test]
    fn rewriting_an_environment_rewrites_every_derived_variable() {
        let c = cluster::<()>("master", 1, 0, |r, i| Ok(format!("{r}-{i}:1"))).unwrap();
        let mut env = vec![("PATH".to_string(), "/bin".to_string())];
        env.extend(TfConfig::for_task(&c, "worker", 0, Value::Null).replica_env(true));
        let mut addrs = HashMap::new();
        addrs.insert(("master".to_string(), 0), "node1:7".to_string());
        addrs.insert(("worker".to_string(), 0), "node2:8".to_string());
        rewrite_env(&mut env, &addrs);
        assert_eq!(var(&env, "PATH"), Some("/bin"));
        assert_eq!(var(&env, "MASTER_ADDR"), Some("node1"));
        assert_eq!(var(&env, "MASTER_PORT"), Some("7"));
        assert_eq!(var(&env, "RANK"), Some("1"));
        let spec: Value = serde_json::from_str(var(&env, "CLUSTER_SPEC").unwrap()).unwrap();
        assert_eq!(spec["cluster"]["worker"], json!(["node2:8"]));
        assert_eq!(env.iter().filter(|(k, _)| k == "TF_CONFIG").count(), 1);
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
