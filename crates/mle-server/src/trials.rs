//! Trials as the tuner sees them: a spec as an `mle-tune` [`Tuner`], a trial's
//! `hyperparameters` strings to and from points, the curve the median rule compares, the
//! best-first order of `trainingOutput.trials`, and summaries of failed trials. Pure: no
//! files, no store.

use std::collections::BTreeMap;

use mle_api::{
    GoalType, HyperparameterOutput, HyperparameterSpec, JobState, ParameterType, ScaleType,
    TuningAlgorithm,
};
use mle_tune::{Algorithm, Domain, Goal, Param, Point, Scale, Space, Tuner, Value};

/// Studies are seeded alike, so that the same spec and history give the same proposals.
const STUDY_SEED: u64 = 0x6d6c_6521;

fn goal(spec: &HyperparameterSpec) -> Goal {
    match spec.goal {
        GoalType::Minimize => Goal::Minimize,
        _ => Goal::Maximize,
    }
}

/// The tuner's view of a (validated) spec.
pub fn tuner(spec: &HyperparameterSpec) -> Tuner {
    let scale = |s: ScaleType| match s {
        ScaleType::UnitLogScale => Scale::Log,
        ScaleType::UnitReverseLogScale => Scale::ReverseLog,
        _ => Scale::Linear,
    };
    let params = spec
        .params
        .iter()
        .map(|p| {
            let (min, max) = (p.min_value.unwrap_or(0.0), p.max_value.unwrap_or(0.0));
            let domain = match p.kind {
                ParameterType::Integer => Domain::Integer {
                    min: min as i64,
                    max: max as i64,
                    scale: scale(p.scale_type),
                },
                ParameterType::Categorical => Domain::Categorical(p.categorical_values.clone()),
                ParameterType::Discrete => Domain::Discrete(p.discrete_values.clone()),
                _ => Domain::Double {
                    min,
                    max,
                    scale: scale(p.scale_type),
                },
            };
            Param {
                name: p.parameter_name.clone(),
                domain,
            }
        })
        .collect();
    Tuner {
        space: Space { params },
        goal: goal(spec),
        algorithm: match spec.algorithm {
            TuningAlgorithm::GridSearch => Algorithm::Grid,
            TuningAlgorithm::RandomSearch => Algorithm::Random,
            TuningAlgorithm::AlgorithmUnspecified => Algorithm::Bayesian,
        },
        seed: STUDY_SEED,
    }
}

/// A point as the trial's `hyperparameters` map (the strings the trainer gets).
pub fn to_strings(space: &Space, point: &Point) -> BTreeMap<String, String> {
    space
        .params
        .iter()
        .zip(point)
        .map(|(p, v)| (p.name.clone(), v.to_string()))
        .collect()
}

/// A trial's `hyperparameters` map back as a point of `space` (None if it does not fit, as
/// for a previous job with other parameters).
pub fn to_point(space: &Space, map: &BTreeMap<String, String>) -> Option<Point> {
    let point: Option<Point> = space
        .params
        .iter()
        .map(|p| {
            let text = map.get(&p.name)?;
            Some(match &p.domain {
                Domain::Integer { .. } => Value::Int(text.parse().ok()?),
                Domain::Categorical(_) => Value::Text(text.clone()),
                Domain::Double { .. } | Domain::Discrete(_) => Value::Number(text.parse().ok()?),
            })
        })
        .collect();
    point.filter(|p| space.contains(p))
}

/// The curve the median rule compares: steps as reported, or report numbers when the trainer
/// gave no increasing steps (`cloudml-hypertune` writes step 0 when it gets none).
pub fn curve(t: &HyperparameterOutput) -> Vec<(u64, f64)> {
    let increasing = t
        .all_metrics
        .windows(2)
        .all(|w| w[0].training_step.0 < w[1].training_step.0);
    t.all_metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let step = if increasing {
                m.training_step.0.max(0) as u64
            } else {
                i as u64 + 1
            };
            (step, m.objective_value)
        })
        .collect()
}

/// Sorts trials best first: succeeded by objective, then running, then the rest, each by id.
pub fn sort_best_first(trials: &mut [HyperparameterOutput], goal: Goal) {
    let rank = |t: &HyperparameterOutput| match t.state {
        JobState::Succeeded if t.final_metric.is_some() => 0,
        JobState::Running => 1,
        _ => 2,
    };
    let id = |t: &HyperparameterOutput| t.trial_id.parse::<u64>().unwrap_or(u64::MAX);
    trials.sort_by(|a, b| {
        rank(a).cmp(&rank(b)).then_with(|| {
            if rank(a) == 0 {
                let (x, y) = (
                    a.final_metric.map_or(f64::NAN, |m| m.objective_value),
                    b.final_metric.map_or(f64::NAN, |m| m.objective_value),
                );
                let by_value = match goal {
                    Goal::Maximize => y.total_cmp(&x),
                    Goal::Minimize => x.total_cmp(&y),
                };
                by_value.then(id(a).cmp(&id(b)))
            } else {
                id(a).cmp(&id(b))
            }
        })
    });
}

/// The succeeded trials as observations of `space`.
pub fn succeeded_points(space: &Space, trials: &[HyperparameterOutput]) -> Vec<(Point, f64)> {
    trials
        .iter()
        .filter(|t| t.state == JobState::Succeeded)
        .filter_map(|t| {
            Some((
                to_point(space, &t.hyperparameters)?,
                t.final_metric?.objective_value,
            ))
        })
        .collect()
}

pub fn count_running(trials: &[HyperparameterOutput]) -> usize {
    trials
        .iter()
        .filter(|t| t.state == JobState::Running)
        .count()
}

/// `headline; trial 1: why; trial 3: why` (the first few failures).
pub fn failure_summary(trials: &[HyperparameterOutput], headline: &str) -> String {
    let mut failed: Vec<&HyperparameterOutput> = trials
        .iter()
        .filter(|t| t.state == JobState::Failed)
        .collect();
    failed.sort_by_key(|t| t.trial_id.parse::<u64>().unwrap_or(u64::MAX));
    let mut text = headline.to_string();
    for t in failed.iter().take(3) {
        text.push_str(&format!("; trial {}: {}", t.trial_id, t.error_message));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use mle_api::{HyperparameterMetric, Int64};

    fn trial(id: &str, state: JobState, value: Option<f64>) -> HyperparameterOutput {
        HyperparameterOutput {
            trial_id: id.into(),
            state,
            final_metric: value.map(|v| HyperparameterMetric {
                training_step: Int64(1),
                objective_value: v,
            }),
            ..HyperparameterOutput::default()
        }
    }

    #[test]
    fn trials_sort_best_first_then_running_then_the_rest() {
        let mut t = vec![
            trial("1", JobState::Failed, None),
            trial("2", JobState::Succeeded, Some(0.5)),
            trial("3", JobState::Running, Some(0.9)),
            trial("4", JobState::Succeeded, Some(0.7)),
            trial("5", JobState::Succeeded, Some(0.5)),
        ];
        sort_best_first(&mut t, Goal::Maximize);
        let ids: Vec<&str> = t.iter().map(|t| t.trial_id.as_str()).collect();
        assert_eq!(ids, ["4", "2", "5", "3", "1"]);
        sort_best_first(&mut t, Goal::Minimize);
        let ids: Vec<&str> = t.iter().map(|t| t.trial_id.as_str()).collect();
        assert_eq!(ids, ["2", "5", "4", "3", "1"]);
    }

    #[test]
    fn points_round_trip_through_the_trial_strings() {
        let spec: HyperparameterSpec = serde_json::from_str(
            r#"{"params": [
                {"parameterName": "lr", "type": "DOUBLE", "minValue": 0.0001, "maxValue": 0.1, "scaleType": "UNIT_LOG_SCALE"},
                {"parameterName": "layers", "type": "INTEGER", "minValue": 1, "maxValue": 15},
                {"parameterName": "opt", "type": "CATEGORICAL", "categoricalValues": ["adam", "sgd"]},
                {"parameterName": "batch", "type": "DISCRETE", "discreteValues": [16, 32, 64]}]}"#,
        )
        .unwrap();
        let tuner = tuner(&spec);
        for p in tuner.propose(&[], &[], 20).unwrap() {
            let strings = to_strings(&tuner.space, &p);
            assert_eq!(to_point(&tuner.space, &strings), Some(p));
        }
        let mut bad = BTreeMap::new();
        bad.insert("lr".to_string(), "7".to_string());
        assert_eq!(to_point(&tuner.space, &bad), None);
    }

    #[test]
    fn curves_fall_back_to_report_numbers_without_steps() {
        let mut t = trial("1", JobState::Running, None);
        t.all_metrics = [0.1, 0.2]
            .iter()
            .map(|v| HyperparameterMetric {
                training_step: Int64(0),
                objective_value: *v,
            })
            .collect();
        assert_eq!(curve(&t), vec![(1, 0.1), (2, 0.2)]);
        t.all_metrics[0].training_step = Int64(10);
        t.all_metrics[1].training_step = Int64(20);
        assert_eq!(curve(&t), vec![(10, 0.1), (20, 0.2)]);
    }
}
