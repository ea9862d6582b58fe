//! Per-feature standardisation computed on the training data and stored with the model.

use crate::Dataset;

/// `x' = (x - mean) / std` per feature; a constant feature keeps std 1 so it maps to 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalizer {
    /// Per-feature means.
    pub mean: Vec<f32>,
    /// Per-feature standard deviations (population), never 0.
    pub std: Vec<f32>,
}

impl Normalizer {
    /// Computes the statistics of `data` in f64 for accuracy.
    pub fn fit(data: &Dataset) -> Self {
        let w = data.width();
        let n = data.len().max(1) as f64;
        let mut mean = vec![0f64; w];
        for i in 0..data.len() {
            for (m, &x) in mean.iter_mut().zip(data.row(i)) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; w];
        for i in 0..data.len() {
            for ((v, &x), m) in var.iter_mut().zip(data.row(i)).zip(&mean) {
                *v += (x as f64 - m).powi(2);
            }
        }
        let std = var
            .iter()
            .map(|v| {
                let s = (v / n).sqrt();
                if s > 1e-12 { s as f32 } else { 1.0 }
            })
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }

    /// Normalises one row in place.
    pub fn apply_row(&self, row: &mut [f32]) {
        for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
            *x = (*x - m) / s;
        }
    }

    /// Normalises every row of `data` in place.
    pub fn apply(&self, data: &mut Dataset) {
        let w = data.width();
        for row in data.features_mut().chunks_mut(w) {
            self.apply_row(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardises_to_zero_mean_unit_variance() {
        let mut ds = Dataset::from_parts(vec![1.0, 5.0, 3.0, 5.0], vec![0.0, 0.0], 2);
        let n = Normalizer::fit(&ds);
        assert_eq!(n.mean, vec![2.0, 5.0]);
        assert_eq!(n.std, vec![1.0, 1.0]);
        n.apply(&mut ds);
        assert_eq!(ds.features(), &[-1.0, 0.0, 1.0, 0.0]);
    }
}
