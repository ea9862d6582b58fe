//! The path policy: the ONE function, [`checked`], that turns a request's path or URI field
//! into a place the server may use: a local path (absolute, what must exist, inside
//! `--allow-root` after symlinks and `..` are resolved) or an object in a bucket (`gs://`,
//! `s3://`: a well-formed URI in a bucket `--allow-bucket` names). Every route and plan goes
//! through it; [`place`] reads a field that was checked when its job was accepted.

use std::path::{Path, PathBuf};

use mle_storage::Location;

/// What must already exist at a checked location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (an output the job will create).
    Any,
    /// A regular file (a package).
    File,
    /// A directory (a model).
    Dir,
}

/// Where a field points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A local path.
    Local(PathBuf),
    /// An object (or a prefix) in a bucket. Whether it exists is learnt when it is read: the
    /// check does not call the store (it runs on the request's path).
    Bucket(Location),
}

impl Place {
    /// `name` below this directory or prefix.
    pub fn join(&self, name: &str) -> Place {
        match self {
            Place::Local(p) => Place::Local(p.join(name)),
            Place::Bucket(l) => Place::Bucket(l.join(name)),
        }
    }

    /// As the user wrote it: a path, or a bucket URI.
    pub fn uri(&self) -> String {
        match self {
            Place::Local(p) => p.display().to_string(),
            Place::Bucket(l) => l.uri(),
        }
    }
}

/// What the server may use: `--allow-root` and `--allow-bucket`.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Local paths must lie inside it, when set.
    pub root: Option<&'a Path>,
    /// The buckets URIs may name (`*`: any). With none named, every bucket is allowed unless
    /// a root is set (a server confined to a directory is not open to every bucket).
    pub buckets: &'a [String],
}

impl Policy<'_> {
    /// No limits (a personal server).
    pub const OPEN: Policy<'static> = Policy {
        root: None,
        buckets: &[],
    };

    fn bucket_allowed(&self, bucket: &str) -> bool {
        if self.buckets.is_empty() {
            return self.root.is_none();
        }
        self.buckets.iter().any(|b| b == "*" || b == bucket)
    }
}

/// The place `uri` names, checked against the policy, or a message for the field.
pub fn checked(uri: &str, need: Need, policy: Policy<'_>) -> Result<Place, String> {
    let loc = Location::parse(uri).map_err(|e| e.to_string())?;
    let path = match loc {
        Location::Local(p) => p,
        remote => {
            let (bucket, _) = remote.bucket_key().unwrap_or_default();
            if !policy.bucket_allowed(bucket) {
                return Err(format!(
                    "'{uri}' is in bucket '{bucket}', which this server may not use (an operator allows it with mle server --allow-bucket {bucket})"
                ));
            }
            return Ok(Place::Bucket(remote));
        }
    };
    if !path.is_absolute() {
        return Err(format!("'{uri}' must be an absolute path"));
    }
    // The root first: what exists outside it is none of the client's business (no oracle).
    if let Some(root) = policy.root
        && !inside(root, &path)
    {
        return Err(format!(
            "'{uri}' is outside the directory this server may use"
        ));
    }
    match need {
        Need::File if !path.is_file() => return Err(format!("'{uri}' does not exist")),
        Need::Dir if !path.is_dir() => return Err(format!("'{uri}' is not a directory")),
        _ => {}
    }
    Ok(Place::Local(path))
}

/// The place of a field that was [`checked`] when its job was accepted (the run's own use of
/// it: no existence or policy check again).
pub fn place(uri: &str) -> Place {
    match Location::parse(uri) {
        Ok(Location::Local(p)) => Place::Local(p),
        Ok(remote) => Place::Bucket(remote),
        Err(_) => Place::Local(PathBuf::from(uri)),
    }
}

/// Resolves `path` as the file system will: symlinks and `..` in the part that exists are
/// resolved by the OS, the rest lexically (a `..` that would climb out of it is refused).
fn resolve(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(existing.file_name()?.to_os_string());
        existing = existing.parent()?.to_path_buf();
    }
    let mut out = existing.canonicalize().ok()?;
    for part in rest.into_iter().rev() {
        match part.to_str() {
            Some("..") => return None,
            Some(".") => {}
            _ => out.push(part),
        }
    }
    Some(out)
}

/// Whether `path` resolves inside `root` (itself resolved).
fn inside(root: &Path, path: &Path) -> bool {
    match (root.canonicalize(), resolve(path)) {
        (Ok(r), Some(p)) => p.starts_with(r),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_resolved_before_the_root_check() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        assert!(inside(&root, &root.join("a/new/job")));
        assert!(!inside(&root, &root.join("a/../../outside")));
        assert!(!inside(&root, &root.join("new/../../outside")));
        assert!(!inside(&root, &root.join("escape/passwd")));
        assert!(!inside(&root, Path::new("relative/path")));
        assert!(!inside(&root, &dir.path().join("rootx")));
    }

    #[test]
    fn every_field_gets_the_same_checks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("pkg.tar.gz"), "x").unwrap();
        let r = Policy {
            root: Some(root),
            buckets: &[],
        };
        let file = format!("file://{}", root.join("pkg.tar.gz").display());
        assert_eq!(
            checked(&file, Need::File, r).unwrap(),
            Place::Local(root.join("pkg.tar.gz"))
        );
        assert!(
            checked("ftp://host/k", Need::Any, r)
                .unwrap_err()
                .contains("gs://")
        );
        assert!(
            checked("rel/x", Need::Any, Policy::OPEN)
                .unwrap_err()
                .contains("absolute")
        );
        let missing = root.join("none").display().to_string();
        assert!(
            checked(&missing, Need::File, r)
                .unwrap_err()
                .contains("does not exist")
        );
        assert!(
            checked(&missing, Need::Dir, r)
                .unwrap_err()
                .contains("not a directory")
        );
        assert!(
            checked("/etc", Need::Dir, r)
                .unwrap_err()
                .contains("outside")
        );
        assert!(checked("/etc", Need::Dir, Policy::OPEN).is_ok());
        // Outside the root, whether a path exists is not told.
        let (a, b) = (
            checked("/etc/passwd", Need::File, r).unwrap_err(),
            checked("/etc/no-such-file", Need::File, r).unwrap_err(),
        );
        assert!(a.contains("outside") && b.contains("outside"), "{a} / {b}");
    }

    #[test]
    fn buckets_are_allowed_as_the_operator_says() {
        let root = tempfile::tempdir().unwrap();
        let named = ["data-1".to_string()];
        let any = ["*".to_string()];
        let cases = [
            (Policy::OPEN, "gs://data-1/x", true),
            (Policy::OPEN, "s3://other/x", true),
            (
                Policy {
                    root: Some(root.path()),
                    buckets: &[],
                },
                "gs://data-1/x",
                false,
            ),
            (
                Policy {
                    root: None,
                    buckets: &named,
                },
                "gs://data-1/job",
                true,
            ),
            (
                Policy {
                    root: None,
                    buckets: &named,
                },
                "s3://data-2/job",
                false,
            ),
            (
                Policy {
                    root: Some(root.path()),
                    buckets: &any,
                },
                "s3://data-2/job",
                true,
            ),
        ];
        for (policy, uri, ok) in cases {
            let got = checked(uri, Need::File, policy);
            assert_eq!(got.is_ok(), ok, "{uri}: {got:?}");
            if let Err(e) = got {
                assert!(e.contains("--allow-bucket"), "{e}");
            }
        }
        assert_eq!(
            checked("gs://data-1/a/b.csv", Need::File, Policy::OPEN).unwrap(),
            Place::Bucket(Location::parse("gs://data-1/a/b.csv").unwrap())
        );
        for bad in [
            "gs://UPPER/x",
            "gs://ok-bucket/a/../b",
            "gs://x/k",
            "s3://b\u{7}cd/k",
        ] {
            assert!(checked(bad, Need::Any, Policy::OPEN).is_err(), "{bad}");
        }
    }
}
