//! Numbers for comparing stylizations (`normstyle compare`), computed in one place:
//! - [`ssim`]: structural similarity of two luminance images (Wang et al. 2004 as scikit-image's
//!   `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
//!   data_range=1)`: 11-tap Gaussian windows, mirrored borders, the border of half a window left
//!   out of the mean);
//! - [`color_distance`]: how far an image's per-channel color mean and standard deviation are
//!   from the style's (root mean square over the 6 numbers, in [0, 1] units);
//! - [`adain_losses`]: the AdaIN paper's content loss (relu4_1 MSE to the target) and style loss
//!   (Σ over relu1_1…relu4_1 of the MSE of per-channel means plus the MSE of per-channel stds).
//!
//! Images are (1, 3, H, W) f32 RGB in [0, 1].

use candle::{DType, Device, Tensor};

use crate::model::adain::Encoder;
use crate::{Error, Result};

/// SSIM constants (K1, K2) and the Gaussian window (σ, radius) of the reference.
const K1: f64 = 0.01;
const K2: f64 = 0.03;
const SIGMA: f64 = 1.5;
const RADIUS: usize = 5; // int(3.5·σ + 0.5): scipy's truncate = 3.5

/// BT.601 luma of an RGB image: (1, 3, H, W) → (H, W, row-major values).
pub fn luminance(x: &Tensor) -> Result<(usize, usize, Vec<f64>)> {
    let (n, c, h, w) = x.dims4()?;
    if n != 1 || c != 3 {
        return Err(Error::input(
            "luminance",
            format!("expected (1, 3, H, W), found {:?}", x.dims()),
        ));
    }
    let v: Vec<f32> = x
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let m = h * w;
    Ok((
        h,
        w,
        (0..m)
            .map(|i| 0.299 * v[i] as f64 + 0.587 * v[m + i] as f64 + 0.114 * v[2 * m + i] as f64)
            .collect(),
    ))
}

/// Mean SSIM of two images of the same size (see the module docs); 1 for identical images.
/// Images smaller than 11×11 are an error, as in the reference.
pub fn ssim(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (h, w, x) = luminance(a)?;
    let (h2, w2, y) = luminance(b)?;
    if (h, w) != (h2, w2) {
        return Err(Error::input(
            "ssim",
            format!("sizes differ: {w}×{h} and {w2}×{h2}"),
        ));
    }
    let win = 2 * RADIUS + 1;
    if h < win || w < win {
        return Err(Error::input(
            "ssim",
            format!("{w}×{h} is smaller than the {win}×{win} window"),
        ));
    }
    let kernel: Vec<f64> = {
        let k: Vec<f64> = (0..win)
            .map(|i| (-((i as f64 - RADIUS as f64).powi(2)) / (2.0 * SIGMA * SIGMA)).exp())
            .collect();
        let s: f64 = k.iter().sum();
        k.iter().map(|v| v / s).collect()
    };
    let blur = |img: &[f64]| gaussian(img, h, w, &kernel);
    let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
    let yy: Vec<f64> = y.iter().map(|v| v * v).collect();
    let xy: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
    let (ux, uy, uxx, uyy, uxy) = (blur(&x), blur(&y), blur(&xx), blur(&yy), blur(&xy));
    let (c1, c2) = (K1 * K1, K2 * K2); // data range 1
    let mut sum = 0.0;
    let mut count = 0usize;
    for r in RADIUS..h - RADIUS {
        for c in RADIUS..w - RADIUS {
            let i = r * w + c;
            let (mx, my) = (ux[i], uy[i]);
            let vx = uxx[i] - mx * mx;
            let vy = uyy[i] - my * my;
            let cov = uxy[i] - mx * my;
            sum += ((2.0 * mx * my + c1) * (2.0 * cov + c2))
                / ((mx * mx + my * my + c1) * (vx + vy + c2));
            count += 1;
        }
    }
    Ok(sum / count as f64)
}

/// Separable Gaussian filter with scipy's 'reflect' borders (d c b a | a b c d).
fn gaussian(img: &[f64], h: usize, w: usize, k: &[f64]) -> Vec<f64> {
    let r = k.len() / 2;
    let mirror = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let mut i = i;
        loop {
            if i < 0 {
                i = -i - 1;
            } else if i >= n {
                i = 2 * n - i - 1;
            } else {
                return i as usize;
            }
        }
    };
    let mut tmp = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * img[y * w + mirror(x as isize + j as isize - r as isize, w)])
                .sum();
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * tmp[mirror(y as isize + j as isize - r as isize, h) * w + x])
                .sum();
        }
    }
    out
}

/// Per-channel mean and (population) standard deviation of an RGB image.
pub fn color_stats(x: &Tensor) -> Result<[(f64, f64); 3]> {
    let (n, c, h, w) = x.dims4()?;
    if n != 1 || c != 3 || h * w == 0 {
        return Err(Error::input(
            "color statistics",
            format!("expected (1, 3, H, W), found {:?}", x.dims()),
        ));
    }
    let v: Vec<f32> = x
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let m = h * w;
    let mut out = [(0.0, 0.0); 3];
    for (k, o) in out.iter_mut().enumerate() {
        let ch = &v[k * m..(k + 1) * m];
        let mean = ch.iter().map(|&a| a as f64).sum::<f64>() / m as f64;
        let var = ch.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / m as f64;
        *o = (mean, var.sqrt());
    }
    Ok(out)
}

/// Root mean square difference of the 6 color statistics (R, G, B mean and std) of `x` and
/// `style`: 0 when the palettes' first two moments match.
pub fn color_distance(x: &Tensor, style: &Tensor) -> Result<f64> {
    let (a, b) = (color_stats(x)?, color_stats(style)?);
    let s: f64 = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p.0 - q.0).powi(2) + (p.1 - q.1).powi(2))
        .sum();
    Ok((s / 6.0).sqrt())
}

/// Euclidean distance between two style vectors.
pub fn vector_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The AdaIN paper's losses of an output: (content, style).
///
/// Content: mean squared error between the output's relu4_1 features and `target` (the AdaIN
/// target the decoder was given). Style: Σ over the four taps of MSE(μ(φ(out)), μ(φ(style))) +
/// MSE(σ(φ(out)), σ(φ(style))), with pytorch-AdaIN's `calc_mean_std` (unbiased variance + 1e-5).
/// `output`: (1, 3, H, W); `style_taps`: the style image's [`Encoder::taps`]; `target`:
/// (1, 512, ⌈H/8⌉, ⌈W/8⌉).
pub fn adain_losses(
    encoder: &Encoder,
    output: &Tensor,
    style_taps: &[Tensor],
    target: &Tensor,
) -> Result<(f64, f64)> {
    let out_taps = encoder.taps(output)?;
    let last = out_taps
        .last()
        .ok_or_else(|| Error::input("losses", "no features"))?;
    if last.dims() != target.dims() {
        return Err(Error::input(
            "losses",
            format!(
                "output features {:?}, target {:?}",
                last.dims(),
                target.dims()
            ),
        ));
    }
    let content = mse(last, target)?;
    let mut style_loss = 0.0;
    for (o, s) in out_taps.iter().zip(style_taps) {
        let (om, os) = mean_std(o)?;
        let (sm, ss) = mean_std(s)?;
        style_loss += mse(&om, &sm)? + mse(&os, &ss)?;
    }
    Ok((content, style_loss))
}

fn mse(a: &Tensor, b: &Tensor) -> Result<f64> {
    let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?;
    Ok(d.sqr()?.mean_all()?.to_scalar::<f64>()?)
}

/// Per-channel mean and sqrt(unbiased variance + 1e-5) of (1, C, H, W) → two (C) tensors.
fn mean_std(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (_, c, h, w) = x.dims4()?;
    if h * w < 2 {
        return Err(Error::input(
            "losses",
            "a feature map needs at least 2 positions",
        ));
    }
    let f = x.to_dtype(DType::F64)?.reshape((c, h * w))?;
    let mean = f.mean_keepdim(1)?;
    let var = (f.broadcast_sub(&mean)?.sqr()?.sum_keepdim(1)? / ((h * w - 1) as f64))?;
    Ok((mean.flatten_all()?, (var + 1e-5)?.sqrt()?.flatten_all()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssim_of_an_image_with_itself_is_one_and_noise_lowers_it() {
        let dev = Device::Cpu;
        let mut rng = crate::rng::Rng::new(1, 0);
        let a = rng.uniform_tensor(0.0, 1.0, (1, 3, 20, 24), &dev).unwrap();
        assert!((ssim(&a, &a).unwrap() - 1.0).abs() < 1e-12);
        let b = (a.clone() * 0.5).unwrap();
        assert!(ssim(&a, &b).unwrap() < 0.99);
        let small = rng.uniform_tensor(0.0, 1.0, (1, 3, 8, 24), &dev).unwrap();
        assert!(ssim(&small, &small).is_err());
    }

    #[test]
    fn color_distance_is_zero_for_the_same_palette() {
        let dev = Device::Cpu;
        let a = crate::rng::Rng::new(2, 0)
            .uniform_tensor(0.0, 1.0, (1, 3, 10, 10), &dev)
            .unwrap();
        assert!(color_distance(&a, &a).unwrap() < 1e-12);
        let b = (a.clone() + 0.1).unwrap();
        assert!((color_distance(&a, &b).unwrap() - (0.01f64 * 3.0 / 6.0).sqrt()).abs() < 1e-6);
    }
}
