//! `HyperparameterSpec` (the tuning request) and `HyperparameterOutput` (one trial's result), as
//! in `google.cloud.ml.v1`, with the validation of a spec into field violations.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::FieldViolation;
use crate::job::{Int64, JobState};

/// A 32-bit integer: a JSON number on the wire; a numeric string is accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Int32(pub i32);

impl<'de> Deserialize<'de> for Int32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Int64::deserialize(d)?;
        i32::try_from(v.0)
            .map(Int32)
            .map_err(|_| serde::de::Error::custom(format!("{} does not fit in 32 bits", v.0)))
    }
}

/// `HyperparameterSpec.GoalType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GoalType {
    /// Not set (treated as MAXIMIZE, the CMLE default).
    #[default]
    GoalTypeUnspecified,
    /// Larger is better.
    Maximize,
    /// Smaller is better.
    Minimize,
}

/// `HyperparameterSpec.Algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TuningAlgorithm {
    /// Bayesian optimisation.
    #[default]
    AlgorithmUnspecified,
    /// Every combination of the (discrete) parameters.
    GridSearch,
    /// Random search.
    RandomSearch,
}

/// `ParameterSpec.ParameterType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ParameterType {
    /// Not set (invalid).
    #[default]
    ParameterTypeUnspecified,
    /// A real number in [minValue, maxValue].
    Double,
    /// An integer in [minValue, maxValue].
    Integer,
    /// One of `categoricalValues`.
    Categorical,
    /// One of `discreteValues`.
    Discrete,
}

/// `ParameterSpec.ScaleType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScaleType {
    /// Not set (linear).
    #[default]
    None,
    /// Uniform in the value.
    UnitLinearScale,
    /// Uniform in the logarithm of the value.
    UnitLogScale,
    /// Dense near the maximum.
    UnitReverseLogScale,
}

/// One tuned parameter (`ParameterSpec`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ParameterSpec {
    /// The trainer gets `--<parameterName>=<value>`.
    pub parameter_name: String,
    /// The type.
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// Lower bound (DOUBLE, INTEGER).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_value: Option<f64>,
    /// Upper bound (DOUBLE, INTEGER).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_value: Option<f64>,
    /// Choices (CATEGORICAL).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categorical_values: Vec<String>,
    /// Choices (DISCRETE), ascending.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub discrete_values: Vec<f64>,
    /// Scale (DOUBLE, INTEGER).
    #[serde(skip_serializing_if = "is_none_scale")]
    pub scale_type: ScaleType,
}

fn is_none_scale(s: &ScaleType) -> bool {
    *s == ScaleType::None
}

fn is_zero32(v: &Int32) -> bool {
    v.0 == 0
}

/// `trainingInput.hyperparameters`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HyperparameterSpec {
    /// Maximise or minimise the metric.
    pub goal: GoalType,
    /// The parameters.
    pub params: Vec<ParameterSpec>,
    /// Trials to run (default 1).
    #[serde(skip_serializing_if = "is_zero32")]
    pub max_trials: Int32,
    /// Trials at once (default 1).
    #[serde(skip_serializing_if = "is_zero32")]
    pub max_parallel_trials: Int32,
    /// Failed trials after which the job fails (0: the job fails only when every trial failed).
    #[serde(skip_serializing_if = "is_zero32")]
    pub max_failed_trials: Int32,
    /// The metric to optimise (default `training/hptuning/metric`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hyperparameter_metric_tag: String,
    /// Stop unpromising trials early (median stopping rule).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub enable_trial_early_stopping: bool,
    /// Search algorithm.
    #[serde(skip_serializing_if = "is_default_algorithm")]
    pub algorithm: TuningAlgorithm,
    /// Warm start from this earlier tuning job's trials (same project).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resume_previous_job_id: String,
}

fn is_default_algorithm(a: &TuningAlgorithm) -> bool {
    *a == TuningAlgorithm::AlgorithmUnspecified
}

/// The default `hyperparameterMetricTag`.
pub const DEFAULT_METRIC_TAG: &str = "training/hptuning/metric";

impl HyperparameterSpec {
    /// `maxTrials` with its default.
    pub fn trials(&self) -> usize {
        self.max_trials.0.max(1) as usize
    }

    /// `maxParallelTrials` with its default, never more than `maxTrials`.
    pub fn parallel(&self) -> usize {
        (self.max_parallel_trials.0.max(1) as usize).min(self.trials())
    }

    /// `hyperparameterMetricTag` with its default.
    pub fn metric_tag(&self) -> &str {
        if self.hyperparameter_metric_tag.is_empty() {
            DEFAULT_METRIC_TAG
        } else {
            &self.hyperparameter_metric_tag
        }
    }
}

/// A metric value at a step (`HyperparameterOutput.HyperparameterMetric`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HyperparameterMetric {
    /// Global step of the report.
    pub training_step: Int64,
    /// The value.
    pub objective_value: f64,
}

/// One trial (`HyperparameterOutput`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HyperparameterOutput {
    /// 1-based trial id.
    pub trial_id: String,
    /// Parameter values, as the trainer got them.
    pub hyperparameters: BTreeMap<String, String>,
    /// The last value reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_metric: Option<HyperparameterMetric>,
    /// Every value reported (at most the last 100).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub all_metrics: Vec<HyperparameterMetric>,
    /// Whether the median stopping rule ended it.
    pub is_trial_stopped_early: bool,
    /// Trial state.
    pub state: JobState,
    /// Start time (RFC 3339).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub start_time: String,
    /// End time (RFC 3339).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub end_time: String,
    /// Why the trial failed (an mle extension of the ml v1 message).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error_message: String,
}

/// Every problem of a tuning spec, fields named under `prefix` (such as
/// `job.training_input.hyperparameters`).
pub fn validate_hyperparameters(
    spec: &HyperparameterSpec,
    prefix: &str,
    v: &mut Vec<FieldViolation>,
) {
    let f = |name: &str| format!("{prefix}.{name}");
    check_limits(spec, prefix, v);
    let grid = spec.algorithm == TuningAlgorithm::GridSearch;
    let mut grid_size: u128 = 1;
    let mut names = HashSet::new();
    for (i, p) in spec.params.iter().enumerate() {
        let pf = |name: &str| format!("{prefix}.params[{i}].{name}");
        check_name(p, &mut names, &pf, v);
        grid_size = grid_size.saturating_mul(check_bounds(p, &pf, v));
        grid_size = grid_size.saturating_mul(check_values(p, grid, &pf, v));
    }
    if grid && grid_size > 1_000_000 {
        v.push(FieldViolation::new(
            &f("params"),
            format!("GRID_SEARCH over {grid_size} combinations is too many (at most 1000000)"),
        ));
    }
    if !spec.resume_previous_job_id.is_empty() && !crate::valid_job_id(&spec.resume_previous_job_id)
    {
        v.push(FieldViolation::new(
            &f("resume_previous_job_id"),
            format!("'{}' is not a job id", spec.resume_previous_job_id),
        ));
    }
}

/// Trial counts, the parameter list and the metric tag.
fn check_limits(spec: &HyperparameterSpec, prefix: &str, v: &mut Vec<FieldViolation>) {
    let f = |name: &str| format!("{prefix}.{name}");
    for (name, value) in [
        ("max_trials", spec.max_trials),
        ("max_parallel_trials", spec.max_parallel_trials),
        ("max_failed_trials", spec.max_failed_trials),
    ] {
        if value.0 < 0 {
            v.push(FieldViolation::new(
                &f(name),
                format!("must not be negative, got {}", value.0),
            ));
        }
    }
    if spec.max_trials.0 > 10_000 {
        v.push(FieldViolation::new(
            &f("max_trials"),
            "at most 10000 trials",
        ));
    }
    if spec.params.is_empty() {
        v.push(FieldViolation::new(
            &f("params"),
            "at least one parameter is required",
        ));
    }
    if spec.hyperparameter_metric_tag.contains(['\n', '\0']) {
        v.push(FieldViolation::new(
            &f("hyperparameter_metric_tag"),
            "must be a single line",
        ));
    }
}

/// A parameter's name: well-formed and not given twice.
fn check_name<'a>(
    p: &'a ParameterSpec,
    names: &mut HashSet<&'a str>,
    pf: &dyn Fn(&str) -> String,
    v: &mut Vec<FieldViolation>,
) {
    let valid_name = !p.parameter_name.is_empty()
        && p.parameter_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !valid_name {
        v.push(FieldViolation::new(
            &pf("parameter_name"),
            format!(
                "'{}' must be non-empty and hold only letters, digits, '_', '-' and '.'",
                p.parameter_name
            ),
        ));
    } else if !names.insert(p.parameter_name.as_str()) {
        v.push(FieldViolation::new(
            &pf("parameter_name"),
            format!("'{}' is given twice", p.parameter_name),
        ));
    }
}

/// Bounds and scales (only numeric parameters have them); returns the number of grid points
/// an INTEGER parameter spans (1 for the others).
fn check_bounds(
    p: &ParameterSpec,
    pf: &dyn Fn(&str) -> String,
    v: &mut Vec<FieldViolation>,
) -> u128 {
    let numeric = matches!(p.kind, ParameterType::Double | ParameterType::Integer);
    let mut points = 1;
    if numeric {
        match (p.min_value, p.max_value) {
            (Some(min), Some(max)) => {
                if !min.is_finite() || !max.is_finite() {
                    v.push(FieldViolation::new(
                        &pf("min_value"),
                        "bounds must be finite",
                    ));
                } else if min > max {
                    v.push(FieldViolation::new(
                        &pf("min_value"),
                        format!("minValue {min} is greater than maxValue {max}"),
                    ));
                } else if p.kind == ParameterType::Integer
                    && (min.fract() != 0.0 || max.fract() != 0.0)
                {
                    v.push(FieldViolation::new(
                        &pf("min_value"),
                        "INTEGER bounds must be whole numbers",
                    ));
                } else if matches!(
                    p.scale_type,
                    ScaleType::UnitLogScale | ScaleType::UnitReverseLogScale
                ) && min <= 0.0
                {
                    v.push(FieldViolation::new(
                        &pf("min_value"),
                        format!("a log scale needs positive bounds, got minValue {min}"),
                    ));
                }
                if p.kind == ParameterType::Integer && min <= max {
                    points = (max - min) as u128 + 1;
                }
            }
            (None, _) => v.push(FieldViolation::new(
                &pf("min_value"),
                "is required for DOUBLE and INTEGER parameters",
            )),
            (_, None) => v.push(FieldViolation::new(
                &pf("max_value"),
                "is required for DOUBLE and INTEGER parameters",
            )),
        }
    } else if p.min_value.is_some() || p.max_value.is_some() {
        v.push(FieldViolation::new(
            &pf("min_value"),
            "bounds are only for DOUBLE and INTEGER parameters",
        ));
    }
    if !numeric && p.scale_type != ScaleType::None {
        v.push(FieldViolation::new(
            &pf("scale_type"),
            "scales are only for DOUBLE and INTEGER parameters",
        ));
    }
    points
}

/// The type and the value lists; returns the number of grid points the lists hold (1 for
/// numeric parameters).
fn check_values(
    p: &ParameterSpec,
    grid: bool,
    pf: &dyn Fn(&str) -> String,
    v: &mut Vec<FieldViolation>,
) -> u128 {
    let mut points = 1;
    match p.kind {
        ParameterType::ParameterTypeUnspecified => v.push(FieldViolation::new(
            &pf("type"),
            "is required: DOUBLE, INTEGER, CATEGORICAL or DISCRETE",
        )),
        ParameterType::Double if grid => v.push(FieldViolation::new(
            &pf("type"),
            "GRID_SEARCH cannot enumerate a DOUBLE parameter (use DISCRETE or INTEGER)",
        )),
        ParameterType::Categorical => {
            if p.categorical_values.is_empty() {
                v.push(FieldViolation::new(
                    &pf("categorical_values"),
                    "must not be empty for a CATEGORICAL parameter",
                ));
            }
            let distinct: HashSet<&String> = p.categorical_values.iter().collect();
            if distinct.len() != p.categorical_values.len() {
                v.push(FieldViolation::new(
                    &pf("categorical_values"),
                    "values must be distinct",
                ));
            }
            points = p.categorical_values.len() as u128;
        }
        ParameterType::Discrete => {
            if p.discrete_values.is_empty() {
                v.push(FieldViolation::new(
                    &pf("discrete_values"),
                    "must not be empty for a DISCRETE parameter",
                ));
            } else if p.discrete_values.iter().any(|x| !x.is_finite())
                || p.discrete_values.windows(2).any(|w| w[0] >= w[1])
            {
                v.push(FieldViolation::new(
                    &pf("discrete_values"),
                    "values must be finite and strictly ascending",
                ));
            }
            points = p.discrete_values.len() as u128;
        }
        _ => {}
    }
    if p.kind != ParameterType::Categorical && !p.categorical_values.is_empty() {
        v.push(FieldViolation::new(
            &pf("categorical_values"),
            "only for CATEGORICAL parameters",
        ));
    }
    if p.kind != ParameterType::Discrete && !p.discrete_values.is_empty() {
        v.push(FieldViolation::new(
            &pf("discrete_values"),
            "only for DISCRETE parameters",
        ));
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(yaml_json: &str) -> Vec<String> {
        let spec: HyperparameterSpec = serde_json::from_str(yaml_json).unwrap();
        let mut v = Vec::new();
        validate_hyperparameters(&spec, "hp", &mut v);
        v.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn the_book_spec_is_valid_and_defaults_apply() {
        let spec: HyperparameterSpec = serde_json::from_str(
            r#"{"goal": "MAXIMIZE", "hyperparameterMetricTag": "accuracy", "maxTrials": 4,
                "maxParallelTrials": "2", "enableTrialEarlyStopping": true, "params": [
                {"parameterName": "learning-rate", "type": "DOUBLE", "minValue": 0.0001, "maxValue": 0.1, "scaleType": "UNIT_LOG_SCALE"},
                {"parameterName": "first-layer-size", "type": "INTEGER", "minValue": 50, "maxValue": 500, "scaleType": "UNIT_LINEAR_SCALE"},
                {"parameterName": "scale-factor", "type": "DOUBLE", "minValue": 0.1, "maxValue": 1.0, "scaleType": "UNIT_REVERSE_LOG_SCALE"}]}"#,
        )
        .unwrap();
        let mut v = Vec::new();
        validate_hyperparameters(&spec, "hp", &mut v);
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(
            (spec.trials(), spec.parallel(), spec.metric_tag()),
            (4, 2, "accuracy")
        );
        let d = HyperparameterSpec::default();
        assert_eq!(
            (d.trials(), d.parallel(), d.metric_tag()),
            (1, 1, DEFAULT_METRIC_TAG)
        );
    }

    #[test]
    fn violations_name_the_field() {
        assert_eq!(
            fields(
                r#"{"algorithm": "GRID_SEARCH", "params": [{"parameterName": "a", "type": "DOUBLE", "minValue": 0, "maxValue": 1}]}"#
            ),
            ["hp.params[0].type"]
        );
        assert_eq!(
            fields(
                r#"{"params": [{"parameterName": "a", "type": "DOUBLE", "minValue": 0, "maxValue": 1, "scaleType": "UNIT_LOG_SCALE"}]}"#
            ),
            ["hp.params[0].min_value"]
        );
        assert_eq!(
            fields(
                r#"{"params": [{"parameterName": "a", "type": "INTEGER", "minValue": 5, "maxValue": 1}]}"#
            ),
            ["hp.params[0].min_value"]
        );
        assert_eq!(
            fields(
                r#"{"params": [{"parameterName": "a", "type": "CATEGORICAL", "categoricalValues": ["x"]},
                                  {"parameterName": "a", "type": "CATEGORICAL", "categoricalValues": []}]}"#
            ),
            [
                "hp.params[1].parameter_name",
                "hp.params[1].categorical_values"
            ]
        );
        assert_eq!(
            fields(
                r#"{"params": [{"parameterName": "d", "type": "DISCRETE", "discreteValues": [2, 1]}]}"#
            ),
            ["hp.params[0].discrete_values"]
        );
        assert_eq!(
            fields(
                r#"{"maxTrials": -1, "params": [{"parameterName": "x y", "type": "INTEGER", "maxValue": 3}]}"#
            ),
            [
                "hp.max_trials",
                "hp.params[0].parameter_name",
                "hp.params[0].min_value"
            ]
        );
        assert_eq!(fields(r#"{"params": []}"#), ["hp.params"]);
        assert!(
            serde_json::from_str::<HyperparameterSpec>(r#"{"params": [{"type": "FLOAT"}]}"#)
                .is_err()
        );
    }
}
