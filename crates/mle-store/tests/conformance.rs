//! One conformance suite for every backend: the same checks against SQLite and against a real
//! PostgreSQL server (a throwaway cluster made with initdb and pg_ctl on a free port).

use std::path::Path;
use std::process::Command;

use mle_store::{Change, JobFilter, JobRecord, Store, StoreError};

/// Concurrent inserts each get their own creation order; none is refused as a duplicate.
async fn concurrent_inserts(s: &Store) {
    let mut tasks = Vec::new();
    for i in 0..24 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let job = s
                .insert_job("race", &format!("j{i}"), "QUEUED", "t", "{}")
                .await;
            let res = s
                .insert_resource("model", "race", "", &format!("m{i}"), "{}")
                .await;
            (job.map(|r| r.seq), res.map(|r| r.seq))
        }));
    }
    let mut job_seqs = std::collections::BTreeSet::new();
    let mut res_seqs = std::collections::BTreeSet::new();
    for t in tasks {
        let (j, r) = t.await.unwrap();
        job_seqs.insert(j.expect("no false 409 for a job"));
        res_seqs.insert(r.expect("no false 409 for a resource"));
    }
    assert_eq!((job_seqs.len(), res_seqs.len()), (24, 24));
    assert!(matches!(
        s.insert_job("race", "j0", "QUEUED", "t", "{}").await,
        Err(mle_store::StoreError::AlreadyExists { .. })
    ));
}

async fn conformance(s: &Store) {
    let a = s
        .insert_job("p", "a", "QUEUED", "t0", "{\"x\":1}")
        .await
        .unwrap();
    assert_eq!((a.seq, a.etag), (1, 1));
    assert_eq!(s.get_job("p", "a").await.unwrap(), a);
    assert!(matches!(
        s.insert_job("p", "a", "QUEUED", "t1", "{}").await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.get_job("p", "zz").await,
        Err(StoreError::NotFound { .. })
    ));
    let b = s
        .update_job("p", "a", 1, "RUNNING", "{\"r\":1}")
        .await
        .unwrap();
    assert_eq!((b.etag, b.state.as_str()), (2, "RUNNING"));
    assert!(matches!(
        s.update_job("p", "a", 1, "FAILED", "{}").await,
        Err(StoreError::Conflict { expected: 1, .. })
    ));
    for (id, st) in [("abc1", "QUEUED"), ("abd", "RUNNING"), ("abc_2", "RUNNING")] {
        s.insert_job("p", id, st, "t", "{}").await.unwrap();
    }
    s.insert_job("q", "a", "QUEUED", "t", "{}").await.unwrap();
    let ids = |v: Vec<JobRecord>| v.into_iter().map(|r| r.job_id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list_jobs("p", &JobFilter::default(), 0, 2).await.unwrap()),
        vec!["a", "abc1"]
    );
    assert_eq!(
        ids(s
            .list_jobs("p", &JobFilter::default(), 2, 10)
            .await
            .unwrap()),
        vec!["abd", "abc_2"]
    );
    let running = JobFilter {
        state: Some("RUNNING".into()),
        ..JobFilter::default()
    };
    assert_eq!(
        ids(s.list_jobs("p", &running, 0, 10).await.unwrap()),
        vec!["a", "abd", "abc_2"]
    );
    let pre = JobFilter {
        id_prefix: Some("abc_".into()),
        ..JobFilter::default()
    };
    assert_eq!(
        ids(s.list_jobs("p", &pre, 0, 10).await.unwrap()),
        vec!["abc_2"]
    );
    // Newest first, paged by the last row's seq: every job once, in reverse.
    let newest = JobFilter {
        newest_first: true,
        ..JobFilter::default()
    };
    let first = s.list_jobs("p", &newest, 0, 2).await.unwrap();
    assert_eq!(ids(first.clone()), vec!["abc_2", "abd"]);
    let after = first.last().unwrap().seq;
    assert_eq!(
        ids(s.list_jobs("p", &newest, after, 10).await.unwrap()),
        vec!["abc1", "a"]
    );
    assert_eq!(s.projects().await.unwrap(), vec!["p", "q"]);
    assert_eq!(
        ids(s.jobs_in_states(&["QUEUED"]).await.unwrap()),
        vec!["abc1", "a"]
    );
    assert_eq!(
        s.count_by_state().await.unwrap(),
        vec![("QUEUED".to_string(), 2), ("RUNNING".to_string(), 3)]
    );
    resources(s).await;
}

/// Models, versions and operations.
async fn resources(s: &Store) {
    let m = s
        .insert_resource("model", "p", "", "iris", "{\"m\":1}")
        .await
        .unwrap();
    assert_eq!(m.etag, 1);
    assert!(matches!(
        s.insert_resource("model", "p", "", "iris", "{}").await,
        Err(StoreError::AlreadyExists { .. })
    ));
    s.insert_resource("model", "q", "", "iris", "{}")
        .await
        .unwrap();
    for v in ["v1", "v2"] {
        s.insert_resource("version", "p", "iris", v, "{}")
            .await
            .unwrap();
    }
    let names = |v: Vec<mle_store::Resource>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(
            s.list_resources("version", "p", "iris", 0, 10)
                .await
                .unwrap()
        ),
        vec!["v1", "v2"]
    );
    let first = s
        .list_resources("version", "p", "iris", 0, 1)
        .await
        .unwrap();
    assert_eq!(
        names(
            s.list_resources("version", "p", "iris", first[0].seq, 10)
                .await
                .unwrap()
        ),
        vec!["v2"]
    );
    assert!(matches!(
        s.delete_resource("model", "p", "", "iris", Some("version"))
            .await,
        Err(StoreError::HasChildren { .. })
    ));
    let u = s
        .update_resource("version", "p", "iris", "v1", 1, "{\"state\":\"READY\"}")
        .await
        .unwrap();
    assert_eq!((u.etag, u.body.as_str()), (2, "{\"state\":\"READY\"}"));
    assert!(matches!(
        s.update_resource("version", "p", "iris", "v1", 1, "{}")
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.update_resource("version", "p", "iris", "v9", 1, "{}")
            .await,
        Err(StoreError::NotFound { .. })
    ));
    for v in ["v1", "v2"] {
        s.delete_resource("version", "p", "iris", v, None)
            .await
            .unwrap();
    }
    s.delete_resource("model", "p", "", "iris", Some("version"))
        .await
        .unwrap();
    assert!(matches!(
        s.get_resource("model", "p", "", "iris").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.get_resource("model", "q", "", "iris").await.is_ok());
    batches(s).await;
}

/// `apply`: every change of a batch happens, or none.
async fn batches(s: &Store) {
    let m = s
        .insert_resource("model", "b", "", "m", "{}")
        .await
        .unwrap();
    let insert = |name| Change::Insert {
        kind: "version",
        project: "b",
        parent: "m",
        name,
        body: "{\"v\":1}",
    };
    let bump = |expected| Change::Update {
        kind: "model",
        project: "b",
        parent: "",
        name: "m",
        expected,
        body: "{\"n\":1}",
    };
    s.apply(&[bump(m.etag), insert("v1")]).await.unwrap();
    assert_eq!(s.get_resource("model", "b", "", "m").await.unwrap().etag, 2);
    // A stale etag anywhere in the batch: nothing of it happens.
    assert!(matches!(
        s.apply(&[insert("v2"), bump(m.etag)]).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.get_resource("version", "b", "m", "v2").await,
        Err(StoreError::NotFound { .. })
    ));
    // A taken name: the model's update is undone too.
    assert!(matches!(
        s.apply(&[bump(2), insert("v1")]).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(s.get_resource("model", "b", "", "m").await.unwrap().etag, 2);
    let v1 = s.get_resource("version", "b", "m", "v1").await.unwrap();
    let delete = |expected| Change::Delete {
        kind: "version",
        project: "b",
        parent: "m",
        name: "v1",
        expected,
    };
    assert!(matches!(
        s.apply(&[bump(2), delete(v1.etag + 1)]).await,
        Err(StoreError::Conflict { .. })
    ));
    s.apply(&[bump(2), delete(v1.etag)]).await.unwrap();
    assert!(matches!(
        s.apply(&[delete(v1.etag)]).await,
        Err(StoreError::NotFound { .. })
    ));
    // Concurrent batches on one model: each one's etag check serialises them.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.apply(&[bump(3)]).await.is_ok() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn sqlite_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).await.unwrap();
    conformance(&store).await;
    concurrent_inserts(&store).await;
}

/// A PostgreSQL cluster in a scratch directory, stopped on drop.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres_user(cmd: &str, args: &[&str]) -> Command {
    // initdb refuses to run as root: use the `postgres` account then.
    if nix_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", cmd]).args(args);
        c
    } else {
        let mut c = Command::new(cmd);
        c.args(args);
        c
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl Postgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("pg");
        if nix_is_root() {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = data.to_str().unwrap();
        let ok = as_postgres_user(
            "initdb",
            &["-D", d, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        )
        .output()
        .unwrap();
        assert!(
            ok.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {}",
            dir.path().display()
        );
        let log = dir.path().join("pg.log");
        let ok = as_postgres_user(
            "pg_ctl",
            &[
                "-D",
                d,
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        )
        .output()
        .unwrap();
        assert!(
            ok.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        Self { dir, port }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("pg");
        let _ = as_postgres_user(
            "pg_ctl",
            &["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"],
        )
        .output();
    }
}

#[tokio::test]
async fn postgres_conforms() {
    assert!(
        Path::new("/usr/lib/postgresql").exists() || which("initdb"),
        "PostgreSQL (initdb, pg_ctl) is needed: apt-get install postgresql"
    );
    let pg = Postgres::start();
    let store = Store::open(&pg.url()).await.unwrap();
    conformance(&store).await;
    concurrent_inserts(&store).await;
    // Reopening runs the migrations again without harm and sees the data.
    let again = Store::open(&pg.url()).await.unwrap();
    assert_eq!(again.get_job("p", "abd").await.unwrap().state, "RUNNING");
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).exists()))
}
