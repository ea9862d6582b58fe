//! Model serving for mle: loads a servable directory (an mle export bundle or an ONNX model)
//! into a warm [`Servable`] run by tract, parses prediction instances in the forms CMLE
//! accepts (lists in signature order, objects of named features, CSV text lines), formats
//! predictions (numbers for regression, `{"classes", "scores"}` for classification), and
//! micro-batches concurrent requests ([`Batcher`]).
//!
//! ```no_run
//! let s = mle_predict::Servable::load(std::path::Path::new("jobs/iris/export/iris/1700000000")).unwrap();
//! let rows = mle_predict::parse_instances(&serde_json::json!([[5.1, 3.5, 1.4, 0.2]]), &s.signature).unwrap();
//! let out = s.predict(&rows, 1).unwrap();
//! println!("{}", s.signature.format(&out[..s.signature.width]));
//! ```

mod batch;
mod instance;
mod native;
mod offline;
mod servable;

pub use batch::{BatchOptions, Batcher};
pub use instance::{parse_csv_line, parse_instance, parse_instances};
pub use offline::{BatchSummary, LineFormat, expand_inputs, predict_files, predict_streams};
pub use servable::{Format, Output, Servable, Signature};

/// Serving errors. Messages are safe to show to clients (no internal paths beyond what the
/// caller gave).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model files cannot be used.
    #[error("{0}")]
    Load(String),
    /// A request is malformed (the message says which instance and why).
    #[error("{0}")]
    BadInput(String),
    /// The model failed at run time.
    #[error("prediction failed: {0}")]
    Run(String),
}
