//! One storage layer for every place Cloud ML Engine takes a path: local paths, `file://`,
//! `gs://` and `s3://` ([`Location`] parses them, once). [`Storage`] reads objects as streams
//! (memory bounded), writes each object whole (a reader never sees half of one), lists and
//! globs prefixes, and retries what fails on the way with backoff; every error names the URI
//! and its cause ([`StorageError`]).
//!
//! Clients and credentials, the standard way:
//! - `gs://`: `gcloud-storage`, which speaks GCS's JSON API. With `STORAGE_EMULATOR_HOST` set
//!   (the variable Google's client libraries use for an emulator) requests go there, without
//!   credentials and without any token fetch; otherwise the client's own discovery
//!   (`GOOGLE_APPLICATION_CREDENTIALS`, ...). `object_store`'s GCS client was not used: it
//!   speaks only the XML API, ignores the emulator variable and fetches a token from the
//!   metadata server even when told to skip signing.
//! - `s3://`: `object_store`'s `AmazonS3Builder::from_env` (`AWS_ENDPOINT_URL`,
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`).
//!
//! [`Mirror`] keeps a local working copy of a job dir in a bucket: pulled when a run starts (so
//! a rerun resumes from the newest checkpoint), pushed while it runs and when it ends.

mod gcs;
mod local;
mod mirror;
mod s3;

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

pub use mirror::{Mirror, Pusher};

/// A place named by a URI or a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// A local path (`/a/b`, `file:///a/b`).
    Local(PathBuf),
    /// `gs://bucket/key`.
    Gcs {
        /// The bucket.
        bucket: String,
        /// The object name (no leading `/`; empty for the bucket's root).
        key: String,
    },
    /// `s3://bucket/key`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The object key (no leading `/`; empty for the bucket's root).
        key: String,
    },
}

/// What went wrong, with the URI it happened to.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Not a URI or path this layer takes.
    #[error("'{uri}': {why}")]
    BadUri {
        /// The URI.
        uri: String,
        /// Why.
        why: String,
    },
    /// The bucket does not exist.
    #[error("{uri}: no such bucket")]
    NoSuchBucket {
        /// The URI.
        uri: String,
    },
    /// The object (or file) does not exist.
    #[error("{uri}: no such object")]
    NoSuchObject {
        /// The URI.
        uri: String,
    },
    /// The store refused the credentials.
    #[error("{uri}: access denied ({detail})")]
    AccessDenied {
        /// The URI.
        uri: String,
        /// The store's words.
        detail: String,
    },
    /// No credentials could be found.
    #[error("{uri}: no credentials ({detail})")]
    NoCredentials {
        /// The URI.
        uri: String,
        /// How credentials are looked for.
        detail: String,
    },
    /// The store could not be reached (after the retries).
    #[error("{uri}: the endpoint is unreachable ({detail})")]
    Unreachable {
        /// The URI.
        uri: String,
        /// The last cause.
        detail: String,
    },
    /// Anything else the store or the file system said.
    #[error("{uri}: {detail}")]
    Other {
        /// The URI.
        uri: String,
        /// The cause.
        detail: String,
    },
}

impl StorageError {
    /// Whether trying again may help (the store was unreachable or answered 5xx/429).
    pub fn transient(&self) -> bool {
        matches!(self, StorageError::Unreachable { .. })
    }
}

/// The result of storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;

fn bad(uri: &str, why: impl Into<String>) -> StorageError {
    StorageError::BadUri {
        uri: uri.to_string(),
        why: why.into(),
    }
}

impl Location {
    /// Parses a local path, a `file://` URI, or a `gs://`/`s3://` URI. Buckets follow the
    /// stores' naming rules (3–63 of `a-z0-9._-`, starting and ending with a letter or digit);
    /// keys may not hold `..` segments, empty segments or control characters.
    pub fn parse(uri: &str) -> Result<Self> {
        if uri.chars().any(char::is_control) {
            return Err(bad(uri, "holds control characters"));
        }
        let (scheme, rest) = match uri.split_once("://") {
            Some((s, r)) => (s, r),
            None => return Ok(Location::Local(PathBuf::from(uri))),
        };
        match scheme {
            "file" => Ok(Location::Local(PathBuf::from(rest))),
            "gs" | "s3" => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                let ok_bucket = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b)
                    })
                    && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
                if !ok_bucket {
                    return Err(bad(
                        uri,
                        format!(
                            "'{bucket}' is not a bucket name (3-63 of a-z, 0-9, '.', '-', '_')"
                        ),
                    ));
                }
                let key = key.trim_end_matches('/');
                if key.split('/').any(|s| s == ".." || s == ".") || key.contains("//") {
                    return Err(bad(uri, "the key may not hold '.', '..' or empty segments"));
                }
                let (bucket, key) = (bucket.to_string(), key.to_string());
                Ok(if scheme == "gs" {
                    Location::Gcs { bucket, key }
                } else {
                    Location::S3 { bucket, key }
                })
            }
            other => Err(bad(
                uri,
                format!(
                    "'{other}://' is not a scheme mle reads (local paths, file://, gs://, s3://)"
                ),
            )),
        }
    }

    /// Whether it is in an object store.
    pub fn is_remote(&self) -> bool {
        !matches!(self, Location::Local(_))
    }

    /// The bucket and key of a remote location.
    pub fn bucket_key(&self) -> Option<(&str, &str)> {
        match self {
            Location::Gcs { bucket, key } | Location::S3 { bucket, key } => {
                Some((bucket.as_str(), key.as_str()))
            }
            Location::Local(_) => None,
        }
    }

    /// The location `name` (a relative path with `/`) below this one.
    pub fn join(&self, name: &str) -> Location {
        let name = name.trim_start_matches('/');
        let below = |key: &str| {
            if key.is_empty() {
                name.to_string()
            } else {
                format!("{key}/{name}")
            }
        };
        match self {
            Location::Local(p) => Location::Local(p.join(name)),
            Location::Gcs { bucket, key } => Location::Gcs {
                bucket: bucket.clone(),
                key: below(key),
            },
            Location::S3 { bucket, key } => Location::S3 {
                bucket: bucket.clone(),
                key: below(key),
            },
        }
    }

    /// Its name below `base` (`a/b` for `gs://x/k/a/b` below `gs://x/k`), if it lies below
    /// it; a name with empty, `.` or `..` segments is not one (it could not be a local file's).
    pub fn relative_to(&self, base: &Location) -> Option<String> {
        let (uri, base) = (self.uri(), base.uri());
        let rel = uri
            .strip_prefix(base.trim_end_matches('/'))?
            .strip_prefix('/')?;
        (!rel.is_empty()
            && rel
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."))
        .then(|| rel.to_string())
    }

    /// The URI (`gs://b/k`, `s3://b/k`) or path.
    pub fn uri(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::Gcs { bucket, key } => format!("gs://{bucket}/{key}"),
            Location::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri())
    }
}

/// The environment variables the storage layer reads (credentials, endpoints, retries): what
/// a process that reads buckets on the server's behalf (a batch prediction) is given, and
/// what an operator passes to jobs with `mle server --pass-env` when trainers read buckets.
pub const ENV_VARS: &[&str] = &[
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ALLOW_HTTP",
    "MLE_STORAGE_RETRY_SECS",
];

/// How long failing calls are retried: first wait and the whole budget.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// The first backoff (doubled each time, at most 5 s).
    pub first: Duration,
    /// How long one operation keeps trying.
    pub budget: Duration,
}

impl Default for Retry {
    /// 120 s — a store that restarts (a deployment, a crash) is back within a minute or two —
    /// or `MLE_STORAGE_RETRY_SECS`.
    fn default() -> Self {
        let budget = std::env::var("MLE_STORAGE_RETRY_SECS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0 && *v <= 86_400.0)
            .map_or(Duration::from_secs(120), Duration::from_secs_f64);
        Self {
            first: Duration::from_millis(200),
            budget,
        }
    }
}

/// The storage layer: a blocking facade over the stores' async clients (its own runtime, so
/// callers need none; do not call it from an async task — use `spawn_blocking`).
pub struct Storage {
    rt: tokio::runtime::Runtime,
    gcs: tokio::sync::OnceCell<gcs::Gcs>,
    s3: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<s3::S3>>>,
    retry: Retry,
}

impl Storage {
    /// A storage layer configured from the environment (see the module docs).
    pub fn from_env() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mle-storage")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Other {
                uri: String::new(),
                detail: format!("cannot start the storage runtime: {e}"),
            })?;
        Ok(Self {
            rt,
            gcs: tokio::sync::OnceCell::new(),
            s3: Default::default(),
            retry: Retry::default(),
        })
    }

    /// The process's one storage layer, made on first use and never dropped (its runtime
    /// must not be dropped inside an async context). Blocking, like every method here.
    pub fn shared() -> Result<&'static Storage> {
        static SHARED: std::sync::OnceLock<Storage> = std::sync::OnceLock::new();
        if let Some(s) = SHARED.get() {
            return Ok(s);
        }
        let made = Storage::from_env()?;
        Ok(SHARED.get_or_init(|| made))
    }

    /// Copies the object at `from` into the local file `to` (through a temporary sibling
    /// renamed at the end), streamed; more than `max_bytes` is an error naming the URI.
    pub fn download(&self, from: &Location, to: &std::path::Path, max_bytes: u64) -> Result<u64> {
        let uri = from.uri();
        let mut reader = self.reader(from)?.take(max_bytes.saturating_add(1));
        let parent = to.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| io_error(&to.display().to_string(), e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(parent)
            .map_err(|e| io_error(&to.display().to_string(), e))?;
        let n = std::io::copy(&mut reader, &mut tmp).map_err(|e| io_error(&uri, e))?;
        if n > max_bytes {
            return Err(StorageError::Other {
                uri,
                detail: format!("larger than {} MiB, the most mle copies", max_bytes >> 20),
            });
        }
        tmp.persist(to)
            .map_err(|e| io_error(&to.display().to_string(), e.error))?;
        Ok(n)
    }

    /// Copies every object below `from` into the directory `to` (created), keeping their
    /// relative names; at most `max_bytes` in all. Returns the number of files.
    pub fn download_dir(
        &self,
        from: &Location,
        to: &std::path::Path,
        max_bytes: u64,
    ) -> Result<usize> {
        let found = self.list(from)?;
        let total: u64 = found.iter().map(|(_, n)| *n).sum();
        if total > max_bytes {
            return Err(StorageError::Other {
                uri: from.uri(),
                detail: format!(
                    "holds more than {} MiB, the most mle copies",
                    max_bytes >> 20
                ),
            });
        }
        let mut count = 0;
        for (loc, n) in &found {
            let Some(rel) = loc.relative_to(from) else {
                continue;
            };
            self.download(loc, &to.join(rel), *n)?;
            count += 1;
        }
        Ok(count)
    }

    fn s3(&self, bucket: &str, uri: &str) -> Result<std::sync::Arc<s3::S3>> {
        let mut map = self.s3.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(bucket) {
            return Ok(c.clone());
        }
        let c = std::sync::Arc::new(s3::S3::new(bucket, uri)?);
        map.insert(bucket.to_string(), c.clone());
        Ok(c)
    }

    fn gcs(&self, uri: &str) -> Result<&gcs::Gcs> {
        self.block(self.gcs.get_or_try_init(|| gcs::Gcs::new(uri)))
    }

    /// Runs `f` to completion on the storage runtime. Called from inside another runtime's
    /// task (where `block_on` would panic), it runs on a thread of its own and blocks the
    /// caller's thread meanwhile — correct, if not what an async caller should do.
    fn block<F: std::future::Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.rt.block_on(f);
        }
        std::thread::scope(|s| {
            s.spawn(|| self.rt.block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Runs `op` until it succeeds, fails for good, or the retry budget is spent.
    fn retrying<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let start = std::time::Instant::now();
        let mut wait = self.retry.first;
        loop {
            match op() {
                Err(e) if e.transient() && start.elapsed() + wait < self.retry.budget => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                r => return r,
            }
        }
    }

    /// A stream of the object's (or file's) bytes; memory stays bounded whatever its size.
    pub fn reader(&self, loc: &Location) -> Result<Box<dyn Read + Send>> {
        let uri = loc.uri();
        match loc {
            Location::Local(p) => local::reader(p),
            Location::Gcs { bucket, key } => {
                let gcs = self.gcs(&uri)?;
                let stream = self.retrying(|| self.block(gcs.stream(bucket, key, &uri)))?;
                Ok(Box::new(ChannelReader::spawn(&self.rt, stream, uri)))
            }
            Location::S3 { bucket, key } => {
                let s3 = self.s3(bucket, &uri)?;
                let stream = self.retrying(|| self.block(s3.stream(key, &uri)))?;
                Ok(Box::new(ChannelReader::spawn(&self.rt, stream, uri)))
            }
        }
    }

    /// The whole object.
    pub fn get(&self, loc: &Location) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.reader(loc)?
            .read_to_end(&mut out)
            .map_err(|e| io_error(&loc.uri(), e))?;
        Ok(out)
    }

    /// Writes the object whole: readers see the old one or the new one, never a part
    /// (objects by nature; local files through a temporary sibling and a rename).
    pub fn put(&self, loc: &Location, bytes: &[u8]) -> Result<()> {
        let uri = loc.uri();
        match loc {
            Location::Local(p) => local::put(p, bytes),
            Location::Gcs { bucket, key } => {
                let gcs = self.gcs(&uri)?;
                self.retrying(|| self.block(gcs.put(bucket, key, bytes, &uri)))
            }
            Location::S3 { bucket, key } => {
                let s3 = self.s3(bucket, &uri)?;
                self.retrying(|| self.block(s3.put(key, bytes, &uri)))
            }
        }
    }

    /// Removes the object (or file); one that is already gone is not an error.
    pub fn delete(&self, loc: &Location) -> Result<()> {
        let uri = loc.uri();
        match loc {
            Location::Local(p) => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(&uri, e)),
                _ => Ok(()),
            },
            Location::Gcs { bucket, key } => {
                let gcs = self.gcs(&uri)?;
                self.retrying(|| self.block(gcs.delete(bucket, key, &uri)))
            }
            Location::S3 { bucket, key } => {
                let s3 = self.s3(bucket, &uri)?;
                self.retrying(|| self.block(s3.delete(key, &uri)))
            }
        }
    }

    /// Every object below `prefix` (as a directory: `prefix/...`), with its size.
    pub fn list(&self, prefix: &Location) -> Result<Vec<(Location, u64)>> {
        let uri = prefix.uri();
        match prefix {
            Location::Local(p) => local::list(p),
            Location::Gcs { bucket, key } => {
                let gcs = self.gcs(&uri)?;
                let found = self.retrying(|| self.block(gcs.list(bucket, key, &uri)))?;
                Ok(found
                    .into_iter()
                    .map(|(k, n)| {
                        (
                            Location::Gcs {
                                bucket: bucket.clone(),
                                key: k,
                            },
                            n,
                        )
                    })
                    .collect())
            }
            Location::S3 { bucket, key } => {
                let s3 = self.s3(bucket, &uri)?;
                let found = self.retrying(|| self.block(s3.list(key, &uri)))?;
                Ok(found
                    .into_iter()
                    .map(|(k, n)| {
                        (
                            Location::S3 {
                                bucket: bucket.clone(),
                                key: k,
                            },
                            n,
                        )
                    })
                    .collect())
            }
        }
    }

    /// The objects a URI names: itself, or with `*` and `?` in its last segment every match
    /// in that "directory", sorted. No match is an error naming the pattern.
    pub fn glob(&self, uri: &str) -> Result<Vec<Location>> {
        let loc = Location::parse(uri)?;
        let name = match &loc {
            Location::Local(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            other => other
                .bucket_key()
                .map(|(_, k)| k.rsplit('/').next().unwrap_or("").to_string())
                .unwrap_or_default(),
        };
        if !name.contains(['*', '?']) {
            return Ok(vec![loc]);
        }
        let parent = match &loc {
            Location::Local(p) => {
                Location::Local(p.parent().map(PathBuf::from).unwrap_or_default())
            }
            Location::Gcs { bucket, key } => Location::Gcs {
                bucket: bucket.clone(),
                key: key.rsplit_once('/').map_or("", |(d, _)| d).to_string(),
            },
            Location::S3 { bucket, key } => Location::S3 {
                bucket: bucket.clone(),
                key: key.rsplit_once('/').map_or("", |(d, _)| d).to_string(),
            },
        };
        let mut found: Vec<Location> = self
            .list(&parent)?
            .into_iter()
            .map(|(l, _)| l)
            .filter(|l| {
                l.relative_to(&parent)
                    .is_some_and(|rest| !rest.contains('/') && wildcard(&name, &rest))
            })
            .collect();
        found.sort_by_key(Location::uri);
        if found.is_empty() {
            return Err(StorageError::NoSuchObject {
                uri: uri.to_string(),
            });
        }
        Ok(found)
    }
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character).
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn io_error(uri: &str, e: std::io::Error) -> StorageError {
    match e.kind() {
        std::io::ErrorKind::NotFound => StorageError::NoSuchObject {
            uri: uri.to_string(),
        },
        std::io::ErrorKind::PermissionDenied => StorageError::AccessDenied {
            uri: uri.to_string(),
            detail: e.to_string(),
        },
        _ => StorageError::Other {
            uri: uri.to_string(),
            detail: e.to_string(),
        },
    }
}

/// A stream of byte chunks, pumped on the storage runtime into a bounded channel and read
/// synchronously: at most a few chunks are in memory at once.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::result::Result<bytes::Bytes, String>>,
    chunk: bytes::Bytes,
    uri: String,
}

/// A store's byte stream.
type ByteStream = futures::stream::BoxStream<'static, std::result::Result<bytes::Bytes, String>>;

impl ChannelReader {
    fn spawn(rt: &tokio::runtime::Runtime, mut stream: ByteStream, uri: String) -> Self {
        use futures::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        rt.spawn(async move {
            while let Some(item) = stream.next().await {
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        Self {
            rx,
            chunk: bytes::Bytes::new(),
            uri,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            let next = if tokio::runtime::Handle::try_current().is_err() {
                self.rx.blocking_recv()
            } else {
                // Inside a runtime's task blocking_recv panics: wait on a thread of its own.
                let rx = &mut self.rx;
                std::thread::scope(|s| s.spawn(|| rx.blocking_recv()).join().ok().flatten())
            };
            match next {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!(
                        "{}: reading failed: {e}",
                        self.uri
                    )));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_below_a_prefix_are_relative_and_never_escape() {
        let base = Location::parse("gs://bkt/jobs/a").unwrap();
        let below = |u: &str| Location::parse(u).unwrap().relative_to(&base);
        assert_eq!(
            below("gs://bkt/jobs/a/ckpt/x.bin").as_deref(),
            Some("ckpt/x.bin")
        );
        assert_eq!(below("gs://bkt/jobs/ab/x"), None);
        assert_eq!(below("gs://bkt/jobs/a"), None);
        assert_eq!(below("s3://bkt/jobs/a/x"), None);
        let root = Location::parse("s3://bkt").unwrap();
        assert_eq!(
            Location::parse("s3://bkt/k/v")
                .unwrap()
                .relative_to(&root)
                .as_deref(),
            Some("k/v")
        );
        let local = Location::Local("/d".into());
        assert_eq!(Location::Local("/d/../e".into()).relative_to(&local), None);
        assert_eq!(
            Location::Local("/d/e/f".into())
                .relative_to(&local)
                .as_deref(),
            Some("e/f")
        );
    }

    #[test]
    fn uris_parse_into_locations_and_bad_ones_say_why() {
        assert_eq!(
            Location::parse("gs://smiling-beaming-abalone/abalone_train.csv").unwrap(),
            Location::Gcs {
                bucket: "smiling-beaming-abalone".into(),
                key: "abalone_train.csv".into()
            }
        );
        assert_eq!(
            Location::parse("s3://b12/job/").unwrap(),
            Location::S3 {
                bucket: "b12".into(),
                key: "job".into()
            }
        );
        assert_eq!(
            Location::parse("file:///tmp/x").unwrap(),
            Location::Local("/tmp/x".into())
        );
        assert_eq!(
            Location::parse("rel/x").unwrap(),
            Location::Local("rel/x".into())
        );
        for (uri, why) in [
            ("az://c/x", "not a scheme"),
            ("gs://Upper/x", "not a bucket name"),
            ("gs://ab/x", "not a bucket name"),
            ("gs://-bucket/x", "not a bucket name"),
            ("s3://bucket/a/../b", "'..'"),
            ("s3://bucket/a//b", "empty segments"),
            ("gs://bucket/a\nb", "control characters"),
        ] {
            let e = Location::parse(uri).unwrap_err().to_string();
            assert!(e.contains(why), "{uri}: {e}");
        }
        let job = Location::parse("gs://bkt/jobs/j1").unwrap();
        assert_eq!(
            job.join("checkpoints/ckpt-5").uri(),
            "gs://bkt/jobs/j1/checkpoints/ckpt-5"
        );
        assert_eq!(
            Location::parse("s3://bkt").unwrap().join("a").uri(),
            "s3://bkt/a"
        );
    }

    #[test]
    fn wildcards_match_as_shells_do() {
        assert!(wildcard("*.csv", "a.csv"));
        assert!(wildcard("abalone_*.csv", "abalone_train.csv"));
        assert!(!wildcard("*.csv", "a.csv.gz"));
        assert!(wildcard("part-????", "part-0001"));
        assert!(!wildcard("part-????", "part-001"));
        assert!(wildcard("*", ""));
    }

    #[test]
    fn local_files_are_read_written_listed_and_globbed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::from_env().unwrap();
        let a = Location::Local(dir.path().join("d/a.csv"));
        s.put(&a, b"1,2\n").unwrap();
        s.put(&Location::Local(dir.path().join("d/b.csv")), b"3,4\n")
            .unwrap();
        s.put(&Location::Local(dir.path().join("d/sub/c.csv")), b"5\n")
            .unwrap();
        assert_eq!(s.get(&a).unwrap(), b"1,2\n");
        let listed = s.list(&Location::Local(dir.path().join("d"))).unwrap();
        assert_eq!(listed.len(), 3, "{listed:?}");
        let pattern = format!("{}/d/*.csv", dir.path().display());
        let found = s.glob(&pattern).unwrap();
        assert_eq!(
            found.len(),
            2,
            "sub/ is not matched by a last-segment pattern"
        );
        let e = s
            .glob(&format!("{}/d/*.json", dir.path().display()))
            .unwrap_err();
        assert!(matches!(e, StorageError::NoSuchObject { .. }), "{e}");
        let e = s
            .get(&Location::Local(dir.path().join("nope")))
            .unwrap_err();
        assert!(e.to_string().contains("no such object"), "{e}");
    }
}
