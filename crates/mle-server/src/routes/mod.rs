//! The REST routes, one file per resource (`jobs`, `models`, `versions`, `operations`) and one
//! for online prediction (`predict`: ml v1, KServe V1, Open Inference V2), one for what the
//! console watches (`watch`: metric series, log streams, the caller), each exposing its
//! `router()`; and what they share: request bodies, project names, paging, update masks.

pub mod jobs;
pub mod models;
pub mod operations;
pub mod predict;
pub mod tokens;
pub mod versions;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::JsonRejection;
use mle_api::FieldViolation;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::access::{Permission, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// Every route that needs the token. Serving requests are held to online prediction's body
/// limit.
pub fn router() -> Router<Arc<AppState>> {
    let serving = models::router()
        .merge(versions::router())
        .merge(operations::router())
        .merge(predict::router())
        .layer(DefaultBodyLimit::max(predict::MAX_PREDICT_BYTES));
    jobs::router()
        .merge(watch::router())
        .merge(tokens::router())
        .merge(serving)
}

/// `POST {resource}:testIamPermissions`: of the permissions the body lists
/// (`{"permissions": [...]}`), those the caller holds in `project` (unknown names are left
/// out, as ml v1 does).
pub(crate) fn test_permissions(
    who: &Principal,
    project: &str,
    ask: Value,
) -> Result<Json<Value>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Ask {
        #[serde(default)]
        permissions: Vec<String>,
    }
    let ask: Ask =
        serde_json::from_value(ask).map_err(|e| invalid("permissions", e.to_string()))?;
    let held: Vec<&str> = ask
        .permissions
        .iter()
        .filter_map(|n| Permission::parse(n))
        .filter(|p| who.may(project, *p))
        .map(Permission::name)
        .collect();
    Ok(Json(json!({ "permissions": held })))
}

/// A 400 naming one field.
pub(crate) fn invalid(field: &str, why: impl Into<String>) -> ApiError {
    ApiError::Invalid(vec![FieldViolation::new(field, why)])
}

/// Project names: letters, digits, '-' and '_', at most 63.
pub(crate) fn valid_project(p: &str) -> Result<(), ApiError> {
    if mle_api::valid_project_id(p) {
        Ok(())
    } else {
        Err(invalid(
            "parent",
            "project names hold letters, digits, '-' and '_'",
        ))
    }
}

/// A JSON request body as `T`, or a 400 naming the parse error (`field` for a body of the
/// wrong shape).
pub(crate) fn body<T: DeserializeOwned>(
    r: Result<Json<Value>, JsonRejection>,
    field: &str,
) -> Result<T, ApiError> {
    let Json(v) = r.map_err(|e| invalid("body", format!("malformed JSON: {}", e.body_text())))?;
    serde_json::from_value(v).map_err(|e| invalid(field, e.to_string()))
}

/// `pageSize` (default 20, at most 100) and `pageToken` (the last item's creation order).
pub(crate) fn page(q: &HashMap<String, String>) -> Result<(i64, i64), ApiError> {
    let size = match q.get("pageSize").map(|v| v.parse::<i64>()) {
        None => 20,
        Some(Ok(n)) if n > 0 => n.min(100),
        Some(_) => return Err(invalid("page_size", "must be a positive integer")),
    };
    let after = match q.get("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .parse::<i64>()
            .map_err(|_| invalid("page_token", "invalid page token"))?,
    };
    Ok((size, after))
}

/// A list response: the first `size` of `items` (fetched with one more than `size`, with
/// their creation order) under `key`, and `nextPageToken` when there were more.
pub(crate) fn paged(items: Vec<(i64, Value)>, size: i64, key: &str) -> Value {
    let more = items.len() as i64 > size;
    let page: Vec<(i64, Value)> = items.into_iter().take(size as usize).collect();
    let last = page.last().map(|(seq, _)| *seq);
    let mut out = json!({ key: page.into_iter().map(|(_, v)| v).collect::<Vec<_>>() });
    if more && let Some(seq) = last {
        out["nextPageToken"] = json!(seq.to_string());
    }
    out
}

/// The id a resource's `name` ends with (`projects/p/models/m` or `m`), if it is a valid id.
pub(crate) fn resource_id(name: &str, field: &str) -> Result<String, FieldViolation> {
    let id = name.rsplit('/').next().unwrap_or_default().to_string();
    if mle_api::valid_resource_id(&id) {
        Ok(id)
    } else {
        Err(FieldViolation::new(
            field,
            format!(
                "'{id}' must start with a letter and hold only letters, digits and underscores (at most 128)"
            ),
        ))
    }
}

/// `updateMask` of a model or version patch: description and/or labels.
pub(crate) fn fields_mask(q: &HashMap<String, String>) -> Result<Vec<String>, ApiError> {
    let mask: Vec<String> = q
        .get("updateMask")
        .map(|m| m.split(',').map(|f| f.trim().to_string()).collect())
        .unwrap_or_default();
    if mask.is_empty() {
        return Err(invalid(
            "update_mask",
            "is required: description and/or labels",
        ));
    }
    if let Some(bad) = mask
        .iter()
        .find(|f| !["description", "labels"].contains(&f.as_str()))
    {
        return Err(invalid(
            "update_mask",
            format!("'{bad}' cannot be updated (description, labels)"),
        ));
    }
    Ok(mask)
}
