//! Reading a run's logs (`logs/<task>.log`, and each tuning trial's `trials/<id>/logs/`) as
//! JSON entries, incrementally: a [`Cursor`] holds a byte offset per file, a page reads on
//! from there, only whole lines, within a byte budget. A reader that follows a running job
//! (`mle jobs stream-logs`) therefore sees every line once — no skips, no repeats — and the
//! server's memory per request is bounded whatever the trainer prints.
//!
//! Lines that are not ours (Slurm's own messages in its output files) become entries with
//! their file's name as the task and its modification time.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{Value, json};

use crate::plan::RunDir;

/// The longest line a page reads whole; longer (foreign) lines are cut to this.
const MAX_LINE: usize = 256 * 1024;

/// Where a reader is in each log file: offsets by path relative to the run directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(pub BTreeMap<String, u64>);

impl Cursor {
    /// The cursor as a page token (hex of `path=offset` lines, safe in a query string).
    pub fn token(&self) -> String {
        let text: String = self.0.iter().map(|(p, o)| format!("{p}={o}\n")).collect();
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// A page token back; `None` if it is not one this module wrote.
    pub fn parse(token: &str) -> Option<Self> {
        if token.is_empty() {
            return Some(Self::default());
        }
        if !token.len().is_multiple_of(2) || token.len() > 1 << 20 {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
            .collect();
        let text = String::from_utf8(bytes?).ok()?;
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let (p, o) = line.rsplit_once('=')?;
            // Only paths this module names: no `..`, nothing absolute.
            if p.starts_with('/') || p.split('/').any(|c| c == ".." || c.is_empty()) {
                return None;
            }
            out.insert(p.to_string(), o.parse().ok()?);
        }
        Some(Self(out))
    }
}

/// One page of entries, ordered by time, and where the next page starts.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The entries.
    pub entries: Vec<Value>,
    /// The cursor after them.
    pub next: Cursor,
}

/// The run's log files (only trial `only`'s, when given), relative to the run directory, in a
/// stable order.
fn log_files(run: &RunDir, only: Option<&str>) -> Vec<String> {
    let mut dirs = Vec::new();
    if only.is_none() {
        dirs.push(("logs".to_string(), run.logs()));
    }
    if let Ok(trials) = std::fs::read_dir(run.0.join("trials")) {
        for t in trials.flatten() {
            let name = t.file_name().to_string_lossy().into_owned();
            if only.is_some_and(|o| o != name) {
                continue;
            }
            dirs.push((format!("trials/{name}/logs"), t.path().join("logs")));
        }
    }
    let mut out = Vec::new();
    for (rel, dir) in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_file()) && !name.contains(['\n', '=']) {
                out.push(format!("{rel}/{name}"));
            }
        }
    }
    out.sort();
    out
}

/// An entry for one line of `path` (ours are JSON objects; others are wrapped).
fn entry(line: &str, path: &Path, mtime: f64) -> Option<Value> {
    if line.trim().is_empty() {
        return None;
    }
    match serde_json::from_str::<Value>(line) {
        Ok(v) if v.is_object() => Some(v),
        _ if line.starts_with('{') => None,
        _ => {
            let task = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let severity = if line.to_ascii_lowercase().contains("error") {
                "ERROR"
            } else {
                "INFO"
            };
            Some(json!({"time": mtime, "severity": severity, "task": task, "message": line}))
        }
    }
}

/// Reads whole lines of `path` from `offset`, at most about `budget` bytes (always at least
/// one line when one is complete); returns the entries and the new offset.
fn read_file(path: &Path, offset: u64, budget: usize) -> (Vec<Value>, u64) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return (Vec::new(), offset);
    };
    let mtime = f
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let mut buf = Vec::new();
    let limit = budget.max(MAX_LINE) as u64;
    if f.take(limit).read_to_end(&mut buf).is_err() {
        return (Vec::new(), offset);
    }
    let mut entries = Vec::new();
    let mut used = 0usize;
    while used < buf.len() {
        let rest = &buf[used..];
        let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
            if rest.len() >= MAX_LINE {
                // A foreign line too long to ever end within a read: take it cut.
                let text = String::from_utf8_lossy(&rest[..MAX_LINE]);
                entries.extend(entry(&text, path, mtime));
                used += MAX_LINE;
            }
            break;
        };
        let text = String::from_utf8_lossy(&rest[..nl]);
        entries.extend(entry(&text, path, mtime));
        used += nl + 1;
        if used >= budget {
            break;
        }
    }
    (entries, offset + used as u64)
}

/// The next page after `cursor`: about `budget` bytes of whole lines, shared fairly between
/// the files that have something new.
pub fn read_page(run: &RunDir, cursor: &Cursor, budget: usize) -> Page {
    read_page_of(run, None, cursor, budget)
}

/// [`read_page`] of one tuning trial's logs only (`trial` given), or of every log.
pub fn read_page_of(run: &RunDir, trial: Option<&str>, cursor: &Cursor, budget: usize) -> Page {
    let files = log_files(run, trial);
    let mut next = cursor.clone();
    let grown: Vec<(String, u64)> = files
        .into_iter()
        .filter_map(|rel| {
            let at = cursor.0.get(&rel).copied().unwrap_or(0);
            let len = std::fs::metadata(run.0.join(&rel)).ok()?.len();
            (len > at).then_some((rel, at))
        })
        .collect();
    let share = budget / grown.len().max(1);
    let mut entries = Vec::new();
    for (rel, at) in grown {
        let (mut got, end) = read_file(&run.0.join(&rel), at, share.max(1));
        entries.append(&mut got);
        next.0.insert(rel, end);
    }
    entries.sort_by(|a, b| {
        a["time"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b["time"].as_f64().unwrap_or(0.0))
    });
    Page { entries, next }
}

/// Every log line of the run so far, ordered by time (tests and small runs).
pub fn read_all(run: &RunDir) -> Vec<Value> {
    let mut cursor = Cursor::default();
    let mut out = Vec::new();
    loop {
        let page = read_page(run, &cursor, 1 << 20);
        if page.entries.is_empty() && page.next == cursor {
            break;
        }
        out.extend(page.entries);
        cursor = page.next;
    }
    out.sort_by(|a, b| {
        a["time"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b["time"].as_f64().unwrap_or(0.0))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn pages_see_every_line_once_while_files_grow() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir(dir.path().to_path_buf());
        std::fs::create_dir_all(run.logs()).unwrap();
        let mut a = std::fs::File::create(run.logs().join("master-replica-0.log")).unwrap();
        let mut b = std::fs::File::create(run.logs().join("worker-replica-0.log")).unwrap();
        let mut seen = Vec::new();
        let mut cursor = Cursor::default();
        for round in 0..50 {
            for (f, task) in [(&mut a, "m"), (&mut b, "w")] {
                for i in 0..7 {
                    let rec = json!({"time": round as f64, "task": task, "message": format!("{round}-{i}")});
                    writeln!(f, "{rec}").unwrap();
                }
            }
            // Half a line: not read until it is whole.
            write!(a, "{{\"time\": 99, \"task\": \"m\", \"mess").unwrap();
            let page = read_page(&run, &cursor, 300);
            seen.extend(page.entries.iter().map(|e| {
                format!(
                    "{}:{}",
                    e["task"].as_str().unwrap(),
                    e["message"].as_str().unwrap()
                )
            }));
            cursor = Cursor::parse(&page.next.token()).unwrap();
            writeln!(a, "age\": \"partial-{round}\"}}").unwrap();
        }
        loop {
            let page = read_page(&run, &cursor, 300);
            if page.entries.is_empty() {
                break;
            }
            seen.extend(page.entries.iter().map(|e| {
                format!(
                    "{}:{}",
                    e["task"].as_str().unwrap(),
                    e["message"].as_str().unwrap()
                )
            }));
            cursor = page.next;
        }
        let mut expected: Vec<String> = (0..50)
            .flat_map(|r| {
                let mut v: Vec<String> = (0..7)
                    .flat_map(|i| [format!("m:{r}-{i}"), format!("w:{r}-{i}")])
                    .collect();
                v.push(format!("m:partial-{r}"));
                v
            })
            .collect();
        let mut got = seen.clone();
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "every line once");
    }

    #[test]
    fn a_trials_page_holds_only_that_trials_lines() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir(dir.path().to_path_buf());
        for (rel, msg) in [
            ("logs", "job"),
            ("trials/1/logs", "one"),
            ("trials/12/logs", "twelve"),
        ] {
            std::fs::create_dir_all(run.0.join(rel)).unwrap();
            let rec = json!({"time": 1.0, "task": "master-replica-0", "message": msg});
            std::fs::write(
                run.0.join(rel).join("master-replica-0.log"),
                format!("{rec}\n"),
            )
            .unwrap();
        }
        let msgs = |trial| -> Vec<String> {
            read_page_of(&run, trial, &Cursor::default(), 1 << 20)
                .entries
                .iter()
                .map(|e| e["message"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(msgs(Some("1")), vec!["one"]);
        assert_eq!(msgs(Some("12")), vec!["twelve"]);
        assert!(msgs(Some("2")).is_empty());
        assert_eq!(msgs(None).len(), 3);
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let mut c = Cursor::default();
        c.0.insert("logs/master-replica-0.log".into(), 12);
        c.0.insert("trials/3/logs/worker-replica-0.log".into(), 7);
        assert_eq!(Cursor::parse(&c.token()), Some(c));
        assert_eq!(Cursor::parse(""), Some(Cursor::default()));
        for bad in ["zz", "abc", "2e2e2f6574633d31"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
        let escape: String = "../../etc/passwd=0\n"
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(Cursor::parse(&escape), None);
    }
}
