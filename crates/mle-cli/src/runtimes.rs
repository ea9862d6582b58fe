//! The runtime flags `mle server` and `mle local train` share: `--python` (the default
//! interpreter) and `--runtime VERSION[/PYTHON_VERSION]=INTERPRETER` (repeatable), one
//! definition for both, so that the two choose a job's interpreter alike.

use clap::Args;

/// `--python` and `--runtime`.
#[derive(Args, Clone)]
pub struct RuntimeFlags {
    /// The Python interpreter of trainers that name no runtime version (and of every one when
    /// no --runtime is given).
    #[arg(
        long,
        value_name = "INTERPRETER",
        env = "MLE_PYTHON",
        default_value = "python3"
    )]
    pub python: String,
    /// A runtime version and its interpreter (repeatable):
    /// `VERSION[/PYTHON_VERSION]=INTERPRETER`, e.g. `--runtime 2.11=/opt/tf211/bin/python3`.
    /// A Python job whose runtimeVersion (and pythonVersion) matches none is refused, naming
    /// these; one that names none runs on --python. Without any --runtime, every job runs on
    /// --python whatever version it names.
    #[arg(long, value_name = "VERSION=INTERPRETER", value_parser = mle_exec::Runtime::parse)]
    pub runtime: Vec<mle_exec::Runtime>,
}

impl RuntimeFlags {
    /// The runtimes these flags give.
    pub fn runtimes(&self) -> mle_exec::Runtimes {
        mle_exec::Runtimes {
            default: self.python.clone(),
            listed: self.runtime.clone(),
        }
    }
}
