//! Pooling and upsampling for (N, C, H, W) tensors.

use std::mem::MaybeUninit;

use candle::Tensor;
use rayon::prelude::*;

use super::avx2_or_plain;
use crate::{Error, Result};

/// 2×2 max pooling with stride 2 and `ceil_mode=True`, exactly as PyTorch's
/// `MaxPool2d(2, 2, 0, ceil_mode=True)`: an odd last row/column forms a window of its own.
///
/// `x`: (N, C, H, W) → (N, C, ⌈H/2⌉, ⌈W/2⌉), same dtype.
pub fn max_pool2x2_ceil(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h == 0 || w == 0 {
        return Err(Error::input(
            "max_pool2x2_ceil",
            format!("empty {h}×{w} map"),
        ));
    }
    // Training on the CPU: one op with its own backward (Candle's max-pool backward is an
    // upsampling, a comparison, an average pool and products, each a pass and a buffer).
    if x.track_op() && super::conv::own_kernels(x) {
        return Ok(x.contiguous()?.apply_op1(MaxPool2x2Ceil)?);
    }
    // Repeating the last row/column does not change the max of a window that holds it alone.
    let x = if h % 2 == 1 {
        x.pad_with_same(2, 0, 1)?
    } else {
        x.clone()
    };
    let x = if w % 2 == 1 {
        x.pad_with_same(3, 0, 1)?
    } else {
        x
    };
    Ok(x.max_pool2d(2)?)
}

/// [`max_pool2x2_ceil`] as a Candle op: the gradient of each window goes to its first maximum
/// in row-major order (PyTorch's choice of index).
struct MaxPool2x2Ceil;

/// The window of output (oy, ox) in an (h, w) plane: rows and columns, clipped (ceil mode).
fn window(oy: usize, ox: usize, (h, w): (usize, usize)) -> impl Iterator<Item = usize> {
    (2 * oy..(2 * oy + 2).min(h))
        .flat_map(move |y| (2 * ox..(2 * ox + 2).min(w)).map(move |x| y * w + x))
}

/// The index (in its plane) of the first maximum of each window of `p`.
fn argmax_windows(p: &[f32], (h, w): (usize, usize)) -> impl Iterator<Item = usize> + '_ {
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    (0..ho * wo).map(move |o| {
        let mut best = usize::MAX;
        for i in window(o / wo, o % wo, (h, w)) {
            if best == usize::MAX || p[i] > p[best] {
                best = i;
            }
        }
        best
    })
}

impl candle::CustomOp1 for MaxPool2x2Ceil {
    fn name(&self) -> &'static str {
        "normstyle-max-pool-2x2-ceil"
    }

    fn cpu_fwd(
        &self,
        s: &candle::CpuStorage,
        l: &candle::Layout,
    ) -> candle::Result<(candle::CpuStorage, candle::Shape)> {
        let [n, c, h, w] = l.dims() else {
            candle::bail!("max pool: expected (N, C, H, W), got {:?}", l.dims());
        };
        let (n, c, h, w) = (*n, *c, *h, *w);
        let x = super::shared::contiguous_f32(s, l)?;
        let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
        let mut out = vec![0f32; n * c * ho * wo];
        super::in_pool(|| {
            out.par_chunks_mut(ho * wo)
                .zip(x.par_chunks(h * w))
                .for_each(|(o, p)| {
                    for (dst, i) in o.iter_mut().zip(argmax_windows(p, (h, w))) {
                        *dst = p[i];
                    }
                })
        });
        Ok((
            candle::CpuStorage::F32(out),
            candle::Shape::from((n, c, ho, wo)),
        ))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle::Result<Option<Tensor>> {
        let (n, c, h, w) = x.dims4()?;
        let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
        let mut dx = vec![0f32; n * c * h * w];
        super::shared::with_f32(x, |xv| {
            super::shared::with_f32(dy, |dyv| {
                super::in_pool(|| {
                    dx.par_chunks_mut(h * w)
                        .zip(xv.par_chunks(h * w))
                        .zip(dyv.par_chunks(ho * wo))
                        .for_each(|((d, p), g)| {
                            for (&gv, i) in g.iter().zip(argmax_windows(p, (h, w))) {
                                d[i] += gv;
                            }
                        })
                })
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// Nearest-neighbour ×2 upsampling (PyTorch `F.interpolate(scale_factor=2, mode='nearest')`).
///
/// `x`: (N, C, H, W) → (N, C, 2H, 2W), same dtype.
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    // Candle's op on other devices and dtypes, and when a graph is recorded (it has a backward).
    if !super::conv::own_kernels(x) || x.track_op() {
        return Ok(x.upsample_nearest2d(2 * h, 2 * w)?);
    }
    // CPU: each output row pair from one input row, planes in parallel (Candle's is serial),
    // read in place and written once (no copy of the input, no zeroing of the output).
    let x = x.contiguous()?;
    let len = n * c * h * w;
    let mut out: Vec<f32> = Vec::with_capacity(4 * len);
    {
        let (storage, layout) = x.storage_and_layout();
        let candle::Storage::Cpu(cpu) = &*storage else {
            return Err(Error::input("upsample_nearest2x", "expected a CPU tensor"));
        };
        let start = layout.start_offset();
        let v = &cpu.as_slice::<f32>()?[start..start + len];
        crate::ops::in_pool(|| {
            out.spare_capacity_mut()[..4 * len]
                .par_chunks_mut(4 * h * w)
                .zip(v.par_chunks(h * w))
                .for_each(|(o, p)| upsample_plane(o, p, w))
        });
    }
    // SAFETY: every plane wrote all 4·h·w of its outputs.
    unsafe { out.set_len(4 * len) };
    Ok(Tensor::from_vec(out, (n, c, 2 * h, 2 * w), x.device())?)
}

avx2_or_plain! {
    /// One plane `p` (h × w) → `o` (2h × 2w); AVX2 when the CPU has it.
    fn upsample_plane(o: &mut [MaybeUninit<f32>], p: &[f32], w: usize) = upsample_plane_in
}

#[inline(always)]
fn upsample_plane_in(o: &mut [MaybeUninit<f32>], p: &[f32], w: usize) {
    for (rows, src) in o.chunks_exact_mut(4 * w).zip(p.chunks_exact(w)) {
        let (top, bottom) = rows.split_at_mut(2 * w);
        for ((t, b), &val) in top
            .chunks_exact_mut(2)
            .zip(bottom.chunks_exact_mut(2))
            .zip(src)
        {
            t[0].write(val);
            t[1].write(val);
            b[0].write(val);
            b[1].write(val);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn ceil_mode_pool_keeps_the_odd_edge() {
        let x = Tensor::arange(0f32, 15.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 5))
            .unwrap();
        let y = max_pool2x2_ceil(&x).unwrap();
        assert_eq!(y.dims(), &[1, 1, 2, 3]);
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![6.0, 8.0, 9.0, 11.0, 13.0, 14.0]);
        let one = Tensor::ones((1, 2, 1, 1), candle::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(max_pool2x2_ceil(&one).unwrap().dims(), &[1, 2, 1, 1]);
    }

    /// The op (taken when a graph is recorded) gives Candle's values and sends each window's
    /// gradient to its first maximum, odd edges included.
    #[test]
    fn pooling_op_matches_candle_forward_and_backward() {
        let dev = Device::Cpu;
        // Ties in the first window (3 = 3): the first in row-major order gets the gradient.
        let v = [
            3f32, 3.0, 1.0, 5.0, 0.0, 2.0, 1.0, 0.0, 7.0, 9.0, 8.0, 4.0, 6.0, 6.0, 2.0,
        ];
        let x = candle::Var::from_slice(&v, (1, 1, 3, 5), &dev).unwrap();
        let y = max_pool2x2_ceil(&x).unwrap();
        let plain = max_pool2x2_ceil(&x.as_tensor().detach()).unwrap();
        let vals = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(vals(&y), vals(&plain));
        assert_eq!(vals(&y), [3.0, 7.0, 9.0, 8.0, 6.0, 2.0]);
        let g = Tensor::new(&[[[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]]]], &dev).unwrap();
        let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let dx = vals(grads.get(&x).unwrap());
        #[rustfmt::skip]
        let want = [1f32, 0.0, 0.0, 0.0, 0.0,
                    0.0, 0.0, 0.0, 2.0, 3.0,
                    4.0, 0.0, 5.0, 0.0, 6.0];
        assert_eq!(dx, want);
    }

    #[test]
    fn nearest_upsampling_repeats_each_pixel() {
        let x = Tensor::new(&[[[[1f32, 2.0], [3.0, 4.0]]]], &Device::Cpu).unwrap();
        let y: Vec<f32> = upsample_nearest2x(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(
            y,
            vec![1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]
        );
    }
}
