//! The path policy: the ONE function, [`checked`], that turns a request's path or URI field
//! into a location the server may use (scheme, absolute, what must exist, inside
//! `--allow-root` after symlinks and `..` are resolved). Every route and plan goes through it;
//! `gs://` and `s3://` will enter here.

use std::path::{Path, PathBuf};

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

/// The local path `uri` names, checked against the policy, or a message for the field.
pub fn checked(uri: &str, need: Need, allow_root: Option<&Path>) -> Result<PathBuf, String> {
    let path = mle_api::local_path(uri)?;
    if !path.is_absolute() {
        return Err(format!("'{uri}' must be an absolute path"));
    }
    // The root first: what exists outside it is none of the client's business (no oracle).
    if let Some(root) = allow_root
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
    Ok(path)
}

/// The local path of a field that was [`checked`] when its job was accepted (the run's own
/// use of it: no existence or root check again).
pub fn local(uri: &str) -> PathBuf {
    mle_api::local_path(uri).unwrap_or_else(|_| PathBuf::from(uri))
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
        let r = Some(root);
        let file = format!("file://{}", root.join("pkg.tar.gz").display());
        assert_eq!(
            checked(&file, Need::File, r).unwrap(),
            root.join("pkg.tar.gz")
        );
        assert!(
            checked("s3://b/k", Need::Any, r)
                .unwrap_err()
                .contains("file://")
        );
        assert!(
            checked("rel/x", Need::Any, None)
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
        assert!(checked("/etc", Need::Dir, None).is_ok());
        // Outside the root, whether a path exists is not told.
        let (a, b) = (
            checked("/etc/passwd", Need::File, r).unwrap_err(),
            checked("/etc/no-such-file", Need::File, r).unwrap_err(),
        );
        assert!(a.contains("outside") && b.contains("outside"), "{a} / {b}");
    }
}
