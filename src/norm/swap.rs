//! [`Norm`]: one normalization layer chosen by a [`NormKind`], built from a `VarBuilder` — the
//! layer a model swaps to compare normalizations, in training as in inference.

use candle::{ModuleT, Tensor};
use candle_nn::VarBuilder;

use super::{
    batch_norm2d, group_norm, instance_norm2d, BatchNorm2d, BatchNorm2dConfig, GroupNorm,
    GroupNormConfig, InstanceNorm2d, InstanceNorm2dConfig, NormKind, PostOp,
};
use crate::Result;

/// A normalization layer for (N, C, H, W) activations with per-channel γ, β:
///
/// | kind | layer | statistics over |
/// |---|---|---|
/// | `In` | [`InstanceNorm2d`] with affine γ, β | (H, W) per sample and channel |
/// | `Bn` | [`BatchNorm2d`] (running statistics, momentum 0.1) | (N, H, W) per channel |
/// | `Ln` | [`GroupNorm`] with 1 group (Wu & He's LN for CNNs) | (C, H, W) per sample |
/// | `Gn(G)` | [`GroupNorm`] with gcd(G, C) groups | (C/G, H, W) per sample and group |
///
/// The variables are `weight` (γ = 1) and `bias` (β = 0) under `vb`'s prefix; `Bn` adds
/// `running_mean` (0) and `running_var` (1), updated in place in training mode. Implements
/// [`ModuleT`]: `train` matters for `Bn` only.
#[derive(Clone, Debug)]
pub struct Norm {
    kind: NormKind,
    layer: Layer,
}

#[derive(Clone, Debug)]
enum Layer {
    Bn(BatchNorm2d),
    In(InstanceNorm2d),
    Gn(GroupNorm),
}

impl Norm {
    /// A fresh (or loaded, if `vb` holds the tensors) layer of `kind` for `channels` channels.
    pub fn new(kind: NormKind, channels: usize, vb: VarBuilder) -> Result<Self> {
        let layer = match kind {
            NormKind::Bn => Layer::Bn(batch_norm2d(channels, BatchNorm2dConfig::default(), vb)?),
            NormKind::In => {
                let cfg = InstanceNorm2dConfig {
                    affine: true,
                    ..InstanceNorm2dConfig::default()
                };
                Layer::In(instance_norm2d(channels, cfg, vb)?)
            }
            NormKind::Ln | NormKind::Gn(_) => {
                let groups = kind.groups(channels);
                Layer::Gn(group_norm(
                    groups,
                    channels,
                    GroupNormConfig::default(),
                    vb,
                )?)
            }
        };
        Ok(Norm { kind, layer })
    }

    /// The kind this layer was built as.
    pub fn kind(&self) -> NormKind {
        self.kind
    }

    /// γ, shape (C,).
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.layer {
            Layer::Bn(l) => l.weight(),
            Layer::In(l) => l.weight(),
            Layer::Gn(l) => l.weight(),
        }
    }

    /// β, shape (C,).
    pub fn bias(&self) -> Option<&Tensor> {
        match &self.layer {
            Layer::Bn(l) => l.bias(),
            Layer::In(l) => l.bias(),
            Layer::Gn(l) => l.bias(),
        }
    }
}

impl Norm {
    /// [`ModuleT::forward_t`] followed by `post` (`None` or `Relu`): one graph node per layer
    /// when training on the CPU (the statistics, the affine map and the ReLU fused, with their
    /// backward), tensor ops elsewhere.
    pub fn forward_t_then(&self, xs: &Tensor, train: bool, post: PostOp) -> Result<Tensor> {
        match &self.layer {
            Layer::Bn(l) if train => l.forward_train_then(xs, post),
            Layer::Bn(l) => post.tensor(l.forward_eval(xs)?),
            Layer::In(l) if train => l.forward_train_then(xs, post),
            Layer::In(l) => post.tensor(l.forward_eval(xs)?),
            Layer::Gn(l) => l.forward_then(xs, post),
        }
    }
}

impl ModuleT for Norm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle::Result<Tensor> {
        let y = match &self.layer {
            Layer::Bn(l) => l.forward_t(xs, train),
            Layer::In(l) => l.forward_t(xs, train),
            Layer::Gn(l) => l.forward(xs),
        };
        y.map_err(candle::Error::wrap)
    }
}
