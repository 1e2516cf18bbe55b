//! The layers' statistics as tensor ops: differentiable (autograd flows through μ and σ into
//! the input, γ and β) and resident on the tensor's device. The layers take this path whenever
//! a graph is being recorded (the input or a parameter tracks ops, e.g. a `Var` from a
//! `VarMap`) or the device is not the CPU; otherwise the fused host path in [`super::stats`] is
//! faster for inference.
//!
//! Half-precision inputs are normalized in f32 (as the host path does) and cast back; f32 and
//! f64 run in their own precision. Variances are biased (divide by the count), as PyTorch
//! normalizes.

use candle::{DType, Tensor, D};

use crate::Result;

/// Whether a layer must use tensor ops for `x` with parameters `params`.
pub(crate) fn needed(x: &Tensor, params: &[Option<&Tensor>]) -> bool {
    !x.device().is_cpu()
        || crate::ops::isa::candle_only()
        || x.track_op()
        || params.iter().flatten().any(|p| p.track_op())
}

/// The dtype statistics are computed in: f32 for f16/bf16, else the input's; integer inputs are
/// an error (Candle's float ops on them panic).
pub(crate) fn compute_dtype(x: &Tensor) -> Result<DType> {
    match x.dtype() {
        DType::F16 | DType::BF16 => Ok(DType::F32),
        d @ (DType::F32 | DType::F64) => Ok(d),
        other => Err(crate::Error::input(
            "normalization",
            format!("expected a float tensor (f32, f16, bf16 or f64), found {other:?}"),
        )),
    }
}

/// Mean and biased variance of `x` over its last dimension, kept as size-1 dims.
pub(crate) fn moments_last(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
    Ok((mean, var))
}

/// (x − μ) / sqrt(σ² + ε) with μ, σ² broadcast against x.
pub(crate) fn standardize(x: &Tensor, mean: &Tensor, var: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(x.broadcast_sub(mean)?
        .broadcast_div(&(var + eps)?.sqrt()?)?)
}

/// `x` (N, C, …) reshaped to (N, groups, rest), standardized over `rest` per (sample, group),
/// reshaped back: IN is `groups = C`, GN `groups = G`, LN over (C, …) `groups = 1`.
pub(crate) fn normalize_groups(x: &Tensor, groups: usize, eps: f64) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let n = dims[0];
    let xr = x.reshape((n, groups, ()))?;
    let (mean, var) = moments_last(&xr)?;
    Ok(standardize(&xr, &mean, &var, eps)?.reshape(dims)?)
}

/// γ·x̂ + β with per-channel γ, β of shape (C,) for x̂ of shape (N, C, …).
pub(crate) fn affine_channels(
    xn: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
) -> Result<Tensor> {
    let mut shape = vec![1; xn.rank()];
    shape[1] = xn.dim(1)?;
    let mut y = xn.clone();
    if let Some(g) = gamma {
        y = y.broadcast_mul(&g.to_dtype(xn.dtype())?.reshape(shape.as_slice())?)?;
    }
    if let Some(b) = beta {
        y = y.broadcast_add(&b.to_dtype(xn.dtype())?.reshape(shape.as_slice())?)?;
    }
    Ok(y)
}

/// A per-channel statistic (C,) as (1, C, 1, …) for x's rank, detached and in `dtype`.
pub(crate) fn per_channel(v: &Tensor, rank: usize, dtype: DType) -> Result<Tensor> {
    let mut shape = vec![1; rank];
    shape[1] = v.elem_count();
    Ok(v.detach().to_dtype(dtype)?.reshape(shape)?)
}
