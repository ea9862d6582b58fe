//! Metrics computed from predictions and labels on the CPU.

use crate::model::Task;
use crate::spec::Metric;

/// Running sums for the metrics of one evaluation pass.
#[derive(Debug, Clone, Default)]
pub struct MetricSums {
    rows: usize,
    loss: f64,
    sq: f64,
    abs: f64,
    correct: usize,
}

impl MetricSums {
    /// Adds a batch: its mean loss, its outputs (`rows × width`) and labels.
    pub fn add(&mut self, task: &Task, mean_loss: f32, outputs: &[f32], labels: &[f32]) {
        let rows = labels.len();
        if rows == 0 {
            return;
        }
        let width = outputs.len() / rows;
        self.rows += rows;
        self.loss += mean_loss as f64 * rows as f64;
        for (r, &y) in labels.iter().enumerate() {
            let out = &outputs[r * width..(r + 1) * width];
            match task {
                Task::Regression => {
                    let e = (out[0] - y) as f64;
                    self.sq += e * e;
                    self.abs += e.abs();
                }
                Task::Classification { .. } => {
                    if predicted_class(out) == y as usize {
                        self.correct += 1;
                    }
                }
            }
        }
    }

    /// Rows seen.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The value of one metric.
    pub fn value(&self, metric: Metric) -> f64 {
        let n = self.rows.max(1) as f64;
        match metric {
            Metric::Loss => self.loss / n,
            Metric::Rmse => (self.sq / n).sqrt(),
            Metric::Mae => self.abs / n,
            Metric::Accuracy => self.correct as f64 / n,
        }
    }
}

/// The most likely class of one output row (a single sigmoid output means class 1 when > 0.5).
pub fn predicted_class(out: &[f32]) -> usize {
    if out.len() == 1 {
        return usize::from(out[0] > 0.5);
    }
    out.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
        .0
}

/// Class scores of one output row (a single sigmoid output p becomes `[1 - p, p]`).
pub fn class_scores(out: &[f32]) -> Vec<f32> {
    if out.len() == 1 {
        vec![1.0 - out[0], out[0]]
    } else {
        out.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_and_classification_metrics() {
        let mut m = MetricSums::default();
        m.add(&Task::Regression, 2.0, &[1.0, 3.0], &[2.0, 1.0]);
        assert!((m.value(Metric::Rmse) - (2.5f64).sqrt()).abs() < 1e-12);
        assert_eq!(m.value(Metric::Mae), 1.5);
        assert_eq!(m.value(Metric::Loss), 2.0);
        let task = Task::Classification {
            classes: vec!["a".into(), "b".into()],
        };
        let mut c = MetricSums::default();
        c.add(
            &task,
            0.1,
            &[0.9, 0.1, 0.2, 0.8, 0.6, 0.4],
            &[0.0, 1.0, 1.0],
        );
        assert!((c.value(Metric::Accuracy) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(predicted_class(&[0.7]), 1);
        assert_eq!(class_scores(&[0.25]), vec![0.75, 0.25]);
    }
}
