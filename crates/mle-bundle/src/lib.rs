//! The export bundle's manifest, `mle_model.json` (format version 1): the one definition of
//! what an export says about its model — input signature, output kind and class names,
//! normalisation constants, layers — used by the writer (`mle-nn`'s export) and every reader
//! (`mle-nn`'s `Bundle::load`, `mle-predict`'s `Servable::load`, the server). No burn, no
//! tract: just the format, and the rule for finding the newest export of a job.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let m = mle_bundle::Manifest {
//!     format_version: mle_bundle::FORMAT_VERSION, name: "m".into(),
//!     inputs: vec![mle_bundle::InputFeature { name: "x".into(), dtype: "float32".into() }],
//!     output: mle_bundle::OutputSpec { kind: "regression".into(), width: 1, classes: vec![] },
//!     normalization: None, layers: vec![], loss: "mse".into(), global_step: 1,
//! };
//! std::fs::write(dir.path().join(mle_bundle::MANIFEST), m.to_json()).unwrap();
//! assert_eq!(mle_bundle::read(dir.path()).unwrap(), m);
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The manifest's file name in an export directory.
pub const MANIFEST: &str = "mle_model.json";

/// Version of the `mle_model.json` format written by this crate.
pub const FORMAT_VERSION: u32 = 1;

/// `mle_model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Model name.
    pub name: String,
    /// Input signature: the named features, in order.
    pub inputs: Vec<InputFeature>,
    /// What the outputs mean.
    pub output: OutputSpec,
    /// Standardisation applied to inputs before the first layer.
    pub normalization: Option<Normalization>,
    /// Resolved layers.
    pub layers: Vec<ManifestLayer>,
    /// Training loss.
    pub loss: String,
    /// Training step at export.
    pub global_step: u64,
}

/// One input feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputFeature {
    /// Column name.
    pub name: String,
    /// Always `float32`.
    pub dtype: String,
}

/// Output description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// `regression` or `classification`.
    pub kind: String,
    /// Values per row.
    pub width: usize,
    /// Class names (classification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

/// Per-feature standardisation constants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Means.
    pub mean: Vec<f32>,
    /// Standard deviations.
    pub std: Vec<f32>,
}

/// A resolved layer in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ManifestLayer {
    /// Dense.
    Dense {
        /// Output width.
        units: usize,
        /// Activation name.
        activation: String,
        /// Whether a bias is present.
        use_bias: bool,
    },
    /// Dropout (identity at inference).
    Dropout {
        /// Rate used in training.
        rate: f32,
    },
    /// Batch normalisation.
    BatchNormalization {
        /// Momentum used in training.
        momentum: f32,
        /// Epsilon.
        epsilon: f32,
    },
}

impl Manifest {
    /// The manifest as written to `mle_model.json` (pretty-printed JSON).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The input feature names, in signature order.
    pub fn input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|f| f.name.clone()).collect()
    }
}

/// Reads `<dir>/mle_model.json`; every error names the file and what is wrong (missing, not
/// valid JSON, a newer format version).
pub fn read(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{} is not an mle export (reading {MANIFEST}: {e})",
            dir.display()
        )
    })?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if manifest.format_version > FORMAT_VERSION {
        return Err(format!(
            "{}: format version {} is newer than this mle understands ({FORMAT_VERSION})",
            path.display(),
            manifest.format_version
        ));
    }
    Ok(manifest)
}

/// The newest export under `<job-dir>/export/<name>/` (largest timestamp directory name).
pub fn latest(export_root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(export_root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .map(|ts| (ts, e.path()))
        })
        .max_by_key(|(ts, _)| *ts)
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_timestamp_wins_and_bad_manifests_say_why() {
        let dir = tempfile::tempdir().unwrap();
        for ts in ["100", "9000", "notanumber"] {
            std::fs::create_dir_all(dir.path().join(ts)).unwrap();
        }
        assert_eq!(latest(dir.path()), Some(dir.path().join("9000")));
        assert!(read(dir.path()).unwrap_err().contains("not an mle export"));
        std::fs::write(dir.path().join(MANIFEST), "{").unwrap();
        assert!(read(dir.path()).unwrap_err().contains(MANIFEST));
        let newer = r#"{"format_version": 2, "name": "m", "inputs": [], "output": {"kind": "regression", "width": 1},
            "normalization": null, "layers": [], "loss": "mse", "global_step": 0}"#;
        std::fs::write(dir.path().join(MANIFEST), newer).unwrap();
        assert!(read(dir.path()).unwrap_err().contains("newer"));
    }
}
