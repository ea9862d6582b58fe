//! Long-running operations (`projects/<p>/operations/<id>`): their ids and metadata, operations
//! that end at once (deletes, updates) and the end of one that ran (a version's creation).

use mle_api::{Operation, OperationError, Version, now_rfc3339};
use serde_json::{Value, json};

use crate::catalog::model_name;
use crate::db::{Db, DbError, Kind};

fn metadata(
    kind: &str,
    project: &str,
    model: &str,
    version: Option<&Version>,
    created: &str,
) -> Value {
    let mut m = json!({
        "@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata",
        "createTime": created, "startTime": created,
        "operationType": kind, "modelName": model_name(project, model),
    });
    if let Some(v) = version {
        m["version"] = serde_json::to_value(v).unwrap_or_default();
    }
    m
}

fn new_id(kind: &str, model: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let salt: u32 = rand::random();
    format!("{}_{model}_{millis}_{salt:08x}", kind.to_ascii_lowercase())
}

/// Records a new operation of `kind` on `model` (and `version`); returns its id and itself.
/// `done` operations get their end time at once.
pub async fn start(
    db: &Db,
    project: &str,
    kind: &str,
    model: &str,
    version: Option<&Version>,
    done: bool,
) -> Result<(String, Operation), DbError> {
    let now = now_rfc3339();
    let id = new_id(kind, model);
    let mut meta = metadata(kind, project, model, version, &now);
    if done {
        meta["endTime"] = json!(now);
    }
    let op = Operation {
        name: format!("projects/{project}/operations/{id}"),
        metadata: meta,
        done,
        error: None,
        response: None,
    };
    db.insert(Kind::Operation, project, "", &id, &op).await?;
    Ok((id, op))
}

/// Ends a running operation: with `error` (code 3, INVALID_ARGUMENT), or with `response`.
pub async fn end(
    db: &Db,
    project: &str,
    id: &str,
    error: Option<&str>,
    response: Option<Value>,
) -> Result<(), DbError> {
    db.update(Kind::Operation, project, "", id, |op: &mut Operation| {
        op.done = true;
        op.metadata["endTime"] = json!(now_rfc3339());
        match error {
            Some(e) => {
                op.error = Some(OperationError {
                    code: 3,
                    message: e.to_string(),
                })
            }
            None => op.response = response.clone(),
        }
    })
    .await
    .map(|_| ())
}
