//! Statistics shared by every normalization layer, and the one pass that applies them.
//!
//! Every layer in [`crate::norm`] is two steps over a tensor seen as consecutive rows:
//! 1. [`Moments`] of rows of `row_len` values — an instance-norm row is one H·W plane, a
//!    group-norm group is (C/G)·H·W values, a layer-norm row is one sample. Plane moments are
//!    merged (Chan et al.'s pairwise formula, in f64) into group, sample or batch statistics.
//! 2. [`affine_planes`]: y = (x − center\[p\])·scale\[p\] + shift\[p\] for every plane p, three
//!    numbers per (sample, channel) that fold μ, σ, γ and β. (Subtracting the center first keeps
//!    full precision when |μ| ≫ σ or σ² ≪ ε, where the shorter x·a + b would round badly.)
//!
//! On the CPU both steps are fused, threaded kernels over f32 run in Candle's thread pool; on
//! other devices they are Candle tensor ops. Each chunk's moments are computed the same way
//! whatever the thread count and merged in a fixed order, so results are bit-identical across
//! thread counts. Inputs of other float dtypes are computed in f32 and cast back.

use candle::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::ops::avx2_or_plain;
use crate::ops::isa::candle_only;
use crate::{Error, Result};

/// How a variance is estimated from the `n` values it pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variance {
    /// Divide by `n` (what normalization layers use to normalize).
    Biased,
    /// Divide by `n − 1` (BatchNorm's running variance; pytorch-AdaIN's `calc_mean_std`).
    Unbiased,
}

/// Count, mean and sum of squared deviations (M2) of a set of rows, in f64.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Moments {
    /// Number of values pooled in each entry.
    pub count: Vec<f64>,
    /// Mean of each entry.
    pub mean: Vec<f64>,
    /// Sum of squared deviations from the mean of each entry.
    pub m2: Vec<f64>,
}

/// Elements a CPU task reduces at once: 16 KiB of f32 stays in L1 for the second pass.
const CHUNK: usize = 4096;

impl Moments {
    fn with_capacity(n: usize) -> Self {
        Moments {
            count: Vec::with_capacity(n),
            mean: Vec::with_capacity(n),
            m2: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, (count, mean, m2): (f64, f64, f64)) {
        self.count.push(count);
        self.mean.push(mean);
        self.m2.push(m2);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.mean.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.mean.is_empty()
    }

    /// Moments of each run of `row_len` consecutive elements of `x` (row-major order).
    ///
    /// `x`: any shape and float dtype whose element count is a positive multiple of `row_len`.
    pub fn of_rows(x: &Tensor, row_len: usize) -> Result<Self> {
        let n = x.elem_count();
        if row_len == 0 || n == 0 || !n.is_multiple_of(row_len) {
            return Err(Error::input(
                "normalization",
                format!("cannot split {n} elements into rows of {row_len}"),
            ));
        }
        let x = as_f32_contiguous(x)?;
        match x.device() {
            Device::Cpu if !candle_only() => {
                with_cpu_slice(&x, |data| Ok(cpu_row_moments(data, row_len)))
            }
            _ => Self::of_rows_tensor_ops(&x, row_len),
        }
    }

    /// The same as [`Moments::of_rows`] with Candle tensor ops (the path for CUDA and Metal;
    /// the CPU kernel is tested against it).
    pub fn of_rows_tensor_ops(x: &Tensor, row_len: usize) -> Result<Self> {
        let x = as_f32_contiguous(x)?;
        let rows = x.elem_count() / row_len;
        let x = x.reshape((rows, row_len))?;
        let mean = x.mean_keepdim(1)?;
        let m2 = x.broadcast_sub(&mean)?.sqr()?.sum_keepdim(1)?;
        let mean = mean.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let m2 = m2.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        Ok(Moments {
            count: vec![row_len as f64; rows],
            mean,
            m2,
        })
    }

    /// Merges entries into `n_out` pooled entries: entry `i` goes into `key(i)`. Entries are
    /// merged in index order, so the result is deterministic.
    pub fn merge_by(&self, n_out: usize, key: impl Fn(usize) -> usize) -> Moments {
        let mut out = Moments {
            count: vec![0.0; n_out],
            mean: vec![0.0; n_out],
            m2: vec![0.0; n_out],
        };
        for i in 0..self.len() {
            let k = key(i);
            let merged = merge(
                (out.count[k], out.mean[k], out.m2[k]),
                (self.count[i], self.mean[i], self.m2[i]),
            );
            (out.count[k], out.mean[k], out.m2[k]) = merged;
        }
        out
    }

    /// Appends the entries of `other`.
    pub fn extend(&mut self, other: &Moments) {
        self.count.extend_from_slice(&other.count);
        self.mean.extend_from_slice(&other.mean);
        self.m2.extend_from_slice(&other.m2);
    }

    /// The variance of entry `i`. An unbiased estimate of a single value is 0/0 = NaN, as in
    /// PyTorch; callers that must not produce NaN check the count first.
    pub fn variance(&self, i: usize, var: Variance) -> f64 {
        let d = match var {
            Variance::Biased => self.count[i],
            Variance::Unbiased => self.count[i] - 1.0,
        };
        self.m2[i] / d
    }
}

/// Chan et al.'s pairwise update of (count, mean, M2).
fn merge(a: (f64, f64, f64), b: (f64, f64, f64)) -> (f64, f64, f64) {
    let (na, ma, qa) = a;
    let (nb, mb, qb) = b;
    if na == 0.0 {
        return b;
    }
    if nb == 0.0 {
        return a;
    }
    let n = na + nb;
    let delta = mb - ma;
    (
        n,
        ma + delta * nb / n,
        qa + qb + delta * delta * na * nb / n,
    )
}

avx2_or_plain! {
    /// (count, mean, M2) of one cache-resident chunk: a pass for the mean, then a pass for the
    /// deviations around it (with the rounding of the f32 mean corrected), both vectorizable; AVX2
    /// when the CPU has it (the same sums in the same order, so the same result).
    fn chunk_moments(xs: &[f32]) -> (f64, f64, f64) = chunk_moments_in
}

#[inline(always)]
fn chunk_moments_in(xs: &[f32]) -> (f64, f64, f64) {
    const L: usize = 16;
    let n = xs.len() as f64;
    let mut s = [0f32; L];
    let mut it = xs.chunks_exact(L);
    for c in &mut it {
        for i in 0..L {
            s[i] += c[i];
        }
    }
    let mut sum: f64 = it.remainder().iter().map(|&v| v as f64).sum();
    sum += s.iter().map(|&v| v as f64).sum::<f64>();
    let shift = (sum / n) as f32;

    let (mut d1, mut d2) = ([0f32; L], [0f32; L]);
    let mut it = xs.chunks_exact(L);
    for c in &mut it {
        for i in 0..L {
            let d = c[i] - shift;
            d1[i] += d;
            d2[i] += d * d;
        }
    }
    let (mut sd, mut sq) = (0f64, 0f64);
    for &v in it.remainder() {
        let d = (v - shift) as f64;
        sd += d;
        sq += d * d;
    }
    sd += d1.iter().map(|&v| v as f64).sum::<f64>();
    sq += d2.iter().map(|&v| v as f64).sum::<f64>();
    let mean_dev = sd / n;
    (n, shift as f64 + mean_dev, (sq - sd * mean_dev).max(0.0))
}

fn cpu_row_moments(data: &[f32], row_len: usize) -> Moments {
    let rows = data.len() / row_len;
    let mut out = Moments::with_capacity(rows);
    if row_len >= CHUNK {
        // Long rows: chunks of every row in parallel, merged per row in order.
        let per_row = row_len.div_ceil(CHUNK);
        let parts: Vec<(f64, f64, f64)> = crate::ops::in_pool(|| {
            (0..rows * per_row)
                .into_par_iter()
                .map(|t| {
                    let (r, k) = (t / per_row, t % per_row);
                    let start = r * row_len + k * CHUNK;
                    let end = r * row_len + ((k + 1) * CHUNK).min(row_len);
                    chunk_moments(&data[start..end])
                })
                .collect()
        });
        for row in parts.chunks(per_row) {
            out.push(row.iter().fold((0.0, 0.0, 0.0), |acc, &p| merge(acc, p)));
        }
    } else {
        // Short rows: several whole rows per task.
        let rows_per_task = (CHUNK / row_len).max(1);
        let parts: Vec<Vec<(f64, f64, f64)>> = crate::ops::in_pool(|| {
            data.par_chunks(rows_per_task * row_len)
                .map(|block| block.chunks(row_len).map(chunk_moments).collect())
                .collect()
        });
        for p in parts.into_iter().flatten() {
            out.push(p);
        }
    }
    out
}

/// Per-plane y = (x − center)·scale + shift, f32, one entry per plane.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlaneAffine {
    /// Subtracted first (the mean being normalized away).
    pub center: Vec<f32>,
    /// Then multiplied (γ/σ, or σ_target/σ_source).
    pub scale: Vec<f32>,
    /// Then added (β, or μ_target).
    pub shift: Vec<f32>,
}

impl PlaneAffine {
    /// An empty map with room for `n` planes.
    pub fn with_capacity(n: usize) -> Self {
        PlaneAffine {
            center: Vec::with_capacity(n),
            scale: Vec::with_capacity(n),
            shift: Vec::with_capacity(n),
        }
    }

    /// Appends a plane's (center, scale, shift), computed in f64 by the caller.
    pub fn push(&mut self, center: f64, scale: f64, shift: f64) {
        self.center.push(center as f32);
        self.scale.push(scale as f32);
        self.shift.push(shift as f32);
    }

    /// Number of planes.
    pub fn len(&self) -> usize {
        self.scale.len()
    }

    /// Whether there are no planes.
    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }

    fn check(&self, x: &Tensor, plane_len: usize) -> Result<()> {
        let n = self.len();
        if plane_len == 0
            || self.center.len() != n
            || self.shift.len() != n
            || n * plane_len != x.elem_count()
        {
            return Err(Error::input(
                "normalization",
                format!(
                    "{n} plane parameters do not cover {} elements in planes of {plane_len}",
                    x.elem_count()
                ),
            ));
        }
        Ok(())
    }
}

/// y = (x − center\[p\])·scale\[p\] + shift\[p\], where p is the index of the `plane_len`-long
/// plane an element belongs to (for an (N, C, H, W) tensor with `plane_len` = H·W, p = n·C + c).
///
/// `x`: any shape, f32/f16/bf16/f64, `elem_count = planes · plane_len` → same shape and dtype.
/// Non-contiguous input is copied first.
pub fn affine_planes(x: &Tensor, plane_len: usize, ab: &PlaneAffine) -> Result<Tensor> {
    affine_planes_then(x, plane_len, ab, PostOp::None)
}

/// An element-wise function applied in the same pass as the affine map (a network's activation
/// after a normalization layer, fused to save a pass over memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PostOp {
    /// Nothing.
    #[default]
    None,
    /// max(·, 0).
    Relu,
    /// 1 / (1 + e^(−·)).
    Sigmoid,
}

impl PostOp {
    #[inline]
    fn apply(self, v: f32) -> f32 {
        match self {
            PostOp::None => v,
            PostOp::Relu => v.max(0.0),
            PostOp::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        }
    }

    /// `post` as tensor ops (any device).
    pub(crate) fn tensor(self, y: Tensor) -> Result<Tensor> {
        Ok(match self {
            PostOp::None => y,
            PostOp::Relu => y.relu()?,
            PostOp::Sigmoid => (y.neg()?.exp()? + 1.0)?.recip()?,
        })
    }
}

/// [`affine_planes`] followed by `post`, in one pass on the CPU.
pub fn affine_planes_then(
    x: &Tensor,
    plane_len: usize,
    ab: &PlaneAffine,
    post: PostOp,
) -> Result<Tensor> {
    ab.check(x, plane_len)?;
    let dtype = x.dtype();
    let xf = as_f32_contiguous(x)?;
    let y = match xf.device() {
        Device::Cpu if !candle_only() => {
            let out = with_cpu_slice(&xf, |data| Ok(cpu_affine_planes(data, plane_len, ab, post)))?;
            Tensor::from_vec(out, x.shape(), &Device::Cpu)?
        }
        _ => post.tensor(affine_planes_tensor_ops(&xf, plane_len, ab)?)?,
    };
    Ok(y.to_dtype(dtype)?)
}

/// [`affine_planes`] with Candle tensor ops (any device; f32 input).
pub fn affine_planes_tensor_ops(x: &Tensor, plane_len: usize, ab: &PlaneAffine) -> Result<Tensor> {
    ab.check(x, plane_len)?;
    let p = ab.len();
    let col = |v: &[f32]| Tensor::from_slice(v, (p, 1), x.device());
    let y = x
        .reshape((p, plane_len))?
        .broadcast_sub(&col(&ab.center)?)?
        .broadcast_mul(&col(&ab.scale)?)?
        .broadcast_add(&col(&ab.shift)?)?;
    Ok(y.reshape(x.shape())?)
}

/// Elements an apply task writes at once.
const BLOCK: usize = 16 * 1024;

fn cpu_affine_planes(data: &[f32], plane_len: usize, ab: &PlaneAffine, post: PostOp) -> Vec<f32> {
    // Every element is written below, so the output is not zeroed first.
    let mut out: Vec<f32> = Vec::with_capacity(data.len());
    crate::ops::in_pool(|| {
        out.spare_capacity_mut()[..data.len()]
            .par_chunks_mut(BLOCK)
            .zip(data.par_chunks(BLOCK))
            .enumerate()
            .for_each(|(bi, (o, x))| affine_block(o, x, bi * BLOCK, plane_len, ab, post))
    });
    // SAFETY: the blocks above wrote all `data.len()` elements.
    unsafe { out.set_len(data.len()) };
    out
}

avx2_or_plain! {
    /// One block of [`cpu_affine_planes`], starting at element `pos` of the map; AVX2 when the CPU
    /// has it (same operations, same results).
    fn affine_block(
        o: &mut [std::mem::MaybeUninit<f32>],
        x: &[f32],
        pos: usize,
        plane_len: usize,
        ab: &PlaneAffine,
        post: PostOp,
    ) = affine_block_in
}

#[inline(always)]
fn affine_block_in(
    o: &mut [std::mem::MaybeUninit<f32>],
    x: &[f32],
    mut pos: usize,
    plane_len: usize,
    ab: &PlaneAffine,
    post: PostOp,
) {
    let mut i = 0;
    while i < o.len() {
        let p = pos / plane_len;
        let n = ((p + 1) * plane_len - pos).min(o.len() - i);
        let (m, a, b) = (ab.center[p], ab.scale[p], ab.shift[p]);
        let (o, x) = (&mut o[i..i + n], &x[i..i + n]);
        match post {
            // Separate loops keep the common cases branch-free and vectorized.
            PostOp::None => o.iter_mut().zip(x).for_each(|(y, &v)| {
                y.write((v - m) * a + b);
            }),
            PostOp::Relu => o.iter_mut().zip(x).for_each(|(y, &v)| {
                y.write(((v - m) * a + b).max(0.0));
            }),
            PostOp::Sigmoid => o.iter_mut().zip(x).for_each(|(y, &v)| {
                y.write(post.apply((v - m) * a + b));
            }),
        }
        i += n;
        pos += n;
    }
}

/// y = ((x − center\[r\])·scale\[r\] + shift\[r\])·γ\[j\] + β\[j\] where r is the row (`row_len`
/// elements) and j the position within it: layer norm's element-wise affine over
/// `normalized_shape`.
///
/// `x`: any float dtype, `elem_count = rows · row_len`; `gamma`, `beta`: `row_len` values each →
/// same shape and dtype as `x`.
pub fn affine_rows_elementwise(
    x: &Tensor,
    row_len: usize,
    ab: &PlaneAffine,
    gamma: &Tensor,
    beta: &Tensor,
) -> Result<Tensor> {
    ab.check(x, row_len)?;
    if gamma.elem_count() != row_len || beta.elem_count() != row_len {
        return Err(Error::input(
            "normalization",
            format!("element-wise γ, β need {row_len} values each"),
        ));
    }
    let dtype = x.dtype();
    let xf = as_f32_contiguous(x)?;
    let y = match xf.device() {
        Device::Cpu if !candle_only() => {
            let g = gamma
                .flatten_all()?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?;
            let b = beta.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let out = with_cpu_slice(&xf, |data| {
                let mut out = crate::ops::zeroed(data.len());
                crate::ops::in_pool(|| {
                    out.par_chunks_mut(row_len)
                        .zip(data.par_chunks(row_len))
                        .enumerate()
                        .for_each(|(r, (o, x))| {
                            let (m, a, s) = (ab.center[r], ab.scale[r], ab.shift[r]);
                            for j in 0..row_len {
                                o[j] = ((x[j] - m) * a + s) * g[j] + b[j];
                            }
                        })
                });
                Ok(out)
            })?;
            Tensor::from_vec(out, x.shape(), &Device::Cpu)?
        }
        _ => {
            let y = affine_planes_tensor_ops(&xf, row_len, ab)?.reshape((ab.len(), row_len))?;
            let g = gamma.to_dtype(DType::F32)?.reshape((1, row_len))?;
            let b = beta.to_dtype(DType::F32)?.reshape((1, row_len))?;
            y.broadcast_mul(&g)?.broadcast_add(&b)?.reshape(x.shape())?
        }
    };
    Ok(y.to_dtype(dtype)?)
}

/// Normalizes each run of `row_len` elements with its own mean and biased variance, then applies
/// per-channel γ, β and, for layer norm, an element-wise γ, β over the row:
/// y = ((x − μ_r)/sqrt(σ²_r + ε)·γ\[c\] + β\[c\])·γₑ\[j\] + βₑ\[j\], with c = (plane index) mod
/// `gamma.len()` for planes of `plane_len` elements, and j the position in the row.
///
/// This is instance norm (row = plane), group norm (row = group) and layer norm (row = sample).
/// On the CPU, when there are enough rows to keep every thread busy, each row's statistics and
/// output are computed together while the row is still in cache (one read of `x` from memory
/// instead of two); the result is identical to the two-step path.
///
/// `x`: any float dtype, `elem_count` a multiple of `row_len`, `row_len` a multiple of
/// `plane_len`; `gamma`, `beta`: per channel; `elementwise`: two tensors of `row_len` values.
pub fn normalize_rows(
    x: &Tensor,
    row_len: usize,
    plane_len: usize,
    eps: f64,
    gamma: &[f64],
    beta: &[f64],
    elementwise: Option<(&Tensor, &Tensor)>,
) -> Result<Tensor> {
    let fused = x.device().is_cpu()
        && !candle_only()
        && x.elem_count() / row_len.max(1) >= crate::ops::shared::threads();
    normalize_rows_impl(x, row_len, plane_len, eps, gamma, beta, elementwise, fused)
}

#[allow(clippy::too_many_arguments)]
fn normalize_rows_impl(
    x: &Tensor,
    row_len: usize,
    plane_len: usize,
    eps: f64,
    gamma: &[f64],
    beta: &[f64],
    elementwise: Option<(&Tensor, &Tensor)>,
    fused: bool,
) -> Result<Tensor> {
    let n = x.elem_count();
    if row_len == 0
        || plane_len == 0
        || !n.is_multiple_of(row_len)
        || !row_len.is_multiple_of(plane_len)
        || gamma.is_empty()
        || gamma.len() != beta.len()
    {
        return Err(Error::input(
            "normalization",
            format!("cannot normalize {n} elements in rows of {row_len}, planes of {plane_len}"),
        ));
    }
    if let Some((g, b)) = elementwise {
        // Element-wise affine spans a whole row, which is then a single plane (layer norm).
        if plane_len != row_len || g.elem_count() != row_len || b.elem_count() != row_len {
            return Err(Error::input(
                "normalization",
                "element-wise affine needs one plane per row and row_len values",
            ));
        }
    }
    let rows = n / row_len;
    let planes_per_row = row_len / plane_len;
    let params = |row: usize, mean: f64, var: f64, q: usize| {
        let c = (row * planes_per_row + q) % gamma.len();
        let a = gamma[c] / (var + eps).sqrt();
        (mean as f32, a as f32, beta[c] as f32)
    };
    if !fused {
        let m = Moments::of_rows(x, row_len)?;
        let mut ab = PlaneAffine::with_capacity(rows * planes_per_row);
        for r in 0..rows {
            for q in 0..planes_per_row {
                let (c, a, b) = params(r, m.mean[r], m.variance(r, Variance::Biased), q);
                ab.push(c as f64, a as f64, b as f64);
            }
        }
        return match elementwise {
            Some((g, b)) => affine_rows_elementwise(x, row_len, &ab, g, b),
            None => affine_planes(x, plane_len, &ab),
        };
    }
    let dtype = x.dtype();
    let xf = as_f32_contiguous(x)?;
    let ew = match elementwise {
        Some((g, b)) => Some((as_f32_contiguous(g)?, as_f32_contiguous(b)?)),
        None => None,
    };
    let out = with_cpu_slice(&xf, |data| {
        let run = |ew: Option<(&[f32], &[f32])>| {
            let mut out = crate::ops::zeroed(data.len());
            crate::ops::in_pool(|| {
                out.par_chunks_mut(row_len)
                    .zip(data.par_chunks(row_len))
                    .enumerate()
                    .for_each(|(r, (o, x))| {
                        let (count, mean, m2) = x
                            .chunks(CHUNK)
                            .map(chunk_moments)
                            .fold((0.0, 0.0, 0.0), merge);
                        let var = m2 / count;
                        for (q, (o, x)) in
                            o.chunks_mut(plane_len).zip(x.chunks(plane_len)).enumerate()
                        {
                            let (m, a, b) = params(r, mean, var, q);
                            match ew {
                                None => {
                                    o.iter_mut().zip(x).for_each(|(y, &v)| *y = (v - m) * a + b)
                                }
                                Some((g, be)) => {
                                    let j0 = q * plane_len;
                                    let (g, be) = (&g[j0..j0 + plane_len], &be[j0..j0 + plane_len]);
                                    for j in 0..plane_len {
                                        o[j] = ((x[j] - m) * a + b) * g[j] + be[j];
                                    }
                                }
                            }
                        }
                    })
            });
            out
        };
        match &ew {
            None => Ok(run(None)),
            Some((g, b)) => with_cpu_slice(g, |g| with_cpu_slice(b, |b| Ok(run(Some((g, b)))))),
        }
    })?;
    Ok(Tensor::from_vec(out, x.shape(), &Device::Cpu)?.to_dtype(dtype)?)
}

/// `x` as a contiguous f32 tensor (a no-op when it already is one).
pub(crate) fn as_f32_contiguous(x: &Tensor) -> Result<Tensor> {
    match x.dtype() {
        DType::F32 | DType::F16 | DType::BF16 | DType::F64 => {}
        other => {
            return Err(Error::input(
                "normalization",
                format!("expected a float tensor (f32, f16, bf16 or f64), found {other:?}"),
            ))
        }
    }
    Ok(x.to_dtype(DType::F32)?.contiguous()?)
}

/// Runs `f` on the f32 data of a contiguous CPU tensor.
pub(crate) fn with_cpu_slice<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = x.storage_and_layout();
    let candle::Storage::Cpu(cpu) = &*storage else {
        return Err(Error::input("normalization", "expected a CPU tensor"));
    };
    let data = cpu.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(Error::input(
            "normalization",
            "expected a contiguous tensor",
        ));
    };
    f(&data[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        // A small LCG keeps the tests free of a random-number dependency.
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 4.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn cpu_moments_match_tensor_ops() {
        // Short rows (many per task), long rows (split into chunks), and a ragged final chunk.
        for (shape, row_len) in [
            (vec![3usize, 5, 7], 7usize),
            (vec![2, 9001], 9001),
            (vec![4, 4096], 4096),
            (vec![1, 3, 1, 1], 1),
        ] {
            let x = rand(&shape, 7).affine(1.0, 100.0).unwrap(); // offset: tests cancellation
            let a = Moments::of_rows(&x, row_len).unwrap();
            let b = Moments::of_rows_tensor_ops(&x.to_dtype(DType::F64).unwrap(), row_len).unwrap();
            for i in 0..a.len() {
                assert_eq!(a.count[i], b.count[i]);
                assert!(
                    (a.mean[i] - b.mean[i]).abs() < 1e-6 * b.mean[i].abs().max(1.0),
                    "{shape:?} mean {} vs {}",
                    a.mean[i],
                    b.mean[i]
                );
                let (va, vb) = (a.m2[i] / a.count[i], b.m2[i] / b.count[i]);
                assert!(
                    (va - vb).abs() < 1e-5 * vb.max(1.0),
                    "{shape:?} var {va} vs {vb}"
                );
            }
        }
    }

    #[test]
    fn merge_equals_moments_of_the_union() {
        let x = rand(&[6, 50], 3);
        let rows = Moments::of_rows(&x, 50).unwrap();
        let pooled = rows.merge_by(2, |i| i / 3);
        let direct = Moments::of_rows(&x, 150).unwrap();
        for k in 0..2 {
            assert!(
                (pooled.mean[k] - direct.mean[k]).abs() < 1e-7,
                "{} {}",
                pooled.mean[k],
                direct.mean[k]
            );
            assert!((pooled.m2[k] - direct.m2[k]).abs() < 1e-6 * direct.m2[k]);
        }
    }

    #[test]
    fn fused_rows_equal_the_two_step_path_bit_for_bit() {
        let x = rand(&[3, 6, 9, 700], 5).affine(2.0, 7.0).unwrap();
        let g = [0.5, 1.5, -1.0, 2.0, 1.0, 0.25];
        let b = [0.1, -0.2, 0.3, 0.0, 1.0, -1.0];
        let (ge, be) = (rand(&[6, 9, 700], 8), rand(&[6, 9, 700], 9));
        // (row, plane, per-channel γ β, element-wise): IN, GN with 3 groups, LN, LN with affine.
        let one = (&[1.0][..], &[0.0][..]);
        for (row, plane, (gg, bb), ew) in [
            (6300, 6300, (&g[..], &b[..]), false),
            (12600, 6300, (&g[..], &b[..]), false),
            (37800, 37800, one, false),
            (37800, 37800, one, true),
        ] {
            let ewp = ew.then_some((&ge, &be));
            let a = normalize_rows_impl(&x, row, plane, 1e-5, gg, bb, ewp, true).unwrap();
            let c = normalize_rows_impl(&x, row, plane, 1e-5, gg, bb, ewp, false).unwrap();
            let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let c = c.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(a == c, "row {row} plane {plane} elementwise {ew}");
        }
    }

    #[test]
    fn affine_cpu_matches_tensor_ops() {
        let x = rand(&[2, 3, 5, 7], 1);
        let mut ab = PlaneAffine::with_capacity(6);
        for i in 0..6 {
            ab.push(i as f64 * 0.1, i as f64 * 0.5 - 1.0, i as f64);
        }
        let a = affine_planes(&x, 35, &ab).unwrap();
        let b = affine_planes_tensor_ops(&x, 35, &ab).unwrap();
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-6);
        ab.scale.pop();
        assert!(affine_planes(&x, 35, &ab).is_err());
    }
}
