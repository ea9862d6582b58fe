//! Models and versions as the rest of the server reads them: resource names, where a version's
//! files live (`<data-dir>/models/<p>/<m>/<v>/`), what a deployment URI points at, the default
//! version, and the READY version a request or a batch prediction job addresses.

use std::path::{Path, PathBuf};

use mle_api::{Version, VersionState};

use crate::config::Config;
use crate::db::{Db, DbError, Kind, Stored};
use crate::error::PredictError;
use crate::paths::{Need, Place, Policy, checked};

/// `projects/<p>/models/<m>`.
pub fn model_name(project: &str, model: &str) -> String {
    format!("projects/{project}/models/{model}")
}

/// `projects/<p>/models/<m>/versions/<v>`.
pub fn version_name(project: &str, model: &str, version: &str) -> String {
    format!("projects/{project}/models/{model}/versions/{version}")
}

/// Where a version's files live.
pub fn version_dir(cfg: &Config, project: &str, model: &str, version: &str) -> PathBuf {
    cfg.data_dir
        .join("models")
        .join(project)
        .join(model)
        .join(version)
}

/// Where a version's (or a batch prediction's) model files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local model directory.
    Dir(PathBuf),
    /// A model directory or an export root in a bucket (resolved when it is fetched).
    Bucket(mle_storage::Location),
}

/// The most a version's files may hold (they are copied into the data dir).
pub const MAX_MODEL_BYTES: u64 = 4 << 30;

/// The model a deployment URI names, checked by the path policy: a directory with an mle
/// export (`mle_model.json`) or an `.onnx` file, or an export root (`.../export/<name>`),
/// which means its newest timestamped export. A bucket URI is only checked against the
/// policy here (no call to the store on the request's path); [`fetch`] resolves it.
pub fn source(uri: &str, policy: Policy<'_>) -> Result<Source, String> {
    let p = match checked(uri, Need::Dir, policy)? {
        Place::Local(p) => p,
        Place::Bucket(loc) => return Ok(Source::Bucket(loc)),
    };
    let holds_model = std::fs::read_dir(&p)
        .map(|d| {
            d.flatten().any(|e| {
                e.file_type().is_ok_and(|t| t.is_file())
                    && e.file_name().to_str().is_some_and(is_model_file)
            })
        })
        .unwrap_or(false);
    if holds_model {
        return Ok(Source::Dir(p));
    }
    match mle_bundle::latest(&p) {
        // The newest export passes the policy too (it could be a link out of the root).
        Some(newest) => match checked(&newest.display().to_string(), Need::Dir, policy)? {
            Place::Local(p) => Ok(Source::Dir(p)),
            Place::Bucket(loc) => Ok(Source::Bucket(loc)),
        },
        None => Err(no_model(uri)),
    }
}

/// Whether a file directly in a directory makes it a model: an mle export's manifest or an
/// `.onnx` file (a name with `/` is further down).
fn is_model_file(name: &str) -> bool {
    !name.contains('/') && (name == mle_bundle::MANIFEST || name.ends_with(".onnx"))
}

fn no_model(uri: &str) -> String {
    format!("'{uri}' holds neither an mle export (mle_model.json) nor an .onnx model")
}

/// A model's files in a local directory: a local source as it is, a bucket's model (its
/// newest export, for an export root) downloaded into `into`. Blocking (it calls the store).
pub fn fetch(src: &Source, into: &Path) -> Result<PathBuf, String> {
    let loc = match src {
        Source::Dir(p) => return Ok(p.clone()),
        Source::Bucket(loc) => loc,
    };
    let storage = mle_storage::Storage::shared().map_err(|e| e.to_string())?;
    let found = storage.list(loc).map_err(|e| e.to_string())?;
    let names: Vec<String> = found
        .iter()
        .filter_map(|(l, _)| l.relative_to(loc))
        .collect();
    let model = if names.iter().any(|n| is_model_file(n)) {
        loc.clone()
    } else {
        // An export root: its newest `<timestamp>/` holding a model.
        let newest = names
            .iter()
            .filter_map(|n| {
                let (ts, rest) = n.split_once('/')?;
                let t = ts.parse::<u64>().ok()?;
                is_model_file(rest).then(|| (t, ts.to_string()))
            })
            .max();
        match newest {
            Some((_, ts)) => loc.join(&ts),
            None => return Err(no_model(&loc.uri())),
        }
    };
    storage
        .download_dir(&model, into, MAX_MODEL_BYTES)
        .map_err(|e| e.to_string())?;
    Ok(into.to_path_buf())
}

/// A version as the API returns it (its etag from the row).
pub fn version_out(s: Stored<Version>) -> Version {
    let mut v = s.value;
    v.etag = s.etag.to_string();
    v
}

/// Every version of `model` marked the default (one, once it has versions: `crate::defaults`
/// keeps it so).
pub async fn marked_defaults(
    db: &Db,
    project: &str,
    model: &str,
) -> Result<Vec<Stored<Version>>, DbError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page: Vec<Stored<Version>> = db.list(Kind::Version, project, model, after, 100).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = last.seq;
        out.extend(page.into_iter().filter(|r| r.value.is_default));
    }
}

/// The model's default version, if it has one.
pub async fn default_version(
    db: &Db,
    project: &str,
    model: &str,
) -> Result<Option<Stored<Version>>, DbError> {
    Ok(marked_defaults(db, project, model)
        .await?
        .into_iter()
        .next())
}

/// The READY version a request addresses (the model's default when `version` is None).
pub async fn resolve(
    db: &Db,
    project: &str,
    model: &str,
    version: Option<&str>,
) -> Result<String, PredictError> {
    let rec: Stored<Version> = match version {
        Some(v) => db.get(Kind::Version, project, model, v).await?,
        None => {
            db.get::<mle_api::Model>(Kind::Model, project, "", model)
                .await?;
            default_version(db, project, model).await?.ok_or_else(|| {
                PredictError::bad(format!("model '{model}' has no default version"))
            })?
        }
    };
    if rec.value.state != VersionState::Ready {
        return Err(PredictError::bad(format!(
            "version '{}' is {:?}, not READY",
            rec.name, rec.value.state
        )));
    }
    Ok(rec.name)
}

/// The model a prediction input names: a READY version's stored files, or a `uri` used in
/// place (a bucket's is fetched into the job's run dir).
pub async fn prediction_model(
    db: &Db,
    cfg: &Config,
    project: &str,
    p: &mle_api::PredictionInput,
) -> Result<Source, String> {
    if !p.uri.is_empty() {
        return source(&p.uri, cfg.paths());
    }
    let (model, version) = if !p.version_name.is_empty() {
        let parts: Vec<&str> = p.version_name.split('/').collect();
        match parts.as_slice() {
            ["projects", pr, "models", m, "versions", v] if *pr == project => {
                (m.to_string(), Some(v.to_string()))
            }
            _ => {
                return Err(format!(
                    "versionName '{}' is not projects/{project}/models/M/versions/V",
                    p.version_name
                ));
            }
        }
    } else {
        let parts: Vec<&str> = p.model_name.split('/').collect();
        match parts.as_slice() {
            ["projects", pr, "models", m] if *pr == project => (m.to_string(), None),
            [m] => (m.to_string(), None),
            _ => {
                return Err(format!(
                    "modelName '{}' is not projects/{project}/models/M",
                    p.model_name
                ));
            }
        }
    };
    let version = resolve(db, project, &model, version.as_deref())
        .await
        .map_err(|e| e.message)?;
    Ok(Source::Dir(version_dir(cfg, project, &model, &version)))
}
