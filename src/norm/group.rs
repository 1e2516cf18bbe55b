//! Group normalization over (C/G, *) per sample and group, with PyTorch's `nn.GroupNorm`
//! semantics (Wu & He 2018).

use candle::{Device, Module, Tensor};
use candle_nn::{Init, VarBuilder};

use super::fused::{self, Pool};
use super::stats::{normalize_rows, PostOp};
use super::{
    affine_vectors, check_eps, check_pair, check_param, dims_ncs, filled, graph, load_param,
    DEFAULT_EPS,
};
use crate::weights::TensorMap;
use crate::{Error, Result};

const LAYER: &str = "GroupNorm";

/// Hyper-parameters of [`GroupNorm`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormConfig {
    /// Added to the variance before the square root. Default 1e-5.
    pub eps: f64,
    /// Learnable γ, β per channel. Default true.
    pub affine: bool,
}

impl Default for GroupNormConfig {
    fn default() -> Self {
        GroupNormConfig {
            eps: DEFAULT_EPS,
            affine: true,
        }
    }
}

/// `nn.GroupNorm(num_groups, num_channels)`: x (N, C, *) → same shape and dtype.
///
/// Channels are split into G consecutive groups of C/G; each sample's group is normalized with
/// its mean and biased variance, then γ, β apply per channel. G = C is instance norm (without
/// its running statistics), G = 1 is layer norm over (C, *) with per-channel affine.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    num_groups: usize,
    num_channels: usize,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    cfg: GroupNormConfig,
}

impl GroupNorm {
    /// A fresh layer (γ = 1, β = 0 when affine).
    pub fn new(
        num_groups: usize,
        num_channels: usize,
        cfg: GroupNormConfig,
        device: &Device,
    ) -> Result<Self> {
        let c = num_channels;
        Self::from_tensors(
            num_groups,
            num_channels,
            cfg.affine.then(|| filled(c, 1.0, device)).transpose()?,
            cfg.affine.then(|| filled(c, 0.0, device)).transpose()?,
            cfg,
        )
    }

    /// A layer from γ and β of shape (C,) (required when `cfg.affine`, else absent).
    pub fn from_tensors(
        num_groups: usize,
        num_channels: usize,
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        cfg: GroupNormConfig,
    ) -> Result<Self> {
        if num_groups == 0 || num_channels == 0 {
            return Err(Error::config(
                LAYER,
                format!("num_groups and num_channels must be at least 1, got {num_groups} and {num_channels}"),
            ));
        }
        if !num_channels.is_multiple_of(num_groups) {
            return Err(Error::config(
                LAYER,
                format!(
                    "num_channels ({num_channels}) must be divisible by num_groups ({num_groups})"
                ),
            ));
        }
        check_eps(LAYER, cfg.eps)?;
        check_pair(
            LAYER,
            &weight,
            &bias,
            cfg.affine,
            "weight and bias (affine)",
        )?;
        let shape = [num_channels];
        Ok(GroupNorm {
            num_groups,
            num_channels,
            weight: check_param(LAYER, "weight", weight, &shape)?,
            bias: check_param(LAYER, "bias", bias, &shape)?,
            cfg,
        })
    }

    /// Loads `prefix.{weight,bias}` when affine.
    pub fn load(
        map: &TensorMap,
        prefix: &str,
        num_groups: usize,
        num_channels: usize,
        cfg: GroupNormConfig,
    ) -> Result<Self> {
        let s = [num_channels];
        let w = load_param(map, prefix, "weight", &s, cfg.affine)?;
        let b = load_param(map, prefix, "bias", &s, cfg.affine)?;
        Self::from_tensors(num_groups, num_channels, w, b, cfg)
    }

    /// x: (N, C, *) with C = `num_channels` → same shape and dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_then(x, PostOp::None)
    }

    /// [`forward`](Self::forward) followed by `post` (`None` or `Relu`), in one graph node when
    /// training on the CPU.
    pub(crate) fn forward_then(&self, x: &Tensor, post: PostOp) -> Result<Tensor> {
        let (n, c, spatial) = dims_ncs(LAYER, x, 2, usize::MAX)?;
        if c != self.num_channels {
            return Err(Error::input(
                LAYER,
                format!(
                    "expected {} channels, found {c} in input of shape {:?}",
                    self.num_channels,
                    x.dims()
                ),
            ));
        }
        if n * spatial == 0 {
            return Err(Error::input(
                LAYER,
                format!("empty input of shape {:?}", x.dims()),
            ));
        }
        let params = [self.weight.as_ref(), self.bias.as_ref()];
        if fused::applies(x, &params) {
            let (w, b) = (self.weight.as_ref(), self.bias.as_ref());
            return fused::forward(x, w, b, Pool::Groups(self.num_groups), self.cfg.eps, post);
        }
        if graph::needed(x, &params) {
            let xd = x.to_dtype(graph::compute_dtype(x)?)?;
            let xn = graph::normalize_groups(&xd, self.num_groups, self.cfg.eps)?;
            let y = graph::affine_channels(&xn, self.weight.as_ref(), self.bias.as_ref())?;
            return post.tensor(y.to_dtype(x.dtype())?);
        }
        let per_group = c / self.num_groups;
        let (gamma, beta) = affine_vectors(self.weight.as_ref(), self.bias.as_ref(), c)?;
        post.tensor(normalize_rows(
            x,
            per_group * spatial,
            spatial,
            self.cfg.eps,
            &gamma,
            &beta,
            None,
        )?)
    }

    /// Groups G.
    pub fn num_groups(&self) -> usize {
        self.num_groups
    }
    /// Channels C.
    pub fn num_channels(&self) -> usize {
        self.num_channels
    }
    /// γ, shape (C,) f32, when affine.
    pub fn weight(&self) -> Option<&Tensor> {
        self.weight.as_ref()
    }
    /// β, shape (C,) f32, when affine.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    /// The configuration.
    pub fn config(&self) -> &GroupNormConfig {
        &self.cfg
    }
}

/// A [`GroupNorm`] whose γ (`weight`, 1) and β (`bias`, 0) live in `vb` when affine, as
/// PyTorch names them.
pub fn group_norm(
    num_groups: usize,
    num_channels: usize,
    cfg: GroupNormConfig,
    vb: VarBuilder,
) -> Result<GroupNorm> {
    let get = |name: &str, init: f64| -> Result<Option<Tensor>> {
        Ok(cfg
            .affine
            .then(|| vb.get_with_hints(num_channels, name, Init::Const(init)))
            .transpose()?)
    };
    GroupNorm::from_tensors(
        num_groups,
        num_channels,
        get("weight", 1.0)?,
        get("bias", 0.0)?,
        cfg,
    )
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        GroupNorm::forward(self, xs).map_err(candle::Error::wrap)
    }
}
