//! Named `f32` tensors in safetensors files, with string metadata. Used for exported weights and
//! for checkpoints (parameters, optimizer slots and moving statistics in one file).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::NnError;

/// A named tensor: shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Tensor name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values.
    pub values: Vec<f32>,
}

/// The contents of a tensor file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorFile {
    /// Tensors in name order.
    pub tensors: Vec<NamedTensor>,
    /// String metadata (`__metadata__`).
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// Adds a tensor.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize], values: &[f32]) {
        self.tensors.push(NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            values: values.to_vec(),
        });
    }

    /// Looks a tensor up.
    pub fn get(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, NnError> {
        let bytes: Vec<Vec<u8>> = self
            .tensors
            .iter()
            .map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let views = self
            .tensors
            .iter()
            .zip(&bytes)
            .map(|(t, b)| {
                TensorView::new(Dtype::F32, t.shape.clone(), b)
                    .map(|v| (t.name.clone(), v))
                    .map_err(|e| NnError::Export(format!("tensor '{}': {e}", t.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let meta = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        safetensors::tensor::serialize(views, meta).map_err(|e| NnError::Export(e.to_string()))
    }

    /// Parses safetensors bytes (only `F32` tensors are accepted).
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self, NnError> {
        let bad =
            |e: String| NnError::Checkpoint(format!("{source}: not a valid safetensors file: {e}"));
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let mut names: Vec<&str> = st.names();
        names.sort();
        let mut out = TensorFile {
            metadata: meta.metadata().clone().unwrap_or_default(),
            ..Default::default()
        };
        for name in names {
            let view = st.tensor(name).map_err(|e| bad(e.to_string()))?;
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor '{name}' is {:?}, expected F32",
                    view.dtype()
                )));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            out.tensors.push(NamedTensor {
                name: name.into(),
                shape: view.shape().to_vec(),
                values,
            });
        }
        Ok(out)
    }

    /// Writes atomically: a temporary file in the same directory, then a rename, so a crash
    /// never leaves a half-written file under the final name.
    pub fn write(&self, path: &Path) -> Result<(), NnError> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// Reads a file.
    pub fn read(path: &Path) -> Result<Self, NnError> {
        let bytes = std::fs::read(path).map_err(|source| NnError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NnError> {
    let io = |source| NnError::Io {
        path: path.into(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_values_shapes_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let mut f = TensorFile::default();
        f.push("b", &[1, 2], &[1.5, -2.0]);
        f.push("a", &[3], &[0.0, 1e-30, f32::MAX]);
        f.metadata.insert("step".into(), "12".into());
        f.write(&path).unwrap();
        let g = TensorFile::read(&path).unwrap();
        assert_eq!(g.get("a"), f.get("a"));
        assert_eq!(g.get("b"), f.get("b"));
        assert_eq!(g.metadata["step"], "12");
        let err = TensorFile::from_bytes(b"garbage", "x")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x: not a valid safetensors file"), "{err}");
    }
}
