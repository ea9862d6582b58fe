//! The median stopping rule (Golovin et al., "Google Vizier: a service for black-box
//! optimization", KDD 2017, §3.2.2): stop a trial at step s when its best value so far is worse
//! than the median of the completed trials' running averages up to step s.

use crate::Goal;

/// Whether the running trial (its `(step, value)` reports, ascending steps) should stop, given
/// the completed trials' report curves; needs at least `min_completed` completed trials with a
/// report at or before the trial's current step.
pub fn median_stop(
    goal: Goal,
    running: &[(u64, f64)],
    completed: &[Vec<(u64, f64)>],
    min_completed: usize,
) -> bool {
    let Some(&(step, _)) = running.last() else {
        return false;
    };
    let best = running
        .iter()
        .map(|r| r.1)
        .fold(None, |acc: Option<f64>, v| match acc {
            Some(b) if !goal.better(v, b) => Some(b),
            _ => Some(v),
        });
    let Some(best) = best else { return false };
    let mut averages: Vec<f64> = completed
        .iter()
        .filter_map(|curve| {
            let upto: Vec<f64> = curve
                .iter()
                .filter(|(s, _)| *s <= step)
                .map(|(_, v)| *v)
                .collect();
            (!upto.is_empty()).then(|| upto.iter().sum::<f64>() / upto.len() as f64)
        })
        .collect();
    if averages.len() < min_completed.max(1) {
        return false;
    }
    averages.sort_by(f64::total_cmp);
    let m = averages.len();
    let median = if m % 2 == 1 {
        averages[m / 2]
    } else {
        (averages[m / 2 - 1] + averages[m / 2]) / 2.0
    };
    goal.better(median, best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_only_trials_worse_than_the_median() {
        let done = vec![
            vec![(1, 0.5), (2, 0.7)],
            vec![(1, 0.6), (2, 0.8)],
            vec![(1, 0.2), (2, 0.3)],
        ];
        // Running averages at step 2: 0.6, 0.7, 0.25 → median 0.6.
        assert!(median_stop(Goal::Maximize, &[(1, 0.3), (2, 0.4)], &done, 2));
        assert!(!median_stop(
            Goal::Maximize,
            &[(1, 0.3), (2, 0.65)],
            &done,
            2
        ));
        assert!(
            !median_stop(Goal::Maximize, &[(1, 0.1)], &done, 4),
            "too few completed trials"
        );
        assert!(median_stop(Goal::Minimize, &[(2, 0.9)], &done, 2));
    }
}
