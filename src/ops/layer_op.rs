//! A whole convolution layer — [upsampling,] padding, convolution, bias, activation — as one
//! Candle op with a backward, for training on the CPU kernels.
//!
//! Recorded op by op, one layer is five to eight graph nodes (an index-select padding whose
//! backward is an index-add, a broadcast bias add and its reduction, the activation and its
//! mask), each a pass over the activations and a fresh buffer. As one op the forward runs on
//! the inference kernels (padding read on the fly, bias and activation in the epilogue), and the
//! backward is one pass for the activation's mask and the bias gradient, the convolution's own
//! backward ([`ConvCore::backward`], [`DepthwiseCore::backward`]), and one pass folding the
//! padded (and upsampled) input gradient back onto the input.

use candle::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::conv::{conv_output, full_conv, input_grad3x3, upsample_output, WinogradWeights};
use super::isa::avx2_or_plain;
use super::kernels::{depthwise::DepthwiseCore, gemm::ConvCore};
use super::pad::pad_plane_stack;
use super::shared::{in_pool, sum_f64, with_f32, Activation, ConvSpec, Padding};

/// `act(conv(pad(up(x)), w) + b)`: x (N, Cin, H, W) f32 CPU, w (Cout, Cin/groups, kh, kw),
/// b (Cout) → (N, Cout, Ho, Wo). `up` is nearest ×2 (only with a 3×3 kernel and reflection
/// padding 1, as [`upsample_conv3x3`]); groups are 1 or depthwise.
pub(crate) struct LayerOp {
    pub(crate) spec: ConvSpec,
    pub(crate) upsample: bool,
    /// The weight's Winograd transform made at load (a frozen loss network's), if any.
    pub(crate) winograd: Option<WinogradWeights>,
    /// x, w, b as given to `apply_op3`, detached: the same storage without the graph, so the
    /// forward runs the inference kernels on them in place (no copy of activations or weights).
    pub(crate) args: [Tensor; 3],
}

impl LayerOp {
    /// The op for contiguous `x`, `w`, `b` (the tensors then passed to `apply_op3`).
    pub(crate) fn new(
        spec: ConvSpec,
        upsample: bool,
        winograd: Option<WinogradWeights>,
        [x, w, b]: [&Tensor; 3],
    ) -> LayerOp {
        LayerOp {
            spec,
            upsample,
            winograd,
            args: [x.detach(), w.detach(), b.detach()],
        }
    }

    fn depthwise(&self, w: &Tensor) -> bool {
        self.spec.groups > 1 && w.dim(1).is_ok_and(|c| c == 1)
    }

    /// The padding the convolution itself sees (after upsampling).
    fn padding(&self) -> Padding {
        if self.upsample {
            Padding::Reflect(1)
        } else {
            self.spec.padding
        }
    }
}

impl CustomOp3 for LayerOp {
    fn name(&self) -> &'static str {
        "normstyle-conv-layer"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        l1: &Layout,
        _: &CpuStorage,
        l2: &Layout,
        _: &CpuStorage,
        l3: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let [x, w, b] = &self.args;
        // The storages are the args' own (see `LayerOp::new`); only their shapes are checked.
        for (l, t) in [l1, l2, l3].into_iter().zip(&self.args) {
            if t.dims() != l.dims() {
                candle::bail!("normstyle conv layer: called on other tensors than it was made for");
            }
        }
        let prepared = self.winograd.as_ref().map(|p| p.for_view(w));
        // Detached tensors record nothing: these calls take the inference kernels.
        let y = if self.upsample {
            upsample_output(x, w, Some(b), self.spec.act, prepared.as_ref())?
        } else {
            conv_output(x, w, Some(b), self.spec, prepared.as_ref())?
        };
        let (values, shape) = y.into_host()?;
        Ok((CpuStorage::F32(values), shape.into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _t = crate::profile::scope("backward: conv layers");
        let (need_dx, need_dw, need_db) = (x.track_op(), w.track_op(), b.track_op());
        let (n, cin, h, wd) = x.dims4()?;
        let (cout, _, kh, kw) = w.dims4()?;
        let (_, _, ho, wo) = y.dims4()?;
        let g = with_f32(dy, |dy| with_f32(y, |y| act_grad(dy, y, self.spec.act)))???;
        let db = need_db
            .then(|| Tensor::from_vec(channel_sums(&g, cout, ho * wo), cout, b.device()))
            .transpose()?;
        if !(need_dx || need_dw) {
            return Ok((None, None, db));
        }
        let (hu, wu) = if self.upsample {
            (2 * h, 2 * wd)
        } else {
            (h, wd)
        };
        let padding = self.padding();
        let sides = padding
            .sides((hu, wu), (kh, kw), self.spec.stride)
            .map_err(candle::Error::wrap)?;
        let (pt, pb, pl, pr) = sides;
        let (hp, wp) = (hu + pt + pb, wu + pl + pr);
        // The padded input is read for dW only; otherwise a stand-in of its shape.
        let xp = if need_dw {
            let mut xp = Vec::new();
            with_f32(x, |xv| {
                if self.upsample {
                    let xu = upsample_host(xv, n * cin, (h, wd));
                    pad_plane_stack(&xu, n * cin, (hu, wu), sides, padding, &mut xp);
                } else {
                    pad_plane_stack(xv, n * cin, (hu, wu), sides, padding, &mut xp);
                }
            })?;
            Tensor::from_vec(xp, (n, cin, hp, wp), &Device::Cpu)?
        } else {
            Tensor::zeros(1, DType::F32, &Device::Cpu)?.broadcast_as((n, cin, hp, wp))?
        };
        let g = Tensor::from_vec(g, (n, cout, ho, wo), &Device::Cpu)?;
        let w = w.detach();
        // A stride-1 3×3 layer padded by one pixel (reflection or zeros) gets dX of its
        // (upsampled) input straight from `input_grad3x3`: no padded gradient to fold.
        // `direct`: Some(whether the padding reflects).
        let direct = match padding {
            Padding::Reflect(1) => Some(true),
            Padding::Same => Some(false),
            _ => None,
        }
        .filter(|_| {
            need_dx
                && !self.depthwise(&w)
                && self.spec.stride == 1
                && (kh, kw) == (3, 3)
                && sides == (1, 1, 1, 1)
        });
        let (dxp, dw) = if self.depthwise(&w) {
            DepthwiseCore {
                stride: self.spec.stride,
            }
            .backward(&xp, &w, &g, (need_dx, need_dw))?
        } else {
            ConvCore {
                stride: self.spec.stride,
                full_conv: Some(full_conv),
            }
            .backward(&xp, &w, &g, (need_dx && direct.is_none(), need_dw))?
        };
        // The gradient of the map the convolution read: (hu, wu) with no padding left, or
        // padded by `sides`.
        let (grid, (gh, gw), grid_sides) = match direct {
            Some(reflect) => (
                Some(input_grad3x3(&g, &w, !need_dw, reflect)?),
                (hu, wu),
                (0, 0, 0, 0),
            ),
            None => (dxp, (hp, wp), sides),
        };
        let dx = grid
            .map(|d| -> candle::Result<Tensor> {
                if (gh, gw) == (h, wd) && !self.upsample {
                    return Ok(d);
                }
                let folded = with_f32(&d, |d| {
                    fold(
                        d,
                        n * cin,
                        (gh, gw),
                        (h, wd),
                        grid_sides,
                        padding,
                        self.upsample,
                    )
                })?;
                Tensor::from_vec(folded, (n, cin, h, wd), x.device())
            })
            .transpose()?;
        Ok((dx, dw, db))
    }
}

/// dY through the activation, whose output is `y`: ReLU passes where y > 0, ReLU6 where
/// 0 < y < 6 (PyTorch's masks).
fn act_grad(dy: &[f32], y: &[f32], act: Activation) -> candle::Result<Vec<f32>> {
    if dy.len() != y.len() {
        candle::bail!("normstyle conv layer: gradient and output sizes differ");
    }
    let mut g = vec![0f32; dy.len()];
    const CHUNK: usize = 1 << 16;
    in_pool(|| {
        g.par_chunks_mut(CHUNK)
            .zip(dy.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
            .for_each(|(g, (dy, y))| mask(g, dy, y, act))
    });
    Ok(g)
}

avx2_or_plain! {
    /// g = dy where the activation passed at output y, else 0.
    fn mask(g: &mut [f32], dy: &[f32], y: &[f32], act: Activation) = mask_in
}

#[inline(always)]
fn mask_in(g: &mut [f32], dy: &[f32], y: &[f32], act: Activation) {
    // A bit mask, not a branch: the activations' signs are as good as random.
    for ((g, &d), &v) in g.iter_mut().zip(dy).zip(y) {
        let pass = match act {
            Activation::None => true,
            Activation::Relu => v > 0.0,
            Activation::Relu6 => (v > 0.0) & (v < 6.0),
        };
        *g = f32::from_bits(d.to_bits() & u32::from(pass).wrapping_neg());
    }
}

/// Σ over samples and positions per channel of g (N, C, plane), accumulated in f64 in a fixed
/// order.
fn channel_sums(g: &[f32], c: usize, plane: usize) -> Vec<f32> {
    let n = g.len() / (c * plane).max(1);
    in_pool(|| {
        (0..c)
            .into_par_iter()
            .map(|ch| {
                (0..n)
                    .map(|s| sum_f64(&g[(s * c + ch) * plane..][..plane]))
                    .sum::<f64>() as f32
            })
            .collect()
    })
}

/// Nearest ×2 upsampling of `planes` (h, w) planes.
fn upsample_host(x: &[f32], planes: usize, (h, w): (usize, usize)) -> Vec<f32> {
    let mut out = vec![0f32; planes * 4 * h * w];
    in_pool(|| {
        out.par_chunks_mut(4 * h * w)
            .zip(x.par_chunks(h * w))
            .for_each(|(o, p)| {
                for (y, row) in p.chunks_exact(w).enumerate() {
                    for dy in 0..2 {
                        let dst = &mut o[(2 * y + dy) * 2 * w..][..2 * w];
                        for (pair, &v) in dst.chunks_exact_mut(2).zip(row) {
                            pair[0] = v;
                            pair[1] = v;
                        }
                    }
                }
            })
    });
    out
}

/// The adjoint of `pad(up(x))`: each padded (hp, wp) gradient plane summed back onto the
/// (h, w) input plane — reflected borders onto the pixels they copied, zero padding dropped,
/// each upsampled 2×2 block onto its source pixel.
fn fold(
    d: &[f32],
    planes: usize,
    (hp, wp): (usize, usize),
    (h, w): (usize, usize),
    (pt, _, pl, _): (usize, usize, usize, usize),
    padding: Padding,
    upsample: bool,
) -> Vec<f32> {
    let up = if upsample { 2 } else { 1 };
    let (hu, wu) = (h * up, w * up);
    // Padded index → input index (None: zero padding).
    let map = |i: usize, before: usize, n: usize| -> Option<usize> {
        let j = i as isize - before as isize;
        let n = n as isize;
        let j = match padding {
            Padding::Reflect(_) if j < 0 => -j,
            Padding::Reflect(_) if j >= n => 2 * (n - 1) - j,
            _ if j < 0 || j >= n => return None,
            _ => j,
        };
        Some(j as usize / up)
    };
    let rows: Vec<Option<usize>> = (0..hp).map(|i| map(i, pt, hu)).collect();
    let cols: Vec<Option<usize>> = (0..wp).map(|i| map(i, pl, wu)).collect();
    let mut out = vec![0f32; planes * h * w];
    in_pool(|| {
        out.par_chunks_mut(h * w)
            .zip(d.par_chunks(hp * wp))
            .for_each(|(o, p)| {
                for (src, row) in p.chunks_exact(wp).zip(&rows) {
                    let Some(r) = row else { continue };
                    let dst = &mut o[r * w..(r + 1) * w];
                    for (&v, col) in src.iter().zip(&cols) {
                        if let Some(c) = col {
                            dst[*c] += v;
                        }
                    }
                }
            })
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_is_the_adjoint_of_reflect_padding_and_upsampling() {
        // <pad(up(x)), d> = <x, fold(d)> for random x, d.
        let mut next = crate::ops::shared::centered_stream(7);
        for (upsample, padding, h, w) in [
            (false, Padding::Reflect(4), 6, 7),
            (true, Padding::Reflect(1), 3, 5),
            (false, Padding::Same, 5, 6),
            (false, Padding::None, 4, 4),
        ] {
            let up = if upsample { 2 } else { 1 };
            let (hu, wu) = (h * up, w * up);
            let x: Vec<f32> = (0..2 * h * w).map(|_| next()).collect();
            let xu = if upsample {
                upsample_host(&x, 2, (h, w))
            } else {
                x.clone()
            };
            let sides = padding.sides((hu, wu), (3, 3), 2).unwrap();
            let (hp, wp) = (hu + sides.0 + sides.1, wu + sides.2 + sides.3);
            let mut xp = Vec::new();
            pad_plane_stack(&xu, 2, (hu, wu), sides, padding, &mut xp);
            let d: Vec<f32> = (0..xp.len()).map(|_| next()).collect();
            let lhs: f64 = xp.iter().zip(&d).map(|(a, b)| f64::from(a * b)).sum();
            let f = fold(&d, 2, (hp, wp), (h, w), sides, padding, upsample);
            let rhs: f64 = x.iter().zip(&f).map(|(a, b)| f64::from(a * b)).sum();
            assert!(
                (lhs - rhs).abs() < 1e-4,
                "{padding:?} up={upsample}: {lhs} vs {rhs}"
            );
        }
    }
}
