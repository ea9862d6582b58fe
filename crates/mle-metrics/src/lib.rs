//! The two ways a trainer reports metrics (DESIGN §2.1), written by trainers and read by the
//! tuning service: TensorBoard event files ([`events`]) and the `cloudml-hypertune` metric
//! file ([`hypertune`]). Both readers return [`Report`]s, so the service treats them alike.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("output.metrics");
//! let mut r = mle_metrics::hypertune::Reporter::new(path.clone(), "1".into());
//! r.report("accuracy", 0.9, 100).unwrap();
//! let reports = mle_metrics::hypertune::read(&path, "accuracy").unwrap();
//! assert_eq!((reports[0].step, reports[0].value), (100, 0.9));
//! ```

pub mod events;
pub mod hypertune;

/// One reported value of a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// Global step (0 when the trainer gave none).
    pub step: u64,
    /// The value.
    pub value: f64,
    /// When it was reported (seconds since the Unix epoch).
    pub time: f64,
}
