//! The Rust SDK in one file: a model `Sequential` cannot express (wide & deep: a linear path
//! from the inputs added to an MLP path), written with burn tensors, trained by mle's
//! `Trainer` with the same checkpoints/resume, event files, `cloudml-hypertune` reporting and
//! flags as the built-in trainer, and the same data-parallel training under `TF_CONFIG`. Run it
//! as a CMLE trainer:
//!
//! ```text
//! cargo run --release -p custom-trainer -- --train-files examples/abalone/data/abalone_train.csv \
//!     --eval-files examples/abalone/data/abalone_test.csv --job-dir out/wide-deep --train-steps 2000
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use mle_data::{Dataset, Header, Label, Schema};
use mle_nn::burn::tensor::{Device, Tensor, activation};
use mle_nn::params::{matrix, param_tensors, to_vec, write_grads};
use mle_nn::tensorfile::TensorFile;
use mle_nn::{
    Batch, Initializer, Metric, Model, NnError, OptimizerKind, OptimizerSpec, ParamLayout, Task,
    init,
};
use mle_train::{TrainConfig, Trainer};

/// `y = x·w + relu(x·K1 + b1)·K2 + b`: a wide (linear) and a deep (MLP) path.
struct WideDeep {
    layout: ParamLayout,
    inputs: usize,
    hidden: usize,
    device: Device,
}

impl WideDeep {
    fn new(inputs: usize, hidden: usize) -> Self {
        let mut layout = ParamLayout::default();
        layout.push("wide.kernel", &[inputs, 1]);
        layout.push("deep.kernel_1", &[inputs, hidden]);
        layout.push("deep.bias_1", &[1, hidden]);
        layout.push("deep.kernel_2", &[hidden, 1]);
        layout.push("bias", &[1, 1]);
        Self {
            layout,
            inputs,
            hidden,
            device: Device::flex(),
        }
    }

    fn forward(&self, p: &[Tensor<2>], x: Tensor<2>) -> Tensor<2> {
        let wide = x.clone().matmul(p[0].clone());
        let deep = activation::relu(x.matmul(p[1].clone()) + p[2].clone()).matmul(p[3].clone());
        wide + deep + p[4].clone()
    }

    fn mse(
        &self,
        params: &[f32],
        batch: Batch<'_>,
        device: &Device,
        grad: bool,
    ) -> (Vec<Tensor<2>>, Tensor<2>, Tensor<1>) {
        let p = param_tensors(&self.layout, params, device, grad);
        let out = self.forward(&p, matrix(batch.x, batch.rows, self.inputs, device));
        let loss = (out.clone() - matrix(batch.y, batch.rows, 1, device))
            .powi_scalar(2)
            .mean();
        (p, out, loss)
    }
}

impl Model for WideDeep {
    fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = <mle_train::SeedRng as mle_train::SeedableRng>::seed_from_u64(seed);
        let mut params = vec![0.0; self.layout.total()];
        for (name, fan_in, fan_out) in [
            ("wide.kernel", self.inputs, 1),
            ("deep.kernel_1", self.inputs, self.hidden),
            ("deep.kernel_2", self.hidden, 1),
        ] {
            let range = self.layout.get(name).expect("declared in new").range();
            init::fill(
                Initializer::GlorotUniform,
                fan_in,
                fan_out,
                &mut rng,
                &mut params[range],
            );
        }
        params
    }

    fn task(&self) -> Task {
        Task::Regression
    }

    fn input_width(&self) -> usize {
        self.inputs
    }

    fn output_width(&self) -> usize {
        1
    }

    fn loss_and_grad(
        &mut self,
        params: &[f32],
        batch: Batch<'_>,
        _step: u64,
        grads: &mut [f32],
    ) -> Result<f32, NnError> {
        let device = self.device.clone().autodiff();
        let (p, _, loss) = self.mse(params, batch, &device, true);
        write_grads(&self.layout, &p, &loss.backward(), grads)?;
        Ok(to_vec(loss)?[0])
    }

    fn evaluate(&self, params: &[f32], batch: Batch<'_>) -> Result<(f32, Vec<f32>), NnError> {
        let (_, out, loss) = self.mse(params, batch, &self.device, false);
        Ok((to_vec(loss)?[0], to_vec(out)?))
    }
}

/// The flags a CMLE trainer takes (a subset of `mle train`'s).
#[derive(Parser)]
struct Args {
    #[arg(long, alias = "train_files", num_args = 1.., value_delimiter = ',', required = true)]
    train_files: Vec<PathBuf>,
    #[arg(long, alias = "eval_files", num_args = 1.., value_delimiter = ',', required = true)]
    eval_files: Vec<PathBuf>,
    #[arg(long, alias = "job_dir")]
    job_dir: Option<PathBuf>,
    #[arg(long, alias = "train_steps", default_value = "2000")]
    train_steps: u64,
    #[arg(long, alias = "train_batch_size", default_value = "64")]
    train_batch_size: usize,
    #[arg(long, alias = "learning_rate", default_value = "0.01")]
    learning_rate: f64,
    #[arg(long, default_value = "16")]
    hidden: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let columns: Vec<String> = [
        "length",
        "diameter",
        "height",
        "whole_weight",
        "shucked_weight",
        "viscera_weight",
        "shell_weight",
        "num_rings",
    ]
    .map(String::from)
    .to_vec();
    let schema = Schema {
        features: columns[..7].to_vec(),
        label: Some("num_rings".into()),
        columns,
        label_kind: Label::Regression,
        header: Header::Auto,
    };
    let train = Dataset::read_files(&schema, &args.train_files)?;
    let eval = Dataset::read_files(&schema, &args.eval_files)?;
    let cfg = TrainConfig {
        job_dir: args.job_dir.clone(),
        train_steps: Some(args.train_steps),
        train_batch_size: args.train_batch_size,
        eval_batch_size: 1000,
        eval_every_steps: 500,
        optimizer: OptimizerSpec::new(OptimizerKind::Adam, args.learning_rate),
        metrics: vec![Metric::Rmse, Metric::Mae],
        hp_metric_tag: std::env::var("CLOUD_ML_HP_METRIC_TAG").ok(),
        ..TrainConfig::default()
    };
    let export_dir = args.job_dir.map(|d| d.join("export/wide_deep"));
    let model = WideDeep::new(7, args.hidden);
    // Under TF_CONFIG the same binary is a replica of a data-parallel job: a parameter server,
    // or a trainer whose gradients go through all-reduce or the parameter servers.
    let opts = mle_dist::Options::from_env();
    let exchange = match mle_dist::from_env(
        model.layout().total(),
        mle_dist::Strategy::Auto,
        false,
        &opts,
    )? {
        mle_dist::Role::ParameterServer(cluster) => {
            mle_dist::ps::serve(&cluster, &opts)?;
            return Ok(());
        }
        mle_dist::Role::Evaluator => anyhow::bail!("this example has no evaluator role"),
        mle_dist::Role::Trainer(x) => Some(x),
        mle_dist::Role::Single => None,
    };
    let mut trainer = Trainer::new(model, cfg);
    if let Some(x) = exchange {
        trainer = trainer.with_exchange(x);
    }
    if let Some(root) = export_dir {
        // A custom model exports its weights; serving it needs a Sequential or an ONNX graph.
        trainer = trainer.with_export(move |model: &WideDeep, params: &[f32], _step| {
            std::fs::create_dir_all(&root).map_err(|source| NnError::Io {
                path: root.clone(),
                source,
            })?;
            let mut f = TensorFile::default();
            for p in model.layout().params() {
                f.push(&p.name, &p.shape, &params[p.range()]);
            }
            f.write(&root.join("weights.safetensors"))?;
            Ok(root.clone())
        });
    }
    let outcome = trainer
        .run(&train, &eval)
        .context("training the wide & deep model")?;
    if outcome.metrics.is_empty() {
        println!("replica finished at step {}", outcome.step);
        return Ok(());
    }
    let metrics: Vec<String> = outcome
        .metrics
        .iter()
        .map(|(m, v)| format!("{} {v:.4}", m.name()))
        .collect();
    println!("final step {}: {}", outcome.step, metrics.join(", "));
    Ok(())
}
