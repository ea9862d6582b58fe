//! How the replicas of a data-parallel job combine their work each step. A single process uses
//! [`Local`]; `mle-dist` implements ring all-reduce and parameter servers over TCP.

use mle_data::Cursor;
use mle_nn::Optimizer;

use crate::TrainError;

/// The state training starts from: fresh or from a checkpoint.
#[derive(Debug, Clone)]
pub struct StartState {
    /// Global step.
    pub step: u64,
    /// Input stream position.
    pub cursor: Cursor,
    /// Flat parameters.
    pub params: Vec<f32>,
    /// Optimizer (slots and iteration count).
    pub optimizer: Optimizer,
}

/// Which rows a replica trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// Every row (a single process).
    Whole,
    /// Rows `[rank·b, (rank+1)·b)` of each global batch of `world·b` rows: every replica walks
    /// the same global stream, so synchronous training equals one process at batch `world·b`.
    Slice {
        /// This replica's rank.
        rank: usize,
        /// Replicas.
        world: usize,
    },
    /// Its own shard of the rows (`Dataset::shard(rank, world)`) with its own stream, as in
    /// TensorFlow's between-graph replication.
    Shard {
        /// This replica's rank.
        rank: usize,
        /// Replicas.
        world: usize,
    },
}

/// Gradient exchange between replicas.
pub trait Exchange {
    /// Whether this replica evaluates, checkpoints, reports and exports.
    fn is_primary(&self) -> bool;

    /// Which rows this replica trains on.
    fn partition(&self) -> Partition;

    /// Agrees on the starting state: the primary sends its own (fresh or restored), the others
    /// receive it. `max_steps` is the job's step budget.
    fn start(&mut self, local: StartState, max_steps: u64) -> Result<StartState, TrainError>;

    /// Applies one step with this replica's gradients (computed on `params`): afterwards
    /// `params` holds the parameters to compute the next gradients on. Returns the global step,
    /// or `None` when the job's training is over.
    fn step(
        &mut self,
        params: &mut Vec<f32>,
        grads: &mut [f32],
        opt: &mut Optimizer,
        lr: f64,
        step: u64,
    ) -> Result<Option<u64>, TrainError>;

    /// Brings `params` and `opt` up to date with the whole job's state (before a checkpoint or
    /// the export).
    fn sync_state(
        &mut self,
        _params: &mut Vec<f32>,
        _opt: &mut Optimizer,
    ) -> Result<Option<u64>, TrainError> {
        Ok(None)
    }

    /// Training ended on this replica (the primary tells parameter servers to stop).
    fn finish(&mut self) -> Result<(), TrainError> {
        Ok(())
    }
}

/// One process: apply the optimizer to the local gradients.
pub struct Local;

impl Exchange for Local {
    fn is_primary(&self) -> bool {
        true
    }

    fn partition(&self) -> Partition {
        Partition::Whole
    }

    fn start(&mut self, local: StartState, _max_steps: u64) -> Result<StartState, TrainError> {
        Ok(local)
    }

    fn step(
        &mut self,
        params: &mut Vec<f32>,
        grads: &mut [f32],
        opt: &mut Optimizer,
        lr: f64,
        step: u64,
    ) -> Result<Option<u64>, TrainError> {
        opt.step(params, grads, lr);
        Ok(Some(step + 1))
    }
}
