//! Named tokens: created with a role in some projects (the token is shown once; the store
//! keeps its SHA-256), listed, revoked; and the principal a request's bearer token names.
//! The CLI (`mle server tokens`, on the data dir) and the REST routes (`/v1/tokens`, for the
//! server admin) both go through here.

use mle_api::{now_rfc3339, valid_project_id, valid_resource_id};
use mle_store::{PrincipalRecord, Store, StoreError};
use serde::Serialize;

use crate::access::{Principal, Role, hash, new_token, same_token};
use crate::db::{Db, DbError};

/// A token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// Its name.
    pub name: String,
    /// Its role's name.
    pub role: String,
    /// The projects it holds the role in.
    pub projects: Vec<String>,
    /// When it was created.
    pub create_time: String,
}

/// Why a token request failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Bad name, role or projects (the field and why).
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    /// The name is taken.
    #[error("a token named '{0}' exists; revoke it first or choose another name")]
    Exists(String),
    /// No token of that name.
    #[error("no token named '{0}'")]
    Missing(String),
    /// The store failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

fn info(r: PrincipalRecord) -> Result<TokenInfo, DbError> {
    let projects = serde_json::from_str(&r.projects).map_err(|e| DbError::Corrupt {
        what: format!("the stored projects of token '{}' do not parse", r.name),
        detail: e.to_string(),
    })?;
    Ok(TokenInfo {
        name: r.name,
        role: r.role,
        projects,
        create_time: r.create_time,
    })
}

/// Creates token `name` with `role` in `projects`; returns it with the token, which is not
/// stored and cannot be shown again.
pub async fn create(
    db: &Db,
    name: &str,
    role: &str,
    projects: &[String],
) -> Result<(TokenInfo, String), TokenError> {
    if !valid_resource_id(name) {
        return Err(TokenError::Invalid(
            "name",
            format!(
                "'{name}' must start with a letter and hold only letters, digits and underscores (at most 128)"
            ),
        ));
    }
    let Some(role) = Role::parse(role) else {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        return Err(TokenError::Invalid(
            "role",
            format!("'{role}' is not a role ({})", names.join(", ")),
        ));
    };
    if projects.is_empty() {
        return Err(TokenError::Invalid(
            "projects",
            "at least one project".into(),
        ));
    }
    if let Some(bad) = projects.iter().find(|p| !valid_project_id(p)) {
        return Err(TokenError::Invalid(
            "projects",
            format!("'{bad}': project names hold letters, digits, '-' and '_' (at most 63)"),
        ));
    }
    let token = new_token();
    let rec = PrincipalRecord {
        name: name.into(),
        token_hash: hash(&token),
        role: role.name().into(),
        projects: serde_json::to_string(projects).unwrap_or_else(|_| "[]".into()),
        create_time: now_rfc3339(),
    };
    match db.insert_principal(&rec).await {
        Err(DbError::Store(StoreError::AlreadyExists { .. })) => {
            return Err(TokenError::Exists(name.into()));
        }
        r => r?,
    }
    Ok((info(rec)?, token))
}

/// Every token, by name.
pub async fn list(db: &Db) -> Result<Vec<TokenInfo>, TokenError> {
    let recs = db.principals().await?;
    Ok(recs.into_iter().map(info).collect::<Result<_, _>>()?)
}

/// Revokes token `name`: it stops working from the next request on.
pub async fn revoke(db: &Db, name: &str) -> Result<(), TokenError> {
    match db.delete_principal(name).await {
        Err(DbError::Store(StoreError::NotFound { .. })) => Err(TokenError::Missing(name.into())),
        r => Ok(r?),
    }
}

/// The principal `given` names: the server admin for `admin`'s token, a named principal
/// for a stored hash, `None` for anything else (revoked, mistyped, made up).
pub async fn principal(db: &Db, admin: &str, given: &str) -> Result<Option<Principal>, DbError> {
    if same_token(given, admin) {
        return Ok(Some(Principal::ServerAdmin));
    }
    let Some(rec) = db.principal_by_hash(&hash(given)).await? else {
        return Ok(None);
    };
    let Some(role) = Role::parse(&rec.role) else {
        eprintln!(
            "token '{}' has an unknown role '{}'; refusing it",
            rec.name, rec.role
        );
        return Ok(None);
    };
    let info = info(rec)?;
    Ok(Some(Principal::Named {
        name: info.name,
        role,
        projects: info.projects,
    }))
}

/// `create` on a store (the CLI's `mle server tokens create`).
pub async fn create_token(
    store: &Store,
    name: &str,
    role: &str,
    projects: &[String],
) -> Result<(TokenInfo, String), TokenError> {
    create(&Db::new(store.clone()), name, role, projects).await
}

/// `list` on a store.
pub async fn list_tokens(store: &Store) -> Result<Vec<TokenInfo>, TokenError> {
    list(&Db::new(store.clone())).await
}

/// `revoke` on a store.
pub async fn revoke_token(store: &Store, name: &str) -> Result<(), TokenError> {
    revoke(&Db::new(store.clone()), name).await
}
