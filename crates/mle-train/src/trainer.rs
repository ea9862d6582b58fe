//! The `train_and_evaluate` loop.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use mle_data::{BatchStream, Cursor, Dataset};
use mle_nn::metrics::MetricSums;
use mle_nn::{Batch, Metric, Model, NnError, Optimizer, OptimizerKind, OptimizerSpec};

use crate::checkpoint::Checkpoint;
use crate::events::EventWriter;
use crate::exchange::{Exchange, Local, Partition, StartState};
use crate::hypertune::{DEFAULT_METRIC_TAG, Reporter};
use crate::{TrainError, checkpoint};

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Where checkpoints, event files and exports go; `None` keeps nothing on disk.
    pub job_dir: Option<PathBuf>,
    /// Stop after this many steps.
    pub train_steps: Option<u64>,
    /// Stop after this many passes over the training data.
    pub num_epochs: Option<f64>,
    /// Rows per training step.
    pub train_batch_size: usize,
    /// Rows per evaluation batch.
    pub eval_batch_size: usize,
    /// Evaluation batches per evaluation (`None`: the whole evaluation set).
    pub eval_steps: Option<usize>,
    /// Evaluate (and report) every this many steps, and always at the end.
    pub eval_every_steps: u64,
    /// Checkpoint every this many steps (`None`: at every evaluation).
    pub checkpoint_every_steps: Option<u64>,
    /// Also checkpoint when this many seconds passed since the last one.
    pub checkpoint_every_secs: Option<f64>,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Training scalars are written every this many steps.
    pub log_every_steps: u64,
    /// Seed for initialisation, shuffling and dropout.
    pub seed: u64,
    /// The optimizer.
    pub optimizer: OptimizerSpec,
    /// Metrics to evaluate, the first is primary.
    pub metrics: Vec<Metric>,
    /// `CLOUD_ML_HP_METRIC_TAG`: the tag to report tuning metrics under.
    pub hp_metric_tag: Option<String>,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
    /// Print one line per evaluation on stdout.
    pub verbose: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            job_dir: None,
            train_steps: None,
            num_epochs: None,
            train_batch_size: 32,
            eval_batch_size: 1000,
            eval_steps: None,
            eval_every_steps: 1000,
            checkpoint_every_steps: None,
            checkpoint_every_secs: None,
            keep_checkpoints: 5,
            log_every_steps: 100,
            seed: 42,
            optimizer: OptimizerSpec::new(OptimizerKind::Adam, 0.001),
            metrics: vec![Metric::Loss],
            hp_metric_tag: None,
            progress: true,
            verbose: true,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The final global step.
    pub step: u64,
    /// The step training resumed from, if a checkpoint was found.
    pub resumed_from: Option<u64>,
    /// Final evaluation metrics.
    pub metrics: Vec<(Metric, f64)>,
    /// The export directory, if one was written.
    pub export_dir: Option<PathBuf>,
    /// Training throughput over this process's steps.
    pub examples_per_sec: f64,
}

type ExportFn<'a, M> = Box<dyn Fn(&M, &[f32], u64) -> Result<PathBuf, NnError> + 'a>;

/// A training run over one model: see the crate docs.
pub struct Trainer<'a, M: Model> {
    model: M,
    cfg: TrainConfig,
    export: Option<ExportFn<'a, M>>,
    exchange: Box<dyn Exchange + 'a>,
}

/// Evaluates `params` on (up to `eval_steps` batches of) a dataset.
pub fn evaluate<M: Model>(
    model: &M,
    params: &[f32],
    data: &Dataset,
    batch_size: usize,
    eval_steps: Option<usize>,
) -> Result<MetricSums, NnError> {
    let task = model.task();
    let mut sums = MetricSums::default();
    let w = data.width();
    let rows = data.len();
    let limit = eval_steps.map_or(rows, |s| (s * batch_size).min(rows));
    let mut start = 0;
    while start < limit {
        let end = (start + batch_size).min(limit);
        let batch = Batch {
            x: &data.features()[start * w..end * w],
            y: &data.labels()[start..end],
            rows: end - start,
        };
        let (loss, out) = model.evaluate(params, batch)?;
        sums.add(&task, loss, &out, batch.y);
        start = end;
    }
    Ok(sums)
}

/// Whether a step counter moving from `prev` to `now` passed a multiple of `every`.
fn crossed(prev: u64, now: u64, every: u64) -> bool {
    let every = every.max(1);
    now / every > prev / every
}

impl<'a, M: Model> Trainer<'a, M> {
    /// A single-process trainer for `model`.
    pub fn new(model: M, cfg: TrainConfig) -> Self {
        Self {
            model,
            cfg,
            export: None,
            exchange: Box::new(Local),
        }
    }

    /// Sets the function that writes the final export; it returns the export directory.
    pub fn with_export(
        mut self,
        f: impl Fn(&M, &[f32], u64) -> Result<PathBuf, NnError> + 'a,
    ) -> Self {
        self.export = Some(Box::new(f));
        self
    }

    /// Trains as one replica of a data-parallel job (see `mle-dist`).
    pub fn with_exchange(mut self, exchange: Box<dyn Exchange + 'a>) -> Self {
        self.exchange = exchange;
        self
    }

    fn max_steps(&self, rows: usize) -> Result<u64, TrainError> {
        let c = &self.cfg;
        let by_epochs = c
            .num_epochs
            .map(|e| (e * rows as f64 / c.train_batch_size as f64).ceil() as u64);
        match (c.train_steps, by_epochs) {
            (Some(s), Some(e)) => Ok(s.min(e)),
            (Some(s), None) | (None, Some(s)) => Ok(s),
            (None, None) => Err(TrainError::Config(
                "give --train-steps or --num-epochs".into(),
            )),
        }
    }

    /// Trains, evaluating and checkpointing along the way, then exports; resumes from the
    /// newest checkpoint in the job dir when there is one. Only the primary replica evaluates,
    /// checkpoints, reports and exports.
    pub fn run(mut self, train: &Dataset, eval: &Dataset) -> Result<Outcome, TrainError> {
        let cfg = self.cfg.clone();
        self.check_inputs(train, eval)?;
        let partition = self.exchange.partition();
        let world = match partition {
            Partition::Whole => 1,
            Partition::Slice { world, .. } | Partition::Shard { world, .. } => world,
        };
        // Epochs count passes over the whole data by all replicas together.
        let max_steps = self.max_steps(train.len() / world.max(1))?;
        if max_steps == 0 {
            return Err(TrainError::Config(
                "nothing to train: the step budget is 0".into(),
            ));
        }
        let primary = self.exchange.is_primary();
        let ckpt_dir = cfg
            .job_dir
            .as_ref()
            .filter(|_| primary)
            .map(|d| d.join("checkpoints"));
        let (local, resumed_from) = self.resume_or_init(ckpt_dir.as_deref())?;
        let StartState {
            mut step,
            cursor,
            mut params,
            optimizer: mut opt,
        } = self.exchange.start(local, max_steps)?;
        let mut report = Reporting::open(&cfg, primary, max_steps, step)?;
        let b = cfg.train_batch_size;
        let (shard, stream_batch, seed, cursor) = replica_data(partition, train, &cfg, cursor)?;
        let data = shard.as_ref().unwrap_or(train);
        let mut stream = BatchStream::new(data, stream_batch, seed, true, cursor);
        let mut grads = vec![0.0; params.len()];
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let width = train.width();
        let started = Instant::now();
        let start_step = step;
        let mut local_steps = 0u64;
        let mut interval = (Instant::now(), step, 0.0f64, 0u64);
        let mut last_ckpt = Instant::now();
        let mut final_metrics = Vec::new();
        let mut evaluated_at = None;
        let ckpt_every = cfg
            .checkpoint_every_steps
            .unwrap_or(cfg.eval_every_steps)
            .max(1);
        let lr = cfg.optimizer.learning_rate;

        while step < max_steps {
            stream.next_into(&mut x, &mut y);
            if let Partition::Slice { rank, .. } = partition {
                x.drain(..rank * b * width);
                x.truncate(b * width);
                y.drain(..rank * b);
                y.truncate(b);
            }
            let rows = y.len();
            let loss = self.model.loss_and_grad(
                &params,
                Batch { x: &x, y: &y, rows },
                step,
                &mut grads,
            )?;
            if !loss.is_finite() {
                return Err(TrainError::Diverged { step, loss });
            }
            let Some(next) = self
                .exchange
                .step(&mut params, &mut grads, &mut opt, lr, step)?
            else {
                break;
            };
            let prev = step;
            step = next;
            local_steps += 1;
            interval.2 += loss as f64;
            interval.3 += 1;
            if !primary {
                continue;
            }
            report.bar.set_position(step.min(max_steps));
            if crossed(prev, step, cfg.log_every_steps) || step >= max_steps {
                report.train_scalar(step, "loss", loss as f64)?;
            }
            if crossed(prev, step, cfg.eval_every_steps) || step >= max_steps {
                let secs = interval.0.elapsed().as_secs_f64();
                let ex_s = ((step - interval.1) as usize * cfg.train_batch_size * world) as f64
                    / secs.max(1e-9);
                let mean_loss = interval.2 / interval.3.max(1) as f64;
                final_metrics = report.evaluate(
                    &cfg,
                    &self.model,
                    &params,
                    eval,
                    step,
                    Some((mean_loss, ex_s)),
                )?;
                evaluated_at = Some(step);
                report.train_scalar(step, "examples/sec", ex_s)?;
                interval = (Instant::now(), step, 0.0, 0);
            }
            let due_secs = cfg
                .checkpoint_every_secs
                .is_some_and(|s| last_ckpt.elapsed().as_secs_f64() >= s);
            if let Some(dir) = &ckpt_dir
                && (crossed(prev, step, ckpt_every) || step >= max_steps || due_secs)
            {
                if let Some(s) = self.exchange.sync_state(&mut params, &mut opt)? {
                    step = step.max(s);
                }
                Checkpoint::capture(&self.model, &params, &opt, step, stream.cursor()).save(
                    &self.model,
                    dir,
                    cfg.keep_checkpoints,
                )?;
                last_ckpt = Instant::now();
            }
        }
        report.bar.finish_and_clear();
        let examples_per_sec = (local_steps as usize * cfg.train_batch_size) as f64
            / started.elapsed().as_secs_f64().max(1e-9);
        if !primary {
            self.exchange.finish()?;
            return Ok(Outcome {
                step,
                resumed_from: None,
                metrics: Vec::new(),
                export_dir: None,
                examples_per_sec,
            });
        }
        if let Some(s) = self.exchange.sync_state(&mut params, &mut opt)? {
            step = step.max(s);
        }
        // Another replica may have made the last step (parameter servers): evaluate the final
        // state unless that was just done.
        if evaluated_at != Some(step) {
            if step == start_step {
                eprintln!(
                    "training already reached step {step} (target {max_steps}); evaluating and exporting"
                );
            }
            final_metrics = report.evaluate(&cfg, &self.model, &params, eval, step, None)?;
        }
        let export_dir = match &self.export {
            Some(f) => Some(f(&self.model, &params, step)?),
            None => None,
        };
        if let Some(dir) = &ckpt_dir
            && checkpoint::list(dir).last().map(|(s, _)| *s) != Some(step)
        {
            Checkpoint::capture(&self.model, &params, &opt, step, stream.cursor()).save(
                &self.model,
                dir,
                cfg.keep_checkpoints,
            )?;
        }
        self.exchange.finish()?;
        Ok(Outcome {
            step,
            resumed_from,
            metrics: final_metrics,
            export_dir,
            examples_per_sec,
        })
    }

    /// Batch sizes of at least 1; data as wide as the model's input.
    fn check_inputs(&self, train: &Dataset, eval: &Dataset) -> Result<(), TrainError> {
        if self.cfg.train_batch_size == 0 || self.cfg.eval_batch_size == 0 {
            return Err(TrainError::Config("batch sizes must be at least 1".into()));
        }
        if train.width() != self.model.input_width() || eval.width() != self.model.input_width() {
            return Err(TrainError::Config(format!(
                "the model reads {} features, the data has {}",
                self.model.input_width(),
                train.width()
            )));
        }
        Ok(())
    }

    /// Fresh parameters, or the newest checkpoint in `ckpt_dir` (and the step it holds).
    fn resume_or_init(
        &mut self,
        ckpt_dir: Option<&std::path::Path>,
    ) -> Result<(StartState, Option<u64>), TrainError> {
        let mut local = StartState {
            step: 0,
            cursor: Cursor::default(),
            params: self.model.init_params(self.cfg.seed),
            optimizer: Optimizer::new(self.cfg.optimizer, self.model.layout().total()),
        };
        let Some(dir) = ckpt_dir else {
            return Ok((local, None));
        };
        let Some(c) = Checkpoint::latest(&self.model, dir)? else {
            return Ok((local, None));
        };
        c.restore(&mut self.model, &mut local.optimizer)?;
        local.params = c.params;
        local.step = c.step;
        local.cursor = c.cursor;
        eprintln!(
            "resuming from checkpoint at step {} in {}",
            c.step,
            dir.display()
        );
        Ok((local, Some(c.step)))
    }
}

/// What this replica streams: its shard of the data (for sharded partitions; `None` means the
/// whole `train`), the stream's batch size, its seed and its start cursor.
fn replica_data(
    partition: Partition,
    train: &Dataset,
    cfg: &TrainConfig,
    cursor: Cursor,
) -> Result<(Option<Dataset>, usize, u64, Cursor), TrainError> {
    let b = cfg.train_batch_size;
    Ok(match partition {
        Partition::Whole => (None, b, cfg.seed, cursor),
        Partition::Slice { world, .. } => (None, b * world, cfg.seed, cursor),
        Partition::Shard { rank, world } => {
            let shard = train.shard(rank, world);
            if shard.is_empty() {
                return Err(TrainError::Config(format!(
                    "replica {rank} of {world} gets no training rows"
                )));
            }
            let cursor = if rank == 0 { cursor } else { Cursor::default() };
            (Some(shard), b, cfg.seed.wrapping_add(rank as u64), cursor)
        }
    })
}

/// The primary's outputs while it trains: event files, the hypertune metric file, the
/// progress bar and the evaluation lines.
struct Reporting {
    train_events: Option<EventWriter>,
    eval_events: Option<EventWriter>,
    reporter: Option<Reporter>,
    bar: ProgressBar,
    max_steps: u64,
}

impl Reporting {
    /// Opens the primary's writers (a non-primary replica gets none).
    fn open(
        cfg: &TrainConfig,
        primary: bool,
        max_steps: u64,
        step: u64,
    ) -> Result<Self, TrainError> {
        let job_dir = cfg.job_dir.as_ref().filter(|_| primary);
        let train_events = match job_dir {
            Some(d) => Some(EventWriter::create(d).map_err(|e| TrainError::io(d, e))?),
            None => None,
        };
        let eval_events = match job_dir {
            Some(d) => {
                Some(EventWriter::create(&d.join("eval")).map_err(|e| TrainError::io(d, e))?)
            }
            None => None,
        };
        let reporter = if primary { Reporter::from_env() } else { None };
        let bar = if primary && cfg.progress && std::io::stderr().is_terminal() {
            let b = ProgressBar::new(max_steps);
            b.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} steps  {msg}  eta {eta}")
                    .expect("static template"),
            );
            b.set_position(step);
            b
        } else {
            ProgressBar::hidden()
        };
        Ok(Self {
            train_events,
            eval_events,
            reporter,
            bar,
            max_steps,
        })
    }

    /// One training scalar in the job dir's event file.
    fn train_scalar(&mut self, step: u64, tag: &str, value: f64) -> Result<(), TrainError> {
        if let Some(w) = self.train_events.as_mut() {
            w.scalars(step, &[(tag, value)])
                .map_err(|e| TrainError::io(w.path(), e))?;
        }
        Ok(())
    }

    /// Evaluates `params` on `eval` and reports it: the evaluation event file (with the
    /// tuning metric's tag), the hypertune file, and a line on stdout (with the interval's
    /// mean training loss and examples/s, when given).
    fn evaluate<M: Model>(
        &mut self,
        cfg: &TrainConfig,
        model: &M,
        params: &[f32],
        eval: &Dataset,
        step: u64,
        interval: Option<(f64, f64)>,
    ) -> Result<Vec<(Metric, f64)>, TrainError> {
        let (train_loss, ex_s) = match interval {
            Some((loss, ex_s)) => (Some(loss), ex_s),
            None => (None, 0.0),
        };
        let sums = evaluate(model, params, eval, cfg.eval_batch_size, cfg.eval_steps)?;
        let metrics: Vec<(Metric, f64)> = cfg.metrics.iter().map(|&m| (m, sums.value(m))).collect();
        let mut line = format!("step {step}/{}", self.max_steps);
        if let Some(l) = train_loss {
            line += &format!("  loss {l:.4}");
        }
        let mut scalars: Vec<(String, f64)> = vec![("loss".into(), sums.value(Metric::Loss))];
        line += &format!("  eval_loss {:.4}", sums.value(Metric::Loss));
        for (m, v) in &metrics {
            if *m != Metric::Loss {
                line += &format!("  eval_{} {v:.4}", m.name());
                scalars.push((m.name().into(), *v));
            }
        }
        if ex_s > 0.0 {
            line += &format!("  ({ex_s:.0} examples/s)");
        }
        let tag = cfg
            .hp_metric_tag
            .clone()
            .unwrap_or_else(|| DEFAULT_METRIC_TAG.into());
        let hp_value = Metric::parse(&tag).map(|m| sums.value(m)).unwrap_or(
            metrics
                .first()
                .map_or(sums.value(Metric::Loss), |(_, v)| *v),
        );
        if !scalars.iter().any(|(t, _)| *t == tag) {
            scalars.push((tag.clone(), hp_value));
        }
        if let Some(w) = self.eval_events.as_mut() {
            let refs: Vec<(&str, f64)> = scalars.iter().map(|(t, v)| (t.as_str(), *v)).collect();
            w.scalars(step, &refs)
                .map_err(|e| TrainError::io(w.path(), e))?;
        }
        if let Some(r) = self.reporter.as_mut() {
            r.report(&tag, hp_value, step).map_err(|e| {
                TrainError::Config(format!("writing the hypertune metric file: {e}"))
            })?;
        }
        if cfg.verbose {
            self.bar.suspend(|| println!("{line}"));
        }
        Ok(metrics)
    }
}
