//! Principals: the holders of tokens, by name, with the SHA-256 of their token (never the
//! token), a role and the projects it holds in. Revoking deletes the row, so a revoked token
//! matches nothing from the next request on.

use sqlx::Row;

use crate::{Store, StoreError, inserted_or_exists};

/// One principal row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRecord {
    /// Its name (unique).
    pub name: String,
    /// The token's SHA-256, hex.
    pub token_hash: String,
    /// The role's name.
    pub role: String,
    /// The projects, as a JSON list.
    pub projects: String,
    /// RFC 3339 creation time.
    pub create_time: String,
}

const PRINCIPAL_COLUMNS: &str = "name, token_hash, role, projects, create_time";

fn principal_row(r: &sqlx::any::AnyRow) -> Result<PrincipalRecord, sqlx::Error> {
    Ok(PrincipalRecord {
        name: r.try_get("name")?,
        token_hash: r.try_get("token_hash")?,
        role: r.try_get("role")?,
        projects: r.try_get("projects")?,
        create_time: r.try_get("create_time")?,
    })
}

impl Store {
    /// Adds a principal; `AlreadyExists` if the name is taken.
    pub async fn insert_principal(&self, p: &PrincipalRecord) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO principals (name, token_hash, role, projects, create_time) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&p.name)
        .bind(&p.token_hash)
        .bind(&p.role)
        .bind(&p.projects)
        .bind(&p.create_time)
        .execute(&self.pool)
        .await;
        inserted_or_exists(done, "token", &p.name)
    }

    /// The principal whose token hashes to `token_hash`, if any.
    pub async fn principal_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<PrincipalRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(principal_row).transpose()?)
    }

    /// Every principal, by name.
    pub async fn principals(&self) -> Result<Vec<PrincipalRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| principal_row(r).map_err(StoreError::from))
            .collect()
    }

    /// Removes a principal (its token stops working); `NotFound` if there is none.
    pub async fn delete_principal(&self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM principals WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "token",
                id: name.into(),
            });
        }
        Ok(())
    }
}
