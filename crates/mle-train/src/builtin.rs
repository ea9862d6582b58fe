//! The built-in trainer behind `mle train`: a model spec plus CSV files, trained with
//! [`crate::Trainer`] and exported as an mle bundle.

use std::path::PathBuf;

use mle_data::{Dataset, Label, Normalizer, Schema};
use mle_nn::export::{self, Normalization};
use mle_nn::{ModelSpec, Overrides, Sequential};

use crate::checkpoint::{self, Checkpoint};
use crate::exchange::Exchange;
use crate::{Outcome, TrainConfig, TrainError, Trainer};

/// Opens a named CSV stream (an object in a bucket: `mle-storage` in the CLI).
pub type OpenStream = dyn Fn(&str) -> std::io::Result<Box<dyn std::io::Read + Send>> + Send + Sync;

/// Streams opened by name, on demand.
#[derive(Clone)]
pub struct Streams {
    /// The names (URIs), in order; messages name them.
    pub names: Vec<String>,
    /// Opens one.
    pub open: std::sync::Arc<OpenStream>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("names", &self.names)
            .finish()
    }
}

/// Where rows come from.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// CSV files, concatenated.
    Files(Vec<PathBuf>),
    /// CSV streams (objects in buckets), concatenated, each parsed as it is read.
    Streams(Streams),
    /// CSV text embedded in the binary (`--example`), with a name for messages.
    Inline {
        /// Name used in messages.
        name: String,
        /// The CSV text.
        text: String,
    },
}

/// Where the spec comes from.
#[derive(Debug, Clone)]
pub enum SpecSource {
    /// A YAML/JSON file.
    File(PathBuf),
    /// Embedded text.
    Inline(String),
}

/// Everything `mle train` was asked to do.
#[derive(Debug, Clone)]
pub struct BuiltinArgs {
    /// The model spec.
    pub spec: SpecSource,
    /// Training rows.
    pub train: DataSource,
    /// Evaluation rows (`None`: evaluate on the training rows).
    pub eval: Option<DataSource>,
    /// Hyperparameter flags.
    pub overrides: Overrides,
    /// Export directory name (default: the spec's name).
    pub export_name: Option<String>,
    /// What computes the model.
    pub engine: mle_nn::Engine,
    /// Train on the first CUDA GPU (burn's CUDA backend) instead.
    pub cuda: bool,
    /// Loop settings; optimizer and metrics are taken from the spec.
    pub cfg: TrainConfig,
}

fn load(schema: &Schema, src: &DataSource) -> Result<Dataset, TrainError> {
    Ok(match src {
        DataSource::Files(paths) => Dataset::read_files(schema, paths)?,
        DataSource::Inline { name, text } => Dataset::parse_str(schema, text, name)?,
        DataSource::Streams(st) => {
            let mut all: Option<Dataset> = None;
            for name in &st.names {
                let reader = (st.open)(name).map_err(|e| TrainError::Config(e.to_string()))?;
                let part = Dataset::read_stream(
                    schema,
                    std::io::BufReader::with_capacity(1 << 16, reader),
                    name,
                )?;
                match all.as_mut() {
                    Some(a) => a.append(part),
                    None => all = Some(part),
                }
            }
            match all.filter(|d| !d.is_empty()) {
                Some(d) => d,
                None => {
                    return Err(mle_data::DataError::Empty(st.names.join(", ")).into());
                }
            }
        }
    })
}

/// Builds the gradient exchange once the model's parameter count is known.
pub type MakeExchange<'a> = dyn Fn(usize) -> Result<Option<Box<dyn Exchange>>, TrainError> + 'a;

struct Prepared {
    spec: ModelSpec,
    train: Dataset,
    eval: Dataset,
    normalization: Option<Normalization>,
}

fn prepare(args: &BuiltinArgs) -> Result<Prepared, TrainError> {
    let mut spec = match &args.spec {
        SpecSource::File(p) => ModelSpec::from_file(p)?,
        SpecSource::Inline(text) => ModelSpec::parse(text)?,
    };
    spec.apply(&args.overrides)?;
    let schema = Schema {
        columns: spec.data.columns.clone(),
        features: spec.data.features.clone(),
        label: Some(spec.data.label.clone()),
        label_kind: if spec.is_classification() {
            Label::Classes(spec.data.classes.clone())
        } else {
            Label::Regression
        },
        header: spec.data.header,
    };
    let mut train = load(&schema, &args.train)?;
    let mut eval = match &args.eval {
        Some(src) => load(&schema, src)?,
        None => {
            eprintln!("warning: no --eval-files given: evaluating on the training data");
            train.clone()
        }
    };
    let normalization = spec.data.normalize.then(|| {
        let n = Normalizer::fit(&train);
        n.apply(&mut train);
        n.apply(&mut eval);
        Normalization {
            mean: n.mean,
            std: n.std,
        }
    });
    Ok(Prepared {
        spec,
        train,
        eval,
        normalization,
    })
}

/// Runs the built-in trainer; `exchange` makes the replica's gradient exchange (`None`: train
/// alone).
pub fn run(args: BuiltinArgs, exchange: &MakeExchange<'_>) -> Result<Outcome, TrainError> {
    let Prepared {
        spec,
        train,
        eval,
        normalization,
    } = prepare(&args)?;
    let mut model = Sequential::from_spec(&spec)?;
    model.set_engine(args.engine);
    if args.cuda {
        model.use_cuda()?;
    }
    let exchange = exchange(mle_nn::Model::layout(&model).total())?;
    let mut cfg = args.cfg;
    cfg.optimizer = spec.optimizer;
    cfg.metrics = spec.metrics.clone();
    let features = spec.data.features.clone();
    let export_root = cfg.job_dir.as_ref().map(|d| {
        d.join("export").join(
            args.export_name
                .clone()
                .unwrap_or_else(|| spec.name.clone()),
        )
    });
    let mut trainer = Trainer::new(model, cfg);
    if let Some(x) = exchange {
        trainer = trainer.with_exchange(x);
    }
    if let Some(root) = export_root {
        trainer = trainer.with_export(move |model: &Sequential, params: &[f32], step| {
            let mut ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            while root.join(ts.to_string()).exists() {
                ts += 1;
            }
            let dir = root.join(ts.to_string());
            export::write(&dir, model, params, &features, normalization.clone(), step)?;
            Ok(dir)
        });
    }
    trainer.run(&train, &eval)
}

/// The evaluator replica: evaluates each new checkpoint of the job dir (writing its own event
/// files under `<job-dir>/eval_evaluator/`) until one reaches the final step.
pub fn evaluate_checkpoints(args: BuiltinArgs, max_steps: u64) -> Result<(), TrainError> {
    let Prepared { spec, eval, .. } = prepare(&args)?;
    let mut model = Sequential::from_spec(&spec)?;
    model.set_engine(args.engine);
    let job_dir = args
        .cfg
        .job_dir
        .clone()
        .ok_or_else(|| TrainError::Config("an evaluator needs --job-dir".into()))?;
    let dir = job_dir.join("checkpoints");
    let mut events = crate::events::EventWriter::create(&job_dir.join("eval_evaluator"))
        .map_err(|e| TrainError::io(&job_dir, e))?;
    let mut last = None;
    loop {
        if let Some((step, path)) = checkpoint::list(&dir).pop()
            && Some(step) != last
        {
            let c = Checkpoint::load(&model, &path)?;
            let mut opt = mle_nn::Optimizer::new(spec.optimizer, c.params.len());
            c.restore(&mut model, &mut opt)?;
            let sums = crate::evaluate(
                &model,
                &c.params,
                &eval,
                args.cfg.eval_batch_size,
                args.cfg.eval_steps,
            )?;
            let values: Vec<(&str, f64)> = spec
                .metrics
                .iter()
                .map(|m| (m.name(), sums.value(*m)))
                .collect();
            events
                .scalars(step, &values)
                .map_err(|e| TrainError::io(events.path(), e))?;
            let text: Vec<String> = values
                .iter()
                .map(|(n, v)| format!("eval_{n} {v:.4}"))
                .collect();
            println!("evaluator: step {step}  {}", text.join("  "));
            last = Some(step);
            if step >= max_steps {
                return Ok(());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
