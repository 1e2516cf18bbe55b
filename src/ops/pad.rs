//! Padding for (N, C, H, W) tensors.

use candle::{Tensor, D};

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

/// TensorFlow 'SAME' zero padding for a `k`×`k` convolution with `stride`: total padding
/// max((⌈n/s⌉ − 1)·s + k − n, 0) per axis, half before (rounded down) and the rest after.
///
/// `x`: (N, C, H, W) → padded (N, C, H', W') such that a VALID conv gives ⌈H/s⌉ × ⌈W/s⌉.
pub fn same_pad2d(x: &Tensor, k: usize, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let total = |n: usize| ((n.div_ceil(stride) - 1) * stride + k).saturating_sub(n);
    let (th, tw) = (total(h), total(w));
    let y = x.pad_with_zeros(D::Minus2, th / 2, th - th / 2)?;
    Ok(y.pad_with_zeros(D::Minus1, tw / 2, tw - tw / 2)?)
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
        let y = same_pad2d(&x, 3, 2).unwrap();
        assert_eq!(y.dims(), &[1, 1, 257, 257]); // 256: (0, 1); 255: (1, 1)
        let y = same_pad2d(&x, 3, 1).unwrap();
        assert_eq!(y.dims(), &[1, 1, 258, 257]);
    }
}
