//! Batch normalization over (N, H, W) per channel, with PyTorch's `nn.BatchNorm2d` semantics
//! (Ioffe & Szegedy 2015).

use std::sync::atomic::{AtomicU64, Ordering};

use candle::{Device, ModuleT, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use super::fused::{self, Pool};
use super::stats::{affine_planes, Moments, PostOp, Variance};
use super::{
    affine_vectors, check_eps, check_pair, check_param, dims_ncs, filled, graph, load_param,
    new_var, plane_affine, DEFAULT_EPS,
};
use crate::weights::TensorMap;
use crate::{Error, Result};

const LAYER: &str = "BatchNorm2d";

/// Hyper-parameters of [`BatchNorm2d`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm2dConfig {
    /// Added to the variance before the square root. Default 1e-5.
    pub eps: f64,
    /// Weight of the new batch in the running statistics; `None` = cumulative average
    /// (1 / batches seen). Default `Some(0.1)`.
    pub momentum: Option<f64>,
    /// Learnable γ, β per channel. Default true.
    pub affine: bool,
    /// Keep running mean and variance for eval mode. Default true.
    pub track_running_stats: bool,
}

impl Default for BatchNorm2dConfig {
    fn default() -> Self {
        BatchNorm2dConfig {
            eps: DEFAULT_EPS,
            momentum: Some(0.1),
            affine: true,
            track_running_stats: true,
        }
    }
}

/// `nn.BatchNorm2d`: x (N, C, H, W) → same shape and dtype.
///
/// Train mode normalizes each channel with the biased variance of the batch and updates the
/// running statistics (the variance with the unbiased estimate); eval mode uses the running
/// statistics. Without running statistics both modes use the batch's.
///
/// The running statistics are [`Var`]s updated in place: a layer built by [`batch_norm2d`]
/// from a `VarMap` updates the map's `running_mean` and `running_var`, so `VarMap::save`
/// stores the trained layer whole (a clone shares them, as candle-nn's `BatchNorm` does).
/// Gradients flow through the batch statistics whenever a graph is recorded. Like candle-nn's
/// `BatchNorm` it implements [`ModuleT`] only (`xs.apply_t(&bn, train)`): a plain `Module`
/// would hide the mode.
#[derive(Debug)]
pub struct BatchNorm2d {
    num_features: usize,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    running_mean: Option<Var>,
    running_var: Option<Var>,
    num_batches_tracked: AtomicU64,
    cfg: BatchNorm2dConfig,
}

impl Clone for BatchNorm2d {
    fn clone(&self) -> Self {
        BatchNorm2d {
            num_features: self.num_features,
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            running_mean: self.running_mean.clone(),
            running_var: self.running_var.clone(),
            num_batches_tracked: AtomicU64::new(self.num_batches_tracked()),
            cfg: self.cfg,
        }
    }
}

/// A [`BatchNorm2d`] whose tensors live in `vb` under PyTorch's names: `weight` (γ = 1) and
/// `bias` (β = 0) when affine, `running_mean` (0) and `running_var` (1) when tracked — so a
/// PyTorch state dict loads by name, and a `VarMap` holds the trainable and running values.
pub fn batch_norm2d(
    num_features: usize,
    cfg: BatchNorm2dConfig,
    vb: VarBuilder,
) -> Result<BatchNorm2d> {
    let get = |name: &str, init: f64, wanted: bool| -> Result<Option<Tensor>> {
        Ok(wanted
            .then(|| vb.get_with_hints(num_features, name, Init::Const(init)))
            .transpose()?)
    };
    let mut bn = BatchNorm2d::from_tensors(
        num_features,
        get("weight", 1.0, cfg.affine)?,
        get("bias", 0.0, cfg.affine)?,
        None,
        None,
        BatchNorm2dConfig {
            track_running_stats: false,
            ..cfg
        },
    )?;
    if cfg.track_running_stats {
        // Shared with the VarMap, not copied, so the updates land there.
        let var = |t: Option<Tensor>| t.map(|t| Var::from_tensor(&t)).transpose();
        bn.running_mean = var(get("running_mean", 0.0, true)?)?;
        bn.running_var = var(get("running_var", 1.0, true)?)?;
        bn.cfg.track_running_stats = true;
    }
    Ok(bn)
}

impl BatchNorm2d {
    /// A fresh layer as PyTorch initializes it: γ = 1, β = 0, running mean 0, running var 1.
    pub fn new(num_features: usize, cfg: BatchNorm2dConfig, device: &Device) -> Result<Self> {
        let c = num_features;
        let ones = || filled(c, 1.0, device);
        let zeros = || filled(c, 0.0, device);
        Self::from_tensors(
            num_features,
            cfg.affine.then(ones).transpose()?,
            cfg.affine.then(zeros).transpose()?,
            cfg.track_running_stats.then(zeros).transpose()?,
            cfg.track_running_stats.then(ones).transpose()?,
            cfg,
        )
    }

    /// A layer from tensors of shape (C,): γ and β are required when `cfg.affine`, the running
    /// statistics when `cfg.track_running_stats`, and must be absent otherwise.
    pub fn from_tensors(
        num_features: usize,
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        running_mean: Option<Tensor>,
        running_var: Option<Tensor>,
        cfg: BatchNorm2dConfig,
    ) -> Result<Self> {
        if num_features == 0 {
            return Err(Error::config(LAYER, "num_features must be at least 1"));
        }
        check_eps(LAYER, cfg.eps)?;
        if let Some(m) = cfg.momentum {
            if !(0.0..=1.0).contains(&m) {
                return Err(Error::config(
                    LAYER,
                    format!("momentum must be in [0, 1] or None, got {m}"),
                ));
            }
        }
        let shape = [num_features];
        check_pair(
            LAYER,
            &weight,
            &bias,
            cfg.affine,
            "weight and bias (affine)",
        )?;
        check_pair(
            LAYER,
            &running_mean,
            &running_var,
            cfg.track_running_stats,
            "running_mean and running_var",
        )?;
        Ok(BatchNorm2d {
            num_features,
            weight: check_param(LAYER, "weight", weight, &shape)?,
            bias: check_param(LAYER, "bias", bias, &shape)?,
            running_mean: new_var(check_param(LAYER, "running_mean", running_mean, &shape)?)?,
            running_var: new_var(check_param(LAYER, "running_var", running_var, &shape)?)?,
            num_batches_tracked: AtomicU64::new(0),
            cfg,
        })
    }

    /// Loads `prefix.{weight,bias,running_mean,running_var}` as configured; `num_batches_tracked`
    /// may be present and is ignored.
    pub fn load(
        map: &TensorMap,
        prefix: &str,
        num_features: usize,
        cfg: BatchNorm2dConfig,
    ) -> Result<Self> {
        let s = [num_features];
        let p = |name: &str, wanted: bool| load_param(map, prefix, name, &s, wanted);
        Self::from_tensors(
            num_features,
            p("weight", cfg.affine)?,
            p("bias", cfg.affine)?,
            p("running_mean", cfg.track_running_stats)?,
            p("running_var", cfg.track_running_stats)?,
            cfg,
        )
    }

    /// Training-mode forward: normalizes with the batch statistics and, when tracking, updates
    /// the running statistics in place. x: (N, C, H, W) with N·H·W > 1.
    pub fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_train_then(x, PostOp::None)
    }

    /// [`forward_train`](Self::forward_train) followed by `post` (`None` or `Relu`), in one
    /// graph node when training on the CPU.
    pub(crate) fn forward_train_then(&self, x: &Tensor, post: PostOp) -> Result<Tensor> {
        let (n, c, hw) = self.check_input(x)?;
        if n * hw <= 1 {
            return Err(Error::input(
                LAYER,
                format!(
                    "expected more than 1 value per channel when training, got input size {:?}",
                    x.dims()
                ),
            ));
        }
        // Momentum None is PyTorch's cumulative average: 1 / batches seen.
        let m = match &self.running_mean {
            Some(_) => {
                let seen = self.num_batches_tracked.fetch_add(1, Ordering::Relaxed) + 1;
                self.cfg.momentum.unwrap_or(1.0 / seen as f64)
            }
            None => 0.0,
        };
        let params = [self.weight.as_ref(), self.bias.as_ref()];
        let fused = fused::applies(x, &params);
        if graph::needed(x, &params) && !fused {
            return post.tensor(self.train_graph(x, m)?);
        }
        let per_channel = Moments::of_rows(x, hw)?.merge_by(c, |i| i % c);
        if let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) {
            let (rm_old, rv_old) = affine_vectors(Some(rm.as_tensor()), Some(rv.as_tensor()), c)?;
            let upd = |var: &Var, old: &[f64], new: &dyn Fn(usize) -> f64| -> Result<()> {
                let v: Vec<f64> = (0..c).map(|k| (1.0 - m) * old[k] + m * new(k)).collect();
                Ok(var.set(&Tensor::from_vec(v, c, var.device())?.to_dtype(var.dtype())?)?)
            };
            upd(rm, &rm_old, &|k| per_channel.mean[k])?;
            upd(rv, &rv_old, &|k| {
                per_channel.variance(k, Variance::Unbiased)
            })?;
        }
        if fused {
            let (w, b) = (self.weight.as_ref(), self.bias.as_ref());
            return fused::forward(x, w, b, Pool::Batch, self.cfg.eps, post);
        }
        post.tensor(self.normalize(x, n, c, hw, |ch| {
            (
                per_channel.mean[ch],
                per_channel.variance(ch, Variance::Biased),
            )
        })?)
    }

    /// The training forward with tensor ops (autograd, any device); `m` is the momentum.
    fn train_graph(&self, x: &Tensor, m: f64) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let xd = x.to_dtype(graph::compute_dtype(x)?)?;
        // (C, N·H·W): each channel's values in one row.
        let rows = xd.transpose(0, 1)?.reshape((c, n * h * w))?;
        let (mean, var) = graph::moments_last(&rows)?;
        if let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) {
            let count = (n * h * w) as f64;
            let unbiased = (var.detach().flatten_all()? * (count / (count - 1.0)))?;
            let mix = |r: &Var, new: &Tensor| -> Result<()> {
                let old = r.as_tensor().detach().to_dtype(new.dtype())?;
                let upd = ((old * (1.0 - m))? + (new * m)?)?;
                Ok(r.set(&upd.to_dtype(r.dtype())?)?)
            };
            mix(rm, &mean.detach().flatten_all()?)?;
            mix(rv, &unbiased)?;
        }
        let xn = graph::standardize(&rows, &mean, &var, self.cfg.eps)?
            .reshape((c, n, h, w))?
            .transpose(0, 1)?;
        let y = graph::affine_channels(&xn, self.weight.as_ref(), self.bias.as_ref())?;
        Ok(y.contiguous()?.to_dtype(x.dtype())?)
    }

    /// Eval-mode forward: normalizes with the running statistics (or, without them, with the
    /// batch's, as PyTorch does). x: (N, C, H, W).
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, hw) = self.check_input(x)?;
        match (&self.running_mean, &self.running_var) {
            (Some(rm), Some(rv))
                if graph::needed(x, &[self.weight.as_ref(), self.bias.as_ref()]) =>
            {
                let cd = graph::compute_dtype(x)?;
                let xd = x.to_dtype(cd)?;
                let mean = graph::per_channel(rm, 4, cd)?;
                let var = graph::per_channel(rv, 4, cd)?;
                let xn = graph::standardize(&xd, &mean, &var, self.cfg.eps)?;
                let y = graph::affine_channels(&xn, self.weight.as_ref(), self.bias.as_ref())?;
                Ok(y.to_dtype(x.dtype())?)
            }
            (Some(rm), Some(rv)) => {
                let (mean, var) = affine_vectors(Some(rm.as_tensor()), Some(rv.as_tensor()), c)?;
                self.normalize(x, n, c, hw, |ch| (mean[ch], var[ch]))
            }
            _ => self.forward_train(x),
        }
    }

    /// [`forward_train`](Self::forward_train) when `train`, else [`forward_eval`](Self::forward_eval).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(x)
        } else {
            self.forward_eval(x)
        }
    }

    fn check_input(&self, x: &Tensor) -> Result<(usize, usize, usize)> {
        let (n, c, hw) = dims_ncs(LAYER, x, 4, 4)?;
        if c != self.num_features {
            return Err(Error::input(
                LAYER,
                format!(
                    "expected {} channels, found {c} in input of shape {:?}",
                    self.num_features,
                    x.dims()
                ),
            ));
        }
        if n * hw == 0 {
            return Err(Error::input(
                LAYER,
                format!("empty input of shape {:?}", x.dims()),
            ));
        }
        Ok((n, c, hw))
    }

    fn normalize(
        &self,
        x: &Tensor,
        n: usize,
        c: usize,
        hw: usize,
        stat: impl Fn(usize) -> (f64, f64),
    ) -> Result<Tensor> {
        let (gamma, beta) = affine_vectors(self.weight.as_ref(), self.bias.as_ref(), c)?;
        let ab = plane_affine(n * c, c, |p| stat(p % c), &gamma, &beta, self.cfg.eps);
        affine_planes(x, hw, &ab)
    }

    /// Channels C.
    pub fn num_features(&self) -> usize {
        self.num_features
    }
    /// γ, shape (C,) f32, when affine.
    pub fn weight(&self) -> Option<&Tensor> {
        self.weight.as_ref()
    }
    /// β, shape (C,) f32, when affine.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    /// Running mean, shape (C,), when tracked.
    pub fn running_mean(&self) -> Option<&Tensor> {
        self.running_mean.as_ref().map(Var::as_tensor)
    }
    /// Running (unbiased) variance, shape (C,), when tracked.
    pub fn running_var(&self) -> Option<&Tensor> {
        self.running_var.as_ref().map(Var::as_tensor)
    }
    /// Training batches seen since construction (PyTorch's `num_batches_tracked`).
    pub fn num_batches_tracked(&self) -> u64 {
        self.num_batches_tracked.load(Ordering::Relaxed)
    }
    /// The configuration.
    pub fn config(&self) -> &BatchNorm2dConfig {
        &self.cfg
    }
}

/// Train mode uses (and updates) the batch statistics, eval mode the running ones.
impl ModuleT for BatchNorm2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle::Result<Tensor> {
        BatchNorm2d::forward_t(self, xs, train).map_err(candle::Error::wrap)
    }
}
