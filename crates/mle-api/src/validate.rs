//! Validation of submitted jobs into field violations (nothing is created when any is found).

use crate::error::FieldViolation;
use crate::job::{Job, ScaleTier, TrainingInput};

/// ml v1's job id rule: a letter first, then letters, digits and underscores, at most 128.
pub fn valid_job_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Project ids: letters, digits, '-' and '_', at most 63.
pub fn valid_project_id(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 63
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_label(s: &str, key: bool) -> bool {
    s.len() <= 63
        && (!key || s.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Every problem of a submitted job, with the field it concerns.
pub fn validate_job(job: &Job) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    if !valid_job_id(&job.job_id) {
        v.push(FieldViolation::new(
            "job.job_id",
            format!("'{}' must start with a letter and hold only letters, digits and underscores (at most 128)", job.job_id),
        ));
    }
    for (k, val) in &job.labels {
        if !valid_label(k, true) || !valid_label(val, false) {
            v.push(FieldViolation::new(
                &format!("job.labels.{k}"),
                "keys start with a lowercase letter; keys and values hold only lowercase letters, digits, '_' and '-' (at most 63)",
            ));
        }
    }
    match (&job.training_input, &job.prediction_input) {
        (Some(t), None) => validate_training(t, &mut v),
        (None, Some(p)) => crate::validate_prediction(p, &mut v),
        (Some(_), Some(_)) => v.push(FieldViolation::new(
            "job",
            "give trainingInput or predictionInput, not both",
        )),
        (None, None) => v.push(FieldViolation::new(
            "job",
            "give trainingInput or predictionInput",
        )),
    }
    v
}

fn validate_training(t: &TrainingInput, v: &mut Vec<FieldViolation>) {
    let f = |name: &str| format!("job.training_input.{name}");
    for (name, count) in [
        ("worker_count", t.worker_count),
        ("parameter_server_count", t.parameter_server_count),
        ("evaluator_count", t.evaluator_count),
    ] {
        if count.0 < 0 {
            v.push(FieldViolation::new(
                &f(name),
                format!("must not be negative, got {}", count.0),
            ));
        }
    }
    if t.scale_tier == ScaleTier::Custom {
        if t.master_type.is_empty() {
            v.push(FieldViolation::new(
                &f("master_type"),
                "is required with scaleTier CUSTOM",
            ));
        }
        if t.worker_count.0 > 0 && t.worker_type.is_empty() {
            v.push(FieldViolation::new(
                &f("worker_type"),
                "is required when workerCount > 0",
            ));
        }
        if t.parameter_server_count.0 > 0 && t.parameter_server_type.is_empty() {
            v.push(FieldViolation::new(
                &f("parameter_server_type"),
                "is required when parameterServerCount > 0",
            ));
        }
    } else {
        for (name, set) in [
            ("worker_count", t.worker_count.0 > 0),
            ("parameter_server_count", t.parameter_server_count.0 > 0),
        ] {
            if set {
                v.push(FieldViolation::new(
                    &f(name),
                    "is only allowed with scaleTier CUSTOM",
                ));
            }
        }
    }
    for (name, value) in [
        ("master_type", &t.master_type),
        ("worker_type", &t.worker_type),
        ("parameter_server_type", &t.parameter_server_type),
        ("evaluator_type", &t.evaluator_type),
    ] {
        if !value.is_empty() && crate::machine::machine(value).is_none() {
            v.push(FieldViolation::new(
                &f(name),
                format!(
                    "unknown machine type '{value}' (valid: {})",
                    crate::machine::machine_names()
                ),
            ));
        }
    }
    let command = t
        .master_config
        .as_ref()
        .is_some_and(|c| !c.container_command.is_empty());
    let python = !t.python_module.is_empty();
    match (python, command) {
        (true, true) => v.push(FieldViolation::new(
            &f("python_module"),
            "give pythonModule or masterConfig.containerCommand, not both",
        )),
        (false, false) => v.push(FieldViolation::new(
            &f("python_module"),
            "is required (or masterConfig.containerCommand)",
        )),
        (true, false) if t.package_uris.is_empty() => v.push(FieldViolation::new(
            &f("package_uris"),
            "at least one package is required with pythonModule",
        )),
        _ => {}
    }
    if let Some(h) = &t.hyperparameters {
        crate::validate_hyperparameters(h, &f("hyperparameters"), v);
    }
    if let Some(s) = &t.scheduling
        && !s.max_running_time.is_empty()
        && parse_duration(&s.max_running_time).is_none()
    {
        v.push(FieldViolation::new(
            &f("scheduling.max_running_time"),
            format!(
                "'{}' is not a duration such as \"3600s\"",
                s.max_running_time
            ),
        ));
    }
}

/// Parses a proto3 JSON Duration (`"3600s"`, `"1.5s"`) into seconds.
pub fn parse_duration(text: &str) -> Option<f64> {
    text.strip_suffix('s')?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, expect: &[&str]) {
        let job: Job = serde_json::from_str(json).unwrap();
        let fields: Vec<String> = validate_job(&job).into_iter().map(|v| v.field).collect();
        assert_eq!(fields, expect, "{json}");
    }

    #[test]
    fn violations_name_their_fields() {
        let ok = r#""trainingInput": {"pythonModule": "t.task", "packageUris": ["p.tar.gz"]}"#;
        check(&format!(r#"{{"jobId": "good_1", {ok}}}"#), &[]);
        check(&format!(r#"{{"jobId": "1bad", {ok}}}"#), &["job.job_id"]);
        check(
            &format!(r#"{{"jobId": "bad-dash", {ok}}}"#),
            &["job.job_id"],
        );
        check(
            r#"{"jobId": "j", "trainingInput": {"scaleTier": "CUSTOM", "pythonModule": "t", "packageUris": ["p"]}}"#,
            &["job.training_input.master_type"],
        );
        check(
            r#"{"jobId": "j", "trainingInput": {"scaleTier": "CUSTOM", "masterType": "standard", "workerCount": "-2", "pythonModule": "t", "packageUris": ["p"]}}"#,
            &["job.training_input.worker_count"],
        );
        check(
            r#"{"jobId": "j", "trainingInput": {"pythonModule": "t"}}"#,
            &["job.training_input.package_uris"],
        );
        check(
            r#"{"jobId": "j", "trainingInput": {}}"#,
            &["job.training_input.python_module"],
        );
        check(
            r#"{"jobId": "j", "trainingInput": {"masterConfig": {"containerCommand": ["mle", "train"]}, "scheduling": {"maxRunningTime": "1h"}}}"#,
            &["job.training_input.scheduling.max_running_time"],
        );
        check(r#"{"jobId": "j"}"#, &["job"]);
        check(
            r#"{"jobId": "j", "trainingInput": {"scaleTier": "CUSTOM", "masterType": "huge", "masterConfig": {"containerCommand": ["true"]}}}"#,
            &["job.training_input.master_type"],
        );
        check(
            &format!(r#"{{"jobId": "j", "labels": {{"Owner": "x"}}, {ok}}}"#),
            &["job.labels.Owner"],
        );
        assert_eq!(parse_duration("3600s"), Some(3600.0));
    }
}
