//! What a replica started with a `TF_CONFIG` should do, for trainers built on the SDK and for
//! `mle train` alike.

use mle_tfconfig::{ReplicaRole, TfConfig};
use mle_train::{Exchange, TrainError};

use crate::{AllReduceExchange, Cluster, DistError, Options, PsExchange};

/// How replicas combine gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Parameter servers if the cluster has any, else ring all-reduce.
    #[default]
    Auto,
    /// Trainers pull parameters from and push gradients to the `ps` replicas.
    ParameterServer,
    /// Synchronous ring all-reduce among the chief/master and workers.
    AllReduce,
}

/// This process's job in the cluster.
pub enum Role {
    /// Train alone (no cluster, or a cluster of one).
    Single,
    /// Train as one replica with this exchange.
    Trainer(Box<dyn Exchange>),
    /// Serve parameters (blocks until the job ends).
    ParameterServer(Cluster),
    /// Evaluate checkpoints as they appear.
    Evaluator,
}

/// Reads `TF_CONFIG` and prepares this replica's role; `total` is the model's parameter count.
pub fn from_env(
    total: usize,
    strategy: Strategy,
    sync: bool,
    opts: &Options,
) -> Result<Role, TrainError> {
    let tf = TfConfig::from_env().map_err(TrainError::Config)?;
    for_config(&tf, total, strategy, sync, opts)
}

/// Prepares the role [`TfConfig::role`] decides for `tf` (the one place that decides it).
pub fn for_config(
    tf: &TfConfig,
    total: usize,
    strategy: Strategy,
    sync: bool,
    opts: &Options,
) -> Result<Role, TrainError> {
    match tf.role() {
        ReplicaRole::Evaluator => return Ok(Role::Evaluator),
        ReplicaRole::Single => return Ok(Role::Single),
        ReplicaRole::ParameterServer => {
            return Ok(Role::ParameterServer(Cluster::from_tf_config(tf)?));
        }
        ReplicaRole::Primary | ReplicaRole::Worker => {}
    }
    let c = Cluster::from_tf_config(tf)?;
    let use_ps = match strategy {
        Strategy::Auto => !c.ps.is_empty(),
        Strategy::ParameterServer if c.ps.is_empty() => {
            return Err(DistError::Cluster(
                "the parameter-server strategy needs ps replicas in TF_CONFIG".into(),
            )
            .into());
        }
        Strategy::ParameterServer => true,
        Strategy::AllReduce if !c.ps.is_empty() => {
            return Err(DistError::Cluster(
                "the all-reduce strategy uses no ps replicas, but TF_CONFIG has some".into(),
            )
            .into());
        }
        Strategy::AllReduce => false,
    };
    let x: Box<dyn Exchange> = if use_ps {
        Box::new(PsExchange::new(&c, total, sync, opts)?)
    } else {
        Box::new(AllReduceExchange::new(&c, opts)?)
    };
    Ok(Role::Trainer(x))
}
