//! Depthwise convolution (groups = channels, one kh × kw filter each: the MobileNet style
//! predictor) on a padded sample, parallel over channels; the loops compiled for AVX2 when the
//! CPU has it. [`DepthwiseCore`] is its backward, which the training op (`ops::layer_op`) runs so
//! that a loss can flow back through the predictor (training with it as the loss network).

use candle::Tensor;
use rayon::prelude::*;

use crate::ops::isa::avx2_or_plain;
use crate::ops::shared::{epilogue, in_pool, Activation, Geometry};

/// Depthwise convolution (one kh×kw filter per channel), parallel over channels.
pub(crate) fn depthwise(
    src: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    dst: &mut [f32],
    g: &Geometry,
    act: Activation,
) {
    in_pool(|| {
        dst.par_chunks_mut(g.ho * g.wo)
            .enumerate()
            .for_each(|(c, out)| depthwise_plane(out, src, w, bias, g, act, c));
    });
}

avx2_or_plain! {
    /// One channel of [`depthwise`]; AVX2 when the CPU has it (same operations, same results).
    fn depthwise_plane(
        out: &mut [f32],
        src: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        g: &Geometry,
        act: Activation,
        c: usize,
    ) = depthwise_plane_in
}

#[inline(always)]
fn depthwise_plane_in(
    out: &mut [f32],
    src: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    act: Activation,
    c: usize,
) {
    let kk = g.kh * g.kw;
    let plane = &src[c * g.hp * g.wp..(c + 1) * g.hp * g.wp];
    let f = &w[c * kk..(c + 1) * kk];
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let wv = f[ky * g.kw + kx];
            for y in 0..g.ho {
                let row = &plane[(y * g.stride + ky) * g.wp + kx..];
                let o = &mut out[y * g.wo..(y + 1) * g.wo];
                if g.stride == 1 {
                    for (o, x) in o.iter_mut().zip(&row[..g.wo]) {
                        *o += wv * x;
                    }
                } else {
                    for (xo, o) in o.iter_mut().enumerate() {
                        *o += wv * row[xo * g.stride];
                    }
                }
            }
        }
    }
    epilogue(out, bias.map_or(0.0, |b| b[c]), act);
}

/// The backward of a VALID depthwise convolution (no padding, no bias) of (N, C, Hp, Wp) by
/// (C, 1, kh, kw): dX scatters each output gradient back through its channel's filter, dW correlates
/// the input with the output gradient per channel (summed over the batch).
pub(crate) struct DepthwiseCore {
    /// Stride (both axes).
    pub(crate) stride: usize,
}

fn depthwise_geometry(x: &[usize], w: &[usize], stride: usize) -> candle::Result<Geometry> {
    if x.len() != 4 || w.len() != 4 || w[0] != x[1] || w[1] != 1 {
        candle::bail!("normstyle depthwise: input {x:?} and weight {w:?} do not fit");
    }
    // Per group: one input and one output channel; the kernels index planes by channel.
    Geometry::new(1, (x[2], x[3]), x[1], (w[2], w[3]), stride)
        .map_err(|e| candle::Error::Msg(e.to_string()))
}

impl DepthwiseCore {
    /// (dX, dW) of the VALID depthwise convolution of `x` by `w` for the output gradient `dy`,
    /// each only when `need` (dX, dW) asks for it.
    pub(crate) fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        (need_dx, need_dw): (bool, bool),
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = depthwise_geometry(x.dims(), w.dims(), self.stride)?;
        let (n, c, s) = (x.dim(0)?, g.cout, g.stride);
        let (kk, plane_in, plane_out) = (g.kh * g.kw, g.hp * g.wp, g.ho * g.wo);
        let dy: Vec<f32> = dy.flatten_all()?.to_vec1()?;
        let wv: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let dx = need_dx
            .then(|| -> candle::Result<Tensor> {
                let mut dx = vec![0f32; n * c * plane_in];
                // One task per (sample, channel) plane: it touches its own plane only.
                in_pool(|| {
                    dx.par_chunks_mut(plane_in).enumerate().for_each(|(p, d)| {
                        let ch = p % c;
                        let f = &wv[ch * kk..(ch + 1) * kk];
                        let g_out = &dy[p * plane_out..(p + 1) * plane_out];
                        // Tap by tap, a scaled copy of each gradient row: contiguous (and
                        // vectorized) at stride 1.
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let fv = f[ky * g.kw + kx];
                                for (oy, gr) in g_out.chunks_exact(g.wo).enumerate() {
                                    let row = &mut d[(oy * s + ky) * g.wp + kx..];
                                    if s == 1 {
                                        for (o, &v) in row[..g.wo].iter_mut().zip(gr) {
                                            *o += fv * v;
                                        }
                                    } else {
                                        for (ox, &v) in gr.iter().enumerate() {
                                            row[ox * s] += fv * v;
                                        }
                                    }
                                }
                            }
                        }
                    })
                });
                Tensor::from_vec(dx, x.shape(), x.device())
            })
            .transpose()?;
        let dw = need_dw
            .then(|| -> candle::Result<Tensor> {
                let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
                let mut dw = vec![0f32; c * kk];
                in_pool(|| {
                    dw.par_chunks_mut(kk).enumerate().for_each(|(ch, d)| {
                        // Accumulated in f64 over the batch and the map, rounded once.
                        let mut acc = vec![0f64; kk];
                        for b in 0..n {
                            let p = b * c + ch;
                            let xs = &xv[p * plane_in..(p + 1) * plane_in];
                            let g_out = &dy[p * plane_out..(p + 1) * plane_out];
                            for (t, a) in acc.iter_mut().enumerate() {
                                let (ky, kx) = (t / g.kw, t % g.kw);
                                let mut sum = 0f64;
                                for oy in 0..g.ho {
                                    let row = &xs[(oy * s + ky) * g.wp + kx..];
                                    for ox in 0..g.wo {
                                        sum += f64::from(row[ox * s])
                                            * f64::from(g_out[oy * g.wo + ox]);
                                    }
                                }
                                *a += sum;
                            }
                        }
                        for (d, a) in d.iter_mut().zip(acc) {
                            *d = a as f32;
                        }
                    })
                });
                Tensor::from_vec(dw, w.shape(), w.device())
            })
            .transpose()?;
        Ok((dx, dw))
    }
}
