//! CSV parsing into a [`Dataset`] following a [`Schema`].

use std::path::Path;

use crate::{DataError, Result};

/// Whether the files carry a header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Header {
    /// The first line is a header and is skipped.
    Present,
    /// Every line is data.
    Absent,
    /// A first line whose feature fields are not all numbers is a header.
    #[default]
    Auto,
}

/// What the label column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// A real-valued target.
    Regression,
    /// A class, written either as one of these names or as its 0-based index.
    Classes(Vec<String>),
}

/// The column layout of a CSV source.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// Every column of the file, in file order.
    pub columns: Vec<String>,
    /// The feature columns, in the order the model sees them.
    pub features: Vec<String>,
    /// The label column; `None` for prediction inputs without labels.
    pub label: Option<String>,
    /// How to read the label column.
    pub label_kind: Label,
    /// Header handling.
    pub header: Header,
}

impl Schema {
    fn indices(&self) -> Result<(Vec<usize>, Option<usize>)> {
        let find = |name: &str| {
            self.columns.iter().position(|c| c == name).ok_or_else(|| {
                DataError::Schema(format!("column '{name}' is not among the columns"))
            })
        };
        let features = self
            .features
            .iter()
            .map(|f| find(f))
            .collect::<Result<Vec<_>>>()?;
        if features.is_empty() {
            return Err(DataError::Schema("no feature columns".into()));
        }
        let label = self.label.as_deref().map(find).transpose()?;
        Ok((features, label))
    }
}

/// A labelled table held in memory: row-major features and one label per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    features: Vec<f32>,
    labels: Vec<f32>,
    width: usize,
}

impl Dataset {
    /// Builds a dataset from a row-major feature matrix of `width` columns and its labels.
    pub fn from_parts(features: Vec<f32>, labels: Vec<f32>, width: usize) -> Self {
        assert!(
            width > 0 && features.len() == labels.len() * width,
            "shape mismatch"
        );
        Self {
            features,
            labels,
            width,
        }
    }

    /// Reads and concatenates several CSV files.
    pub fn read_files<P: AsRef<Path>>(schema: &Schema, paths: &[P]) -> Result<Self> {
        let mut all = Dataset {
            width: schema.features.len(),
            ..Default::default()
        };
        for path in paths {
            let path = path.as_ref();
            let file = std::fs::File::open(path).map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            // Line by line: the file's text is never held whole beside the parsed rows.
            let reader = std::io::BufReader::with_capacity(1 << 16, file);
            let part = Self::read_stream(schema, reader, &path.display().to_string())?;
            all.append(part);
        }
        if all.is_empty() {
            let names: Vec<String> = paths
                .iter()
                .map(|p| p.as_ref().display().to_string())
                .collect();
            return Err(DataError::Empty(names.join(", ")));
        }
        Ok(all)
    }

    /// Parses CSV text; `source` names it in error messages.
    pub fn parse_str(schema: &Schema, text: &str, source: &str) -> Result<Self> {
        Self::parse_lines(schema, text.lines().map(|l| Ok(l.to_string())), source)
    }

    /// Parses CSV from a stream, line by line: only the parsed rows are kept, never the text
    /// (an object read from a bucket is not held in memory twice). `source` names it.
    pub fn read_stream(
        schema: &Schema,
        reader: impl std::io::BufRead,
        source: &str,
    ) -> Result<Self> {
        let lines = reader.lines().map(|l| {
            l.map_err(|e| DataError::Io {
                path: source.into(),
                source: e,
            })
        });
        Self::parse_lines(schema, lines, source)
    }

    /// Concatenates `other`'s rows onto these (same width); onto no rows, `other` is moved in,
    /// not copied (one large file is never held twice).
    pub fn append(&mut self, other: Dataset) {
        if self.labels.is_empty() {
            self.features = other.features;
            self.labels = other.labels;
            return;
        }
        self.features.extend_from_slice(&other.features);
        self.labels.extend_from_slice(&other.labels);
    }

    fn parse_lines(
        schema: &Schema,
        lines: impl Iterator<Item = Result<String>>,
        source: &str,
    ) -> Result<Self> {
        let (feature_idx, label_idx) = schema.indices()?;
        let mut ds = Dataset {
            width: feature_idx.len(),
            ..Default::default()
        };
        let mut first = true;
        for (i, raw) in lines.enumerate() {
            let raw = raw?;
            let line = i + 1;
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
            let is_first = std::mem::take(&mut first);
            if is_first {
                let skip = match schema.header {
                    Header::Present => true,
                    Header::Absent => false,
                    Header::Auto => feature_idx
                        .iter()
                        .any(|&c| fields.get(c).is_some_and(|f| f.parse::<f32>().is_err())),
                };
                if skip {
                    continue;
                }
            }
            if fields.len() != schema.columns.len() {
                return Err(DataError::ColumnCount {
                    file: source.into(),
                    line,
                    expected: schema.columns.len(),
                    found: fields.len(),
                });
            }
            for &c in &feature_idx {
                ds.features.push(parse_number(
                    fields[c],
                    source,
                    line,
                    c,
                    &schema.columns[c],
                )?);
            }
            match label_idx {
                Some(c) => {
                    let name = &schema.columns[c];
                    let label = match &schema.label_kind {
                        Label::Regression => parse_number(fields[c], source, line, c, name)?,
                        Label::Classes(classes) => {
                            parse_class(fields[c], classes).ok_or_else(|| {
                                DataError::UnknownClass {
                                    file: source.into(),
                                    line,
                                    column: c + 1,
                                    name: name.clone(),
                                    value: fields[c].into(),
                                    classes: classes.join(", "),
                                }
                            })? as f32
                        }
                    };
                    ds.labels.push(label);
                }
                None => ds.labels.push(0.0),
            }
        }
        Ok(ds)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of feature columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The features of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.width..(i + 1) * self.width]
    }

    /// All features, row-major.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// Mutable access to all features, row-major (used by normalisation).
    pub fn features_mut(&mut self) -> &mut [f32] {
        &mut self.features
    }

    /// All labels.
    pub fn labels(&self) -> &[f32] {
        &self.labels
    }

    /// The rows `index, index + count, index + 2·count, ...`: replica `index`'s share of the
    /// input in data-parallel training.
    pub fn shard(&self, index: usize, count: usize) -> Dataset {
        assert!(count > 0 && index < count, "shard {index} of {count}");
        let mut out = Dataset {
            width: self.width,
            ..Default::default()
        };
        for i in (index..self.len()).step_by(count) {
            out.features.extend_from_slice(self.row(i));
            out.labels.push(self.labels[i]);
        }
        out
    }
}

fn parse_number(text: &str, file: &str, line: usize, col: usize, name: &str) -> Result<f32> {
    match text.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(DataError::NotANumber {
            file: file.into(),
            line,
            column: col + 1,
            name: name.into(),
            value: text.into(),
        }),
    }
}

/// A class given by name (case-insensitive, with or without the UCI `Iris-` style prefix) or
/// by its 0-based index.
fn parse_class(text: &str, classes: &[String]) -> Option<usize> {
    if let Some(i) = classes.iter().position(|c| c.eq_ignore_ascii_case(text)) {
        return Some(i);
    }
    if let Some(i) = classes.iter().position(|c| {
        text.len() > c.len()
            && text.to_ascii_lowercase().ends_with(&c.to_ascii_lowercase())
            && text.as_bytes()[text.len() - c.len() - 1] == b'-'
    }) {
        return Some(i);
    }
    match text.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && v >= 0.0 && (v as usize) < classes.len() => Some(v as usize),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iris_schema(header: Header) -> Schema {
        Schema {
            columns: ["a", "b", "class"].map(String::from).to_vec(),
            features: vec!["a".into(), "b".into()],
            label: Some("class".into()),
            label_kind: Label::Classes(["setosa", "versicolor"].map(String::from).to_vec()),
            header,
        }
    }

    #[test]
    fn a_stream_parses_as_its_text_does_and_fails_the_same_way() {
        let text = "a,b,class\n1,2,setosa\n\n3,4,versicolor\n";
        let schema = iris_schema(Header::Auto);
        let whole = Dataset::parse_str(&schema, text, "f.csv").unwrap();
        let streamed = Dataset::read_stream(&schema, text.as_bytes(), "gs://b/f.csv").unwrap();
        assert_eq!(
            (whole.features(), whole.labels()),
            (streamed.features(), streamed.labels())
        );
        let mut both = whole.clone();
        both.append(streamed);
        assert_eq!(both.len(), 4);
        let err = Dataset::read_stream(
            &schema,
            "1,2,setosa\n1,x,setosa\n".as_bytes(),
            "gs://b/f.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("gs://b/f.csv:2: column 2"), "{err}");
        // Bytes that are not UTF-8 are an I/O error naming the stream, not a panic.
        let err =
            Dataset::read_stream(&schema, &b"1,2,setosa\n\xff,1,setosa\n"[..], "s3://b/f.csv")
                .unwrap_err()
                .to_string();
        assert!(err.contains("s3://b/f.csv"), "{err}");
    }

    fn check_err(text: &str, expect: &str) {
        let err = Dataset::parse_str(&iris_schema(Header::Auto), text, "f.csv").unwrap_err();
        assert_eq!(err.to_string(), expect);
    }

    #[test]
    fn header_is_detected_and_classes_parse_by_name_index_or_prefix() {
        let text = "a,b,class\n1,2,setosa\n3,4,1\n5,6,Iris-versicolor\n\n";
        let ds = Dataset::parse_str(&iris_schema(Header::Auto), text, "f.csv").unwrap();
        assert_eq!(ds.features(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(ds.labels(), &[0.0, 1.0, 1.0]);
        let ds = Dataset::parse_str(&iris_schema(Header::Absent), "1,2,0\n", "f.csv").unwrap();
        assert_eq!(ds.len(), 1);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        check_err("1,2,setosa\n1,2\n", "f.csv:2: expected 3 columns, found 2");
        check_err(
            "1,2,setosa\n1,x,setosa\n",
            "f.csv:2: column 2 ('b'): 'x' is not a number",
        );
        check_err(
            "1,2,setosa\n1,2,rose\n",
            "f.csv:2: column 3 ('class'): unknown class 'rose' (classes: setosa, versicolor)",
        );
        check_err(
            "1,2,setosa\n1,nan,setosa\n",
            "f.csv:2: column 2 ('b'): 'nan' is not a number",
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err =
            Dataset::read_files(&iris_schema(Header::Auto), &["/no/such/file.csv"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read /no/such/file.csv:"),
            "{err}"
        );
    }

    #[test]
    fn several_files_concatenate_and_shards_partition() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let b = dir.path().join("b.csv");
        std::fs::write(&a, "a,b,class\n1,1,0\n2,2,0\n").unwrap();
        std::fs::write(&b, "3,3,1\n").unwrap();
        let ds = Dataset::read_files(&iris_schema(Header::Auto), &[a, b]).unwrap();
        assert_eq!(ds.len(), 3);
        let s0 = ds.shard(0, 2);
        let s1 = ds.shard(1, 2);
        assert_eq!(s0.labels(), &[0.0, 1.0]);
        assert_eq!(s1.features(), &[2.0, 2.0]);
    }
}
