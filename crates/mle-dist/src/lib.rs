//! Data-parallel training over TCP for mle: the cluster from `TF_CONFIG`, our own framed
//! transport (versioned length-prefixed frames, connect with retry, heartbeats, timeouts that
//! name the dead replica), ring all-reduce, and parameter servers that hold shards of the flat
//! parameter vector and apply the optimizer to them.
//!
//! [`AllReduceExchange`] and [`PsExchange`] plug into [`mle_train::Trainer::with_exchange`]; a
//! parameter-server replica runs [`ps::serve`].
//!
//! ```no_run
//! use mle_dist::{Cluster, Options};
//! let tf = mle_dist::TfConfig::from_env().unwrap();
//! let cluster = Cluster::from_tf_config(&tf).unwrap();
//! println!("{} trainers, {} parameter servers", cluster.trainers.len(), cluster.ps.len());
//! ```

mod cluster;
mod exchange;
pub mod ps;
pub mod ring;
mod role;
pub mod wire;

pub use cluster::{Cluster, Options};
pub use exchange::{AllReduceExchange, PsExchange};
pub use mle_tfconfig::{ReplicaRole, TfConfig};
pub use role::{Role, Strategy, for_config, from_env};

/// Errors of distributed training; every one names the replica concerned.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A peer closed its connection or sent nothing (not even a heartbeat) in time.
    #[error("{peer} stopped answering ({why})")]
    PeerDead {
        /// e.g. `worker 1 at localhost:27185`.
        peer: String,
        /// What was observed.
        why: String,
    },
    /// A peer could not be reached before the deadline.
    #[error("cannot reach {peer} after {secs} s: {why}")]
    Unreachable {
        /// The replica.
        peer: String,
        /// Seconds tried.
        secs: u64,
        /// Last error.
        why: String,
    },
    /// A peer broke the protocol or reported an error.
    #[error("{peer}: {why}")]
    Protocol {
        /// The replica.
        peer: String,
        /// What went wrong.
        why: String,
    },
    /// Listening on this replica's address failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The cluster description is unusable.
    #[error("invalid cluster: {0}")]
    Cluster(String),
}

impl From<DistError> for mle_train::TrainError {
    fn from(e: DistError) -> Self {
        mle_train::TrainError::Config(e.to_string())
    }
}
