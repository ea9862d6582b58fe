//! TensorBoard event files: `Event` protobufs in TFRecord framing.
//!
//! Framing (TensorFlow `core/lib/io/record_writer.cc`): `u64 length (LE)`,
//! `u32 masked_crc32c(length bytes)`, the payload, `u32 masked_crc32c(payload)`, where
//! `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`. The first record of a file is an
//! `Event` carrying `file_version = "brain.Event:2"`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;

/// `tensorflow.Event` (the fields we use).
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// Field 1: seconds since the epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// Field 2: global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// Field 3: set on the first record only.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// Field 5.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    /// Field 1.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a `simple_value`.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    /// Field 1.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// Field 2.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Appends scalar summaries to one event file.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.<secs>.<host>.<pid>` and writes the version record.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}",
            now() as u64,
            std::process::id()
        ));
        let mut w = Self {
            out: BufWriter::new(File::create(&path)?),
            path,
        };
        w.write_event(&Event {
            wall_time: now(),
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        })?;
        w.out.flush()?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, event: &Event) -> std::io::Result<()> {
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc(&len).to_le_bytes())?;
        self.out.write_all(&data)?;
        self.out.write_all(&masked_crc(&data).to_le_bytes())
    }

    /// Writes scalars at `step` and flushes (so TensorBoard and the tuning service see them).
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> std::io::Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| SummaryValue {
                tag: tag.to_string(),
                simple_value: Some(*v as f32),
            })
            .collect();
        self.write_event(&Event {
            wall_time: now(),
            step: step as i64,
            file_version: None,
            summary: Some(Summary { value }),
        })?;
        self.out.flush()
    }
}

/// One scalar read back from an event file.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// Global step.
    pub step: i64,
    /// When it was written (seconds since the Unix epoch).
    pub wall_time: f64,
    /// Tag.
    pub tag: String,
    /// Value.
    pub value: f32,
}

/// Reads every scalar of an event file, checking both CRCs of each record. A truncated last
/// record (a writer killed mid-write) ends the read without error.
pub fn read_scalars(path: &Path) -> std::io::Result<Vec<Scalar>> {
    parse_scalars(&std::fs::read(path)?, &path.display().to_string())
}

/// Whether a file name is an event file's (`events.out.tfevents.*`).
pub fn is_event_file(name: &str) -> bool {
    name.starts_with("events.out.tfevents.")
}

/// [`read_scalars`] of an event file's bytes (read from wherever it lives); `name` is what
/// errors call it.
pub fn parse_scalars(bytes: &[u8], name: &str) -> std::io::Result<Vec<Scalar>> {
    let bad = |what: &str| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{name}: {what}"))
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        if u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"))
            != masked_crc(len_bytes)
        {
            return Err(bad("corrupt record length"));
        }
        let start = at + 12;
        if start + len + 4 > bytes.len() {
            break;
        }
        let data = &bytes[start..start + len];
        if u32::from_le_bytes(
            bytes[start + len..start + len + 4]
                .try_into()
                .expect("4 bytes"),
        ) != masked_crc(data)
        {
            return Err(bad("corrupt record data"));
        }
        let event = Event::decode(data).map_err(|e| bad(&e.to_string()))?;
        for v in event.summary.map(|s| s.value).unwrap_or_default() {
            if let Some(value) = v.simple_value {
                out.push(Scalar {
                    step: event.step,
                    wall_time: event.wall_time,
                    tag: v.tag,
                    value,
                });
            }
        }
        at = start + len + 4;
    }
    Ok(out)
}

/// The event files (`events.out.tfevents.*`) under `dir` and its subdirectories, a few levels
/// down (TensorFlow writes `eval/` and `train/` beside the job dir), in a stable order.
pub fn event_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, files: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() && depth > 0 {
                walk(&path, depth - 1, files);
            } else if kind.is_file() && e.file_name().to_str().is_some_and(is_event_file) {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, EVENT_DIR_DEPTH, &mut files);
    files.sort();
    files
}

/// How many directory levels below a job dir event files are looked for.
pub const EVENT_DIR_DEPTH: usize = 3;

/// Every value of scalar `tag` in the [`event_files`] under `dir`, ordered by time.
/// Unreadable or corrupt files are skipped: a trainer may be writing them right now.
pub fn read_dir(dir: &Path, tag: &str) -> Vec<crate::Report> {
    let files = event_files(dir);
    reports(files.iter().filter_map(|f| read_scalars(f).ok()), tag)
}

/// The values of scalar `tag` among the scalars of some event files, ordered by time.
pub fn reports(files: impl IntoIterator<Item = Vec<Scalar>>, tag: &str) -> Vec<crate::Report> {
    let mut out: Vec<crate::Report> = files
        .into_iter()
        .flatten()
        .filter(|s| s.tag == tag)
        .map(|s| crate::Report {
            step: s.step.max(0) as u64,
            value: f64::from(s.value),
            time: s.wall_time,
        })
        .collect();
    out.sort_by(|a, b| a.time.total_cmp(&b.time).then(a.step.cmp(&b.step)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_value() {
        // CRC-32C of "123456789" is 0xE3069283 (RFC 3720, B.4).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn scalars_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(10, &[("loss", 1.5), ("rmse", 2.25)]).unwrap();
        w.scalars(20, &[("loss", 0.5)]).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let s = read_scalars(&path).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[1],
            Scalar {
                step: 10,
                wall_time: s[1].wall_time,
                tag: "rmse".into(),
                value: 2.25
            }
        );
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_scalars(&path).is_err());
    }

    #[test]
    fn read_dir_finds_the_tag_in_subdirectories_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let eval = dir.path().join("eval");
        std::fs::create_dir_all(&eval).unwrap();
        let mut a = EventWriter::create(dir.path()).unwrap();
        a.scalars(1, &[("accuracy", 0.5), ("loss", 3.0)]).unwrap();
        drop(a);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut b = EventWriter::create(&eval).unwrap();
        b.scalars(2, &[("accuracy", 0.75)]).unwrap();
        drop(b);
        let r = read_dir(dir.path(), "accuracy");
        let got: Vec<(u64, f64)> = r.iter().map(|r| (r.step, r.value)).collect();
        assert_eq!(got, vec![(1, 0.5), (2, 0.75)]);
        assert!(read_dir(dir.path(), "nope").is_empty());
        assert!(read_dir(&dir.path().join("missing"), "accuracy").is_empty());
    }
}
