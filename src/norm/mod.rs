//! Normalization layers implemented in this crate (not candle-nn's), with PyTorch semantics,
//! built the way candle-nn builds layers: `VarBuilder` constructors with PyTorch's parameter
//! names ([`batch_norm2d`], [`layer_norm`], [`group_norm`], [`instance_norm2d`]), `Module` /
//! `ModuleT`, autograd through the statistics. [`Norm`] is one layer chosen by a [`NormKind`].
//!
//! | layer | statistics over (for x: (N, C, H, W)) | batch-dependent | PyTorch |
//! |---|---|---|---|
//! | [`BatchNorm2d`] | (N, H, W) per channel | yes | `nn.BatchNorm2d` |
//! | [`LayerNorm`] | the trailing `normalized_shape`, e.g. (C, H, W) per sample | no | `nn.LayerNorm` |
//! | [`GroupNorm`] | (C/G, H, W) per sample and group | no | `nn.GroupNorm` |
//! | [`InstanceNorm2d`] | (H, W) per sample and channel | no | `nn.InstanceNorm2d` |
//!
//! x̂ = (x − μ) / sqrt(σ² + ε), y = γ·x̂ + β; layers normalize with the biased variance.
//! [`adaptive`] aligns content statistics to style statistics (AdaIN and its BN/LN/GN
//! counterparts), selected by a [`NormKind`]. All layers take f32, f16, bf16 (or f64) input on any
//! device; statistics are computed in f32 (accumulated in f64) and the output has the input's
//! dtype. The shared machinery is in [`stats`].

pub mod adaptive;
pub mod batch;
mod device_stats;
mod fused;
pub(crate) mod graph;
pub mod group;
pub mod instance;
pub mod layer;
pub mod stats;
mod swap;
pub mod temporal;

use std::fmt;
use std::str::FromStr;

use candle::{DType, Device, Tensor};

pub use adaptive::{
    adain, adaptive_norm, adaptive_norm_batch, adaptive_norm_batch_temporal, align, align_then,
    conditional_norm_batch, conditional_norm_batch_temporal, conditional_norm_batch_then,
    style_stats, FeatureStats,
};
pub use batch::{batch_norm2d, BatchNorm2d, BatchNorm2dConfig};
pub use group::{group_norm, GroupNorm, GroupNormConfig};
pub use instance::{instance_norm2d, InstanceNorm2d, InstanceNorm2dConfig};
pub use layer::{layer_norm, LayerNorm, LayerNormConfig};
pub use stats::{Moments, PlaneAffine, PostOp, Variance};
pub use swap::Norm;
pub use temporal::TemporalStats;

use crate::weights::TensorMap;
use crate::{Error, Result};

/// The ε every layer defaults to, as in PyTorch.
pub const DEFAULT_EPS: f64 = 1e-5;

/// The groups `gn` uses when the CLI gives none (`--norm gn`).
pub const DEFAULT_GROUPS: usize = 32;

/// Which statistics a normalization (or a statistics alignment) pools: the `--norm` flag.
///
/// Parses from and prints as the CLI syntax: `in`, `bn`, `ln`, `gn` (= `gn:32`), `gn:G`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NormKind {
    /// Instance norm: per sample and channel over (H, W).
    In,
    /// Batch norm: per channel over (N, H, W) — every image of the batch.
    Bn,
    /// Layer norm: per sample over (C, H, W).
    Ln,
    /// Group norm with G groups (gcd(G, C) in a layer with C channels): per sample and group.
    Gn(usize),
}

impl NormKind {
    /// The four kinds with the default group count, in the order the CLI lists them.
    pub const ALL: [NormKind; 4] = [
        NormKind::In,
        NormKind::Bn,
        NormKind::Ln,
        NormKind::Gn(DEFAULT_GROUPS),
    ];

    /// The groups this kind pools per sample in a layer with `channels` channels (`Bn` pools per
    /// channel, across samples).
    pub fn groups(self, channels: usize) -> usize {
        match self {
            NormKind::In | NormKind::Bn => channels,
            NormKind::Ln => 1,
            NormKind::Gn(g) => gcd(g, channels),
        }
    }

    /// Whether the statistics depend on the other images of the batch.
    pub fn batch_dependent(self) -> bool {
        matches!(self, NormKind::Bn)
    }
}

impl fmt::Display for NormKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NormKind::In => f.write_str("in"),
            NormKind::Bn => f.write_str("bn"),
            NormKind::Ln => f.write_str("ln"),
            NormKind::Gn(g) => write!(f, "gn:{g}"),
        }
    }
}

impl FromStr for NormKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let err = |msg: String| Error::Parse {
            what: "normalization".into(),
            msg,
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "in" => Ok(NormKind::In),
            "bn" => Ok(NormKind::Bn),
            "ln" => Ok(NormKind::Ln),
            "gn" => Ok(NormKind::Gn(DEFAULT_GROUPS)),
            other => match other.strip_prefix("gn:") {
                Some(g) => match g.parse::<usize>() {
                    Ok(0) => Err(err("gn:0: the group count must be at least 1".into())),
                    Ok(g) => Ok(NormKind::Gn(g)),
                    Err(_) => Err(err(format!(
                        "gn:{g}: the group count must be a positive integer"
                    ))),
                },
                None => Err(err(format!(
                    "unknown normalization `{s}` (expected in, bn, ln, gn or gn:G)"
                ))),
            },
        }
    }
}

/// An optional norm as the flags, results and model metadata spell it: its `NormKind` spelling,
/// or `none` for no norm layer.
pub fn norm_name(norm: Option<NormKind>) -> String {
    norm.map_or_else(|| "none".into(), |k| k.to_string())
}

/// Parses [`norm_name`]'s spelling: `none` (any case) or a [`NormKind`].
pub fn parse_norm(s: &str) -> Result<Option<NormKind>> {
    if s.trim().eq_ignore_ascii_case("none") {
        Ok(None)
    } else {
        s.parse().map(Some)
    }
}

/// Greatest common divisor; gcd(G, C) is how many groups GN(G) uses in a C-channel layer.
pub fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Checks ε (finite, > 0) for `layer`.
fn check_eps(layer: &'static str, eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(Error::config(
            layer,
            format!("eps must be a finite number > 0, got {eps}"),
        ))
    }
}

/// A copy of `t` as a new [`Var`](candle::Var) (never sharing `t`'s storage).
fn new_var(t: Option<Tensor>) -> Result<Option<candle::Var>> {
    Ok(t.map(|t| candle::Var::from_tensor(&t.detach()))
        .transpose()?)
}

/// An optional per-element parameter (γ or β, running statistics): checks its shape and float
/// dtype; the tensor is kept as is (a `Var` stays trainable).
fn check_param(
    layer: &'static str,
    name: &str,
    t: Option<Tensor>,
    shape: &[usize],
) -> Result<Option<Tensor>> {
    let Some(t) = t else { return Ok(None) };
    if t.dims() != shape {
        return Err(Error::config(
            layer,
            format!("{name} must have shape {shape:?}, found {:?}", t.dims()),
        ));
    }
    if !t.dtype().is_float() {
        return Err(Error::config(
            layer,
            format!("{name} must be a float tensor, found {:?}", t.dtype()),
        ));
    }
    Ok(Some(t))
}

/// Checks that an optional pair of tensors (γ and β, or the running statistics) is present
/// exactly when the configuration asks for it.
fn check_pair(
    layer: &'static str,
    a: &Option<Tensor>,
    b: &Option<Tensor>,
    wanted: bool,
    what: &str,
) -> Result<()> {
    if a.is_some() != wanted || b.is_some() != wanted {
        let need = if wanted { "required" } else { "not allowed" };
        return Err(Error::config(
            layer,
            format!("{what} are {need} with this configuration"),
        ));
    }
    Ok(())
}

/// Reads `prefix.name` from a checkpoint when `wanted`, checking its shape.
fn load_param(
    map: &TensorMap,
    prefix: &str,
    name: &str,
    shape: &[usize],
    wanted: bool,
) -> Result<Option<Tensor>> {
    if !wanted {
        return Ok(None);
    }
    Ok(Some(map.get(&join_key(prefix, name), shape)?))
}

/// `prefix.name`, or `name` when the prefix is empty.
pub(crate) fn join_key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// γ and β as host vectors of `len` values (1 and 0 when absent).
fn affine_vectors(
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    len: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let to_vec = |t: Option<&Tensor>, default: f64| -> Result<Vec<f64>> {
        match t {
            Some(t) => Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?),
            None => Ok(vec![default; len]),
        }
    };
    Ok((to_vec(weight, 1.0)?, to_vec(bias, 0.0)?))
}

/// A per-channel vector of `value` on `device`, shape (C,) f32.
fn filled(c: usize, value: f32, device: &Device) -> Result<Tensor> {
    Ok(Tensor::full(value, c, device)?)
}

/// Per-plane parameters that normalize with the `(mean, var)` of plane p's pool and apply
/// γ\[c\], β\[c\]: center = mean, scale = γ/sqrt(var+ε), shift = β (computed in f64).
fn plane_affine(
    planes: usize,
    channels: usize,
    stat_of_plane: impl Fn(usize) -> (f64, f64),
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> PlaneAffine {
    let mut ab = PlaneAffine::with_capacity(planes);
    for p in 0..planes {
        let c = p % channels;
        let (mean, var) = stat_of_plane(p);
        ab.push(mean, gamma[c] / (var + eps).sqrt(), beta[c]);
    }
    ab
}

/// The shape of `x` as (N, C, spatial) for layers that take (N, C, *); `layer` names errors.
fn dims_ncs(
    layer: &'static str,
    x: &Tensor,
    min_rank: usize,
    max_rank: usize,
) -> Result<(usize, usize, usize)> {
    let dims = x.dims();
    if dims.len() < min_rank || dims.len() > max_rank {
        let expected = if min_rank == max_rank {
            format!("rank {min_rank}")
        } else if max_rank == usize::MAX {
            format!("rank ≥ {min_rank}")
        } else {
            format!("rank {min_rank} to {max_rank}")
        };
        return Err(Error::input(
            layer,
            format!("expected {expected} input, found shape {dims:?}"),
        ));
    }
    let spatial: usize = dims[2..].iter().product();
    Ok((dims[0], dims[1], spatial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_kind_round_trips() {
        for s in ["in", "bn", "ln", "gn:32", "gn:1", "gn:7"] {
            assert_eq!(s.parse::<NormKind>().unwrap().to_string(), s);
        }
        assert_eq!("gn".parse::<NormKind>().unwrap(), NormKind::Gn(32));
        assert_eq!(" IN ".parse::<NormKind>().unwrap(), NormKind::In);
    }

    #[test]
    fn norm_kind_errors_name_the_flag() {
        let msg = |s: &str| s.parse::<NormKind>().unwrap_err().to_string();
        assert_eq!(
            msg("gn:0"),
            "normalization: gn:0: the group count must be at least 1"
        );
        assert_eq!(
            msg("gn:x"),
            "normalization: gn:x: the group count must be a positive integer"
        );
        assert_eq!(
            msg("gn:-2"),
            "normalization: gn:-2: the group count must be a positive integer"
        );
        assert_eq!(
            msg("xn"),
            "normalization: unknown normalization `xn` (expected in, bn, ln, gn or gn:G)"
        );
    }

    #[test]
    fn groups_use_gcd() {
        assert_eq!(NormKind::Gn(32).groups(3), 1);
        assert_eq!(NormKind::Gn(32).groups(64), 32);
        assert_eq!(NormKind::Gn(4).groups(6), 2);
        assert_eq!(NormKind::Ln.groups(64), 1);
        assert_eq!(NormKind::In.groups(64), 64);
    }
}
