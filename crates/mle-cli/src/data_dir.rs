//! Where mle keeps its data by default: `$MLE_DATA_DIR`, else `~/.mle` (the server's store,
//! runs and token; the client reads the token from there).

use std::path::PathBuf;

/// `$MLE_DATA_DIR`, else `~/.mle`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("MLE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".mle")
        })
}
