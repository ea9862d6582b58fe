//! A job's Python environment: its packages installed *with* their dependencies, as Cloud ML
//! Engine's `pip install` of a trainer package does, into an environment layered on the
//! runtime's interpreter, cached by digest.
//!
//! The environment is a venv (`python -m venv --without-pip`) whose `site-packages` holds a
//! `.pth` file listing the runtime's own `sys.path`: the runtime's packages (TensorFlow, say)
//! are importable and count as installed for pip, so they are never reinstalled; what the
//! packages need beyond them is installed into the venv. Its key is the SHA-256 of the
//! interpreter's path, each package file's bytes and pip's index options, so the trials of a
//! tuning job, and every job that ships the same package to the same runtime, share one
//! install. It lives in `<cache>/<key>/`, built in place under an exclusive lock
//! (`<key>.lock`) and marked complete last (`.mle-env`): a half-built one (a crash, a cancel,
//! a failed pip) is removed and built again, never used. Built by another user (`--run-as`),
//! it is handed back to the server's user and made read-only before any job uses it, so one
//! job cannot change what the next one imports.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What to install, with what, where.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The runtime's interpreter (a path, or a name on PATH).
    pub python: &'a str,
    /// The package files (sdists or wheels), installed together in one pip run.
    pub packages: &'a [PathBuf],
    /// pip's index options, passed through: `--find-links DIR`, `--index-url URL`, ...
    pub pip_args: &'a [String],
    /// The cache directory (`<data-dir>/envs`).
    pub cache: &'a Path,
    /// The user and group pip runs as (the package's `setup.py` is the job's code).
    pub run_as: Option<(u32, u32)>,
    /// pip's whole environment (the job's: inherited variables, `--pass-env`, `HOME`).
    pub env: &'a [(String, String)],
    /// How long building the environment may take.
    pub timeout: Duration,
}

/// A ready environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyEnv {
    /// Its interpreter, which the replicas run.
    pub python: PathBuf,
    /// Whether an earlier job built it.
    pub reused: bool,
}

/// The file whose presence says an environment is complete.
const MARKER: &str = ".mle-env";

/// Lines of pip's output an error message quotes.
const TAIL: usize = 6;

/// `python` as an absolute path, not resolving symlinks (a venv's `bin/python` is a symlink to
/// its base interpreter, and the two are different runtimes).
fn absolute(python: &str) -> PathBuf {
    if python.contains('/') {
        return std::path::absolute(python).unwrap_or_else(|_| PathBuf::from(python));
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(python))
        .find(|c| c.is_file())
        .unwrap_or_else(|| PathBuf::from(python))
}

/// The cache key of a request (hex SHA-256).
pub fn key(req: &Request) -> Result<String, String> {
    let mut h = Sha256::new();
    h.update(b"mle-pyenv-1\0");
    h.update(absolute(req.python).as_os_str().as_encoded_bytes());
    h.update(b"\0");
    for p in req.packages {
        let mut f = std::fs::File::open(p)
            .map_err(|e| format!("cannot read package {}: {e}", p.display()))?;
        let mut file = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| format!("cannot read package {}: {e}", p.display()))?;
            if n == 0 {
                break;
            }
            file.update(&buf[..n]);
        }
        h.update(file.finalize());
        // The file name too: pip reads the project's name and version from it.
        h.update(p.file_name().map_or(&[][..], |n| n.as_encoded_bytes()));
        h.update(b"\0");
    }
    for a in req.pip_args {
        h.update(a.as_bytes());
        h.update(b"\0");
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The longest line kept whole; the rest of a longer one is dropped.
const MAX_LINE: usize = 64 << 10;

/// Reads `r` to its end, handing each line (trailing space trimmed, cut at [`MAX_LINE`]) to
/// `f` until it returns false: memory stays bounded whatever the process prints.
fn lines(mut r: impl Read, mut f: impl FnMut(String) -> bool) {
    let mut buf = vec![0u8; 1 << 16];
    let mut line: Vec<u8> = Vec::new();
    let emit = |line: &mut Vec<u8>, f: &mut dyn FnMut(String) -> bool| {
        let mut text = String::from_utf8_lossy(line).into_owned();
        text.truncate(text.trim_end().len());
        line.clear();
        f(text)
    };
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for chunk in buf[..n].split_inclusive(|&b| b == b'\n') {
            let room = MAX_LINE.saturating_sub(line.len());
            let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
            line.extend_from_slice(&body[..body.len().min(room)]);
            if chunk.ends_with(b"\n") && !emit(&mut line, &mut f) {
                return;
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line, &mut f);
    }
}

/// A command's end as [`run`] reports it.
enum Ended {
    Ok(String),
    Failed(Vec<String>),
}

/// Runs `cmd` to its end (as `run_as`, in its own process group, with exactly `env`), each
/// output line to `log`; stops it when `cancelled()` or at `deadline`. Returns its standard
/// output on success, the last lines of its output on failure.
fn run(
    mut cmd: Command,
    req: &Request,
    deadline: Instant,
    log: &mut dyn FnMut(&str),
    cancelled: &dyn Fn() -> bool,
) -> Result<Ended, String> {
    let what = format!("{cmd:?}");
    cmd.env_clear()
        .envs(req.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some((u, g)) = req.run_as {
        cmd.uid(u).gid(g);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
    let (tx, rx) = std::sync::mpsc::channel::<(bool, String)>();
    let readers: Vec<_> = [
        (
            true,
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
        (
            false,
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
    ]
    .into_iter()
    .filter_map(|(out, s)| Some((out, s?)))
    .map(|(out, s)| {
        let tx = tx.clone();
        std::thread::spawn(move || lines(s, |l| tx.send((out, l)).is_ok()))
    })
    .collect();
    drop(tx);
    let mut stdout = String::new();
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let mut take = |(out, line): (bool, String), log: &mut dyn FnMut(&str)| {
        if line.is_empty() {
            return;
        }
        log(&line);
        if out && stdout.len() < 1 << 20 {
            stdout.push_str(&line);
            stdout.push('\n');
        }
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    let status = loop {
        while let Ok(l) = rx.try_recv() {
            take(l, log);
        }
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("waiting for {what}: {e}"))?
        {
            break status;
        }
        let stop = if cancelled() {
            Some("Job cancelled by user request".to_string())
        } else if Instant::now() > deadline {
            Some(format!(
                "installing the packages took longer than {} s (mle server --pip-timeout)",
                req.timeout.as_secs()
            ))
        } else {
            None
        };
        if let Some(why) = stop {
            crate::stop_groups(&mut [&mut child], Duration::ZERO);
            return Err(why);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for r in readers {
        let _ = r.join();
    }
    while let Ok(l) = rx.try_recv() {
        take(l, log);
    }
    Ok(if status.success() {
        Ended::Ok(stdout)
    } else {
        Ended::Failed(tail.into_iter().collect())
    })
}

/// The environment for `req`: the cached one, or one built now (pip's output to `log`).
/// Fails naming the packages and quoting pip's last lines; stops when `cancelled()`.
pub fn prepare(
    req: &Request,
    log: &mut dyn FnMut(&str),
    cancelled: &dyn Fn() -> bool,
) -> Result<PyEnv, String> {
    let deadline = Instant::now() + req.timeout;
    let key = key(req)?;
    let dir = req.cache.join(&key);
    let python = dir.join("bin").join("python");
    std::fs::create_dir_all(req.cache)
        .map_err(|e| format!("cannot create {}: {e}", req.cache.display()))?;
    if req.run_as.is_some() {
        use std::os::unix::fs::PermissionsExt;
        // The job's user passes through to its environment; it lists nothing here.
        let _ = std::fs::set_permissions(req.cache, std::fs::Permissions::from_mode(0o711));
    }
    let lock_path = req.cache.join(format!("{key}.lock"));
    let mut lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    let _lock = loop {
        match nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => break l,
            Err((f, _)) => {
                if cancelled() {
                    return Err("Job cancelled by user request".into());
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "another job has been building the same environment ({}) for longer than {} s",
                        dir.display(),
                        req.timeout.as_secs()
                    ));
                }
                lock_file = f;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    if dir.join(MARKER).is_file() {
        log(&format!(
            "using the cached environment {} (same runtime and packages)",
            dir.display()
        ));
        return Ok(PyEnv {
            python,
            reused: true,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    let built = build(req, &dir, deadline, log, cancelled);
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    built.map(|()| PyEnv {
        python,
        reused: false,
    })
}

fn build(
    req: &Request,
    dir: &Path,
    deadline: Instant,
    log: &mut dyn FnMut(&str),
    cancelled: &dyn Fn() -> bool,
) -> Result<(), String> {
    let names: Vec<String> = req
        .packages
        .iter()
        .map(|p| {
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        })
        .collect();
    let names = names.join(", ");
    std::fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if let Some((u, g)) = req.run_as {
        std::os::unix::fs::chown(dir, Some(u), Some(g))
            .map_err(|e| format!("cannot hand {} to the job's user: {e}", dir.display()))?;
    }
    let failed = |step: &str, tail: Vec<String>| {
        format!(
            "installing package(s) {names} failed: {step}: {}",
            tail.join(" | ")
        )
    };
    // The runtime's import path, for the layer.
    let mut c = Command::new(req.python);
    c.args([
        "-c",
        "import json, sys; print(json.dumps([p for p in sys.path if p]))",
    ]);
    let paths = match run(c, req, deadline, &mut |_| {}, cancelled)? {
        Ended::Ok(out) => out,
        Ended::Failed(t) => return Err(failed(&format!("{} does not run", req.python), t)),
    };
    let paths: Vec<String> = serde_json::from_str(paths.trim())
        .map_err(|e| format!("{} printed no sys.path: {e}", req.python))?;
    let mut c = Command::new(req.python);
    c.args(["-m", "venv", "--without-pip"]).arg(dir);
    if let Ended::Failed(t) = run(c, req, deadline, log, cancelled)? {
        return Err(failed(&format!("{} -m venv", req.python), t));
    }
    let python = dir.join("bin").join("python");
    let mut c = Command::new(&python);
    c.args([
        "-c",
        "import json, sys, sysconfig; print(json.dumps([sysconfig.get_paths()['purelib']] + [p for p in sys.path if p]))",
    ]);
    let own: Vec<String> = match run(c, req, deadline, &mut |_| {}, cancelled)? {
        Ended::Ok(out) => serde_json::from_str(out.trim())
            .map_err(|e| format!("the new environment printed no sys.path: {e}"))?,
        Ended::Failed(t) => return Err(failed("the new environment does not run", t)),
    };
    let site = PathBuf::from(own.first().cloned().unwrap_or_default());
    if !site.starts_with(dir) {
        return Err(format!(
            "the new environment's site-packages {} is outside it",
            site.display()
        ));
    }
    // Only what the runtime adds to the environment's own path (its site-packages): the
    // standard library is the environment's already, and pip's isolated builds strip every
    // path a `.pth` file adds, which would leave them without it.
    let layer: String = paths
        .iter()
        .filter(|p| !own.contains(p))
        .map(|p| format!("{p}\n"))
        .collect();
    let pth = site.join("_mle_runtime.pth");
    std::fs::write(&pth, layer).map_err(|e| format!("cannot write {}: {e}", pth.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // Readable by the job's user whatever the server's umask (077): a `.pth` Python cannot
        // read is skipped without a word, and the runtime's packages would be missing.
        std::fs::set_permissions(&pth, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| format!("cannot open {} to the job's user: {e}", pth.display()))?;
    }
    let mut c = Command::new(&python);
    c.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
    ])
    .args(req.pip_args)
    .arg("--")
    .args(req.packages);
    log(&format!(
        "pip install {names} (with their dependencies) into {}",
        dir.display()
    ));
    if let Ended::Failed(t) = run(c, req, deadline, log, cancelled)? {
        return Err(failed("pip", t));
    }
    if req.run_as.is_some() {
        seal(dir).map_err(|e| format!("cannot seal the environment {}: {e}", dir.display()))?;
    }
    std::fs::write(dir.join(MARKER), names)
        .map_err(|e| format!("cannot mark {} complete: {e}", dir.display()))?;
    Ok(())
}

/// Hands a tree to this process's user and makes it read-only for everyone else: directories
/// 0755, files 0644 (0755 when executable). Symbolic links are handed over, not followed.
fn seal(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        std::os::unix::fs::lchown(&d, Some(uid), Some(gid))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else {
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
                if kind.is_file() {
                    let mode = entry.metadata()?.permissions().mode();
                    let exec = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(exec))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_stay_bounded_whatever_the_process_prints() {
        let mut input = b"first\r\n".to_vec();
        input.extend(vec![b'x'; 3 * MAX_LINE]);
        input.extend(b"\n\xff\xfe not utf-8\nlast without newline");
        let mut got = Vec::new();
        lines(&input[..], |l| {
            got.push(l);
            true
        });
        assert_eq!(
            got.len(),
            4,
            "{:?}",
            got.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(got[0], "first");
        assert_eq!(got[1].len(), MAX_LINE, "a flood is cut, not kept");
        assert!(got[2].ends_with(" not utf-8") && got[2].contains('\u{fffd}'));
        assert_eq!(got[3], "last without newline");
        // The reader stops as soon as the consumer does.
        let mut n = 0;
        lines(&b"a\nb\nc\n"[..], |_| {
            n += 1;
            false
        });
        assert_eq!(n, 1);
    }

    #[test]
    fn the_key_is_the_runtime_the_package_bytes_and_pip_options() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("p-0.1.tar.gz");
        std::fs::write(&pkg, b"one").unwrap();
        let packages = [pkg.clone()];
        let base = Request {
            python: "/opt/a/bin/python",
            packages: &packages,
            pip_args: &[],
            cache: dir.path(),
            run_as: None,
            env: &[],
            timeout: Duration::from_secs(1),
        };
        let k = key(&base).unwrap();
        assert_eq!(k.len(), 64);
        assert_eq!(
            key(&base).unwrap(),
            k,
            "the same request, the same environment"
        );
        let other_python = Request {
            python: "/opt/b/bin/python",
            ..base.clone()
        };
        assert_ne!(key(&other_python).unwrap(), k);
        let args = ["--index-url".to_string(), "http://mirror".to_string()];
        let with_args = Request {
            pip_args: &args,
            ..base.clone()
        };
        assert_ne!(key(&with_args).unwrap(), k);
        std::fs::write(&pkg, b"two").unwrap();
        assert_ne!(key(&base).unwrap(), k, "new bytes, a new environment");
        std::fs::remove_file(&pkg).unwrap();
        assert!(key(&base).unwrap_err().contains("cannot read package"));
    }
}
