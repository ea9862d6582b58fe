//! `TF_CONFIG`: the cluster and this replica's role (DESIGN §2.1).

use std::collections::BTreeMap;

/// A parsed `TF_CONFIG`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TfConfig {
    /// Role → addresses (`host:port`), e.g. `chief`, `worker`, `ps`.
    pub cluster: BTreeMap<String, Vec<String>>,
    /// This replica's role (`master`, `chief`, `worker`, `ps`, `evaluator`); empty when single.
    pub task_type: String,
    /// Index within the role.
    pub task_index: usize,
    /// Tuning trial id, if any.
    pub trial: Option<String>,
}

impl TfConfig {
    /// Parses the JSON text of `TF_CONFIG`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("TF_CONFIG is not valid JSON: {e}"))?;
        let mut out = TfConfig::default();
        if let Some(cluster) = v.get("cluster").and_then(|c| c.as_object()) {
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
        if let Some(task) = v.get("task") {
            out.task_type = task
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string();
            out.task_index = task.get("index").and_then(|i| i.as_u64()).unwrap_or(0) as usize;
            out.trial = task.get("trial").and_then(|t| match t {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        }
        Ok(out)
    }

    /// From the environment; absent means a single process.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("TF_CONFIG") {
            Ok(text) if !text.trim().is_empty() => Self::parse(&text),
            _ => Ok(Self::default()),
        }
    }

    /// Whether this process is the primary (master/chief) or runs alone.
    pub fn is_primary(&self) -> bool {
        self.cluster.is_empty() || matches!(self.task_type.as_str(), "" | "master" | "chief")
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
            (c.task_type.as_str(), c.task_index, c.trial.as_deref()),
            ("worker", 1, Some("4"))
        );
        assert!(!c.is_primary());
        assert!(
            TfConfig::parse(r#"{"cluster": {}, "task": {}}"#)
                .unwrap()
                .is_primary()
        );
        assert!(TfConfig::parse("{").unwrap_err().contains("not valid JSON"));
    }
}
