//! Seeded shuffling and batching over repeated epochs, resumable from a [`Cursor`].

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::Dataset;

/// Where a [`BatchStream`] stands: enough to resume the exact same sequence of batches after a
/// restart (the permutation of an epoch is a pure function of the seed and the epoch number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Completed epochs.
    pub epoch: u64,
    /// Rows of the current epoch already handed out.
    pub offset: usize,
}

/// An endless stream of batches: each epoch is a fresh seeded permutation of the rows, and a
/// batch may straddle two epochs (like `dataset.repeat().batch(n)` in TensorFlow).
pub struct BatchStream<'a> {
    data: &'a Dataset,
    batch_size: usize,
    seed: u64,
    shuffle: bool,
    cursor: Cursor,
    order: Vec<usize>,
}

impl<'a> BatchStream<'a> {
    /// A stream starting at `cursor`.
    pub fn new(
        data: &'a Dataset,
        batch_size: usize,
        seed: u64,
        shuffle: bool,
        cursor: Cursor,
    ) -> Self {
        assert!(
            batch_size > 0 && !data.is_empty(),
            "non-empty data and batches"
        );
        let mut s = Self {
            data,
            batch_size,
            seed,
            shuffle,
            cursor,
            order: Vec::new(),
        };
        s.order = s.permutation(cursor.epoch);
        s
    }

    fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.data.len()).collect();
        if self.shuffle {
            let mut rng =
                ChaCha8Rng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            order.shuffle(&mut rng);
        }
        order
    }

    /// The position after the last batch handed out.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Fills `x` (row-major) and `y` with the next batch.
    pub fn next_into(&mut self, x: &mut Vec<f32>, y: &mut Vec<f32>) {
        x.clear();
        y.clear();
        for _ in 0..self.batch_size {
            if self.cursor.offset == self.order.len() {
                self.cursor = Cursor {
                    epoch: self.cursor.epoch + 1,
                    offset: 0,
                };
                self.order = self.permutation(self.cursor.epoch);
            }
            let row = self.order[self.cursor.offset];
            x.extend_from_slice(self.data.row(row));
            y.push(self.data.labels()[row]);
            self.cursor.offset += 1;
        }
    }

    /// Fractional epochs consumed so far.
    pub fn epochs(&self) -> f64 {
        self.cursor.epoch as f64 + self.cursor.offset as f64 / self.order.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Dataset {
        Dataset::from_parts(
            (0..n).map(|i| i as f32).collect(),
            (0..n).map(|i| i as f32).collect(),
            1,
        )
    }

    #[test]
    fn every_epoch_is_a_permutation_and_batches_straddle_epochs() {
        let d = data(5);
        let mut s = BatchStream::new(&d, 3, 7, true, Cursor::default());
        let (mut x, mut y) = (vec![], vec![]);
        let mut seen = vec![];
        for _ in 0..5 {
            s.next_into(&mut x, &mut y);
            assert_eq!(x, y);
            seen.extend_from_slice(&y);
        }
        for epoch in seen.chunks(5) {
            let mut e = epoch.to_vec();
            e.sort_by(f32::total_cmp);
            assert_eq!(e, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        }
        assert_eq!(
            s.cursor(),
            Cursor {
                epoch: 2,
                offset: 5
            }
        );
    }

    #[test]
    fn resuming_from_a_cursor_replays_the_same_batches() {
        let d = data(7);
        let (mut x, mut y) = (vec![], vec![]);
        let mut a = BatchStream::new(&d, 2, 1, true, Cursor::default());
        for _ in 0..5 {
            a.next_into(&mut x, &mut y);
        }
        let mut b = BatchStream::new(&d, 2, 1, true, a.cursor());
        let (mut x2, mut y2) = (vec![], vec![]);
        for _ in 0..6 {
            a.next_into(&mut x, &mut y);
            b.next_into(&mut x2, &mut y2);
            assert_eq!(x, x2);
        }
    }
}
