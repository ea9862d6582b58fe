//! Batch prediction over files: every input line gets one output line, in input order, in
//! `prediction.results-00000-of-00001`; bad lines are counted (and listed in
//! `prediction.errors_stats-00000-of-00001`), not fatal.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{Servable, ServeError, parse_csv_line, parse_instance};

/// How input lines are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// One JSON instance per line (a list, an object of features, or a CSV string).
    Json,
    /// One CSV line per instance, values in signature order (a trailing non-numeric field,
    /// such as the label column of a hold-out file, is ignored).
    Text,
}

/// What a batch run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchSummary {
    /// Lines predicted.
    pub predictions: u64,
    /// Lines that could not be.
    pub errors: u64,
}

/// Expands `*` and `?` in the last component of each local path (URIs are turned into paths
/// by the caller); paths without wildcards must exist.
pub fn expand_inputs(patterns: &[String]) -> Result<Vec<PathBuf>, ServeError> {
    let mut out = Vec::new();
    for p in patterns {
        let path = PathBuf::from(p);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?']) {
            if !path.is_file() {
                return Err(ServeError::BadInput(format!("input '{p}' does not exist")));
            }
            out.push(path);
            continue;
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let matcher =
            wildcard(&name).map_err(|e| ServeError::BadInput(format!("input '{p}': {e}")))?;
        let mut matched = Vec::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ServeError::BadInput(format!("input '{p}': {e}")))?;
        for (i, e) in entries.flatten().enumerate() {
            if i >= MAX_DIR_ENTRIES {
                return Err(ServeError::BadInput(format!(
                    "input '{p}': its directory holds more than {MAX_DIR_ENTRIES} entries"
                )));
            }
            if e.file_name().to_str().is_some_and(|n| matcher.is_match(n)) && e.path().is_file() {
                matched.push(e.path());
            }
        }
        if matched.is_empty() {
            return Err(ServeError::BadInput(format!("no file matches '{p}'")));
        }
        matched.sort();
        out.extend(matched);
    }
    Ok(out)
}

/// Entries of one input directory read at most while matching a pattern.
pub const MAX_DIR_ENTRIES: usize = 100_000;
/// The longest file-name pattern accepted.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// A matcher for a file-name pattern with `*` (any run) and `?` (any one character), every
/// other character literal. It is compiled to an automaton (`globset`), so matching is linear
/// in the name whatever the pattern: no backtracking.
fn wildcard(pattern: &str) -> Result<globset::GlobMatcher, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "the pattern is longer than {MAX_PATTERN_BYTES} bytes"
        ));
    }
    // Only `*` and `?` are special: escape what globset would read as a class or alternation.
    let mut escaped = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '[' | ']' | '{' | '}' | '\\' => {
                escaped.push('[');
                escaped.push(c);
                escaped.push(']');
            }
            c => escaped.push(c),
        }
    }
    globset::GlobBuilder::new(&escaped)
        .literal_separator(true)
        .backslash_escape(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.to_string())
}

fn parse_line(line: &str, format: LineFormat, names: &[String]) -> Result<Vec<f32>, String> {
    match format {
        LineFormat::Json => {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
            parse_instance(&v, names)
        }
        LineFormat::Text => {
            let w = names.len();
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() == w + 1
                && fields[w].trim().parse::<f64>().is_err()
                && !fields[w].trim().is_empty()
            {
                parse_csv_line(&fields[..w].join(","), w)
            } else {
                parse_csv_line(line, w)
            }
        }
    }
}

/// Predicts every line of `inputs` into `output_dir`, `batch` lines per model call;
/// `progress` is called after each batch with the lines done so far.
pub fn predict_files(
    servable: &Servable,
    format: LineFormat,
    inputs: &[PathBuf],
    output_dir: &Path,
    batch: usize,
    progress: impl FnMut(u64),
) -> Result<BatchSummary, ServeError> {
    let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let open = |name: &str| -> std::io::Result<Box<dyn std::io::Read>> {
        Ok(Box::new(std::fs::File::open(name)?))
    };
    predict_streams(servable, format, &names, &open, output_dir, batch, progress)
}

/// [`predict_files`] over inputs that `open` streams by name (files in buckets, say).
pub fn predict_streams(
    servable: &Servable,
    format: LineFormat,
    inputs: &[String],
    open: &dyn Fn(&str) -> std::io::Result<Box<dyn std::io::Read>>,
    output_dir: &Path,
    batch: usize,
    mut progress: impl FnMut(u64),
) -> Result<BatchSummary, ServeError> {
    let io = |what: &str, e: std::io::Error| ServeError::BadInput(format!("{what}: {e}"));
    std::fs::create_dir_all(output_dir).map_err(|e| io("cannot create the output directory", e))?;
    let results_path = output_dir.join("prediction.results-00000-of-00001");
    let errors_path = output_dir.join("prediction.errors_stats-00000-of-00001");
    let mut results = BufWriter::new(
        std::fs::File::create(&results_path).map_err(|e| io("cannot write the results", e))?,
    );
    let mut errors = BufWriter::new(
        std::fs::File::create(&errors_path).map_err(|e| io("cannot write the error stats", e))?,
    );
    let sig = &servable.signature;
    let batch = batch.max(1);
    let mut summary = BatchSummary::default();
    // Pending lines: Ok(row) or Err(message), flushed in order.
    let mut pending: Vec<Result<Vec<f32>, String>> = Vec::new();
    let mut flush = |pending: &mut Vec<Result<Vec<f32>, String>>,
                     summary: &mut BatchSummary|
     -> Result<(), ServeError> {
        let rows: Vec<f32> = pending
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .flatten()
            .copied()
            .collect();
        let n = rows.len() / sig.inputs.len().max(1);
        let out = servable.predict(&rows, n)?;
        let mut chunks = out.chunks(sig.width);
        for r in pending.drain(..) {
            let line = match r {
                Ok(_) => {
                    summary.predictions += 1;
                    sig.format(chunks.next().unwrap_or_default())
                }
                Err(e) => {
                    summary.errors += 1;
                    json!({"error": e})
                }
            };
            writeln!(results, "{line}").map_err(|e| io("writing the results", e))?;
        }
        Ok(())
    };
    for path in inputs {
        let file = open(path).map_err(|e| io(&format!("cannot read {path}"), e))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| io(&format!("reading {path}"), e))?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed = parse_line(&line, format, &sig.inputs)
                .map_err(|e| format!("{path}:{}: {e}", i + 1));
            if let Err(e) = &parsed {
                writeln!(errors, "{}", json!({"error": e}))
                    .map_err(|e| io("writing the error stats", e))?;
            }
            pending.push(parsed);
            if pending.len() >= batch {
                flush(&mut pending, &mut summary)?;
                progress(summary.predictions + summary.errors);
            }
        }
    }
    flush(&mut pending, &mut summary)?;
    progress(summary.predictions + summary.errors);
    results.flush().map_err(|e| io("writing the results", e))?;
    errors
        .flush()
        .map_err(|e| io("writing the error stats", e))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the file-name pattern `pat` matches the name `s`.
    fn matches(pat: &[u8], s: &[u8]) -> bool {
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        wildcard(&text(pat)).unwrap().is_match(text(s))
    }

    #[test]
    fn wildcards_match_like_a_shell() {
        let wildcard = matches;
        assert!(wildcard(b"*.csv", b"a.csv"));
        assert!(wildcard(b"part-?", b"part-1"));
        assert!(!wildcard(b"part-?", b"part-12"));
        assert!(wildcard(b"*", b""));
        assert!(!wildcard(b"*.csv", b"a.json"));
        // Only * and ? are special; brackets and braces are literal.
        assert!(wildcard(b"[a]{b}*", b"[a]{b}.csv"));
        assert!(!wildcard(b"[a]*", b"a.csv"));
    }

    #[test]
    fn a_pattern_of_many_stars_is_matched_without_backtracking() {
        // 40 stars against a 200-character name that almost matches: with backtracking this
        // takes exponential time; the automaton answers at once.
        let pattern = format!("{}b", "*a".repeat(40));
        let name = "a".repeat(200);
        assert!(!matches(pattern.as_bytes(), name.as_bytes()));
        assert!(matches(pattern.as_bytes(), format!("{name}b").as_bytes()));
        let long = "*".repeat(MAX_PATTERN_BYTES + 1);
        assert!(wildcard(&long).unwrap_err().contains("longer than"));
    }

    #[test]
    fn text_lines_may_carry_a_trailing_label() {
        let names: Vec<String> = ["a", "b"].map(String::from).to_vec();
        assert_eq!(
            parse_line("1,2,setosa", LineFormat::Text, &names),
            Ok(vec![1.0, 2.0])
        );
        assert!(parse_line("1,2,3", LineFormat::Text, &names).is_err());
        assert_eq!(
            parse_line("[1, 2]", LineFormat::Json, &names),
            Ok(vec![1.0, 2.0])
        );
    }
}
