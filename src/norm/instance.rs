//! Instance normalization over (H, W) per sample and channel, with PyTorch's
//! `nn.InstanceNorm2d` semantics (Ulyanov et al. 2016) — the layer style transfer is built on.

use candle::{Device, Module, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use super::fused::{self, Pool};
use super::stats::{affine_planes, normalize_rows, Moments, PostOp, Variance};
use super::{
    affine_vectors, check_eps, check_pair, check_param, dims_ncs, filled, graph, load_param,
    new_var, plane_affine, DEFAULT_EPS,
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
///
/// Its [`Module`] impl (and so `ModuleT`, through candle's blanket impl) is the eval forward;
/// with `track_running_stats`, call [`InstanceNorm2d::forward_t`] to train.
#[derive(Clone, Debug)]
pub struct InstanceNorm2d {
    num_features: usize,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    running_mean: Option<Var>,
    running_var: Option<Var>,
    cfg: InstanceNorm2dConfig,
}

/// An [`InstanceNorm2d`] whose tensors live in `vb` under PyTorch's names: `weight` (1) and
/// `bias` (0) when affine, `running_mean` (0) and `running_var` (1) when tracked (shared with a
/// `VarMap`, updated in place).
pub fn instance_norm2d(
    num_features: usize,
    cfg: InstanceNorm2dConfig,
    vb: VarBuilder,
) -> Result<InstanceNorm2d> {
    let get = |name: &str, init: f64, wanted: bool| -> Result<Option<Tensor>> {
        Ok(wanted
            .then(|| vb.get_with_hints(num_features, name, Init::Const(init)))
            .transpose()?)
    };
    let untracked = InstanceNorm2dConfig {
        track_running_stats: false,
        ..cfg
    };
    let mut layer = InstanceNorm2d::from_tensors(
        num_features,
        get("weight", 1.0, cfg.affine)?,
        get("bias", 0.0, cfg.affine)?,
        None,
        None,
        untracked,
    )?;
    if cfg.track_running_stats {
        let var = |t: Option<Tensor>| t.map(|t| Var::from_tensor(&t)).transpose();
        layer.running_mean = var(get("running_mean", 0.0, true)?)?;
        layer.running_var = var(get("running_var", 1.0, true)?)?;
        layer.cfg = cfg;
    }
    Ok(layer)
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
            running_mean: new_var(check_param(LAYER, "running_mean", running_mean, &shape)?)?,
            running_var: new_var(check_param(LAYER, "running_var", running_var, &shape)?)?,
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

    /// Training-mode forward (instance statistics; updates running statistics in place when
    /// tracked).
    pub fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_train_then(x, PostOp::None)
    }

    /// [`forward_train`](Self::forward_train) followed by `post` (`None` or `Relu`), in one
    /// graph node when training on the CPU.
    pub(crate) fn forward_train_then(&self, x: &Tensor, post: PostOp) -> Result<Tensor> {
        let (n, c, hw) = self.check_input(x)?;
        let params = [self.weight.as_ref(), self.bias.as_ref()];
        let fused = fused::applies(x, &params);
        if graph::needed(x, &params) && !fused {
            return post.tensor(self.train_graph(x, (n, c, hw))?);
        }
        let fused_forward = || {
            let (w, b) = (self.weight.as_ref(), self.bias.as_ref());
            fused::forward(x, w, b, Pool::Groups(c), self.cfg.eps, post)
        };
        let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) else {
            if fused {
                return fused_forward();
            }
            let (gamma, beta) = affine_vectors(self.weight.as_ref(), self.bias.as_ref(), c)?;
            return post.tensor(normalize_rows(
                x,
                hw,
                hw,
                self.cfg.eps,
                &gamma,
                &beta,
                None,
            )?);
        };
        let m = Moments::of_rows(x, hw)?;
        let mom = self.cfg.momentum;
        let (rm_old, rv_old) = affine_vectors(Some(rm.as_tensor()), Some(rv.as_tensor()), c)?;
        // ATen repeats the running stats per sample, updates each, then averages over N.
        let upd = |var: &Var, old: &[f64], stat: &dyn Fn(usize) -> f64| -> Result<()> {
            let v: Vec<f64> = (0..c)
                .map(|k| {
                    let avg = (0..n).map(|s| stat(s * c + k)).sum::<f64>() / n as f64;
                    (1.0 - mom) * old[k] + mom * avg
                })
                .collect();
            Ok(var.set(&Tensor::from_vec(v, c, var.device())?.to_dtype(var.dtype())?)?)
        };
        upd(rm, &rm_old, &|p| m.mean[p])?;
        upd(rv, &rv_old, &|p| m.variance(p, Variance::Unbiased))?;
        if fused {
            return fused_forward();
        }
        post.tensor(self.normalize(x, n, c, hw, |p| {
            (m.mean[p], m.variance(p, Variance::Biased))
        })?)
    }

    /// The training forward with tensor ops (autograd, any device).
    fn train_graph(&self, x: &Tensor, (n, c, hw): (usize, usize, usize)) -> Result<Tensor> {
        let planes = x.to_dtype(graph::compute_dtype(x)?)?.reshape((n, c, hw))?;
        let (mean, var) = graph::moments_last(&planes)?;
        if let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) {
            let mom = self.cfg.momentum;
            let unbiased = (var.detach() * (hw as f64 / (hw as f64 - 1.0)))?;
            let mix = |r: &Var, per_instance: &Tensor| -> Result<()> {
                let avg = per_instance.detach().mean(0)?.flatten_all()?;
                let old = r.as_tensor().detach().to_dtype(avg.dtype())?;
                let upd = ((old * (1.0 - mom))? + (avg * mom)?)?;
                Ok(r.set(&upd.to_dtype(r.dtype())?)?)
            };
            mix(rm, &mean)?;
            mix(rv, &unbiased)?;
        }
        let xn = graph::standardize(&planes, &mean, &var, self.cfg.eps)?;
        self.affine_graph(x, &xn)
    }

    /// γ·x̂ + β on the (N, C, H·W) view, back in x's shape and dtype.
    fn affine_graph(&self, x: &Tensor, xn: &Tensor) -> Result<Tensor> {
        let y = graph::affine_channels(xn, self.weight.as_ref(), self.bias.as_ref())?;
        Ok(y.reshape(x.dims())?.to_dtype(x.dtype())?)
    }

    /// Eval-mode forward: running statistics when tracked, else instance statistics.
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        match (&self.running_mean, &self.running_var) {
            (Some(rm), Some(rv)) => {
                let (n, c, hw) = self.check_dims(x)?;
                if graph::needed(x, &[self.weight.as_ref(), self.bias.as_ref()]) {
                    let cd = graph::compute_dtype(x)?;
                    let planes = x.to_dtype(cd)?.reshape((n, c, hw))?;
                    let (mean, var) = (
                        graph::per_channel(rm, 3, cd)?,
                        graph::per_channel(rv, 3, cd)?,
                    );
                    let xn = graph::standardize(&planes, &mean, &var, self.cfg.eps)?;
                    return self.affine_graph(x, &xn);
                }
                let (mean, var) = affine_vectors(Some(rm.as_tensor()), Some(rv.as_tensor()), c)?;
                self.normalize(x, n, c, hw, |p| (mean[p % c], var[p % c]))
            }
            _ => {
                // Without running statistics train and eval agree (and nothing is updated).
                self.forward_train(x)
            }
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
    /// Running mean, shape (C,), when tracked.
    pub fn running_mean(&self) -> Option<&Tensor> {
        self.running_mean.as_ref().map(Var::as_tensor)
    }
    /// Running (unbiased) variance, shape (C,), when tracked.
    pub fn running_var(&self) -> Option<&Tensor> {
        self.running_var.as_ref().map(Var::as_tensor)
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
