//! Padding for (N, C, H, W) tensors.

use candle::{Tensor, D};

use rayon::prelude::*;

use super::shared::{in_pool, zeroed, Padding};
use crate::{Error, Result};

/// Reflection padding exactly as PyTorch's `ReflectionPad2d(pad)` (mirror without repeating the
/// edge: `[a b c d]` padded by 2 → `[c b | a b c d | c b]`).
///
/// `x`: (N, C, H, W) with `pad < H` and `pad < W` → (N, C, H + 2·pad, W + 2·pad), same dtype.
pub fn reflection_pad2d(x: &Tensor, pad: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if pad >= h || pad >= w {
        return Err(Error::input(
            "reflection_pad2d",
            format!("padding {pad} needs a map larger than {pad}×{pad}, got {h}×{w}"),
        ));
    }
    if pad == 0 {
        return Ok(x.clone());
    }
    let y = x
        .contiguous()?
        .index_select(&reflect_indices(h, pad, x.device())?, D::Minus2)?;
    Ok(y.index_select(&reflect_indices(w, pad, x.device())?, D::Minus1)?)
}

/// Indices `[p, p−1, …, 1, 0, 1, …, n−1, n−2, …, n−1−p]`.
fn reflect_indices(n: usize, p: usize, device: &candle::Device) -> Result<Tensor> {
    let idx: Vec<u32> = (0..n + 2 * p)
        .map(|i| {
            let j = i as i64 - p as i64;
            let j = if j < 0 {
                -j
            } else if j >= n as i64 {
                2 * (n as i64 - 1) - j
            } else {
                j
            };
            j as u32
        })
        .collect();
    Ok(Tensor::from_vec(idx, n + 2 * p, device)?)
}

/// TensorFlow 'SAME' zero padding for a `kh`×`kw` convolution with `stride`: total padding
/// max((⌈n/s⌉ − 1)·s + k − n, 0) per axis, half before (rounded down) and the rest after.
///
/// `x`: (N, C, H, W) → padded (N, C, H', W') such that a VALID conv gives ⌈H/s⌉ × ⌈W/s⌉.
pub fn same_pad2d(x: &Tensor, (kh, kw): (usize, usize), stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (top, bottom, left, right) = Padding::Same.sides((h, w), (kh, kw), stride)?;
    let y = x.pad_with_zeros(D::Minus2, top, bottom)?;
    Ok(y.pad_with_zeros(D::Minus1, left, right)?)
}

/// Pads every (h, w) plane of `input` into `out` (resized as needed).
pub(crate) fn pad_plane_stack(
    input: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (pt, pb, pl, pr): (usize, usize, usize, usize),
    mode: Padding,
    out: &mut Vec<f32>,
) {
    let (hp, wp) = (h + pt + pb, w + pl + pr);
    // Zeroed once per call on the thread pool (a serial memset and its page faults were ~10 %
    // of Magenta 1024²); later samples of a batch overwrite the same cells and leave the zero
    // padding as it is.
    if out.len() != planes * hp * wp {
        *out = zeroed(planes * hp * wp);
    }
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let j = if i < 0 {
            -i
        } else if i >= n {
            2 * (n - 1) - i
        } else {
            i
        };
        j as usize
    };
    in_pool(|| {
        out.par_chunks_mut(hp * wp)
            .enumerate()
            .for_each(|(c, dst)| {
                let src = &input[c * h * w..(c + 1) * h * w];
                for y in 0..hp {
                    let sy = y as isize - pt as isize;
                    let row = &mut dst[y * wp..(y + 1) * wp];
                    let sy = match mode {
                        Padding::Reflect(_) => reflect(sy, h),
                        _ if sy < 0 || sy >= h as isize => continue, // zero row
                        _ => sy as usize,
                    };
                    let s = &src[sy * w..(sy + 1) * w];
                    row[pl..pl + w].copy_from_slice(s);
                    if matches!(mode, Padding::Reflect(_)) {
                        for x in (0..pl).chain(pl + w..wp) {
                            row[x] = s[reflect(x as isize - pl as isize, w)];
                        }
                    }
                }
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn reflection_matches_pytorch_semantics() {
        let x = Tensor::arange(0f32, 4.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 1, 4))
            .unwrap();
        let x = x.repeat((1, 1, 3, 1)).unwrap();
        let y = reflection_pad2d(&x, 2).unwrap();
        assert_eq!(y.dims(), &[1, 1, 7, 8]);
        let row: Vec<f32> = y
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(row, vec![2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
        assert!(reflection_pad2d(&x, 3).is_err());
    }

    #[test]
    fn same_padding_gives_ceil_output() {
        let x = Tensor::ones((1, 1, 256, 255), candle::DType::F32, &Device::Cpu).unwrap();
        let y = same_pad2d(&x, (3, 3), 2).unwrap();
        assert_eq!(y.dims(), &[1, 1, 257, 257]); // 256: (0, 1); 255: (1, 1)
        let y = same_pad2d(&x, (3, 3), 1).unwrap();
        assert_eq!(y.dims(), &[1, 1, 258, 257]);
    }
}
