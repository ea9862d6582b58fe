//! The `cloudml-hypertune` metric file (DESIGN §2.1): the whole file is rewritten on every
//! report, one JSON object per line with sorted keys, at most the last 100 records.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

/// Default path used by the `cloudml-hypertune` package.
pub const DEFAULT_METRIC_FILE: &str = "/tmp/hypertune/output.metrics";
/// Default `hyperparameterMetricTag`.
pub const DEFAULT_METRIC_TAG: &str = "training/hptuning/metric";
const MAX_RECORDS: usize = 100;

/// Writes hyperparameter-tuning metric reports.
pub struct Reporter {
    path: PathBuf,
    trial: String,
    records: VecDeque<String>,
}

/// Formats a float like Python's `str(float)`: shortest round-trip digits, always with a
/// decimal point or exponent.
pub fn python_float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains(['.', 'e', 'E', 'n', 'N', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

impl Reporter {
    /// A reporter writing to `path` for `trial`.
    pub fn new(path: PathBuf, trial: String) -> Self {
        Self {
            path,
            trial,
            records: VecDeque::new(),
        }
    }

    /// From `CLOUD_ML_HP_METRIC_FILE` (only when set: a plain run writes no metric file) and
    /// `CLOUD_ML_TRIAL_ID`.
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("CLOUD_ML_HP_METRIC_FILE")?;
        let trial = std::env::var("CLOUD_ML_TRIAL_ID").unwrap_or_else(|_| "0".into());
        Some(Self::new(path.into(), trial))
    }

    /// Records `tag = value` at `step` and rewrites the file.
    pub fn report(&mut self, tag: &str, value: f64, step: u64) -> std::io::Result<()> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut record = BTreeMap::new();
        record.insert("checkpoint_path", serde_json::Value::from(""));
        record.insert("global_step", serde_json::Value::from(step.to_string()));
        record.insert(tag, serde_json::Value::from(python_float(value)));
        record.insert("timestamp", serde_json::Value::from(timestamp));
        record.insert("trial", serde_json::Value::from(self.trial.clone()));
        // json.dumps(record, sort_keys=True): ", " and ": " separators.
        let fields: Vec<String> = record
            .iter()
            .map(|(k, v)| format!("{}: {v}", serde_json::Value::from(*k)))
            .collect();
        let line = format!("{{{}}}", fields.join(", "));
        self.records.push_back(line);
        while self.records.len() > MAX_RECORDS {
            self.records.pop_front();
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = String::new();
        for r in &self.records {
            text.push_str(r);
            text.push('\n');
        }
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// The reports of `tag` in a metric file, in file order. Lines that do not parse are skipped
/// (`cloudml-hypertune` rewrites the file in place, so a reader can catch it half-written);
/// `Err` only when the file cannot be read at all.
pub fn read(path: &std::path::Path, tag: &str) -> std::io::Result<Vec<crate::Report>> {
    let text = std::fs::read_to_string(path)?;
    let number = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        other => other.as_f64(),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|rec| {
            let value = number(rec.get(tag)?)?;
            let step = rec.get("global_step").and_then(number).unwrap_or(0.0);
            Some(crate::Report {
                step: if step.is_finite() && step > 0.0 {
                    step as u64
                } else {
                    0
                },
                value,
                time: rec.get("timestamp").and_then(number).unwrap_or(0.0),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_holds_sorted_keys_string_values_and_the_last_100_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/output.metrics");
        let mut r = Reporter::new(path.clone(), "3".into());
        for step in 0..105 {
            r.report("rmse", 2.0 + step as f64, step).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 100);
        let last: serde_json::Value = serde_json::from_str(lines[99]).unwrap();
        assert_eq!(last["rmse"], "106.0");
        assert_eq!(last["global_step"], "104");
        assert_eq!(last["trial"], "3");
        assert!(
            lines[0].starts_with(
                r#"{"checkpoint_path": "", "global_step": "5", "rmse": "7.0", "timestamp": "#
            ),
            "{}",
            lines[0]
        );
        assert_eq!(python_float(2.5), "2.5");
        let back = read(&path, "rmse").unwrap();
        assert_eq!(back.len(), 100);
        assert_eq!((back[99].step, back[99].value), (104, 106.0));
        assert!(read(&path, "accuracy").unwrap().is_empty());
    }

    #[test]
    fn reading_skips_torn_lines_and_takes_the_python_package_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.metrics");
        // As written by cloudml-hypertune 0.1.0.dev6 (global_step None gives "0"), then a torn line.
        std::fs::write(
            &path,
            concat!(
                r#"{"checkpoint_path": "", "global_step": "0", "loss": "0.5", "timestamp": 1700000000.5, "trial": "2"}"#,
                "\n",
                r#"{"checkpoint_path": "", "global_step": "30", "loss": "0.25", "timestamp": 1700000001.5, "trial": "2"}"#,
                "\n",
                r#"{"checkpoint_path": "", "glob"#,
            ),
        )
        .unwrap();
        let r = read(&path, "loss").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].step, r[0].value, r[0].time),
            (0, 0.5, 1_700_000_000.5)
        );
        assert_eq!((r[1].step, r[1].value), (30, 0.25));
        assert!(read(&dir.path().join("missing"), "loss").is_err());
    }
}
