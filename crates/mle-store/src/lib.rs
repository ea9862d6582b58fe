//! The job service's store: SQLite in the data dir by default, PostgreSQL by URL, through one
//! sqlx code path (`AnyPool`, `$N` placeholders, portable SQL) with embedded migrations. Every
//! change is one transaction; updates check an etag so concurrent writers cannot lose each
//! other's changes.
//!
//! Records are opaque to the store: indexed columns (project, id, state, creation order) plus
//! the resource's JSON body, which the server encodes and decodes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mle_store::StoreError> {
//! let store = mle_store::Store::open("sqlite:///tmp/mle/mle.db").await?;
//! let rec = store.insert_job("p", "job_1", "QUEUED", "2026-01-01T00:00:00Z", "{}").await?;
//! assert_eq!(rec.etag, 1);
//! # Ok(()) }
//! ```

mod principals;
mod resources;

pub use principals::PrincipalRecord;
pub use resources::{Change, Resource};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with this key exists.
    #[error("{kind} '{id}' already exists")]
    AlreadyExists {
        /// Record kind.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// No record with this key.
    #[error("{kind} '{id}' not found")]
    NotFound {
        /// Record kind.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The record changed since it was read.
    #[error("{kind} '{id}' was modified concurrently (etag {expected} is stale)")]
    Conflict {
        /// Record kind.
        kind: &'static str,
        /// Its id.
        id: String,
        /// The etag the caller had.
        expected: i64,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The record still has children (a model with versions).
    #[error("{kind} '{id}' still has {children}")]
    HasChildren {
        /// Record kind.
        kind: &'static str,
        /// Its id.
        id: String,
        /// What it still has.
        children: &'static str,
    },
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the database could not write because its disk is full (SQLite's `SQLITE_FULL`,
    /// PostgreSQL's `disk_full` class 53100, or an `ENOSPC` from the file system).
    pub fn is_disk_full(&self) -> bool {
        const ENOSPC: i32 = 28;
        match self {
            StoreError::Database(sqlx::Error::Database(d)) => {
                let code = d.code();
                // SQLite reports its primary result code 13 (SQLITE_FULL), possibly extended.
                code.as_deref()
                    .is_some_and(|c| c == "53100" || c.parse::<i64>().is_ok_and(|n| n & 0xff == 13))
                    || d.message().contains("disk is full")
            }
            StoreError::Database(sqlx::Error::Io(e)) => e.raw_os_error() == Some(ENOSPC),
            _ => false,
        }
    }
}

/// One job row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Project.
    pub project: String,
    /// Job id.
    pub job_id: String,
    /// Creation order (queue order), unique across projects.
    pub seq: i64,
    /// State name.
    pub state: String,
    /// Version, incremented by every update.
    pub etag: i64,
    /// RFC 3339 creation time.
    pub create_time: String,
    /// The resource as JSON.
    pub body: String,
}

/// Filters for listing jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this state.
    pub state: Option<String>,
    /// Only ids starting with this prefix.
    pub id_prefix: Option<String>,
    /// Newest first (`after_seq` then means "created before", 0 for the newest).
    pub newest_first: bool,
}

/// The store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
}

const COLUMNS: &str = "project, job_id, seq, state, etag, create_time, body";

fn job_row(r: &sqlx::any::AnyRow) -> Result<JobRecord, sqlx::Error> {
    Ok(JobRecord {
        project: r.try_get("project")?,
        job_id: r.try_get("job_id")?,
        seq: r.try_get("seq")?,
        state: r.try_get("state")?,
        etag: r.try_get("etag")?,
        create_time: r.try_get("create_time")?,
        body: r.try_get("body")?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Whether a unique violation is on the creation order `seq` (two inserts that read the same
/// `MAX(seq)` concurrently; PostgreSQL names the constraint `<table>_seq_key`, SQLite says
/// `UNIQUE constraint failed: <table>.seq`), not on the resource's id.
fn is_seq_collision(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation()
        && (d.constraint().is_some_and(|c| c.ends_with("seq_key")) || d.message().contains(".seq")))
}

/// How often an insert that lost the race for a creation order is tried again.
const SEQ_RETRIES: usize = 50;

/// Runs an insert again while it loses the race for a creation order to a concurrent one
/// (the next attempt reads `MAX(seq)` anew).
async fn retry_on_seq_collision<T, F: Future<Output = Result<T, StoreError>>>(
    mut insert: impl FnMut() -> F,
) -> Result<T, StoreError> {
    let mut attempt = 0;
    loop {
        match insert().await {
            Err(StoreError::Database(ref e)) if is_seq_collision(e) && attempt < SEQ_RETRIES => {
                attempt += 1;
            }
            r => return r,
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH` or `postgres://...`)
    /// and runs the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let url = if url.starts_with("sqlite:") && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.to_string()
        };
        // SQLite serialises writers anyway; one connection avoids "database is locked" errors.
        let max = if url.starts_with("sqlite:") { 1 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await?;
        if url.starts_with("sqlite:") {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
            sqlx::query("PRAGMA synchronous = FULL")
                .execute(&pool)
                .await?;
        }
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The SQLite database `mle.db` inside `dir`.
    pub async fn open_dir(dir: &std::path::Path) -> Result<Self, StoreError> {
        Self::open(&format!("sqlite://{}", dir.join("mle.db").display())).await
    }

    /// Creates a job; fails with `AlreadyExists` if the id is taken in the project.
    pub async fn insert_job(
        &self,
        project: &str,
        job_id: &str,
        state: &str,
        create_time: &str,
        body: &str,
    ) -> Result<JobRecord, StoreError> {
        retry_on_seq_collision(|| self.try_insert_job(project, job_id, state, create_time, body))
            .await
    }

    async fn try_insert_job(
        &self,
        project: &str,
        job_id: &str,
        state: &str,
        create_time: &str,
        body: &str,
    ) -> Result<JobRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let seq = next_seq(&mut tx, "jobs").await?;
        let inserted = sqlx::query(
            "INSERT INTO jobs (project, job_id, seq, state, etag, create_time, body) VALUES ($1, $2, $3, $4, 1, $5, $6)",
        )
        .bind(project)
        .bind(job_id)
        .bind(seq)
        .bind(state)
        .bind(create_time)
        .bind(body)
        .execute(&mut *tx)
        .await;
        inserted_or_exists(inserted, "job", job_id)?;
        tx.commit().await?;
        Ok(JobRecord {
            project: project.into(),
            job_id: job_id.into(),
            seq,
            state: state.into(),
            etag: 1,
            create_time: create_time.into(),
            body: body.into(),
        })
    }

    /// Reads a job.
    pub async fn get_job(&self, project: &str, job_id: &str) -> Result<JobRecord, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE project = $1 AND job_id = $2"
        ))
        .bind(project)
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(job_row(&r)?),
            None => Err(StoreError::NotFound {
                kind: "job",
                id: job_id.into(),
            }),
        }
    }

    /// Jobs of a project in creation order (or newest first), after `after_seq`, at most
    /// `limit`.
    pub async fn list_jobs(
        &self,
        project: &str,
        filter: &JobFilter,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let prefix = filter.id_prefix.as_deref().map(|p| {
            format!(
                "{}%",
                p.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        });
        let (cmp, order, after) = if filter.newest_first {
            (
                "<",
                "DESC",
                if after_seq <= 0 { i64::MAX } else { after_seq },
            )
        } else {
            (">", "ASC", after_seq)
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE project = $1 AND seq {cmp} $2 AND ($3 = '' OR state = $3) \
             AND ($4 = '' OR job_id LIKE $4 ESCAPE '\\') ORDER BY seq {order} LIMIT $5"
        ))
        .bind(project)
        .bind(after)
        .bind(filter.state.clone().unwrap_or_default())
        .bind(prefix.unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| job_row(r).map_err(StoreError::from))
            .collect()
    }

    /// All jobs (every project) in these states, in creation order: the scheduler's queue and
    /// the jobs to reconcile after a restart.
    pub async fn jobs_in_states(&self, states: &[&str]) -> Result<Vec<JobRecord>, StoreError> {
        let mut out = Vec::new();
        for s in states {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE state = $1 ORDER BY seq"
            ))
            .bind(*s)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                out.push(job_row(r)?);
            }
        }
        out.sort_by_key(|r| r.seq);
        Ok(out)
    }

    /// Every project that holds a job or a model, by name.
    pub async fn projects(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT project FROM jobs UNION SELECT DISTINCT project FROM resources ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// Number of jobs in each state (every project).
    pub async fn count_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect()
    }

    /// Replaces a job's state and body in one transaction, if its etag is still `expected`;
    /// returns the new record (etag + 1).
    pub async fn update_job(
        &self,
        project: &str,
        job_id: &str,
        expected: i64,
        state: &str,
        body: &str,
    ) -> Result<JobRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE jobs SET state = $1, body = $2, etag = etag + 1 WHERE project = $3 AND job_id = $4 AND etag = $5")
            .bind(state)
            .bind(body)
            .bind(project)
            .bind(job_id)
            .bind(expected)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            let exists = sqlx::query("SELECT etag FROM jobs WHERE project = $1 AND job_id = $2")
                .bind(project)
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                Some(_) => StoreError::Conflict {
                    kind: "job",
                    id: job_id.into(),
                    expected,
                },
                None => StoreError::NotFound {
                    kind: "job",
                    id: job_id.into(),
                },
            });
        }
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE project = $1 AND job_id = $2"
        ))
        .bind(project)
        .bind(job_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(job_row(&row)?)
    }
}

type Conn = sqlx::AnyConnection;

/// The next creation order of `table` (`jobs` or `resources`), inside the inserting
/// transaction; a concurrent insert that read the same one collides on `seq` and is retried
/// by [`retry_on_seq_collision`].
async fn next_seq(c: &mut Conn, table: &'static str) -> Result<i64, StoreError> {
    Ok(sqlx::query(&format!(
        "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM {table}"
    ))
    .fetch_one(&mut *c)
    .await?
    .try_get("next")?)
}

/// An insert's outcome: a taken id is `AlreadyExists`; a lost race for the creation order
/// stays a database error, for [`retry_on_seq_collision`].
fn inserted_or_exists(
    r: Result<sqlx::any::AnyQueryResult, sqlx::Error>,
    kind: &'static str,
    id: &str,
) -> Result<(), StoreError> {
    match r {
        Err(e) if is_unique_violation(&e) && !is_seq_collision(&e) => {
            Err(StoreError::AlreadyExists {
                kind,
                id: id.into(),
            })
        }
        r => r.map(|_| ()).map_err(StoreError::from),
    }
}

#[cfg(test)]
mod tests {
    //! The behaviour of every backend is checked by `tests/conformance.rs`.
    use super::*;

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open_dir(dir.path()).await.unwrap();
            s.insert_job("p", "a", "RUNNING", "t", "{}").await.unwrap();
        }
        let s = Store::open_dir(dir.path()).await.unwrap();
        assert_eq!(s.get_job("p", "a").await.unwrap().state, "RUNNING");
    }
}
