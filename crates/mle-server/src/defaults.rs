//! A model's versions and its default version change together. Creating a version, deleting
//! one and `setDefault` are each one store transaction that also compare-and-sets the model's
//! record, so concurrent calls on one model take turns (the loser reads again), and neither
//! a crash nor a race can leave a model with versions but no default, or with two.

use mle_api::{Model, Version, VersionState};
use mle_store::Change;

use crate::catalog::marked_defaults;
use crate::db::{Db, DbError, Kind, Stored, to_body, with_retry};

/// The model's record as read: rewritten unchanged in each batch, its etag check makes the
/// batch take turns with every other change of the model's versions.
struct Turn {
    etag: i64,
    body: String,
}

impl Turn {
    async fn read(db: &Db, project: &str, model: &str) -> Result<Self, DbError> {
        let m: Stored<Model> = db.get(Kind::Model, project, "", model).await?;
        Ok(Self {
            etag: m.etag,
            body: to_body(&m.value)?,
        })
    }

    fn change<'a>(&'a self, project: &'a str, model: &'a str) -> Change<'a> {
        Change::Update {
            kind: Kind::Model.as_str(),
            project,
            parent: "",
            name: model,
            expected: self.etag,
            body: &self.body,
        }
    }
}

/// A version's new body, if it is still at `expected`.
fn update_version<'a>(
    project: &'a str,
    model: &'a str,
    name: &'a str,
    expected: i64,
    body: &'a str,
) -> Change<'a> {
    Change::Update {
        kind: Kind::Version.as_str(),
        project,
        parent: model,
        name,
        expected,
        body,
    }
}

/// Adds version `id` (`v` as given, its default flag set here): the model's first version
/// becomes its default.
pub async fn create(
    db: &Db,
    project: &str,
    model: &str,
    id: &str,
    v: &Version,
) -> Result<Version, DbError> {
    with_retry(|| async move {
        let turn = Turn::read(db, project, model).await?;
        let mut v = v.clone();
        v.is_default = marked_defaults(db, project, model).await?.is_empty();
        let body = to_body(&v)?;
        db.apply(&[
            turn.change(project, model),
            Change::Insert {
                kind: Kind::Version.as_str(),
                project,
                parent: model,
                name: id,
                body: &body,
            },
        ])
        .await?;
        Ok(v)
    })
    .await
}

/// Deletes `version`, refused while it is being created (its files are being copied) and
/// while it is the default of a model with other versions.
pub async fn delete(
    db: &Db,
    project: &str,
    model: &str,
    version: &str,
) -> Result<Stored<Version>, DbError> {
    with_retry(|| async move {
        let turn = Turn::read(db, project, model).await?;
        let rec: Stored<Version> = db.get(Kind::Version, project, model, version).await?;
        if rec.value.state == VersionState::Creating {
            return Err(DbError::Refused(format!(
                "version '{version}' is being created; delete it once it is READY or FAILED"
            )));
        }
        if rec.value.is_default {
            let others = db
                .list::<Version>(Kind::Version, project, model, 0, 2)
                .await?;
            if others.len() > 1 {
                return Err(DbError::Refused(format!(
                    "version '{version}' is the default; make another version the default first"
                )));
            }
        }
        db.apply(&[
            turn.change(project, model),
            Change::Delete {
                kind: Kind::Version.as_str(),
                project,
                parent: model,
                name: version,
                expected: rec.etag,
            },
        ])
        .await?;
        Ok(rec)
    })
    .await
}

/// Makes the READY `version` the model's one default.
pub async fn set_default(
    db: &Db,
    project: &str,
    model: &str,
    version: &str,
) -> Result<Stored<Version>, DbError> {
    with_retry(|| async move {
        let turn = Turn::read(db, project, model).await?;
        let mut target: Stored<Version> = db.get(Kind::Version, project, model, version).await?;
        if target.value.state != VersionState::Ready {
            return Err(DbError::Refused(format!(
                "version '{version}' is not READY"
            )));
        }
        let mut changed: Vec<(Stored<Version>, String)> = Vec::new();
        for mut old in marked_defaults(db, project, model).await? {
            if old.name != version {
                old.value.is_default = false;
                let body = to_body(&old.value)?;
                changed.push((old, body));
            }
        }
        let was_default = target.value.is_default;
        target.value.is_default = true;
        let target_body = to_body(&target.value)?;
        let mut changes = vec![turn.change(project, model)];
        for (old, body) in &changed {
            changes.push(update_version(project, model, &old.name, old.etag, body));
        }
        if !was_default {
            changes.push(update_version(
                project,
                model,
                version,
                target.etag,
                &target_body,
            ));
        }
        db.apply(&changes).await?;
        if !was_default {
            target.etag += 1;
        }
        Ok(target)
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = mle_store::Store::open_dir(dir.path()).await.unwrap();
        (Db::new(store), dir)
    }

    fn ready(name: &str) -> Version {
        Version {
            name: name.into(),
            state: VersionState::Ready,
            ..Version::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_creates_and_set_defaults_leave_exactly_one_default() {
        let (db, _dir) = db().await;
        let db = Arc::new(db);
        db.insert(Kind::Model, "p", "", "m", &Model::default())
            .await
            .unwrap();
        // Racing first versions: one of them is the default.
        let creates: Vec<_> = (0..6)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let id = format!("v{i}");
                    create(&db, "p", "m", &id, &ready(&id)).await.unwrap()
                })
            })
            .collect();
        let mut firsts = 0;
        for c in creates {
            firsts += usize::from(c.await.unwrap().is_default);
        }
        assert_eq!(firsts, 1);
        // Racing setDefaults (and creates beside them): still exactly one.
        let mut tasks = Vec::new();
        for i in 0..24 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                if i % 4 == 3 {
                    let id = format!("w{i}");
                    create(&db, "p", "m", &id, &ready(&id)).await.map(|_| ())
                } else {
                    set_default(&db, "p", "m", &format!("v{}", i % 6))
                        .await
                        .map(|_| ())
                }
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(marked_defaults(&db, "p", "m").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_default_goes_last_and_a_creating_version_stays() {
        let (db, _dir) = db().await;
        db.insert(Kind::Model, "p", "", "m", &Model::default())
            .await
            .unwrap();
        create(&db, "p", "m", "a", &ready("a")).await.unwrap();
        create(&db, "p", "m", "b", &ready("b")).await.unwrap();
        let creating = Version {
            state: VersionState::Creating,
            ..ready("c")
        };
        create(&db, "p", "m", "c", &creating).await.unwrap();
        let refused = |r: Result<Stored<Version>, DbError>| match r {
            Err(DbError::Refused(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(refused(delete(&db, "p", "m", "a").await).contains("is the default"));
        assert!(refused(delete(&db, "p", "m", "c").await).contains("being created"));
        assert!(refused(set_default(&db, "p", "m", "c").await).contains("not READY"));
        let b = set_default(&db, "p", "m", "b").await.unwrap();
        assert!(b.value.is_default);
        let stored: Stored<Version> = db.get(Kind::Version, "p", "m", "b").await.unwrap();
        assert_eq!(stored.etag, b.etag);
        delete(&db, "p", "m", "a").await.unwrap();
        assert_eq!(marked_defaults(&db, "p", "m").await.unwrap()[0].name, "b");
    }
}
