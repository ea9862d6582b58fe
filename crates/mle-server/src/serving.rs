//! Serving state: the [`Registry`] of warm versions and cached lookups, and [`Serving`], which
//! loads versions (copying a new version's files into the server's model store, then READY or
//! FAILED and the end of its operation), resumes versions a stopped server left CREATING, and
//! routes a prediction to the batcher of the version it addresses without touching the
//! database once warm. Every change to a version goes through [`Serving::update_version`],
//! which clears the cached lookups.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use axum::http::StatusCode;
use mle_api::{Framework, Operation, Version, VersionState};
use mle_predict::{BatchOptions, Batcher, Format, Servable};
use serde_json::json;

use crate::catalog::{MAX_MODEL_BYTES, Source, fetch, resolve, source, version_dir, version_out};
use crate::config::Config;
use crate::db::{Db, DbError, Kind};
use crate::error::PredictError;
use crate::operations;

/// `(project, model, version)`.
type VersionKey = (String, String, String);

/// `project/model/version` (`project/model/` for the default version).
fn route_key(project: &str, model: &str, version: Option<&str>) -> String {
    let v = version.unwrap_or("");
    let mut k = String::with_capacity(project.len() + model.len() + v.len() + 2);
    k.push_str(project);
    k.push('/');
    k.push_str(model);
    k.push('/');
    k.push_str(v);
    k
}

/// Loaded versions, by `(project, model, version)`, and the answers of recent
/// `(project, model, version or default)` lookups, so that a prediction touches no database.
#[derive(Default)]
pub struct Registry {
    loaded: RwLock<HashMap<VersionKey, Arc<Batcher>>>,
    routes: RwLock<HashMap<String, (String, Arc<Batcher>)>>,
}

impl Registry {
    fn route(&self, key: &str) -> Option<(String, Arc<Batcher>)> {
        self.routes.read().ok()?.get(key).cloned()
    }

    fn put_route(&self, key: String, version: String, b: Arc<Batcher>) {
        if let Ok(mut m) = self.routes.write() {
            m.insert(key, (version, b));
        }
    }

    fn clear_routes(&self) {
        if let Ok(mut m) = self.routes.write() {
            m.clear();
        }
    }

    fn get(&self, key: &VersionKey) -> Option<Arc<Batcher>> {
        self.loaded.read().ok()?.get(key).cloned()
    }

    fn put(&self, key: VersionKey, b: Arc<Batcher>) {
        if let Ok(mut m) = self.loaded.write() {
            m.insert(key, b);
        }
    }

    fn remove(&self, key: &VersionKey) {
        if let Ok(mut m) = self.loaded.write() {
            m.remove(key);
        }
        self.clear_routes();
    }
}

/// Copies a version's files from `source` (a local directory, or a bucket's model downloaded)
/// to `dir` (through a sibling renamed at the end) and loads them. Blocking.
fn store_and_load(source: &Source, dir: &Path) -> Result<Batcher, String> {
    let tmp = dir.with_extension("incoming");
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(dir);
    let stored = match source {
        Source::Dir(from) => {
            let mut budget = MAX_MODEL_BYTES;
            copy_dir(from, &tmp, &mut budget)
                .map_err(|e| format!("cannot copy the model files: {e}"))
        }
        Source::Bucket(_) => fetch(source, &tmp)
            .map(drop)
            .map_err(|e| format!("cannot copy the model files: {e}")),
    };
    if let Err(e) = stored {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dir).map_err(|e| format!("cannot store the model files: {e}"))?;
    let servable = Servable::load(dir).map_err(|e| e.to_string())?;
    Ok(Batcher::new(servable, BatchOptions::default()))
}

/// Copies regular files and directories (symlinks and special files are not copied), within
/// `budget` bytes in all.
fn copy_dir(from: &Path, to: &Path, budget: &mut u64) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let kind = e.file_type()?;
        if kind.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()), budget)?;
        } else if kind.is_file() {
            let len = e.metadata()?.len();
            if len > *budget {
                return Err(std::io::Error::other(format!(
                    "the model directory holds more than {} MiB",
                    MAX_MODEL_BYTES >> 20
                )));
            }
            *budget -= len;
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Versions: loading, routing, changes.
pub struct Serving {
    db: Db,
    cfg: Arc<Config>,
    registry: Registry,
}

impl Serving {
    /// Serving over `db`, with nothing loaded yet.
    pub fn new(db: Db, cfg: Arc<Config>) -> Arc<Self> {
        Arc::new(Self {
            db,
            cfg,
            registry: Registry::default(),
        })
    }

    /// Read-modify-write of a version; clears the cached lookups.
    pub async fn update_version(
        &self,
        project: &str,
        model: &str,
        version: &str,
        f: impl Fn(&mut Version),
    ) -> Result<Version, DbError> {
        let r = self
            .db
            .update(Kind::Version, project, model, version, f)
            .await;
        self.registry.clear_routes();
        r.map(version_out)
    }

    /// Forgets every cached lookup (a model was deleted).
    pub fn forget_routes(&self) {
        self.registry.clear_routes();
    }

    /// Unloads a deleted version and removes its files.
    pub fn unload(&self, project: &str, model: &str, version: &str) {
        self.registry
            .remove(&(project.into(), model.into(), version.into()));
        let _ = std::fs::remove_dir_all(version_dir(&self.cfg, project, model, version));
    }

    /// Copies and loads a CREATING version, then marks it READY or FAILED and ends its
    /// operation `op_id`.
    pub async fn finish_version(
        &self,
        project: &str,
        model: &str,
        version: &str,
        op_id: &str,
        source: Source,
    ) {
        let dir = version_dir(&self.cfg, project, model, version);
        let dir2 = dir.clone();
        let loaded = tokio::task::spawn_blocking(move || store_and_load(&source, &dir2))
            .await
            .unwrap_or_else(|e| Err(format!("loading failed: {e}")));
        let error = match loaded {
            Ok(b) => {
                let framework = match b.servable.signature.format {
                    Format::Mle => Framework::Mle,
                    Format::Onnx => Framework::Onnx,
                };
                self.registry
                    .put((project.into(), model.into(), version.into()), Arc::new(b));
                let _ = self
                    .update_version(project, model, version, |v| {
                        v.state = VersionState::Ready;
                        v.framework = framework;
                    })
                    .await;
                None
            }
            Err(message) => {
                let _ = std::fs::remove_dir_all(&dir);
                let _ = self
                    .update_version(project, model, version, |v| {
                        v.state = VersionState::Failed;
                        v.error_message = message.clone();
                    })
                    .await;
                Some(message)
            }
        };
        let final_version = self
            .db
            .get::<Version>(Kind::Version, project, model, version)
            .await
            .ok()
            .map(version_out);
        let mut response = serde_json::to_value(&final_version).unwrap_or_default();
        response["@type"] = json!("type.googleapis.com/google.cloud.ml.v1.Version");
        let response = error.is_none().then_some(response);
        if !op_id.is_empty() {
            let _ = operations::end(&self.db, project, op_id, error.as_deref(), response).await;
        }
    }

    /// Versions left CREATING by a server that stopped: create them again from their source.
    pub async fn resume_versions(self: &Arc<Self>) -> Result<(), DbError> {
        for rec in self.db.all::<Version>(Kind::Version).await? {
            let v = &rec.value;
            if v.state != VersionState::Creating {
                continue;
            }
            let ops = self.db.all::<Operation>(Kind::Operation).await?;
            let op_id = ops
                .iter()
                .find(|o| {
                    !o.value.done
                        && o.value.metadata["version"]["name"].as_str() == Some(v.name.as_str())
                })
                .map(|o| o.name.clone())
                .unwrap_or_default();
            match source(&v.deployment_uri, self.cfg.paths()) {
                Ok(src) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.finish_version(&rec.project, &rec.parent, &rec.name, &op_id, src)
                            .await;
                    });
                }
                Err(e) => {
                    let _ = self
                        .update_version(&rec.project, &rec.parent, &rec.name, |v| {
                            v.state = VersionState::Failed;
                            v.error_message = e.clone();
                        })
                        .await;
                }
            }
        }
        Ok(())
    }

    /// The warm batcher of a READY version (loaded from its stored files on first use).
    pub async fn batcher(
        &self,
        project: &str,
        model: &str,
        version: &str,
    ) -> Result<Arc<Batcher>, PredictError> {
        let key = (project.to_string(), model.to_string(), version.to_string());
        if let Some(b) = self.registry.get(&key) {
            return Ok(b);
        }
        let dir = version_dir(&self.cfg, project, model, version);
        let b = tokio::task::spawn_blocking(move || Servable::load(&dir))
            .await
            .map_err(|_| PredictError::internal())?
            .map_err(|e| {
                eprintln!("loading {project}/{model}/{version}: {e}");
                PredictError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the version cannot be loaded",
                )
            })?;
        let b = Arc::new(Batcher::new(b, BatchOptions::default()));
        self.registry.put(key, b.clone());
        Ok(b)
    }

    /// The batcher serving `version` (or the default) of `model`, and the version's name.
    pub async fn route(
        &self,
        project: &str,
        model: &str,
        version: Option<&str>,
    ) -> Result<(String, Arc<Batcher>), PredictError> {
        let key = route_key(project, model, version);
        if let Some(hit) = self.registry.route(&key) {
            return Ok(hit);
        }
        let resolved = resolve(&self.db, project, model, version).await?;
        let b = self.batcher(project, model, &resolved).await?;
        self.registry.put_route(key, resolved.clone(), b.clone());
        Ok((resolved, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_stay_within_their_budget_and_skip_links() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a"), "12345").unwrap();
        std::fs::write(src.join("sub/b"), "678").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let mut budget = 8;
        copy_dir(&src, &dir.path().join("ok"), &mut budget).unwrap();
        assert_eq!(budget, 0);
        assert!(!dir.path().join("ok/link").exists());
        let mut small = 7;
        let e = copy_dir(&src, &dir.path().join("big"), &mut small).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
    }
}
