//! Training through the fast convolution: the CPU GEMM convolution as a Candle custom op with a
//! backward, so a network of [`conv2d_fused`](super::conv2d_fused) layers (an AdaIN decoder)
//! trains with candle-nn's optimizers.
//!
//! Forward: the padded input (padding as tensor ops, differentiable) goes through the same
//! banded im2col + GEMM as inference; bias and activation follow as tensor ops. Backward, per
//! sample, both on the GEMM path:
//! - dW = dY · colsᵀ, with cols the unfolded input (Cin·k·k × Ho·Wo), summed over the batch;
//!   skipped when the weight is not a variable (a frozen encoder);
//! - dX = col2im(Wᵀ · dY), the unfolded gradient folded back (overlaps summed).

use candle::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::conv::{
    bias_act, candle_path, dense, pad_input, Activation, ConvSpec, Geometry, OutPtr,
};
use crate::Result;

/// `conv2d_fused` for f32 CPU tensors that record a graph (groups = 1).
pub(super) fn conv2d_train(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: ConvSpec,
) -> Result<Tensor> {
    let xp = pad_input(x, weight.dims()[2], spec)?;
    let (_, _, hp, wp) = xp.dims4()?;
    if hp < weight.dims()[2] || wp < weight.dims()[3] {
        // Let Candle's path report the size error in its words.
        return candle_path(x, weight, bias, spec);
    }
    let core = ConvCore {
        stride: spec.stride,
    };
    let y = xp.contiguous()?.apply_op2(&weight.contiguous()?, core)?;
    bias_act(y, bias, spec.act)
}

/// A VALID convolution (no padding, no bias) of (N, Cin, Hp, Wp) by (Cout, Cin, kh, kw).
struct ConvCore {
    stride: usize,
}

fn geometry(x: &[usize], w: &[usize], stride: usize) -> Geometry {
    let (cin, hp, wp) = (x[1], x[2], x[3]);
    let (cout, kh, kw) = (w[0], w[2], w[3]);
    Geometry {
        cin,
        hp,
        wp,
        cout,
        kh,
        kw,
        stride,
        ho: (hp - kh) / stride + 1,
        wo: (wp - kw) / stride + 1,
    }
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> candle::Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => candle::bail!("normstyle conv: expected a contiguous input"),
    }
}

impl CustomOp2 for ConvCore {
    fn name(&self) -> &'static str {
        "normstyle-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let (xd, wd) = (l1.dims(), l2.dims());
        if xd.len() != 4 || wd.len() != 4 || xd[1] != wd[1] || xd[2] < wd[2] || xd[3] < wd[3] {
            candle::bail!("normstyle conv: input {xd:?} and weight {wd:?} do not fit");
        }
        let (x, w) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let g = geometry(xd, wd, self.stride);
        let n = xd[0];
        let (in_len, out_len) = (g.cin * g.hp * g.wp, g.cout * g.ho * g.wo);
        let mut out = vec![0f32; n * out_len];
        for s in 0..n {
            let dst = &mut out[s * out_len..(s + 1) * out_len];
            // SAFETY: `dst` is this sample's Cout·Ho·Wo outputs, borrowed for the call.
            unsafe {
                dense(
                    &x[s * in_len..(s + 1) * in_len],
                    w,
                    None,
                    (OutPtr(dst.as_mut_ptr()), out_len),
                    &g,
                    Activation::None,
                )
            };
        }
        Ok((CpuStorage::F32(out), Shape::from((n, g.cout, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = geometry(x.dims(), w.dims(), self.stride);
        let n = x.dim(0)?;
        let (kk, plane) = (g.cin * g.kh * g.kw, g.ho * g.wo);
        let dy = dy.contiguous()?.reshape((n, g.cout, plane))?;
        let cols = Tensor::from_vec(
            im2col(&x.flatten_all()?.to_vec1()?, n, &g),
            (n, kk, plane),
            x.device(),
        )?;
        let dw = w
            .track_op()
            .then(|| -> candle::Result<Tensor> {
                let per_sample = dy.matmul(&cols.transpose(1, 2)?)?; // (N, Cout, Cin·k·k)
                per_sample.sum(0)?.reshape(w.shape())
            })
            .transpose()?;
        let dx = x
            .track_op()
            .then(|| -> candle::Result<Tensor> {
                let wt = w.reshape((g.cout, kk))?.t()?.contiguous()?;
                let dcols = wt.broadcast_matmul(&dy)?; // (N, Cin·k·k, Ho·Wo)
                let folded = col2im(&dcols.flatten_all()?.to_vec1()?, n, &g);
                Tensor::from_vec(folded, x.shape(), x.device())
            })
            .transpose()?;
        Ok((dx, dw))
    }
}

/// Unfolds each sample (Cin, Hp, Wp) into (Cin·kh·kw, Ho·Wo), row (c, ky, kx).
fn im2col(x: &[f32], n: usize, g: &Geometry) -> Vec<f32> {
    let (kk, plane) = (g.cin * g.kh * g.kw, g.ho * g.wo);
    let in_len = g.cin * g.hp * g.wp;
    let mut out = vec![0f32; n * kk * plane];
    out.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(row, dst)| {
            let (s, r) = (row / kk, row % kk);
            let (c, ky, kx) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
            let src = &x[s * in_len + c * g.hp * g.wp..];
            for oy in 0..g.ho {
                let line = &src[(oy * g.stride + ky) * g.wp + kx..];
                for ox in 0..g.wo {
                    dst[oy * g.wo + ox] = line[ox * g.stride];
                }
            }
        });
    out
}

/// The adjoint of [`im2col`]: sums each unfolded row back into its input positions.
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

#[cfg(test)]
mod tests {
    use candle::{Device, Tensor, Var};

    use crate::ops::{conv2d_fused, Activation, ConvSpec, Padding};

    /// Gradients through the fast op equal Candle's own conv2d backward (same padding, bias and
    /// ReLU written with Candle ops), for stride 1 and 2, reflection and SAME padding.
    #[test]
    fn backward_matches_candle() {
        let dev = Device::Cpu;
        for (stride, padding, k) in [
            (1, Padding::Reflect(1), 3),
            (2, Padding::Same, 3),
            (1, Padding::None, 1),
            (1, Padding::Reflect(4), 9),
        ] {
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5, 11, 10), &dev).unwrap()).unwrap();
            let w =
                Var::from_tensor(&Tensor::randn(0f32, 0.3, (7, 5, k, k), &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, 7, &dev).unwrap()).unwrap();
            let spec = ConvSpec {
                stride,
                padding,
                act: Activation::Relu,
                ..ConvSpec::default()
            };
            let ours = conv2d_fused(&x, &w, Some(&b), spec).unwrap();
            let theirs = super::candle_path(&x, &w, Some(&b), spec).unwrap();
            let r = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g1 = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&theirs * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let diff = |a: &Tensor, b: &Tensor| -> f32 {
                let m = b
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    .max(1e-6);
                (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    / m
            };
            assert!(diff(&ours, &theirs) < 1e-5, "{stride} {padding:?}: forward");
            for (name, v) in [("x", &x), ("w", &w), ("b", &b)] {
                let d = diff(g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(d < 1e-5, "{stride} {padding:?} d{name}: {d}");
            }
        }
    }

    /// A weight that is not a variable gets no gradient (a frozen encoder).
    #[test]
    fn frozen_weights_get_no_gradient() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 3, 8, 8), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 0.3, (4, 3, 3, 3), &dev).unwrap();
        let spec = ConvSpec {
            padding: Padding::Reflect(1),
            ..ConvSpec::default()
        };
        let y = conv2d_fused(&x, &w, None, spec).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(&x).is_some());
        assert!(g.get(&w).is_none());
    }
}
