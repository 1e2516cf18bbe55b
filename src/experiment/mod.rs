//! The batch-size claim, measured: the same small CNN trained with each normalization at each
//! batch size on procedurally drawn data ([`data`]), test error on a held-out split
//! (`normstyle norms experiment`; the GN paper's Figure 1 in miniature).
//!
//! The network: three 3×3 convolutions (16, 32, 64 channels), each followed by the
//! normalization under test ([`Norm`], or none) and ReLU, 2×2 max pooling after the first two,
//! global average pooling and a linear classifier; AdamW, cross-entropy. Every run sees the same
//! data and the same initial weights (drawn from the seed), so the runs differ only in the
//! normalization and the batch size. BN is evaluated with its running statistics, as deployed.

pub mod data;
#[cfg(feature = "plot")]
mod plot;

use std::time::Instant;

use candle::{DType, Device, Module, ModuleT, Tensor, D};
use candle_nn::{Optimizer, VarBuilder, VarMap};

use self::data::{Rng, CLASSES};
use crate::norm::{Norm, NormKind};
use crate::{Error, Result};

#[cfg(feature = "plot")]
pub use plot::plot;
#[cfg(feature = "plot")]
pub(crate) use plot::register_font;

/// What to train.
#[derive(Clone, Debug)]
pub struct ExperimentConfig {
    /// The normalizations; `None` trains without one.
    pub norms: Vec<Option<NormKind>>,
    /// Batch sizes (each ≥ 2: BN needs two values per channel).
    pub batch_sizes: Vec<usize>,
    /// Optimizer steps per run; `None`: one pass over the training set at every batch size
    /// (⌈train_size / B⌉ steps), so every run sees the same images, as the GN paper compares.
    pub steps: Option<usize>,
    /// The first seed: runs use seeds `seed` … `seed + seeds − 1`, each seeding the data, the
    /// initial weights and the batch order.
    pub seed: u64,
    /// How many seeds (≥ 1): one seed cannot tell BN's rise at small batches from noise.
    pub seeds: u64,
    /// Training images.
    pub train_size: usize,
    /// Held-out test images.
    pub test_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        ExperimentConfig {
            norms: vec![
                Some(NormKind::Bn),
                Some(NormKind::Gn(8)),
                Some(NormKind::Ln),
                Some(NormKind::In),
                None,
            ],
            batch_sizes: vec![2, 4, 8, 32],
            steps: None,
            seed: 0,
            seeds: 3,
            train_size: 4096,
            test_size: 1024,
            learning_rate: 2e-3,
        }
    }
}

/// One trained configuration.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunResult {
    /// The normalization (`bn`, `gn:8`, `ln`, `in`, `none`).
    pub norm: String,
    /// Images per step.
    pub batch_size: usize,
    /// The seed of the data, the initial weights and the batch order.
    pub seed: u64,
    /// Optimizer steps.
    pub steps: usize,
    /// Mean training loss over the last tenth of the steps.
    pub train_loss: f64,
    /// Misclassified fraction of the held-out images (eval mode).
    pub test_error: f64,
    /// Wall time of training and evaluation.
    pub seconds: f64,
}

pub use crate::norm::norm_name;

/// Trains every (norm, batch size) pair in order, calling `progress` after each run.
pub fn run(
    cfg: &ExperimentConfig,
    device: &Device,
    mut progress: impl FnMut(&RunResult),
) -> Result<Vec<RunResult>> {
    if let Some(b) = cfg
        .batch_sizes
        .iter()
        .find(|&&b| b < 2 || b > cfg.train_size)
    {
        return Err(Error::config(
            "experiment",
            format!(
                "batch size {b}: need 2 ≤ B ≤ {} (the training set)",
                cfg.train_size
            ),
        ));
    }
    if cfg.steps == Some(0) || cfg.norms.is_empty() || cfg.batch_sizes.is_empty() || cfg.seeds == 0
    {
        return Err(Error::config("experiment", "nothing to train"));
    }
    let mut results = Vec::new();
    for seed in cfg.seed..cfg.seed + cfg.seeds {
        let mut rng = Rng::new(seed, 1);
        let train = data::gratings(&mut rng, cfg.train_size, device)?;
        let test = data::gratings(&mut rng, cfg.test_size, device)?;
        for &norm in &cfg.norms {
            for &batch in &cfg.batch_sizes {
                let r = train_one(cfg, seed, norm, batch, &train, &test, device)?;
                progress(&r);
                results.push(r);
            }
        }
    }
    Ok(results)
}

/// The experiment's CNN.
struct Net {
    convs: Vec<candle_nn::Conv2d>,
    norms: Vec<Option<Norm>>,
    head: candle_nn::Linear,
}

impl Net {
    fn new(norm: Option<NormKind>, vb: &VarBuilder) -> Result<Self> {
        let cfg = candle_nn::Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let widths = [(3, 16), (16, 32), (32, 64)];
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        for (i, (cin, cout)) in widths.into_iter().enumerate() {
            convs.push(candle_nn::conv2d(
                cin,
                cout,
                3,
                cfg,
                vb.pp(format!("conv{i}")),
            )?);
            norms.push(
                norm.map(|k| Norm::new(k, cout, vb.pp(format!("norm{i}"))))
                    .transpose()?,
            );
        }
        let head = candle_nn::linear(64, CLASSES, vb.pp("head"))?;
        Ok(Net { convs, norms, head })
    }

    /// Logits (N, CLASSES) for images (N, 3, 16, 16).
    fn forward(&self, x: &Tensor, train: bool) -> candle::Result<Tensor> {
        let mut h = x.clone();
        for (i, (conv, norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            h = conv.forward(&h)?;
            if let Some(n) = norm {
                h = n.forward_t(&h, train)?;
            }
            h = h.relu()?;
            if i < 2 {
                h = h.max_pool2d(2)?;
            }
        }
        self.head.forward(&h.mean(D::Minus1)?.mean(D::Minus1)?)
    }
}

/// Overwrites every weight matrix/kernel with He-uniform values from `rng` and every bias with
/// 0 (norm γ = 1, β = 0 stay), so the initial weights depend on the seed alone.
fn seeded_init(vm: &VarMap, rng: &mut Rng) -> Result<()> {
    let vars = vm
        .data()
        .lock()
        .map_err(|_| Error::config("experiment", "poisoned VarMap"))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        if name.starts_with("norm") {
            continue;
        }
        if var.rank() < 2 {
            var.set(&var.zeros_like()?)?;
            continue;
        }
        let fan_in: usize = var.dims()[1..].iter().product();
        let bound = (6.0 / fan_in as f64).sqrt();
        let v: Vec<f32> = (0..var.elem_count())
            .map(|_| rng.range(-bound, bound) as f32)
            .collect();
        var.set(&Tensor::from_vec(v, var.shape(), var.device())?)?;
    }
    Ok(())
}

fn train_one(
    cfg: &ExperimentConfig,
    seed: u64,
    norm: Option<NormKind>,
    batch: usize,
    (train_x, train_y): &(Tensor, Tensor),
    (test_x, test_y): &(Tensor, Tensor),
    device: &Device,
) -> Result<RunResult> {
    let t0 = Instant::now();
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, device);
    let net = Net::new(norm, &vb)?;
    seeded_init(&vm, &mut Rng::new(seed, 2))?;
    let params = candle_nn::ParamsAdamW {
        lr: cfg.learning_rate,
        ..Default::default()
    };
    let mut opt = candle_nn::AdamW::new(vm.all_vars(), params)?;
    // The same batch order for every norm at a given batch size: shuffled passes over the set.
    let mut order = Rng::new(seed, 3 + batch as u64);
    let steps = cfg.steps.unwrap_or(cfg.train_size.div_ceil(batch));
    let tail = (steps / 10).max(1);
    let mut tail_loss = 0.0;
    let mut perm: Vec<u32> = Vec::new();
    for step in 0..steps {
        let idx: Vec<u32> = (0..batch)
            .map(|_| {
                if perm.is_empty() {
                    perm = (0..cfg.train_size as u32).collect();
                    for i in (1..perm.len()).rev() {
                        perm.swap(i, order.below(i + 1));
                    }
                }
                perm.pop().unwrap_or(0)
            })
            .collect();
        let idx = Tensor::from_vec(idx, batch, device)?;
        let x = train_x.index_select(&idx, 0)?;
        let y = train_y.index_select(&idx, 0)?;
        let loss = candle_nn::loss::cross_entropy(&net.forward(&x, true)?, &y)?;
        opt.backward_step(&loss)?;
        if step >= steps - tail {
            tail_loss += loss.to_scalar::<f32>()? as f64 / tail as f64;
        }
    }
    let mut wrong = 0usize;
    for start in (0..cfg.test_size).step_by(256) {
        let len = 256.min(cfg.test_size - start);
        let logits = net.forward(&test_x.narrow(0, start, len)?, false)?;
        let pred = logits.argmax(D::Minus1)?;
        let hits = pred.eq(&test_y.narrow(0, start, len)?)?;
        wrong += len - hits.to_dtype(DType::U32)?.sum_all()?.to_scalar::<u32>()? as usize;
    }
    Ok(RunResult {
        norm: norm_name(norm),
        batch_size: batch,
        seed,
        steps,
        train_loss: tail_loss,
        test_error: wrong as f64 / cfg.test_size as f64,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The results as CSV, one row per run: `norm,batch_size,seed,steps,train_loss,test_error,seconds`.
pub fn csv(results: &[RunResult]) -> String {
    let mut out = String::from("norm,batch_size,seed,steps,train_loss,test_error,seconds\n");
    for r in results {
        out += &format!(
            "{},{},{},{},{:.5},{:.4},{:.2}\n",
            r.norm, r.batch_size, r.seed, r.steps, r.train_loss, r.test_error, r.seconds
        );
    }
    out
}

/// One (norm, batch size) over its seeds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    /// The normalization.
    pub norm: String,
    /// Images per step.
    pub batch_size: usize,
    /// Seeds run.
    pub seeds: usize,
    /// Mean test error over the seeds.
    pub test_error_mean: f64,
    /// Sample standard deviation of the test error over the seeds (0 for one seed).
    pub test_error_std: f64,
    /// Lowest and highest test error over the seeds.
    pub test_error_range: (f64, f64),
}

/// The results grouped by (norm, batch size), in first-seen order.
pub fn summarize(results: &[RunResult]) -> Vec<Summary> {
    let mut keys: Vec<(String, usize)> = Vec::new();
    for r in results {
        let k = (r.norm.clone(), r.batch_size);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(norm, batch_size)| {
            let v: Vec<f64> = results
                .iter()
                .filter(|r| r.norm == norm && r.batch_size == batch_size)
                .map(|r| r.test_error)
                .collect();
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let std = if v.len() > 1 {
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            } else {
                0.0
            };
            let lo = v.iter().copied().fold(f64::MAX, f64::min);
            let hi = v.iter().copied().fold(f64::MIN, f64::max);
            Summary {
                norm,
                batch_size,
                seeds: v.len(),
                test_error_mean: mean,
                test_error_std: std,
                test_error_range: (lo, hi),
            }
        })
        .collect()
}

/// The summary as CSV: `norm,batch_size,seeds,test_error_mean,test_error_std`.
pub fn summary_csv(summary: &[Summary]) -> String {
    let mut out = String::from("norm,batch_size,seeds,test_error_mean,test_error_std\n");
    for s in summary {
        out += &format!(
            "{},{},{},{:.4},{:.4}\n",
            s.norm, s.batch_size, s.seeds, s.test_error_mean, s.test_error_std
        );
    }
    out
}
