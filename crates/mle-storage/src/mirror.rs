//! A job dir in a bucket, worked on through a local copy: [`Mirror::pull`] brings down what
//! the bucket holds (a rerun resumes from its newest checkpoint), [`Mirror::push`] uploads every
//! file that changed since the last push, each as a whole object, and [`Mirror::every`] pushes
//! in the background while training runs. The trainer writes its files locally as it always
//! does (checkpoints through a rename), so an object is always a complete file: a reader of
//! the bucket never sees half a checkpoint, and an event file grows by whole uploads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::{Location, Result, Storage, StorageError};

/// A local working copy of a remote directory.
pub struct Mirror {
    storage: Arc<Storage>,
    remote: Location,
    dir: tempfile::TempDir,
    /// Size and modification time of each file as last pushed (or pulled).
    seen: Mutex<HashMap<PathBuf, (u64, SystemTime)>>,
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

impl Mirror {
    /// A fresh local directory holding every object below `remote`.
    pub fn pull(storage: Arc<Storage>, remote: Location) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("mle-jobdir-")
            .tempdir()
            .map_err(|e| StorageError::Other {
                uri: remote.uri(),
                detail: format!("cannot create a local working directory: {e}"),
            })?;
        let mirror = Self {
            storage,
            remote,
            dir,
            seen: Mutex::new(HashMap::new()),
        };
        for (loc, _) in mirror.storage.list(&mirror.remote)? {
            let Some(rel) = loc.relative_to(&mirror.remote) else {
                continue;
            };
            let local = mirror.dir.path().join(rel);
            let bytes = mirror.storage.get(&loc)?;
            crate::local::put(&local, &bytes)?;
            if let Some(s) = stamp(&local) {
                mirror.lock().insert(local, s);
            }
        }
        Ok(mirror)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (u64, SystemTime)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The local working directory (what the trainer is given as its job dir).
    pub fn local(&self) -> &Path {
        self.dir.path()
    }

    /// The remote directory.
    pub fn remote(&self) -> &Location {
        &self.remote
    }

    /// A local file's name below the working directory, with `/`.
    fn rel(&self, path: &Path) -> String {
        path.strip_prefix(self.dir.path())
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default()
    }

    /// Uploads every file that is new or changed since the last push (temporary files of a
    /// write in progress are left for the next one) and removes the objects of files that were
    /// deleted since (checkpoints rotated out); returns how many it uploaded.
    pub fn push(&self) -> Result<usize> {
        let mut n = 0;
        for (loc, _) in crate::local::list(self.dir.path())? {
            let Location::Local(path) = loc else { continue };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.contains(".tmp") {
                continue;
            }
            let Some(now) = stamp(&path) else { continue };
            if self.lock().get(&path) == Some(&now) {
                continue;
            }
            let rel = self.rel(&path);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                // Removed meanwhile (an old checkpoint rotated out).
                Err(_) => continue,
            };
            // The stamp of what was read: a write after the read is pushed next time.
            self.storage.put(&self.remote.join(&rel), &bytes)?;
            self.lock().insert(path, now);
            n += 1;
        }
        // What the trainer removed (checkpoints rotated out) goes from the bucket too.
        let gone: Vec<PathBuf> = self
            .lock()
            .keys()
            .filter(|p| !p.exists())
            .cloned()
            .collect();
        for path in gone {
            let rel = self.rel(&path);
            if rel.is_empty() {
                continue;
            }
            self.storage.delete(&self.remote.join(&rel))?;
            self.lock().remove(&path);
        }
        Ok(n)
    }

    /// Pushes every `period` on a background thread until the returned handle is stopped;
    /// a failed push (after the layer's retries) is reported through `report` and tried
    /// again at the next period.
    pub fn every(
        self: &Arc<Self>,
        period: Duration,
        report: impl Fn(&StorageError) + Send + 'static,
    ) -> Pusher {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (me, flag) = (self.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut waited = Duration::ZERO;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
                if waited >= period {
                    waited = Duration::ZERO;
                    if let Err(e) = me.push() {
                        report(&e);
                    }
                }
            }
        });
        Pusher {
            stop,
            thread: Some(thread),
        }
    }
}

/// The background pusher of [`Mirror::every`]; stops when dropped.
pub struct Pusher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pusher {
    /// Stops it, waiting for a push in progress.
    pub fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        self.stop();
    }
}
