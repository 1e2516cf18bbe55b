//! Depthwise convolution (groups = channels, one kh × kw filter each: the MobileNet style
//! predictor) on a padded sample, parallel over channels; the loops compiled for AVX2 when the
//! CPU has it.

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
