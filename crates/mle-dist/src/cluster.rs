//! The cluster as replicas see it: trainers (the primary first, then workers) and parameter
//! servers, with their addresses.

use std::time::Duration;

use mle_tfconfig::TfConfig;

use crate::DistError;

/// Transport settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long to keep trying to reach a peer that is still starting.
    pub connect_timeout: Duration,
    /// A peer that sends nothing, not even a heartbeat, for this long is dead.
    pub peer_timeout: Duration,
    /// Heartbeat period.
    pub heartbeat: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(120),
            peer_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_millis(500),
        }
    }
}

impl Options {
    /// Defaults, with `MLE_PEER_TIMEOUT_SECS` and `MLE_CONNECT_TIMEOUT_SECS` overrides.
    pub fn from_env() -> Self {
        let secs = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| *v > 0.0)
                .map(Duration::from_secs_f64)
        };
        let d = Self::default();
        Self {
            connect_timeout: secs("MLE_CONNECT_TIMEOUT_SECS").unwrap_or(d.connect_timeout),
            peer_timeout: secs("MLE_PEER_TIMEOUT_SECS").unwrap_or(d.peer_timeout),
            heartbeat: d.heartbeat,
        }
    }
}

/// One replica: role, index and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// `chief`, `master`, `worker` or `ps`.
    pub role: String,
    /// Index within the role.
    pub index: usize,
    /// `host:port`.
    pub addr: String,
}

impl std::fmt::Display for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} at {}", self.role, self.index, self.addr)
    }
}

/// Trainers in rank order (primary = rank 0, then workers) and parameter servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Rank-ordered trainers.
    pub trainers: Vec<Replica>,
    /// Parameter servers.
    pub ps: Vec<Replica>,
    /// This replica.
    pub me: Replica,
}

impl Cluster {
    /// Builds the cluster from `TF_CONFIG`.
    pub fn from_tf_config(tf: &TfConfig) -> Result<Self, DistError> {
        let list = |role: &str| -> Vec<Replica> {
            tf.cluster
                .get(role)
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(index, addr)| Replica {
                    role: role.into(),
                    index,
                    addr: addr.clone(),
                })
                .collect()
        };
        let mut trainers = list("chief");
        trainers.extend(list("master"));
        if trainers.len() != 1 {
            return Err(DistError::Cluster(format!(
                "expected one chief or master, found {}",
                trainers.len()
            )));
        }
        trainers.extend(list("worker"));
        let ps = list("ps");
        let me = trainers
            .iter()
            .chain(&ps)
            .find(|r| r.role == tf.task_type() && r.index == tf.task_index())
            .cloned()
            .ok_or_else(|| {
                DistError::Cluster(format!(
                    "this replica ({} {}) is not in the cluster",
                    tf.task_type(),
                    tf.task_index()
                ))
            })?;
        Ok(Self { trainers, ps, me })
    }

    /// This trainer's rank (primary = 0).
    pub fn rank(&self) -> Option<usize> {
        self.trainers.iter().position(|r| *r == self.me)
    }
}

/// Splits `total` elements into `parts` contiguous, nearly equal ranges.
pub fn shard_ranges(total: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| (total * i / parts)..(total * (i + 1) / parts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_shards() {
        let tf = TfConfig::parse(r#"{"cluster": {"chief": ["h:1"], "worker": ["h:2", "h:3"], "ps": ["h:4"]}, "task": {"type": "worker", "index": 1}}"#).unwrap();
        let c = Cluster::from_tf_config(&tf).unwrap();
        assert_eq!(c.rank(), Some(2));
        assert_eq!(c.me.to_string(), "worker 1 at h:3");
        assert_eq!(shard_ranges(10, 3), vec![0..3, 3..6, 6..10]);
        let bad = TfConfig::parse(
            r#"{"cluster": {"worker": ["h:2"]}, "task": {"type": "worker", "index": 0}}"#,
        )
        .unwrap();
        assert!(
            Cluster::from_tf_config(&bad)
                .unwrap_err()
                .to_string()
                .contains("expected one chief or master")
        );
    }
}
