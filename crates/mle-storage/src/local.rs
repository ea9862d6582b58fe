//! Local files behind the storage layer's operations.

use std::io::Read;
use std::path::Path;

use crate::{Location, Result, io_error};

pub(crate) fn reader(path: &Path) -> Result<Box<dyn Read + Send>> {
    let f = std::fs::File::open(path).map_err(|e| io_error(&path.display().to_string(), e))?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, f)))
}

/// Through a temporary sibling and a rename, so that a reader never sees half a file.
pub(crate) fn put(path: &Path, bytes: &[u8]) -> Result<()> {
    let uri = path.display().to_string();
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| io_error(&uri, e))?;
    }
    let tmp = path.with_extension(format!("tmp-mle-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| io_error(&uri, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(&uri, e))
}

/// Every file below `dir`, recursively, with its size (none when it does not exist).
pub(crate) fn list(dir: &Path) -> Result<Vec<(Location, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&d.display().to_string(), e)),
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) => out.push((Location::Local(p), m.len())),
                Err(_) => {}
            }
        }
    }
    Ok(out)
}
