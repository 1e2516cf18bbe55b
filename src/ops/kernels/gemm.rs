//! The general convolution: banded im2col + the `gemm` crate (the GEMM Candle itself uses),
//! forward for inference, and every convolution's backward for training ([`ConvCore`], run by
//! the training op `ops::layer_op`).
//!
//! Inference: the output is cut into bands of whole rows; for each band (in parallel) the
//! patches are unfolded (row copies for stride 1) into a buffer that stays in cache, one packed
//! GEMM (single-threaded inside the band) writes the band straight into the NCHW output, and the
//! bias and activation are applied while the band is still in cache. 1×1 convolutions skip the
//! unfolding.
//!
//! Training:
//! - dW = dY · colsᵀ, with cols the unfolded input (Cin·k·k × Ho·Wo) unfolded band by band as
//!   in the forward, summed over the batch in a fixed order; for stride 1 and Cout ≤ 16, row
//!   correlations instead (no unfolding); skipped when the weight is frozen (a loss network);
//! - dX of a stride-1 layer: the "full" convolution of dY with the flipped, transposed weights,
//!   run by the forward kernels (Winograd, direct loops) through [`ConvCore::full_conv`];
//!   stride 2: col2im(Wᵀ · dY), the unfolded gradient folded back (overlaps summed).

use candle::Tensor;
use rayon::prelude::*;

use crate::ops::isa::avx2_or_plain;
use crate::ops::shared::{epilogue, in_pool, with_f32, Activation, Geometry, OutPtr};

/// Dense convolution of one padded sample: `src` (Cin, Hp, Wp) → `dst` (Cout, Ho, Wo).
///
/// # Safety
/// `dst` points to `dst_len` ≥ Cout·Ho·Wo writable floats (they may be uninitialized: the GEMM
/// writes every output without reading it) that nothing else accesses during the call.
pub(crate) unsafe fn dense(
    src: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (out, dst_len): (OutPtr, usize),
    g: &Geometry,
    act: Activation,
) {
    debug_assert!(
        src.len() >= g.cin * g.hp * g.wp,
        "input shorter than Cin·Hp·Wp"
    );
    debug_assert!(
        w.len() >= g.cout * g.cin * g.kh * g.kw,
        "weight shorter than its shape"
    );
    debug_assert!(
        dst_len >= g.cout * g.ho * g.wo,
        "output shorter than Cout·Ho·Wo"
    );
    let k = g.cin * g.kh * g.kw;
    let plane = g.ho * g.wo;
    let pointwise = g.kh == 1 && g.kw == 1 && g.stride == 1;
    let rows = band_rows(g, k);
    let bands = g.ho.div_ceil(rows);
    in_pool(|| {
        (0..bands)
            .into_par_iter()
            .for_each_init(Vec::new, |col, b| {
                let y0 = b * rows;
                let y1 = (y0 + rows).min(g.ho);
                let nb = (y1 - y0) * g.wo;
                let (rhs, rhs_rs): (&[f32], usize) = if pointwise {
                    // A 1×1 stride-1 convolution multiplies the input rows as they are.
                    (&src[y0 * g.wp..], g.hp * g.wp)
                } else {
                    unfold(src, g, y0, y1, col);
                    (col.as_slice(), nb)
                };
                debug_assert!((g.cout - 1) * plane + y0 * g.wo + nb <= dst_len);
                // SAFETY: dst rows [y0, y1) of every output channel belong to this band only; the
                // GEMM writes (read_dst = false) m = Cout rows of nb values at stride `plane`
                // starting at y0·Wo, all inside `dst` (asserted above). lhs is Cout×k (row-major weights), rhs k×nb with
                // row stride `rhs_rs` (bounds: for the pointwise case, k = Cin rows of the sample).
                unsafe {
                    gemm::gemm(
                        g.cout,
                        nb,
                        k,
                        out.at(y0 * g.wo),
                        1,
                        plane as isize,
                        false,
                        w.as_ptr(),
                        1,
                        k as isize,
                        rhs.as_ptr(),
                        1,
                        rhs_rs as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for co in 0..g.cout {
                    // SAFETY: the same band region as the GEMM wrote, one channel at a time.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(out.at(co * plane + y0 * g.wo), nb)
                    };
                    epilogue(row, bias.map_or(0.0, |b| b[co]), act);
                }
            });
    });
}

/// im2col of output rows [y0, y1): `col` (Cin·kh·kw) × ((y1 − y0)·Wo), row-major, in the
/// weight's (ci, ky, kx) order.
fn unfold(src: &[f32], g: &Geometry, y0: usize, y1: usize, col: &mut Vec<f32>) {
    let nb = (y1 - y0) * g.wo;
    let need = g.cin * g.kh * g.kw * nb;
    // Every element up to `need` is written below; only growth needs initializing.
    if col.len() < need {
        col.resize(need, 0.0);
    }
    let mut r = 0;
    for ci in 0..g.cin {
        let plane = &src[ci * g.hp * g.wp..(ci + 1) * g.hp * g.wp];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let dst = &mut col[r * nb..(r + 1) * nb];
                for (i, y) in (y0..y1).enumerate() {
                    let row = &plane[(y * g.stride + ky) * g.wp..];
                    let d = &mut dst[i * g.wo..(i + 1) * g.wo];
                    if g.stride == 1 {
                        d.copy_from_slice(&row[kx..kx + g.wo]);
                    } else {
                        for (x, v) in d.iter_mut().enumerate() {
                            *v = row[x * g.stride + kx];
                        }
                    }
                }
                r += 1;
            }
        }
    }
}

/// A VALID convolution (no padding, no bias) of (N, Cin, Hp, Wp) by (Cout, Cin, kh, kw).
pub(crate) struct ConvCore {
    /// Stride (both axes).
    pub(crate) stride: usize,
    /// The input gradient of a stride-1 layer as forward convolutions, given by the layer above
    /// (`ops::conv`, which chooses among the kernels): (dY, the layer's weight, whether it is
    /// frozen) → dX, the "full" convolution of dY by the weight transposed and flipped. `None`:
    /// col2im.
    pub(crate) full_conv: Option<FullConv>,
}

/// See [`ConvCore::full_conv`].
pub(crate) type FullConv = fn(&Tensor, &Tensor, bool) -> candle::Result<Tensor>;

/// Rows per band of `dense` and [`weight_grad`]: the unfolded band (k × rows·Wo floats)
/// stays within ~2 MiB (the GEMM blocks it for the caches itself), and there are enough bands
/// to keep every thread busy.
fn band_rows(g: &Geometry, k: usize) -> usize {
    let threads = crate::ops::shared::threads();
    let by_cache = ((512 * 1024) / (k * g.wo).max(1)).max(1);
    let by_threads = g.ho.div_ceil(4 * threads).max(1);
    by_cache.min(by_threads).min(g.ho)
}

/// [`weight_grad`] of a stride-1 layer with few output channels (the 9×9 ends and the last
/// upsampling layer of a feed-forward network): each dW[co, ci, ky, kx] is a sum of row
/// correlations, Σ over samples and rows of dY[co, y, ·] · X[ci, y + ky, kx + ·]. With Cout ≤ 16
/// the GEMM spends its time unfolding and packing the K = Cin·kh·kw rows (K ≫ Cout) rather than
/// multiplying. One task per (ci, ky), rows summed in order: deterministic.
fn weight_grad_rows(x: &[f32], dy: &[f32], n: usize, g: &Geometry) -> Vec<f32> {
    let (in_len, out_len) = g.lens();
    let (kh, kw) = (g.kh, g.kw);
    let parts: Vec<Vec<f64>> = in_pool(|| {
        (0..g.cin * kh)
            .into_par_iter()
            .map(|t| {
                let (ci, ky) = (t / kh, t % kh);
                let mut acc = vec![0f64; g.cout * kw];
                for s in 0..n {
                    let plane = &x[s * in_len + ci * g.hp * g.wp..][..g.hp * g.wp];
                    let d = &dy[s * out_len..(s + 1) * out_len];
                    correlate_rows(plane, d, g, ky, &mut acc);
                }
                acc
            })
            .collect()
    });
    let mut dw = vec![0f32; g.cout * g.cin * kh * kw];
    for (t, acc) in parts.iter().enumerate() {
        let (ci, ky) = (t / kh, t % kh);
        for co in 0..g.cout {
            for kx in 0..kw {
                dw[((co * g.cin + ci) * kh + ky) * kw + kx] = acc[co * kw + kx] as f32;
            }
        }
    }
    dw
}

avx2_or_plain! {
    /// acc[co·kw + kx] += Σ over output rows y of dY[co, y, ·] · plane[y + ky, kx + ·].
    fn correlate_rows(plane: &[f32], d: &[f32], g: &Geometry, ky: usize, acc: &mut [f64])
        = correlate_rows_in
}

#[inline(always)]
fn correlate_rows_in(plane: &[f32], d: &[f32], g: &Geometry, ky: usize, acc: &mut [f64]) {
    const L: usize = 8;
    let wo = g.wo;
    let body = wo - wo % L;
    for y in 0..g.ho {
        let xr = &plane[(y + ky) * g.wp..][..g.wp];
        for co in 0..g.cout {
            let dr = &d[(co * g.ho + y) * wo..][..wo];
            for kx in 0..g.kw {
                let xs = &xr[kx..kx + wo];
                let mut lanes = [0f32; L];
                for (a, b) in dr[..body].chunks_exact(L).zip(xs[..body].chunks_exact(L)) {
                    for i in 0..L {
                        lanes[i] += a[i] * b[i];
                    }
                }
                let mut sum: f32 = lanes.iter().sum();
                for i in body..wo {
                    sum += dr[i] * xs[i];
                }
                acc[co * g.kw + kx] += f64::from(sum);
            }
        }
    }
}

/// dW = Σ over samples of dY · colsᵀ, (Cout, Cin·kh·kw), with cols unfolded band by band (as
/// the forward does, so no whole-image im2col is ever built). Each task — a sample and a fixed
/// group of its bands — accumulates into its own partial sum, and the partials are added in
/// task order: the result does not depend on which thread ran what.
fn weight_grad(x: &[f32], dy: &[f32], n: usize, g: &Geometry) -> Vec<f32> {
    if g.stride == 1 && g.cout <= 16 && g.kh * g.kw > 1 {
        return weight_grad_rows(x, dy, n, g);
    }
    let kk = g.cin * g.kh * g.kw;
    let plane = g.ho * g.wo;
    let (in_len, out_len) = g.lens();
    let pointwise = g.kh == 1 && g.kw == 1 && g.stride == 1;
    let rows = band_rows(g, kk);
    let bands = g.ho.div_ceil(rows);
    let threads = crate::ops::shared::threads();
    let groups = (2 * threads).div_ceil(n).clamp(1, bands);
    let per_group = bands.div_ceil(groups);
    let size = g.cout * kk;
    let mut partials = vec![0f32; n * groups * size];
    in_pool(|| {
        partials
            .par_chunks_mut(size)
            .enumerate()
            .for_each_init(Vec::new, |col, (task, acc)| {
                let (s, grp) = (task / groups, task % groups);
                let src = &x[s * in_len..(s + 1) * in_len];
                let d = &dy[s * out_len..(s + 1) * out_len];
                for b in grp * per_group..((grp + 1) * per_group).min(bands) {
                    let y0 = b * rows;
                    let y1 = (y0 + rows).min(g.ho);
                    let nb = (y1 - y0) * g.wo;
                    // rhs = colsᵀ: nb × kk, element (i, j) at j·cs + i.
                    let (rhs, rhs_cs): (&[f32], usize) = if pointwise {
                        (&src[y0 * g.wp..], g.hp * g.wp)
                    } else {
                        unfold(src, g, y0, y1, col);
                        (col.as_slice(), nb)
                    };
                    debug_assert!((g.cout - 1) * plane + y0 * g.wo + nb <= d.len());
                    debug_assert!((kk - 1) * rhs_cs + nb <= rhs.len());
                    // SAFETY: `acc` is this task's Cout × kk partial (row stride kk), read and
                    // written by this task only; lhs reads Cout rows of nb values at stride
                    // `plane` from y0·Wo inside this sample's dY, rhs kk columns of nb values
                    // at stride `rhs_cs` inside `rhs` (both asserted above).
                    unsafe {
                        gemm::gemm(
                            g.cout,
                            kk,
                            nb,
                            acc.as_mut_ptr(),
                            1,
                            kk as isize,
                            true,
                            d.as_ptr().add(y0 * g.wo),
                            1,
                            plane as isize,
                            rhs.as_ptr(),
                            rhs_cs as isize,
                            1,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
            });
    });
    let mut chunks = partials.chunks_exact(size);
    let mut dw = chunks.next().map(<[f32]>::to_vec).unwrap_or_default();
    for p in chunks {
        for (a, b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    dw
}

fn geometry(x: &[usize], w: &[usize], stride: usize) -> candle::Result<Geometry> {
    if x.len() != 4 || w.len() != 4 || x[1] != w[1] {
        candle::bail!("normstyle conv: input {x:?} and weight {w:?} do not fit");
    }
    Geometry::new(x[1], (x[2], x[3]), w[0], (w[2], w[3]), stride)
        .map_err(|e| candle::Error::Msg(e.to_string()))
}

impl ConvCore {
    /// (dX, dW) of the VALID convolution of `x` by `w` for the output gradient `dy`, each only
    /// when `need` (dX, dW) asks for it.
    pub(crate) fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        (need_dx, need_dw): (bool, bool),
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = geometry(x.dims(), w.dims(), self.stride)?;
        let n = x.dim(0)?;
        let (kk, plane) = (g.cin * g.kh * g.kw, g.ho * g.wo);
        let dyc = dy.contiguous()?;
        let dw = need_dw
            .then(|| -> candle::Result<Tensor> {
                let dw = with_f32(x, |xs| with_f32(&dyc, |dys| weight_grad(xs, dys, n, &g)))??;
                Tensor::from_vec(dw, w.shape(), w.device())
            })
            .transpose()?;
        let dx = need_dx
            .then(|| -> candle::Result<Tensor> {
                if let (1, Some(full)) = (self.stride, self.full_conv) {
                    // A weight without a gradient is a frozen one.
                    return full(&dyc.detach(), w, !need_dw);
                }
                let dy = dyc.reshape((n, g.cout, plane))?;
                let wt = w.reshape((g.cout, kk))?.t()?.contiguous()?;
                let dcols = wt.broadcast_matmul(&dy)?; // (N, Cin·k·k, Ho·Wo)
                let folded = col2im(&dcols.flatten_all()?.to_vec1()?, n, &g);
                Tensor::from_vec(folded, x.shape(), x.device())
            })
            .transpose()?;
        Ok((dx, dw))
    }
}

/// The adjoint of an im2col unfolding ((Cin·kh·kw, Ho·Wo) per sample, row (c, ky, kx)): sums
/// each unfolded row back into its input positions.
fn col2im(cols: &[f32], n: usize, g: &Geometry) -> Vec<f32> {
    let (kk, plane) = (g.cin * g.kh * g.kw, g.ho * g.wo);
    let chan = g.hp * g.wp;
    let mut out = vec![0f32; n * g.cin * chan];
    // One task per (sample, input channel): its kh·kw rows only touch its own plane.
    out.par_chunks_mut(chan).enumerate().for_each(|(sc, dst)| {
        let (s, c) = (sc / g.cin, sc % g.cin);
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = (c * g.kh + ky) * g.kw + kx;
                let src = &cols[(s * kk + row) * plane..][..plane];
                for oy in 0..g.ho {
                    let base = (oy * g.stride + ky) * g.wp + kx;
                    for ox in 0..g.wo {
                        dst[base + ox * g.stride] += src[oy * g.wo + ox];
                    }
                }
            }
        }
    });
    out
}
