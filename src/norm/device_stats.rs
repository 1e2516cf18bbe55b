//! Statistics alignment as Candle tensor ops, for CUDA and Metal (and the CPU under
//! `NORMSTYLE_KERNEL=candle`): μ and σ stay on the device as (N, C, 1, 1) tensors and the
//! alignment is one broadcast expression, so a layer costs no host round trip. The CPU path
//! ([`super::adaptive`]) computes the same numbers with fused kernels and f64 merging; both are
//! tested against the same PyTorch fixtures.
//!
//! Statistics are computed in f32 whatever the maps' dtype (f16/bf16 maps are cast up, the
//! result cast back). Pooled variances are two-pass (mean first, then squared deviations), as
//! stable as the CPU path's merged moments for feature maps.

use candle::{DType, Tensor, D};

use super::adaptive::dims4;
use super::stats::{PostOp, Variance};
use super::NormKind;
use crate::{Error, Result};

const WHAT: &str = "statistics alignment";

/// Whether the alignment of maps like `x` runs as tensor ops: on every device but the CPU, on
/// the CPU under `NORMSTYLE_KERNEL=candle`, and whenever `x` records a graph (the host path
/// computes plain numbers, which would cut autograd off; training needs the gradient).
pub(crate) fn wanted(x: &Tensor) -> bool {
    !x.device().is_cpu() || crate::ops::isa::candle_only() || x.track_op()
}

/// μ and σ = sqrt(var + ε) of each tensor's (sample, channel) planes, pooled as `kind` says
/// over the whole batch `xs` (each (Nᵢ, C, Hᵢ, Wᵢ), same C): one (Nᵢ, C, 1, 1) f32 pair per
/// tensor, on its device.
pub(crate) fn batch_stats(
    xs: &[&Tensor],
    kind: NormKind,
    var: Variance,
    eps: f64,
) -> Result<Vec<(Tensor, Tensor)>> {
    super::adaptive::batch_channels(xs)?;
    for x in xs {
        super::graph::compute_dtype(x)?;
    }
    let xs: Vec<Tensor> = xs
        .iter()
        .map(|x| x.to_dtype(DType::F32))
        .collect::<candle::Result<_>>()?;
    if kind == NormKind::Bn {
        return pooled_over_batch(&xs, var, eps);
    }
    xs.iter()
        .map(|x| {
            let (n, c, h, w) = x.dims4()?;
            let groups = kind.groups(c);
            let count = (c / groups) * h * w;
            check_count(count, kind, var)?;
            let rows = x.reshape((n, groups, count))?;
            let mean = rows.mean_keepdim(D::Minus1)?;
            let m2 = rows.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)?;
            let std = ((m2 / divisor(count, var))? + eps)?.sqrt()?;
            // (N, G, 1) → (N, C, 1, 1): every channel of a group repeats its group's values.
            let spread = |t: Tensor| -> Result<Tensor> {
                Ok(t.reshape((n, groups, 1))?
                    .broadcast_as((n, groups, c / groups))?
                    .reshape((n, c, 1, 1))?)
            };
            Ok((spread(mean)?, spread(std)?))
        })
        .collect()
}

/// `bn`: per channel over every pixel of every map.
fn pooled_over_batch(xs: &[Tensor], var: Variance, eps: f64) -> Result<Vec<(Tensor, Tensor)>> {
    let count: usize = xs
        .iter()
        .map(|x| x.dims4().map(|(n, _, h, w)| n * h * w))
        .sum::<candle::Result<usize>>()?;
    check_count(count, NormKind::Bn, var)?;
    let channel_sum = |t: &Tensor| -> candle::Result<Tensor> { t.sum((0, 2, 3)) };
    let mut sum = channel_sum(&xs[0])?;
    for x in &xs[1..] {
        sum = (sum + channel_sum(x)?)?;
    }
    let c = sum.elem_count();
    let mean = (sum / count as f64)?.reshape((1, c, 1, 1))?;
    let mut m2 = channel_sum(&xs[0].broadcast_sub(&mean)?.sqr()?)?;
    for x in &xs[1..] {
        m2 = (m2 + channel_sum(&x.broadcast_sub(&mean)?.sqr()?)?)?;
    }
    let std = ((m2 / divisor(count, var))? + eps)?
        .sqrt()?
        .reshape((1, c, 1, 1))?;
    xs.iter()
        .map(|x| {
            let n = x.dim(0)?;
            Ok((
                mean.broadcast_as((n, c, 1, 1))?.contiguous()?,
                std.broadcast_as((n, c, 1, 1))?.contiguous()?,
            ))
        })
        .collect()
}

fn divisor(count: usize, var: Variance) -> f64 {
    match var {
        Variance::Biased => count as f64,
        Variance::Unbiased => (count - 1) as f64,
    }
}

fn check_count(count: usize, kind: NormKind, var: Variance) -> Result<()> {
    if var == Variance::Unbiased && count < 2 {
        return Err(Error::input(
            WHAT,
            format!("`{kind}` statistics would pool a single value; the image is too small"),
        ));
    }
    Ok(())
}

/// y = post((x − μ_from)·σ_to/σ_from + μ_to), `x` (N, C, H, W) any float dtype; the statistics
/// (N or 1, C, 1, 1) f32 → x's shape and dtype.
pub(crate) fn align(
    x: &Tensor,
    (from_mean, from_std): &(Tensor, Tensor),
    (to_mean, to_std): &(Tensor, Tensor),
    post: PostOp,
) -> Result<Tensor> {
    let (n, c, _, _) = dims4(x)?;
    let (fc, tc) = (from_mean.dim(1)?, to_mean.dim(1)?);
    if fc != c || tc != c {
        return Err(Error::input(
            WHAT,
            format!("feature map has {c} channels, statistics have {fc} and {tc}"),
        ));
    }
    let (fs, ts) = (from_mean.dim(0)?, to_mean.dim(0)?);
    if fs != n || (ts != 1 && ts != n) {
        return Err(Error::input(
            WHAT,
            format!("{n} feature maps, {fs} source and {ts} target statistics"),
        ));
    }
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let scale = to_std.broadcast_div(from_std)?;
    let y = xf
        .broadcast_sub(from_mean)?
        .broadcast_mul(&scale)?
        .broadcast_add(to_mean)?;
    Ok(post.tensor(y)?.to_dtype(dtype)?)
}

/// Per-channel values (C of them, host f64: conditional-IN γ or β) as a (1, C, 1, 1) f32 tensor
/// on `x`'s device.
pub(crate) fn channel_tensor(values: &[f64], x: &Tensor) -> Result<Tensor> {
    let v: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Ok(Tensor::from_vec(v, (1, values.len(), 1, 1), x.device())?)
}
