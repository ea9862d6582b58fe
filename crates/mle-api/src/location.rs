//! A field that must name a local path (plain, or a `file://` URI): `mle train`'s job dir once
//! a bucket one has been given a local working copy. Every other path or URI field is parsed
//! by `mle-storage`'s `Location` (local, `file://`, `gs://`, `s3://`), which the server's path
//! policy uses.

use std::path::PathBuf;

/// The local path a field names: `file://` stripped; any other scheme is refused with a
/// message that says what is supported.
pub fn local_path(uri: &str) -> Result<PathBuf, String> {
    if let Some(rest) = uri.strip_prefix("file://") {
        return Ok(PathBuf::from(rest));
    }
    if let Some((scheme, _)) = uri.split_once("://") {
        return Err(format!(
            "'{scheme}://' URIs are not supported yet: only local paths and file:// URIs are supported"
        ));
    }
    Ok(PathBuf::from(uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_and_plain_paths_are_local_other_schemes_are_refused() {
        assert_eq!(local_path("file:///a/b").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(local_path("/a/b").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(local_path("rel/x").unwrap(), PathBuf::from("rel/x"));
        let e = local_path("gs://bucket/x").unwrap_err();
        assert!(e.contains("'gs://'") && e.contains("file://"), "{e}");
    }
}
