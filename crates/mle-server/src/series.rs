//! A job's scalars, read from the event files under its job dir (a local directory or a bucket
//! prefix): what tuning reads a trial's metric from, and the series the console draws. A
//! series is one tag of one *run*, the event files' directory below the job dir (`""` for the
//! job dir itself, `eval`, `3/eval` for trial 3's evaluations), ordered by step and
//! downsampled for drawing. Blocking: callers on the async runtime use `spawn_blocking`.

use mle_metrics::events::{self, EVENT_DIR_DEPTH, Scalar};
use serde::Serialize;

use crate::paths::Place;

/// The largest event file read, local or from a bucket (bigger ones are skipped and counted).
pub const MAX_EVENT_FILE_BYTES: u64 = 256 << 20;

/// The most points a series is drawn with (the `maxPoints` a request may ask for).
pub const MAX_POINTS: usize = 10_000;

/// The scalars of the event files of one run directory.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// The directory below the job dir, `/`-separated (`""` for the job dir itself).
    pub name: String,
    /// Its scalars, every file's.
    pub scalars: Vec<Scalar>,
}

/// What was read under a job dir.
#[derive(Debug, Default)]
pub struct Read {
    /// The runs, by name.
    pub runs: Vec<Run>,
    /// Event files skipped for their size.
    pub skipped: usize,
}

/// The directory part of a `/`-separated relative file name.
fn parent(rel: &str) -> String {
    rel.rsplit_once('/')
        .map(|(d, _)| d.to_string())
        .unwrap_or_default()
}

fn add(runs: &mut Vec<Run>, name: String, mut scalars: Vec<Scalar>) {
    match runs.iter_mut().find(|r| r.name == name) {
        Some(r) => r.scalars.append(&mut scalars),
        None => runs.push(Run { name, scalars }),
    }
}

/// Every event file's scalars under `dir` (a few levels deep). Files that cannot be read or
/// parsed yet are skipped: a trainer may be writing them right now.
pub fn read(dir: &Place) -> Read {
    let mut out = Read::default();
    match dir {
        Place::Local(root) => {
            for f in events::event_files(root) {
                if std::fs::metadata(&f).is_ok_and(|m| m.len() > MAX_EVENT_FILE_BYTES) {
                    out.skipped += 1;
                    continue;
                }
                let Ok(scalars) = events::read_scalars(&f) else {
                    continue;
                };
                let rel = f.strip_prefix(root).unwrap_or(&f);
                let name = rel
                    .parent()
                    .map(|p| p.to_string_lossy().replace('\\', "/"))
                    .unwrap_or_default();
                add(&mut out.runs, name, scalars);
            }
        }
        Place::Bucket(prefix) => {
            let Ok(storage) = mle_storage::Storage::shared() else {
                return out;
            };
            let mut found: Vec<(mle_storage::Location, String, u64)> = storage
                .list(prefix)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(l, n)| {
                    let rel = l.relative_to(prefix)?;
                    let file = rel.rsplit('/').next()?;
                    (rel.matches('/').count() <= EVENT_DIR_DEPTH && events::is_event_file(file))
                        .then_some((l, rel, n))
                })
                .collect();
            found.sort_by(|a, b| a.1.cmp(&b.1));
            for (l, rel, n) in found {
                if n > MAX_EVENT_FILE_BYTES {
                    out.skipped += 1;
                    continue;
                }
                let Some(scalars) = storage
                    .get(&l)
                    .ok()
                    .and_then(|b| events::parse_scalars(&b, &l.uri()).ok())
                else {
                    continue;
                };
                add(&mut out.runs, parent(&rel), scalars);
            }
        }
    }
    out
}

/// One tag of one run, as the console draws it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    /// The run ([`Run::name`]).
    pub run: String,
    /// The tag.
    pub tag: String,
    /// Steps, ascending.
    pub steps: Vec<i64>,
    /// The value at each step; `null` for a NaN or an infinity.
    pub values: Vec<Option<f64>>,
    /// How many steps the series has before downsampling.
    pub count: usize,
}

/// The series of `runs`, each with at most `max_points` points. A step written twice (a
/// resumed run writes a new event file) keeps its latest value.
pub fn series(runs: &[Run], max_points: usize) -> Vec<Series> {
    let mut out = Vec::new();
    for run in runs {
        let mut tags: Vec<&str> = run.scalars.iter().map(|s| s.tag.as_str()).collect();
        tags.sort_unstable();
        tags.dedup();
        for tag in tags {
            let mut points: Vec<(i64, f64, f64)> = run
                .scalars
                .iter()
                .filter(|s| s.tag == tag)
                .map(|s| (s.step, s.wall_time, f64::from(s.value)))
                .collect();
            points.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            // The last of each step's writes.
            let mut merged: Vec<(i64, f64)> = Vec::with_capacity(points.len());
            for (step, _, v) in points {
                match merged.last_mut() {
                    Some(last) if last.0 == step => last.1 = v,
                    _ => merged.push((step, v)),
                }
            }
            let count = merged.len();
            let kept = downsample(&merged, max_points);
            out.push(Series {
                run: run.name.clone(),
                tag: tag.to_string(),
                steps: kept.iter().map(|p| p.0).collect(),
                values: kept
                    .iter()
                    .map(|p| p.1.is_finite().then_some(p.1))
                    .collect(),
                count,
            });
        }
    }
    out
}

/// At most `n` of `points` (sorted by step) that keep the curve's shape: Largest-Triangle-
/// Three-Buckets (S. Steinarsson, "Downsampling Time Series for Visual Representation",
/// MSc thesis, University of Iceland, 2013). The first and last points stay; each bucket
/// between gives the point that spans the largest triangle with the point kept before it and
/// the next bucket's mean. A bucket holding a NaN or an infinity gives that point instead, so
/// a divergence is never smoothed away.
pub fn downsample(points: &[(i64, f64)], n: usize) -> Vec<(i64, f64)> {
    let n = n.max(3);
    if points.len() <= n {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(n);
    out.push(points[0]);
    let inner = points.len() - 2;
    let buckets = n - 2;
    let bounds = |b: usize| (1 + b * inner / buckets, 1 + (b + 1) * inner / buckets);
    // The last finite point kept (the triangles' first corner).
    let mut a = points[0];
    for b in 0..buckets {
        let (lo, hi) = bounds(b);
        let (nlo, nhi) = if b + 1 < buckets {
            bounds(b + 1)
        } else {
            (points.len() - 1, points.len())
        };
        let next: Vec<&(i64, f64)> = points[nlo..nhi]
            .iter()
            .filter(|p| p.1.is_finite())
            .collect();
        let (cx, cy) = if next.is_empty() {
            (points[nhi - 1].0 as f64, a.1)
        } else {
            let k = next.len() as f64;
            (
                next.iter().map(|p| p.0 as f64).sum::<f64>() / k,
                next.iter().map(|p| p.1).sum::<f64>() / k,
            )
        };
        let bucket = &points[lo..hi];
        let pick = match bucket.iter().find(|p| !p.1.is_finite()) {
            Some(bad) => *bad,
            None => *bucket
                .iter()
                .max_by(|p, q| {
                    let area = |p: &(i64, f64)| {
                        ((a.0 as f64 - cx) * (p.1 - a.1) - (a.0 as f64 - p.0 as f64) * (cy - a.1))
                            .abs()
                    };
                    area(p).total_cmp(&area(q))
                })
                .expect("buckets are not empty"),
        };
        if pick.1.is_finite() {
            a = pick;
        }
        out.push(pick);
    }
    out.push(points[points.len() - 1]);
    out
}

/// The export roots a job wrote (`<job-dir>/export/<name>`, each holding timestamped
/// exports), as URIs a version's `deploymentUri` takes.
pub fn exports(dir: &Place) -> Vec<String> {
    let root = dir.join("export");
    let mut out: Vec<String> = match &root {
        Place::Local(p) => std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(|n| root.join(n).uri()))
            .collect(),
        Place::Bucket(prefix) => mle_storage::Storage::shared()
            .ok()
            .and_then(|s| s.list(prefix).ok())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(l, _)| {
                let rel = l.relative_to(prefix)?;
                let (name, rest) = rel.split_once('/')?;
                (!rest.is_empty()).then(|| root.join(name).uri())
            })
            .collect(),
    };
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(step: i64, time: f64, tag: &str, value: f32) -> Scalar {
        Scalar {
            step,
            wall_time: time,
            tag: tag.into(),
            value,
        }
    }

    #[test]
    fn series_are_by_run_and_tag_sorted_by_step_with_the_latest_write_of_a_step() {
        let runs = vec![
            Run {
                name: String::new(),
                scalars: vec![
                    scalar(20, 2.0, "loss", 2.0),
                    scalar(10, 1.0, "loss", 1.0),
                    // A resumed run wrote step 20 again, later.
                    scalar(20, 9.0, "loss", 5.0),
                ],
            },
            Run {
                name: "eval".into(),
                scalars: vec![
                    scalar(10, 1.0, "rmse", f32::NAN),
                    scalar(10, 1.0, "loss", 3.0),
                ],
            },
        ];
        let s = series(&runs, 100);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].run.as_str(), s[0].tag.as_str()), ("", "loss"));
        assert_eq!(s[0].steps, vec![10, 20]);
        assert_eq!(s[0].values, vec![Some(1.0), Some(5.0)]);
        assert_eq!((s[1].run.as_str(), s[1].tag.as_str()), ("eval", "loss"));
        assert_eq!(s[2].values, vec![None], "NaN goes out as null");
        // JSON cannot hold NaN: the series serialise.
        assert!(serde_json::to_string(&s).unwrap().contains("null"));
    }

    #[test]
    fn downsampling_keeps_the_ends_the_size_and_the_peaks() {
        let pts: Vec<(i64, f64)> = (0..100_000)
            .map(|i| (i, (i as f64 / 500.0).sin()))
            .collect();
        let mut spiky = pts.clone();
        spiky[54_321].1 = 50.0;
        spiky[77_777].1 = f64::NAN;
        let d = downsample(&spiky, 1000);
        assert_eq!(d.len(), 1000);
        assert_eq!(d[0], spiky[0]);
        assert_eq!(d[999], spiky[99_999]);
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0), "steps ascend");
        assert!(d.contains(&(54_321, 50.0)), "a spike survives");
        assert!(
            d.iter().any(|p| p.0 == 77_777 && p.1.is_nan()),
            "a NaN survives"
        );
        // The downsampled sine keeps its range.
        let max = d.iter().map(|p| p.1).filter(|v| v.is_finite() && *v < 2.0);
        assert!(max.fold(f64::MIN, f64::max) > 0.999);
        // Short series and tiny budgets.
        assert_eq!(downsample(&pts[..10], 1000), pts[..10].to_vec());
        assert_eq!(downsample(&pts, 0).len(), 3);
    }

    #[test]
    fn runs_are_the_event_files_directories_below_the_job_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut train = mle_metrics::events::EventWriter::create(dir.path()).unwrap();
        train.scalars(1, &[("loss", 0.5)]).unwrap();
        let mut eval =
            mle_metrics::events::EventWriter::create(&dir.path().join("3").join("eval")).unwrap();
        eval.scalars(1, &[("rmse", 2.0)]).unwrap();
        // Too deep to be a job's: not read.
        let deep = dir.path().join("a/b/c/d");
        let mut w = mle_metrics::events::EventWriter::create(&deep).unwrap();
        w.scalars(1, &[("x", 1.0)]).unwrap();
        drop((train, eval, w));
        let got = read(&Place::Local(dir.path().to_path_buf()));
        let mut names: Vec<&str> = got.runs.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["", "3/eval"]);
        std::fs::create_dir_all(dir.path().join("export/abalone/1700000000")).unwrap();
        assert_eq!(
            exports(&Place::Local(dir.path().to_path_buf())),
            vec![dir.path().join("export/abalone").display().to_string()]
        );
    }
}
