//! Runtimes: which Python interpreter runs a job, chosen by its `runtimeVersion` and
//! `pythonVersion` (Cloud ML Engine's runtime versions pinned TensorFlow and Python; here an
//! operator lists the environments the machine has, `mle server --runtime 2.11=/opt/tf/bin/python3`).
//! One policy for the server and `mle local train`.

use std::fmt;

/// One interpreter the operator offers: `VERSION[/PYTHON_VERSION]=INTERPRETER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// The `runtimeVersion` it serves, e.g. `2.11`.
    pub version: String,
    /// The `pythonVersion` it serves, when the operator says (otherwise any).
    pub python_version: Option<String>,
    /// The interpreter: a path, or a name looked up on PATH.
    pub python: String,
}

impl Runtime {
    /// Parses `VERSION[/PYTHON_VERSION]=INTERPRETER` (the `--runtime` flag).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "--runtime {s:?}: {why} (the form is VERSION[/PYTHON_VERSION]=INTERPRETER, e.g. 2.11=/opt/tf/bin/python3 or 2.11/3.11=python3.11)"
            )
        };
        let (key, python) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
        let (version, py) = match key.split_once('/') {
            Some((v, p)) => (v.trim(), Some(p.trim())),
            None => (key.trim(), None),
        };
        let token = |t: &str| {
            t.starts_with(|c: char| c.is_ascii_alphanumeric())
                && t.len() <= 64
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        };
        if !token(version) {
            return Err(bad(
                "the version must be a letter or digit, then letters, digits, '.', '-' or '_'",
            ));
        }
        if py.is_some_and(|p| !token(p)) {
            return Err(bad(
                "the Python version must be a letter or digit, then letters, digits, '.', '-' or '_'",
            ));
        }
        if python.trim().is_empty() {
            return Err(bad("no interpreter"));
        }
        Ok(Self {
            version: version.to_string(),
            python_version: py.map(String::from),
            python: python.trim().to_string(),
        })
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.python_version {
            Some(p) => write!(f, "{}/{p} ({})", self.version, self.python),
            None => write!(f, "{} ({})", self.version, self.python),
        }
    }
}

/// The interpreters a server (or `mle local train`) has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtimes {
    /// The interpreter of jobs that name no runtime version.
    pub default: String,
    /// The runtimes the operator listed; when none is, every job runs on [`Runtimes::default`]
    /// whatever version it names (a server without `--runtime` behaves as before).
    pub listed: Vec<Runtime>,
}

impl Runtimes {
    /// Only `default`, for every version.
    pub fn only(default: impl Into<String>) -> Self {
        Self {
            default: default.into(),
            listed: Vec::new(),
        }
    }

    /// The interpreter for a job's `runtimeVersion` and `pythonVersion`, or why there is none
    /// (naming the runtimes there are).
    pub fn pick(&self, runtime_version: &str, python_version: &str) -> Result<&str, String> {
        let (rv, pv) = (runtime_version.trim(), python_version.trim());
        if rv.is_empty() || self.listed.is_empty() {
            return Ok(&self.default);
        }
        let found = self.listed.iter().find(|r| {
            r.version == rv
                && (pv.is_empty() || r.python_version.as_deref().is_none_or(|p| p == pv))
        });
        match found {
            Some(r) => Ok(&r.python),
            None => {
                let asked = if pv.is_empty() {
                    format!("runtime version '{rv}'")
                } else {
                    format!("runtime version '{rv}' with Python '{pv}'")
                };
                let have: Vec<String> = self.listed.iter().map(ToString::to_string).collect();
                Err(format!(
                    "this server has no {asked}; it has {}, and jobs without a runtime version run on {}",
                    have.join(", "),
                    self.default
                ))
            }
        }
    }

    /// Every interpreter, the default first.
    pub fn interpreters(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.default.as_str()).chain(self.listed.iter().map(|r| r.python.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_get_the_interpreter_of_their_runtime() {
        let rts = Runtimes {
            default: "python3".into(),
            listed: vec![
                Runtime::parse("2.11/3.11=/opt/tf211/bin/python3").unwrap(),
                Runtime::parse("2.11/3.9=/opt/tf211-py39/bin/python3").unwrap(),
                Runtime::parse("1.15=/opt/tf115/bin/python").unwrap(),
            ],
        };
        assert_eq!(rts.pick("", ""), Ok("python3"));
        assert_eq!(rts.pick("", "3.7"), Ok("python3"));
        assert_eq!(rts.pick("2.11", ""), Ok("/opt/tf211/bin/python3"));
        assert_eq!(rts.pick("2.11", "3.9"), Ok("/opt/tf211-py39/bin/python3"));
        assert_eq!(rts.pick("1.15", "3.7"), Ok("/opt/tf115/bin/python"));
        let e = rts.pick("2.3", "").unwrap_err();
        assert!(e.contains("no runtime version '2.3'"), "{e}");
        assert!(
            e.contains("2.11/3.11 (/opt/tf211/bin/python3)") && e.contains("1.15"),
            "{e}"
        );
        let e = rts.pick("2.11", "3.7").unwrap_err();
        assert!(e.contains("with Python '3.7'"), "{e}");
        // Without a list, every version runs on the default.
        assert_eq!(Runtimes::only("py").pick("1.13", "3.5"), Ok("py"));
    }

    #[test]
    fn bad_runtime_flags_say_the_form() {
        for bad in [
            "2.11", "=python3", "2.11=", "2 11=py", "2.11/=py", "../x=py",
        ] {
            let e = Runtime::parse(bad).unwrap_err();
            assert!(
                e.contains("VERSION[/PYTHON_VERSION]=INTERPRETER"),
                "{bad}: {e}"
            );
        }
        let r = Runtime::parse(" 2.11 = /a b/python ").unwrap();
        assert_eq!(
            (r.version.as_str(), r.python.as_str()),
            ("2.11", "/a b/python")
        );
    }
}
