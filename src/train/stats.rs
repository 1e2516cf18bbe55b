//! The style losses' feature statistics — Gram matrices and per-channel mean and standard
//! deviation — as Candle ops with analytic backwards, for CPU f32 maps that record a graph.
//!
//! Recorded with tensor ops, a Gram matrix's backward is two batched products over transposed
//! copies and the sum of F's two gradients, and mean/std's is some ten passes over the map
//! (broadcasts, squares, the root's chain); on a 128² training step of the `small` network
//! those passes cost more than the loss network's convolutions at relu1_1 and relu2_1. Here each
//! is one product or one pass each way, samples (and row or column blocks) in parallel, every
//! output element computed by one task in a fixed order, so results do not depend on the
//! thread count.
//!
//! The mean squared error that compares them is one op too: Candle's `mean_all` hands back a
//! broadcast scalar, and adding that strided view to a buffer takes its slow indexed path
//! (on the (4, 512, 512) Gram matrices of relu4_1, ~30 ms of a step).
//!
//! Gram: G = s·F·Fᵀ with s = 1/(C·H·W), so dF = s·(dG + dGᵀ)·F.
//! Mean/std over the M = H·W values of a plane: μ = Σx/M, σ = sqrt(Σ(x − μ)²/(M − 1) + ε), so
//! dx = dμ/M + dσ·(x − μ)/((M − 1)·σ).

use candle::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use crate::ops::in_pool;
use crate::ops::shared::{sq_dev_sum, sum_f64, threads, with_f32};
use crate::Result;

/// ε under the square root of the standard deviation (pytorch-AdaIN's `calc_mean_std`).
pub(crate) const STD_EPS: f64 = 1e-5;

/// Whether the fused ops serve `x`: a CPU f32 map recording a graph on the crate's kernels.
fn applies(x: &Tensor) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && x.track_op()
        && !crate::ops::isa::candle_only()
}

/// Gram matrices F·Fᵀ / (C·H·W): (N, C, H, W) → (N, C, C).
pub(crate) fn gram(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if applies(x) {
        return Ok(x.contiguous()?.apply_op1(Gram)?);
    }
    let f = x.reshape((n, c, h * w))?;
    Ok((f.matmul(&f.t()?)? / (c * h * w) as f64)?)
}

/// Per-channel mean and standard deviation over (H, W): (N, C, H, W) → two (N, C) tensors,
/// with the unbiased variance and [`STD_EPS`] under the root. Maps with fewer than two
/// values per plane are the caller's to refuse.
pub(crate) fn mean_std(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (n, c, h, w) = x.dims4()?;
    if applies(x) {
        let both = x.contiguous()?.apply_op1(MeanStd)?; // (N, C, 2)
        return Ok((
            both.narrow(2, 0, 1)?.squeeze(2)?,
            both.narrow(2, 1, 1)?.squeeze(2)?,
        ));
    }
    let count = h * w;
    let rows = x.reshape((n, c, count))?;
    let mean = rows.mean_keepdim(D::Minus1)?;
    let var = (rows.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (count - 1) as f64)?;
    Ok((
        mean.squeeze(D::Minus1)?,
        (var + STD_EPS)?.sqrt()?.squeeze(D::Minus1)?,
    ))
}

/// Mean squared error of `a` against `b`, broadcasting `b`'s batch of 1 over `a`'s: a scalar.
pub(crate) fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let fused = (applies(a) || applies(b))
        && b.device().is_cpu()
        && b.dtype() == DType::F32
        && a.rank() == b.rank()
        && a.dims()[1..] == b.dims()[1..]
        && (b.dim(0)? == a.dim(0)? || b.dim(0)? == 1);
    if fused {
        return Ok(a.contiguous()?.apply_op2(&b.contiguous()?, Mse)?);
    }
    Ok(a.broadcast_sub(b)?.sqr()?.mean_all()?)
}

/// The f32 values a contiguous layout covers.
fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> candle::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle::bail!("normstyle style statistics: expected f32");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle::bail!("normstyle style statistics: expected a contiguous map");
    };
    Ok(&v[a..b])
}

/// Tasks per sample so that every thread has two.
fn blocks_per_sample(n: usize, len: usize) -> usize {
    (2 * threads()).div_ceil(n.max(1)).clamp(1, len.max(1))
}

/// C = beta·A·B (+ C when `accumulate`) for row-major A (m × k, row stride `lda`), B given by
/// its strides, C (m × n, row stride `ldc`), on the calling thread.
///
/// # Safety
/// The pointers cover the m × k, k × n and m × n matrices their strides describe; C is written
/// by this call only.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    c: (*mut f32, usize),
    a: (*const f32, usize),
    b: (*const f32, isize, isize),
    beta: f32,
) {
    // SAFETY: as the caller guarantees.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.0,
            1,
            c.1 as isize,
            false,
            a.0,
            1,
            a.1 as isize,
            b.0,
            b.1,
            b.2,
            0.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// See [`gram`].
struct Gram;

impl CustomOp1 for Gram {
    fn name(&self) -> &'static str {
        "normstyle-gram"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let k = h * w;
        let x = contiguous(s, l)?;
        let scale = 1.0 / (c * k) as f32;
        // Tasks: (sample, block of rows of G); each writes its rows only.
        let blocks = blocks_per_sample(n, c);
        let rows = c.div_ceil(blocks);
        let mut g = vec![0f32; n * c * c];
        in_pool(|| {
            g.par_chunks_mut(c * c)
                .zip(x.par_chunks(c * k))
                .for_each(|(gs, f)| {
                    gs.par_chunks_mut(rows * c)
                        .enumerate()
                        .for_each(|(b, dst)| {
                            let (r0, m) = (b * rows, dst.len() / c);
                            // SAFETY: rows r0 .. r0 + m of F (k values each) times Fᵀ (k × c:
                            // element (i, j) at j·k + i) into this task's m × c block.
                            unsafe {
                                matmul(
                                    (m, c, k),
                                    (dst.as_mut_ptr(), c),
                                    (f[r0 * k..].as_ptr(), k),
                                    (f.as_ptr(), k as isize, 1),
                                    scale,
                                )
                            }
                        })
                })
        });
        Ok((CpuStorage::F32(g), Shape::from((n, c, c))))
    }

    fn bwd(&self, x: &Tensor, _g: &Tensor, dg: &Tensor) -> candle::Result<Option<Tensor>> {
        let (n, c, h, w) = x.dims4()?;
        let k = h * w;
        let scale = 1.0 / (c * k) as f32;
        // S = s·(dG + dGᵀ) per sample, then dF = S·F, in blocks of F's columns.
        let sym = with_f32(&dg.contiguous()?, |d| {
            let mut sym = vec![0f32; n * c * c];
            for (s, out) in sym.chunks_exact_mut(c * c).enumerate() {
                let d = &d[s * c * c..][..c * c];
                for i in 0..c {
                    for j in 0..c {
                        out[i * c + j] = scale * (d[i * c + j] + d[j * c + i]);
                    }
                }
            }
            sym
        })?;
        let blocks = blocks_per_sample(n, k.div_ceil(64));
        let cols = k.div_ceil(blocks).next_multiple_of(16).min(k);
        let per = k.div_ceil(cols);
        let dx = with_f32(x, |f| {
            let mut dx = vec![0f32; n * c * k];
            let out = crate::ops::shared::OutPtr(dx.as_mut_ptr());
            in_pool(|| {
                (0..n * per).into_par_iter().for_each(|task| {
                    let (s, b) = (task / per, task % per);
                    let j0 = b * cols;
                    let width = cols.min(k - j0);
                    // SAFETY: S (c × c) times columns j0 .. j0 + width of F (c × k) into the same
                    // columns of this sample's dX, which no other task writes.
                    unsafe {
                        matmul(
                            (c, width, c),
                            (out.at(s * c * k + j0), k),
                            (sym[s * c * c..].as_ptr(), c),
                            (f[s * c * k + j0..].as_ptr(), 1, k as isize),
                            1.0,
                        )
                    }
                })
            });
            dx
        })?;
        Ok(Some(Tensor::from_vec(dx, (n, c, h, w), x.device())?))
    }
}

/// See [`mean_std`]: (N, C, H, W) → (N, C, 2), (μ, σ) per plane.
struct MeanStd;

/// μ and σ of one plane, sums in f64.
fn plane_stats(p: &[f32]) -> (f64, f64) {
    let m = p.len() as f64;
    let mean = sum_f64(p) / m;
    (mean, (sq_dev_sum(p, mean) / (m - 1.0) + STD_EPS).sqrt())
}

impl CustomOp1 for MeanStd {
    fn name(&self) -> &'static str {
        "normstyle-mean-std"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let x = contiguous(s, l)?;
        let plane = h * w;
        if plane < 2 {
            candle::bail!("normstyle mean/std: a {h}×{w} map has no spread");
        }
        let out: Vec<f32> = in_pool(|| {
            x.par_chunks(plane)
                .flat_map_iter(|p| {
                    let (mu, sigma) = plane_stats(p);
                    [mu as f32, sigma as f32]
                })
                .collect()
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, 2))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, d: &Tensor) -> candle::Result<Option<Tensor>> {
        let (n, c, h, w) = x.dims4()?;
        let plane = h * w;
        let m = plane as f64;
        let d = d.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let dx = with_f32(x, |xs| {
            let mut dx = vec![0f32; n * c * plane];
            in_pool(|| {
                dx.par_chunks_mut(plane)
                    .zip(xs.par_chunks(plane))
                    .enumerate()
                    .for_each(|(i, (o, p))| {
                        let (mu, sigma) = plane_stats(p);
                        let (dmu, dsigma) = (f64::from(d[2 * i]), f64::from(d[2 * i + 1]));
                        let a = (dmu / m) as f32;
                        let b = (dsigma / ((m - 1.0) * sigma)) as f32;
                        let mu = mu as f32;
                        for (o, &v) in o.iter_mut().zip(p) {
                            *o = a + b * (v - mu);
                        }
                    })
            });
            dx
        })?;
        Ok(Some(Tensor::from_vec(dx, (n, c, h, w), x.device())?))
    }
}

/// See [`mse`]: a (N, …) and b (N or 1, …) → a scalar. Sums in f64 per block of a fixed
/// size, added in order.
struct Mse;

/// Elements per partial sum of [`Mse`].
const MSE_CHUNK: usize = 1 << 14;

impl CustomOp2 for Mse {
    fn name(&self) -> &'static str {
        "normstyle-mse"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let (a, b) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        if b.is_empty() || a.len() % b.len() != 0 {
            candle::bail!("normstyle mse: {:?} against {:?}", l1.dims(), l2.dims());
        }
        let per = b.len();
        let partials: Vec<f64> = in_pool(|| {
            a.par_chunks(MSE_CHUNK)
                .enumerate()
                .map(|(i, chunk)| {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(j, &v)| {
                            let d = f64::from(v) - f64::from(b[(i * MSE_CHUNK + j) % per]);
                            d * d
                        })
                        .sum::<f64>()
                })
                .collect()
        });
        let mean = partials.iter().sum::<f64>() / a.len().max(1) as f64;
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let k = 2.0 * g / a.elem_count().max(1) as f32;
        let per = b.elem_count();
        // d(a) = k·(a − b); d(b) = −Σ over a's samples of the same.
        let da = with_f32(a, |av| {
            with_f32(b, |bv| {
                let mut da = vec![0f32; av.len()];
                in_pool(|| {
                    da.par_chunks_mut(per)
                        .zip(av.par_chunks(per))
                        .for_each(|(o, x)| {
                            for ((o, &x), &y) in o.iter_mut().zip(x).zip(bv) {
                                *o = k * (x - y);
                            }
                        })
                });
                da
            })
        })??;
        let db = b
            .track_op()
            .then(|| -> candle::Result<Tensor> {
                let mut db = vec![0f32; per];
                for sample in da.chunks_exact(per) {
                    for (o, &v) in db.iter_mut().zip(sample) {
                        *o -= v;
                    }
                }
                Tensor::from_vec(db, b.shape(), b.device())
            })
            .transpose()?;
        let da = a
            .track_op()
            .then(|| Tensor::from_vec(da, a.shape(), a.device()))
            .transpose()?;
        Ok((da, db))
    }
}

#[cfg(test)]
mod tests {
    use candle::{Device, Var};

    use super::*;
    use crate::rng::Rng;

    /// max |a − b| / max |b|.
    fn rel(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        let s = b.abs().unwrap().max_all().unwrap();
        d.to_scalar::<f32>().unwrap() / s.to_scalar::<f32>().unwrap().max(1e-30)
    }

    /// The fused ops (the input records a graph) against the same losses written with Candle's
    /// tensor ops, values and gradients, on maps with odd sizes, a batch target of 1 and one of
    /// N, and more channels than positions (the 512-channel 16² tap's shape): within 1e-5 of
    /// the scale (f32 sums in another order).
    #[test]
    fn fused_losses_match_the_tensor_ops() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(21, 0);
        for (n, c, h, w) in [(3, 5, 7, 9), (2, 40, 4, 3), (1, 3, 2, 1)] {
            let x = Var::from_tensor(&rng.normal_tensor(0.5, 2.0, (n, c, h, w), &dev).unwrap())
                .unwrap();
            let x = x.as_tensor();
            let plain = x.detach();
            let reference = |x: &Tensor| -> (Tensor, Tensor, Tensor) {
                let f = x.reshape((n, c, h * w)).unwrap();
                let g = (f.matmul(&f.t().unwrap()).unwrap() / (c * h * w) as f64).unwrap();
                let rows = x.reshape((n, c, h * w)).unwrap();
                let mu = rows.mean_keepdim(D::Minus1).unwrap();
                let var = (rows
                    .broadcast_sub(&mu)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_keepdim(D::Minus1)
                    .unwrap()
                    / (h * w - 1) as f64)
                    .unwrap();
                let sigma = (var + STD_EPS).unwrap().sqrt().unwrap().squeeze(2).unwrap();
                (g, mu.squeeze(2).unwrap(), sigma)
            };
            let gt = rng.normal_tensor(0.0, 1.0, (1, c, c), &dev).unwrap();
            let st = rng.normal_tensor(1.0, 1.0, (n, c), &dev).unwrap();
            let loss = |g: &Tensor, mu: &Tensor, sigma: &Tensor, fused: bool| -> Tensor {
                let m = |a: &Tensor, b: &Tensor| {
                    if fused {
                        mse(a, b).unwrap()
                    } else {
                        a.broadcast_sub(b)
                            .unwrap()
                            .sqr()
                            .unwrap()
                            .mean_all()
                            .unwrap()
                    }
                };
                (m(g, &gt) + m(mu, &st) + m(sigma, &st)).unwrap()
            };
            let (g0, mu0, s0) = reference(x);
            let g1 = gram(x).unwrap();
            let (mu1, s1) = mean_std(x).unwrap();
            for (a, b, what) in [(&g1, &g0, "gram"), (&mu1, &mu0, "mean"), (&s1, &s0, "std")] {
                assert!(rel(a, b) < 1e-5, "{what} {n}×{c}×{h}×{w}: {}", rel(a, b));
            }
            // The graph-free path is the reference's.
            assert!(rel(&gram(&plain).unwrap(), &g0) < 1e-6);
            let l0 = loss(&g0, &mu0, &s0, false);
            let l1 = loss(&g1, &mu1, &s1, true);
            assert!(rel(&l1, &l0) < 1e-5, "loss {n}×{c}×{h}×{w}");
            let d0 = l0.backward().unwrap().get(x).unwrap().clone();
            let d1 = l1.backward().unwrap().get(x).unwrap().clone();
            assert!(
                rel(&d1, &d0) < 1e-5,
                "gradient {n}×{c}×{h}×{w}: {}",
                rel(&d1, &d0)
            );
        }
    }

    /// The target's gradient (a target that records a graph, batch 1 broadcast over N).
    #[test]
    fn mse_gives_the_broadcast_targets_gradient() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(22, 0);
        let a = Var::from_tensor(&rng.normal_tensor(0.0, 1.0, (3, 4, 5), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&rng.normal_tensor(0.0, 1.0, (1, 4, 5), &dev).unwrap()).unwrap();
        let ours = mse(a.as_tensor(), b.as_tensor()).unwrap();
        let theirs = a
            .broadcast_sub(&b)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        assert!(rel(&ours, &theirs) < 1e-6);
        let (g1, g0) = (ours.backward().unwrap(), theirs.backward().unwrap());
        for v in [&a, &b] {
            let (x, y) = (g1.get(v).unwrap(), g0.get(v).unwrap());
            assert!(rel(x, y) < 1e-5, "{}", rel(x, y));
        }
    }
}
