//! The one typed wrapper over `mle-store`: jobs as [`Job`]s with typed states, models, versions
//! and operations addressed by [`Kind`], and one read-modify-write loop with the etag check
//! ([`Db::update_job`], [`Db::update`]) that every change goes through.
//!
//! A stored body that does not parse is an error ([`DbError::Corrupt`]), never a default that
//! could be written back over the record.

use mle_api::{Job, JobState};
use mle_store::{JobFilter, Resource, Store, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The kinds of resources besides jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A model (a container of versions).
    Model,
    /// A model version; its parent is the model.
    Version,
    /// A long-running operation.
    Operation,
}

impl Kind {
    /// The store's name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::Version => "version",
            Kind::Operation => "operation",
        }
    }
}

/// Errors of the typed store.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The store itself.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored body that does not parse (or a value that cannot be written as one).
    #[error("{what}: {detail}")]
    Corrupt {
        /// What was read (`job p/j`).
        what: String,
        /// The parse error.
        detail: String,
    },
    /// A change the job's state machine refuses (nothing was written).
    #[error("{0}")]
    Refused(String),
}

/// A stored resource with its row's bookkeeping.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    /// The project.
    pub project: String,
    /// The model, for versions; empty otherwise.
    pub parent: String,
    /// The resource's id.
    pub name: String,
    /// Creation order (page tokens).
    pub seq: i64,
    /// The row's version.
    pub etag: i64,
    /// The resource.
    pub value: T,
}

/// A job as the scheduler finds it.
#[derive(Debug, Clone)]
pub struct StoredJob {
    /// The project.
    pub project: String,
    /// Creation order.
    pub seq: i64,
    /// The job.
    pub job: Job,
}

fn state_name(s: JobState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn parse<T: DeserializeOwned>(body: &str, what: impl FnOnce() -> String) -> Result<T, DbError> {
    serde_json::from_str(body).map_err(|e| DbError::Corrupt {
        what: format!("the stored {} does not parse", what()),
        detail: e.to_string(),
    })
}

pub(crate) fn to_body<T: Serialize>(v: &T) -> Result<String, DbError> {
    serde_json::to_string(v).map_err(|e| DbError::Corrupt {
        what: "a value cannot be stored".into(),
        detail: e.to_string(),
    })
}

fn stored<T: DeserializeOwned>(r: Resource) -> Result<Stored<T>, DbError> {
    let value = parse(&r.body, || {
        format!("{} {}/{}/{}", r.kind, r.project, r.parent, r.name)
    })?;
    Ok(Stored {
        project: r.project,
        parent: r.parent,
        name: r.name,
        seq: r.seq,
        etag: r.etag,
        value,
    })
}

/// The one etag read-modify-write loop: `attempt` reads, changes and writes with the etag it
/// read; a concurrent change (the store's `Conflict`) makes it start again from the read.
pub(crate) async fn with_retry<T, F: Future<Output = Result<T, DbError>>>(
    mut attempt: impl FnMut() -> F,
) -> Result<T, DbError> {
    loop {
        match attempt().await {
            Err(DbError::Store(StoreError::Conflict { .. })) => continue,
            r => return r,
        }
    }
}

/// Keeps the records that parse; the others are logged and left untouched in the store.
fn keep_parsed<T>(items: impl IntoIterator<Item = Result<T, DbError>>) -> Vec<T> {
    items
        .into_iter()
        .filter_map(|r| r.map_err(|e| eprintln!("skipping a record: {e}")).ok())
        .collect()
}

/// The typed store.
#[derive(Clone, Debug)]
pub struct Db {
    store: Store,
}

impl Db {
    /// Wraps `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn job_of(&self, rec: mle_store::JobRecord) -> Result<StoredJob, DbError> {
        let job = parse(&rec.body, || format!("job {}/{}", rec.project, rec.job_id))?;
        Ok(StoredJob {
            project: rec.project,
            seq: rec.seq,
            job,
        })
    }

    /// Creates a job (its state and creation time are the row's too).
    pub async fn insert_job(&self, project: &str, job: &Job) -> Result<(), DbError> {
        let body = to_body(job)?;
        self.store
            .insert_job(
                project,
                &job.job_id,
                &state_name(job.state),
                &job.create_time,
                &body,
            )
            .await?;
        Ok(())
    }

    /// One job.
    pub async fn job(&self, project: &str, job_id: &str) -> Result<Job, DbError> {
        let rec = self.store.get_job(project, job_id).await?;
        Ok(self.job_of(rec)?.job)
    }

    /// A page of a project's jobs, oldest or newest first (records that do not parse are
    /// skipped).
    pub async fn list_jobs(
        &self,
        project: &str,
        filter: &JobFilter,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredJob>, DbError> {
        let recs = self
            .store
            .list_jobs(project, filter, after_seq, limit)
            .await?;
        Ok(keep_parsed(recs.into_iter().map(|r| self.job_of(r))))
    }

    /// Every job in one of `states`, in queue order (records that do not parse are skipped).
    pub async fn jobs_in(&self, states: &[JobState]) -> Result<Vec<StoredJob>, DbError> {
        let names: Vec<String> = states.iter().map(|s| state_name(*s)).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let recs = self.store.jobs_in_states(&refs).await?;
        Ok(keep_parsed(recs.into_iter().map(|r| self.job_of(r))))
    }

    /// Every project with a job or a model.
    pub async fn projects(&self) -> Result<Vec<String>, DbError> {
        Ok(self.store.projects().await?)
    }

    /// Jobs per state name.
    pub async fn count_by_state(&self) -> Result<Vec<(String, i64)>, DbError> {
        Ok(self.store.count_by_state().await?)
    }

    /// Read-modify-write of a job with the etag check, retried on concurrent changes; `f`
    /// refusing the change (an illegal transition) writes nothing.
    pub async fn update_job(
        &self,
        project: &str,
        job_id: &str,
        f: impl Fn(&mut Job) -> Result<(), String>,
    ) -> Result<Job, DbError> {
        let f = &f;
        with_retry(|| async move {
            let rec = self.store.get_job(project, job_id).await?;
            let etag = rec.etag;
            let mut job = self.job_of(rec)?.job;
            f(&mut job).map_err(DbError::Refused)?;
            job.etag = (etag + 1).to_string();
            let body = to_body(&job)?;
            self.store
                .update_job(project, job_id, etag, &state_name(job.state), &body)
                .await?;
            Ok(job)
        })
        .await
    }

    /// Creates a resource.
    pub async fn insert<T: Serialize>(
        &self,
        kind: Kind,
        project: &str,
        parent: &str,
        name: &str,
        value: &T,
    ) -> Result<i64, DbError> {
        let body = to_body(value)?;
        let rec = self
            .store
            .insert_resource(kind.as_str(), project, parent, name, &body)
            .await?;
        Ok(rec.etag)
    }

    /// One resource.
    pub async fn get<T: DeserializeOwned>(
        &self,
        kind: Kind,
        project: &str,
        parent: &str,
        name: &str,
    ) -> Result<Stored<T>, DbError> {
        let r = self
            .store
            .get_resource(kind.as_str(), project, parent, name)
            .await?;
        stored(r)
    }

    /// A page of resources in creation order (records that do not parse are skipped).
    pub async fn list<T: DeserializeOwned>(
        &self,
        kind: Kind,
        project: &str,
        parent: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Stored<T>>, DbError> {
        let recs = self
            .store
            .list_resources(kind.as_str(), project, parent, after_seq, limit)
            .await?;
        Ok(keep_parsed(recs.into_iter().map(stored)))
    }

    /// Every resource of a kind, across projects.
    pub async fn all<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<Stored<T>>, DbError> {
        let recs = self.store.all_resources(kind.as_str()).await?;
        Ok(keep_parsed(recs.into_iter().map(stored)))
    }

    /// Read-modify-write of a resource with the etag check, retried on concurrent changes.
    pub async fn update<T: Serialize + DeserializeOwned>(
        &self,
        kind: Kind,
        project: &str,
        parent: &str,
        name: &str,
        f: impl Fn(&mut T),
    ) -> Result<Stored<T>, DbError> {
        let f = &f;
        with_retry(|| async move {
            let mut s: Stored<T> = self.get(kind, project, parent, name).await?;
            f(&mut s.value);
            let body = to_body(&s.value)?;
            let r = self
                .store
                .update_resource(kind.as_str(), project, parent, name, s.etag, &body)
                .await?;
            s.etag = r.etag;
            Ok(s)
        })
        .await
    }

    /// Adds a principal (`AlreadyExists` for a taken name).
    pub async fn insert_principal(&self, p: &mle_store::PrincipalRecord) -> Result<(), DbError> {
        Ok(self.store.insert_principal(p).await?)
    }

    /// The principal a token hash belongs to.
    pub async fn principal_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<mle_store::PrincipalRecord>, DbError> {
        Ok(self.store.principal_by_hash(hash).await?)
    }

    /// Every principal, by name.
    pub async fn principals(&self) -> Result<Vec<mle_store::PrincipalRecord>, DbError> {
        Ok(self.store.principals().await?)
    }

    /// Removes a principal.
    pub async fn delete_principal(&self, name: &str) -> Result<(), DbError> {
        Ok(self.store.delete_principal(name).await?)
    }

    /// Several resource changes as one transaction (all or none; see `mle_store::Change`).
    pub async fn apply(&self, changes: &[mle_store::Change<'_>]) -> Result<(), DbError> {
        Ok(self.store.apply(changes).await?)
    }

    /// Deletes a resource; with `children`, only when it has none of that kind.
    pub async fn delete(
        &self,
        kind: Kind,
        project: &str,
        parent: &str,
        name: &str,
        children: Option<Kind>,
    ) -> Result<(), DbError> {
        self.store
            .delete_resource(
                kind.as_str(),
                project,
                parent,
                name,
                children.map(Kind::as_str),
            )
            .await?;
        Ok(())
    }
}
