//! The trainer package as gcloud stages it: `--package-path` built into an sdist
//! (`python setup.py sdist`), with the package's own `setup.py` or a generated minimal one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Builds the trainer package into an sdist like gcloud: the package's parent with its own
/// setup.py, or a generated minimal one.
pub fn build_sdist(package: &Path, staging: &Path) -> Result<PathBuf> {
    let package = package
        .canonicalize()
        .with_context(|| format!("--package-path {}", package.display()))?;
    anyhow::ensure!(
        package.is_dir(),
        "--package-path {}: not a directory",
        package.display()
    );
    let parent = package
        .parent()
        .context("the package has no parent directory")?;
    let name = package
        .file_name()
        .and_then(|n| n.to_str())
        .context("package name")?
        .to_string();
    let work = tempfile::tempdir().context("temporary build directory")?;
    let src = work.path().join("src");
    std::fs::create_dir_all(&src)?;
    copy_dir(&package, &src.join(&name))?;
    let setup = parent.join("setup.py");
    if setup.is_file() {
        std::fs::copy(&setup, src.join("setup.py"))?;
    } else {
        std::fs::write(
            src.join("setup.py"),
            format!(
                "from setuptools import find_packages, setup\n\nsetup(name={name:?}, version='0.1', packages=find_packages())\n"
            ),
        )?;
    }
    std::fs::create_dir_all(staging)?;
    let python = std::env::var("MLE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["setup.py", "-q", "sdist", "--formats=gztar", "--dist-dir"])
        .arg(staging)
        .current_dir(&src)
        .output()
        .with_context(|| format!("running {python} setup.py sdist"))?;
    anyhow::ensure!(
        out.status.success(),
        "building the sdist failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut built: Vec<PathBuf> = std::fs::read_dir(staging)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    built.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    built.pop().context("setup.py sdist produced no tarball")
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)?.flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "__pycache__" {
            continue;
        }
        if p.is_dir() {
            copy_dir(&p, &to.join(&name))?
        } else {
            std::fs::copy(&p, to.join(&name)).map(|_| ())?
        }
    }
    Ok(())
}
