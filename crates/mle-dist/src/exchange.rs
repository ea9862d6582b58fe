//! [`mle_train::Exchange`] over the ring and over parameter servers.

use std::time::{Duration, Instant};

use mle_data::Cursor;
use mle_nn::Optimizer;
use mle_train::{Exchange, Partition, StartState, TrainError};

use crate::cluster::Cluster;
use crate::ps::{PsClient, Pulled};
use crate::ring::Ring;
use crate::wire::{Dec, Enc};
use crate::{DistError, Options};

/// Synchronous data parallelism with ring all-reduce: every trainer computes gradients on its
/// slice of the same global batch, the mean gradient is all-reduced, and every trainer applies
/// the same optimizer step, so all hold identical parameters.
pub struct AllReduceExchange {
    ring: Ring,
}

impl AllReduceExchange {
    /// Joins the ring of `cluster.trainers`.
    pub fn new(cluster: &Cluster, opts: &Options) -> Result<Self, DistError> {
        Ok(Self {
            ring: Ring::join(cluster, opts)?,
        })
    }
}

fn encode_state(s: &StartState) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(s.step)
        .u64(s.cursor.epoch)
        .u64(s.cursor.offset as u64)
        .u64(s.optimizer.iterations)
        .f32s(&s.params);
    e.u64(s.optimizer.slots.len() as u64);
    for (_, v) in &s.optimizer.slots {
        e.f32s(v);
    }
    e.0
}

fn decode_state(bytes: &[u8], mut local: StartState) -> Result<StartState, DistError> {
    let mut d = Dec::new(bytes, "the primary");
    local.step = d.u64()?;
    local.cursor = Cursor {
        epoch: d.u64()?,
        offset: d.u64()? as usize,
    };
    local.optimizer.iterations = d.u64()?;
    let params = d.f32s()?;
    if params.len() != local.params.len() {
        return Err(DistError::Protocol {
            peer: "the primary".into(),
            why: format!(
                "sent {} parameters, this model has {}",
                params.len(),
                local.params.len()
            ),
        });
    }
    local.params = params;
    let n = d.u64()? as usize;
    if n != local.optimizer.slots.len() {
        return Err(DistError::Protocol {
            peer: "the primary".into(),
            why: "uses a different optimizer".into(),
        });
    }
    for (_, slot) in local.optimizer.slots.iter_mut() {
        *slot = d.f32s()?;
    }
    Ok(local)
}

impl Exchange for AllReduceExchange {
    fn is_primary(&self) -> bool {
        self.ring.rank() == 0
    }

    fn partition(&self) -> Partition {
        Partition::Slice {
            rank: self.ring.rank(),
            world: self.ring.world(),
        }
    }

    fn start(&mut self, local: StartState, _max_steps: u64) -> Result<StartState, TrainError> {
        let bytes = self.ring.broadcast(encode_state(&local))?;
        if self.is_primary() {
            Ok(local)
        } else {
            Ok(decode_state(&bytes, local)?)
        }
    }

    fn step(
        &mut self,
        params: &mut Vec<f32>,
        grads: &mut [f32],
        opt: &mut Optimizer,
        lr: f64,
        step: u64,
    ) -> Result<Option<u64>, TrainError> {
        self.ring.allreduce_mean(grads)?;
        opt.step(params, grads, lr);
        Ok(Some(step + 1))
    }
}

/// Parameter-server data parallelism: pull parameters, push gradients; the servers apply the
/// optimizer. Asynchronous unless `sync` (then each step averages one push per trainer).
pub struct PsExchange {
    client: PsClient,
    rank: usize,
    world: usize,
    sync: bool,
    opts: Options,
}

impl PsExchange {
    /// Connects to every parameter server of `cluster` for a model of `total` parameters.
    pub fn new(
        cluster: &Cluster,
        total: usize,
        sync: bool,
        opts: &Options,
    ) -> Result<Self, DistError> {
        let rank = cluster
            .rank()
            .ok_or_else(|| DistError::Cluster(format!("{} is not a trainer", cluster.me)))?;
        Ok(Self {
            client: PsClient::connect(cluster, total, opts)?,
            rank,
            world: cluster.trainers.len(),
            sync,
            opts: *opts,
        })
    }
}

impl Exchange for PsExchange {
    fn is_primary(&self) -> bool {
        self.rank == 0
    }

    fn partition(&self) -> Partition {
        Partition::Shard {
            rank: self.rank,
            world: self.world,
        }
    }

    fn start(&mut self, mut local: StartState, max_steps: u64) -> Result<StartState, TrainError> {
        if self.is_primary() {
            let sync = if self.sync { self.world } else { 0 };
            self.client
                .init(local.step, max_steps, sync, &local.params, &local.optimizer)?;
        }
        // Workers wait for the primary to initialise the servers.
        let started = Instant::now();
        loop {
            match self.client.pull(&mut local.params)? {
                Pulled::Step(s) => {
                    local.step = s;
                    return Ok(local);
                }
                Pulled::Done => {
                    local.step = u64::MAX;
                    return Ok(local);
                }
                Pulled::NotReady if started.elapsed() < self.opts.connect_timeout => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Pulled::NotReady => {
                    return Err(DistError::Unreachable {
                        peer: "the parameter servers".into(),
                        secs: self.opts.connect_timeout.as_secs(),
                        why: "the primary never initialised them".into(),
                    }
                    .into());
                }
            }
        }
    }

    fn step(
        &mut self,
        params: &mut Vec<f32>,
        grads: &mut [f32],
        _opt: &mut Optimizer,
        lr: f64,
        _step: u64,
    ) -> Result<Option<u64>, TrainError> {
        if self.client.push(grads, lr)?.is_none() {
            return Ok(None);
        }
        match self.client.pull(params)? {
            Pulled::Step(s) => Ok(Some(s)),
            Pulled::Done | Pulled::NotReady => Ok(None),
        }
    }

    fn sync_state(
        &mut self,
        params: &mut Vec<f32>,
        opt: &mut Optimizer,
    ) -> Result<Option<u64>, TrainError> {
        Ok(Some(self.client.snapshot(params, opt)?))
    }

    fn finish(&mut self) -> Result<(), TrainError> {
        if self.is_primary() {
            self.client.shutdown()?;
        }
        Ok(())
    }
}
