//! Instance normalization over (H, W) per sample and channel, with PyTorch's
//! `nn.InstanceNorm2d` semantics (Ulyanov et al. 2016) — the layer style transfer is built on.

use candle::{Device, Module, Tensor};

use super::stats::{affine_planes, normalize_rows, Moments, Variance};
use super::{
    affine_vectors, check_eps, check_pair, check_param, dims_ncs, filled, load_param, plane_affine,
    DEFAULT_EPS,
};
use crate::weights::TensorMap;
use crate::{Error, Result};

const LAYER: &str = "InstanceNorm2d";

/// Hyper-parameters of [`InstanceNorm2d`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceNorm2dConfig {
    /// Added to the variance before the square root. Default 1e-5.
    pub eps: f64,
    /// Weight of the new batch in the running statistics. Default 0.1 (PyTorch treats `None` as
    /// 0 here, i.e. no update).
    pub momentum: f64,
    /// Learnable γ, β per channel. Default false.
    pub affine: bool,
    /// Keep running statistics for eval mode. Default false.
    pub track_running_stats: bool,
}

impl Default for InstanceNorm2dConfig {
    fn default() -> Self {
        InstanceNorm2dConfig {
            eps: DEFAULT_EPS,
            momentum: 0.1,
            affine: false,
            track_running_stats: false,
        }
    }
}

/// `nn.InstanceNorm2d`: x (N, C, H, W) or unbatched (C, H, W) → same shape and dtype.
///
/// Each (sample, channel) plane is normalized with its own mean and biased variance. With
/// `track_running_stats`, train mode also updates running statistics with the batch mean of the
/// per-instance means and unbiased variances, and eval mode normalizes with them.
#[derive(Clone, Debug)]
pub struct InstanceNorm2d {
    num_features: usize,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    running_mean: Option<Tensor>,
    running_var: Option<Tensor>,
    cfg: InstanceNorm2dConfig,
}

impl InstanceNorm2d {
    /// A fresh layer as PyTorch initializes it (γ = 1, β = 0, running mean 0, running var 1).
    pub fn new(num_features: usize, cfg: InstanceNorm2dConfig, device: &Device) -> Result<Self> {
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

    /// A layer from tensors of shape (C,), present exactly when the configuration asks for them.
    pub fn from_tensors(
        num_features: usize,
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        running_mean: Option<Tensor>,
        running_var: Option<Tensor>,
        cfg: InstanceNorm2dConfig,
    ) -> Result<Self> {
        if num_features == 0 {
            return Err(Error::config(LAYER, "num_features must be at least 1"));
        }
        check_eps(LAYER, cfg.eps)?;
        if !(0.0..=1.0).contains(&cfg.momentum) {
            return Err(Error::config(
                LAYER,
                format!("momentum must be in [0, 1], got {}", cfg.momentum),
            ));
        }
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
        let shape = [num_features];
        Ok(InstanceNorm2d {
            num_features,
            weight: check_param(LAYER, "weight", weight, &shape)?,
            bias: check_param(LAYER, "bias", bias, &shape)?,
            running_mean: check_param(LAYER, "running_mean", running_mean, &shape)?,
            running_var: check_param(LAYER, "running_var", running_var, &shape)?,
            cfg,
        })
    }

    /// Loads `prefix.{weight,bias,running_mean,running_var}` as configured (`num_batches_tracked`
    /// is ignored).
    pub fn load(
        map: &TensorMap,
        prefix: &str,
        num_features: usize,
        cfg: InstanceNorm2dConfig,
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

    /// Training-mode forward (instance statistics; updates running statistics when tracked).
    pub fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let (n, c, hw) = self.check_input(x)?;
        let (gamma, beta) = affine_vectors(self.weight.as_ref(), self.bias.as_ref(), c)?;
        let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) else {
            return normalize_rows(x, hw, hw, self.cfg.eps, &gamma, &beta, None);
        };
        let m = Moments::of_rows(x, hw)?;
        let mom = self.cfg.momentum;
        let (rm_old, rv_old) = affine_vectors(Some(rm), Some(rv), c)?;
        let device = rm.device().clone();
        // ATen repeats the running stats per sample, updates each, then averages over N.
        let upd = |old: &[f64], stat: &dyn Fn(usize) -> f64| -> Result<Tensor> {
            let v: Vec<f32> = (0..c)
                .map(|k| {
                    let avg = (0..n).map(|s| stat(s * c + k)).sum::<f64>() / n as f64;
                    ((1.0 - mom) * old[k] + mom * avg) as f32
                })
                .collect();
            Ok(Tensor::from_vec(v, c, &device)?)
        };
        self.running_mean = Some(upd(&rm_old, &|p| m.mean[p])?);
        self.running_var = Some(upd(&rv_old, &|p| m.variance(p, Variance::Unbiased))?);
        self.normalize(x, n, c, hw, |p| {
            (m.mean[p], m.variance(p, Variance::Biased))
        })
    }

    /// Eval-mode forward: running statistics when tracked, else instance statistics.
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        match (&self.running_mean, &self.running_var) {
            (Some(rm), Some(rv)) => {
                let (n, c, hw) = self.check_dims(x)?;
                let (mean, var) = affine_vectors(Some(rm), Some(rv), c)?;
                self.normalize(x, n, c, hw, |p| (mean[p % c], var[p % c]))
            }
            _ => self.clone().forward_train(x),
        }
    }

    /// [`forward_train`](Self::forward_train) when `train`, else [`forward_eval`](Self::forward_eval).
    pub fn forward_t(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(x)
        } else {
            self.forward_eval(x)
        }
    }

    /// (N, C, H·W) of a rank-3 or rank-4 input with the right channel count.
    fn check_dims(&self, x: &Tensor) -> Result<(usize, usize, usize)> {
        let (n, c, hw) = match x.rank() {
            3 => {
                let (c, h, w) = x.dims3()?;
                (1, c, h * w)
            }
            _ => dims_ncs(LAYER, x, 4, 4).map_err(|_| {
                Error::input(
                    LAYER,
                    format!(
                        "expected (N, C, H, W) or (C, H, W) input, found shape {:?}",
                        x.dims()
                    ),
                )
            })?,
        };
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
        if n == 0 || hw == 0 {
            return Err(Error::input(
                LAYER,
                format!("empty input of shape {:?}", x.dims()),
            ));
        }
        Ok((n, c, hw))
    }

    /// [`check_dims`](Self::check_dims) plus PyTorch's rule for instance statistics: more than one
    /// spatial element.
    fn check_input(&self, x: &Tensor) -> Result<(usize, usize, usize)> {
        let (n, c, hw) = self.check_dims(x)?;
        if hw <= 1 {
            return Err(Error::input(
                LAYER,
                format!(
                    "expected more than 1 spatial element when training, got input size {:?}",
                    x.dims()
                ),
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
        let ab = plane_affine(n * c, c, stat, &gamma, &beta, self.cfg.eps);
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
    /// Running mean, shape (C,) f32, when tracked.
    pub fn running_mean(&self) -> Option<&Tensor> {
        self.running_mean.as_ref()
    }
    /// Running (unbiased) variance, shape (C,) f32, when tracked.
    pub fn running_var(&self) -> Option<&Tensor> {
        self.running_var.as_ref()
    }
    /// The configuration.
    pub fn config(&self) -> &InstanceNorm2dConfig {
        &self.cfg
    }
}

/// Eval mode, so the layer composes with `Tensor::apply`.
impl Module for InstanceNorm2d {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        self.forward_eval(xs).map_err(candle::Error::wrap)
    }
}
