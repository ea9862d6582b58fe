//! Checkpoints: `<job-dir>/checkpoints/ckpt-<step>.safetensors`, each one file holding the
//! parameters, the optimizer state, the moving statistics and where the input stream stands,
//! written atomically so that a process killed at any instant leaves only whole checkpoints.

use std::path::{Path, PathBuf};

use mle_data::Cursor;
use mle_nn::tensorfile::TensorFile;
use mle_nn::{Model, Optimizer};

use crate::TrainError;

const FORMAT: &str = "mle-checkpoint-1";

/// Everything needed to continue training exactly where it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Global step.
    pub step: u64,
    /// Input stream position.
    pub cursor: Cursor,
    /// Flat parameters.
    pub params: Vec<f32>,
    /// Optimizer updates so far.
    pub iterations: u64,
    /// Optimizer slots (full length each).
    pub slots: Vec<(String, Vec<f32>)>,
    /// Model buffers.
    pub buffers: Vec<(String, Vec<f32>)>,
}

fn path_for(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("ckpt-{step}.safetensors"))
}

/// Steps of the checkpoints in `dir`, ascending.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name
                .strip_prefix("ckpt-")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

impl Checkpoint {
    /// Captures the state of a run.
    pub fn capture<M: Model>(
        model: &M,
        params: &[f32],
        opt: &Optimizer,
        step: u64,
        cursor: Cursor,
    ) -> Self {
        Self {
            step,
            cursor,
            params: params.to_vec(),
            iterations: opt.iterations,
            slots: opt.slots.clone(),
            buffers: model.buffers(),
        }
    }

    /// Writes `dir/ckpt-<step>.safetensors` and deletes all but the newest `keep`.
    pub fn save<M: Model>(
        &self,
        model: &M,
        dir: &Path,
        keep: usize,
    ) -> Result<PathBuf, TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let mut f = TensorFile::default();
        for p in model.layout().params() {
            f.push(
                format!("params/{}", p.name),
                &p.shape,
                &self.params[p.range()],
            );
        }
        for (name, v) in &self.slots {
            f.push(format!("optimizer/{name}"), &[v.len()], v);
        }
        for (name, v) in &self.buffers {
            f.push(format!("buffers/{name}"), &[v.len()], v);
        }
        let meta = [
            ("format", FORMAT.to_string()),
            ("step", self.step.to_string()),
            ("epoch", self.cursor.epoch.to_string()),
            ("offset", self.cursor.offset.to_string()),
            ("iterations", self.iterations.to_string()),
            ("param_count", self.params.len().to_string()),
        ];
        f.metadata = meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let path = path_for(dir, self.step);
        f.write(&path)?;
        let all = list(dir);
        for (_, old) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
            let _ = std::fs::remove_file(old);
        }
        Ok(path)
    }

    /// Loads one checkpoint file for `model`, checking that it was written by the same model.
    pub fn load<M: Model>(model: &M, path: &Path) -> Result<Self, TrainError> {
        let f = TensorFile::read(path)?;
        let bad = |m: String| TrainError::Checkpoint(format!("{}: {m}", path.display()));
        let meta = |k: &str| -> Result<u64, TrainError> {
            f.metadata
                .get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("missing metadata '{k}'")))
        };
        if f.metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad("not an mle checkpoint".into()));
        }
        let layout = model.layout();
        let mut params = vec![0.0; layout.total()];
        for p in layout.params() {
            let t = f.get(&format!("params/{}", p.name)).ok_or_else(|| {
                bad(format!("it has no parameter '{}': it was written by a different model (use a fresh --job-dir)", p.name))
            })?;
            if t.shape != p.shape {
                return Err(bad(format!(
                    "parameter '{}' has shape {:?}, the model has {:?}: it was written by a different model (use a fresh --job-dir)",
                    p.name, t.shape, p.shape
                )));
            }
            params[p.range()].copy_from_slice(&t.values);
        }
        let pick = |prefix: &str| -> Vec<(String, Vec<f32>)> {
            f.tensors
                .iter()
                .filter_map(|t| {
                    t.name
                        .strip_prefix(prefix)
                        .map(|n| (n.to_string(), t.values.clone()))
                })
                .collect()
        };
        Ok(Self {
            step: meta("step")?,
            cursor: Cursor {
                epoch: meta("epoch")?,
                offset: meta("offset")? as usize,
            },
            params,
            iterations: meta("iterations")?,
            slots: pick("optimizer/"),
            buffers: pick("buffers/"),
        })
    }

    /// The newest readable checkpoint in `dir`; unreadable ones are reported and skipped.
    pub fn latest<M: Model>(model: &M, dir: &Path) -> Result<Option<Self>, TrainError> {
        for (_, path) in list(dir).into_iter().rev() {
            match Self::load(model, &path) {
                Ok(c) => return Ok(Some(c)),
                Err(TrainError::Checkpoint(m)) if m.contains("different model") => {
                    return Err(TrainError::Checkpoint(m));
                }
                Err(e) => eprintln!(
                    "warning: skipping unreadable checkpoint {}: {e}",
                    path.display()
                ),
            }
        }
        Ok(None)
    }

    /// Restores the optimizer and model buffers from this checkpoint.
    pub fn restore<M: Model>(&self, model: &mut M, opt: &mut Optimizer) -> Result<(), TrainError> {
        for (name, v) in &self.buffers {
            model.set_buffer(name, v)?;
        }
        for (name, slot) in &mut opt.slots {
            match self.slots.iter().find(|(n, _)| n == name) {
                Some((_, v)) if v.len() == slot.len() => slot.copy_from_slice(v),
                _ => {
                    return Err(TrainError::Checkpoint(format!(
                        "the checkpoint has no optimizer state '{name}': it was written with another optimizer (use a fresh --job-dir)"
                    )));
                }
            }
        }
        opt.iterations = self.iterations;
        Ok(())
    }
}
