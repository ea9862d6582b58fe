//! Models, versions and operations: one `resources` table keyed by kind, project, parent and
//! name, each row with its creation order, etag and JSON body; [`Store::apply`] makes several
//! changes in one transaction.

use sqlx::Row;

use crate::{Conn, Store, StoreError, inserted_or_exists, next_seq, retry_on_seq_collision};

/// One model, version or operation row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `model`, `version` or `operation`.
    pub kind: String,
    /// Project.
    pub project: String,
    /// The model, for versions; empty otherwise.
    pub parent: String,
    /// Its id.
    pub name: String,
    /// Creation order.
    pub seq: i64,
    /// Version, incremented by every update.
    pub etag: i64,
    /// The resource as JSON.
    pub body: String,
}

fn resource_row(r: &sqlx::any::AnyRow) -> Result<Resource, sqlx::Error> {
    Ok(Resource {
        kind: r.try_get("kind")?,
        project: r.try_get("project")?,
        parent: r.try_get("parent")?,
        name: r.try_get("name")?,
        seq: r.try_get("seq")?,
        etag: r.try_get("etag")?,
        body: r.try_get("body")?,
    })
}

const RESOURCE_COLUMNS: &str = "kind, project, parent, name, seq, etag, body";

/// One step of [`Store::apply`]: a resource created, replaced or deleted.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// Creates a resource; `AlreadyExists` if the name is taken.
    Insert {
        /// `model`, `version` or `operation`.
        kind: &'static str,
        /// Project.
        project: &'a str,
        /// The model, for versions; empty otherwise.
        parent: &'a str,
        /// Its id.
        name: &'a str,
        /// The resource as JSON.
        body: &'a str,
    },
    /// Replaces a resource's body if its etag is still `expected` (`Conflict` if not).
    Update {
        /// Kind.
        kind: &'static str,
        /// Project.
        project: &'a str,
        /// Parent.
        parent: &'a str,
        /// Id.
        name: &'a str,
        /// The etag the caller read.
        expected: i64,
        /// The new body.
        body: &'a str,
    },
    /// Deletes a resource if its etag is still `expected`.
    Delete {
        /// Kind.
        kind: &'static str,
        /// Project.
        project: &'a str,
        /// Parent.
        parent: &'a str,
        /// Id.
        name: &'a str,
        /// The etag the caller read.
        expected: i64,
    },
}

async fn insert_in(
    c: &mut Conn,
    kind: &'static str,
    project: &str,
    parent: &str,
    name: &str,
    body: &str,
) -> Result<Resource, StoreError> {
    let seq = next_seq(c, "resources").await?;
    let inserted = sqlx::query(
        "INSERT INTO resources (kind, project, parent, name, seq, etag, body) VALUES ($1, $2, $3, $4, $5, 1, $6)",
    )
    .bind(kind)
    .bind(project)
    .bind(parent)
    .bind(name)
    .bind(seq)
    .bind(body)
    .execute(&mut *c)
    .await;
    inserted_or_exists(inserted, kind, name)?;
    Ok(Resource {
        kind: kind.into(),
        project: project.into(),
        parent: parent.into(),
        name: name.into(),
        seq,
        etag: 1,
        body: body.into(),
    })
}

async fn get_in(
    c: &mut Conn,
    kind: &'static str,
    project: &str,
    parent: &str,
    name: &str,
) -> Result<Resource, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = $1 AND project = $2 AND parent = $3 AND name = $4"
    ))
    .bind(kind)
    .bind(project)
    .bind(parent)
    .bind(name)
    .fetch_optional(&mut *c)
    .await?;
    match row {
        Some(r) => Ok(resource_row(&r)?),
        None => Err(StoreError::NotFound {
            kind,
            id: name.into(),
        }),
    }
}

/// `NotFound` when the row is gone, `Conflict` when it is there with another etag.
async fn stale(
    c: &mut Conn,
    kind: &'static str,
    project: &str,
    parent: &str,
    name: &str,
    expected: i64,
) -> StoreError {
    match get_in(c, kind, project, parent, name).await {
        Ok(_) => StoreError::Conflict {
            kind,
            id: name.into(),
            expected,
        },
        Err(e) => e,
    }
}

async fn update_in(
    c: &mut Conn,
    kind: &'static str,
    project: &str,
    parent: &str,
    name: &str,
    expected: i64,
    body: &str,
) -> Result<Resource, StoreError> {
    let done = sqlx::query("UPDATE resources SET body = $1, etag = etag + 1 WHERE kind = $2 AND project = $3 AND parent = $4 AND name = $5 AND etag = $6")
        .bind(body)
        .bind(kind)
        .bind(project)
        .bind(parent)
        .bind(name)
        .bind(expected)
        .execute(&mut *c)
        .await?;
    if done.rows_affected() == 0 {
        return Err(stale(c, kind, project, parent, name, expected).await);
    }
    get_in(c, kind, project, parent, name).await
}

async fn delete_in(
    c: &mut Conn,
    kind: &'static str,
    project: &str,
    parent: &str,
    name: &str,
    expected: Option<i64>,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "DELETE FROM resources WHERE kind = $1 AND project = $2 AND parent = $3 AND name = $4 AND ($5 < 0 OR etag = $5)",
    )
    .bind(kind)
    .bind(project)
    .bind(parent)
    .bind(name)
    .bind(expected.unwrap_or(-1))
    .execute(&mut *c)
    .await?;
    if done.rows_affected() == 0 {
        return Err(stale(c, kind, project, parent, name, expected.unwrap_or(-1)).await);
    }
    Ok(())
}

impl Store {
    /// Creates a model, version or operation; `AlreadyExists` if the name is taken.
    pub async fn insert_resource(
        &self,
        kind: &'static str,
        project: &str,
        parent: &str,
        name: &str,
        body: &str,
    ) -> Result<Resource, StoreError> {
        retry_on_seq_collision(|| async {
            let mut tx = self.pool.begin().await?;
            let r = insert_in(&mut tx, kind, project, parent, name, body).await?;
            tx.commit().await?;
            Ok(r)
        })
        .await
    }

    /// Reads a model, version or operation.
    pub async fn get_resource(
        &self,
        kind: &'static str,
        project: &str,
        parent: &str,
        name: &str,
    ) -> Result<Resource, StoreError> {
        let mut c = self.pool.acquire().await?;
        get_in(&mut c, kind, project, parent, name).await
    }

    /// Resources of a kind under `parent`, in creation order after `after_seq`, at most `limit`.
    pub async fn list_resources(
        &self,
        kind: &str,
        project: &str,
        parent: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Resource>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = $1 AND project = $2 AND parent = $3 AND seq > $4 ORDER BY seq LIMIT $5"
        ))
        .bind(kind)
        .bind(project)
        .bind(parent)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| resource_row(r).map_err(StoreError::from))
            .collect()
    }

    /// Every resource of a kind (all projects), in creation order: recovery after a restart.
    pub async fn all_resources(&self, kind: &str) -> Result<Vec<Resource>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = $1 ORDER BY seq"
        ))
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| resource_row(r).map_err(StoreError::from))
            .collect()
    }

    /// Replaces a resource's body if its etag is still `expected`; returns the new record.
    pub async fn update_resource(
        &self,
        kind: &'static str,
        project: &str,
        parent: &str,
        name: &str,
        expected: i64,
        body: &str,
    ) -> Result<Resource, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = update_in(&mut tx, kind, project, parent, name, expected, body).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// Several changes as one transaction: all of them happen, or (on the first that fails:
    /// a stale etag, a taken name, a missing row) none.
    pub async fn apply(&self, changes: &[Change<'_>]) -> Result<(), StoreError> {
        retry_on_seq_collision(|| async {
            let mut tx = self.pool.begin().await?;
            for c in changes {
                match *c {
                    Change::Insert {
                        kind,
                        project,
                        parent,
                        name,
                        body,
                    } => {
                        insert_in(&mut tx, kind, project, parent, name, body).await?;
                    }
                    Change::Update {
                        kind,
                        project,
                        parent,
                        name,
                        expected,
                        body,
                    } => {
                        update_in(&mut tx, kind, project, parent, name, expected, body).await?;
                    }
                    Change::Delete {
                        kind,
                        project,
                        parent,
                        name,
                        expected,
                    } => delete_in(&mut tx, kind, project, parent, name, Some(expected)).await?,
                }
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Deletes a resource; with `children = Some(kind)`, only when no resource of that kind
    /// names it as parent (checked in the same transaction).
    pub async fn delete_resource(
        &self,
        kind: &'static str,
        project: &str,
        parent: &str,
        name: &str,
        children: Option<&'static str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // The row goes first: that waits for (PostgreSQL: locks out) a transaction that is
        // adding a child under it, so the count below sees that child.
        delete_in(&mut tx, kind, project, parent, name, None).await?;
        if let Some(child) = children {
            let n: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM resources WHERE kind = $1 AND project = $2 AND parent = $3",
            )
            .bind(child)
            .bind(project)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            if n > 0 {
                return Err(StoreError::HasChildren {
                    kind,
                    id: name.into(),
                    children: child,
                });
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
