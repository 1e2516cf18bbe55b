//! Color preservation, for both model families:
//! - [`coral`]: recolor the style image to the content's color mean and covariance before
//!   stylizing (pytorch-AdaIN `function.py::coral`, bit for bit in its math);
//! - [`keep_luminance`]: stylize, then keep the output's luminance with the content's chroma
//!   (BT.601 YCbCr, full range, as JPEG uses).
//!
//! Images are (1, 3, H, W) f32 RGB, nominally in [0, 1].

use candle::{DType, Device, Tensor};

use crate::{Error, Result};

/// How `--preserve-color` keeps the content's colors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreserveColor {
    /// Recolor the style image with CORAL before stylizing.
    Coral,
    /// Keep the stylized luminance, take the chroma from the content.
    Luminance,
}

impl std::str::FromStr for PreserveColor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "coral" => Ok(PreserveColor::Coral),
            "luminance" | "luma" => Ok(PreserveColor::Luminance),
            _ => Err(Error::Parse {
                what: "preserve color".into(),
                msg: format!("`{s}` is not one of coral, luminance"),
            }),
        }
    }
}

/// Per-channel mean, unbiased std and the flattened values (3 rows) of an image.
struct Flat {
    rows: [Vec<f64>; 3],
    mean: [f64; 3],
    std: [f64; 3],
}

fn flatten(x: &Tensor, what: &'static str) -> Result<Flat> {
    let (n, c, h, w) = x.dims4()?;
    if n != 1 || c != 3 || h * w < 2 {
        return Err(Error::input(
            what,
            format!(
                "expected a (1, 3, H, W) image with ≥ 2 pixels, found {:?}",
                x.dims()
            ),
        ));
    }
    let v: Vec<f32> = x
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let m = h * w;
    let mut rows: [Vec<f64>; 3] = Default::default();
    let mut mean = [0.0; 3];
    let mut std = [0.0; 3];
    for k in 0..3 {
        rows[k] = v[k * m..(k + 1) * m].iter().map(|&a| a as f64).collect();
        mean[k] = rows[k].iter().sum::<f64>() / m as f64;
        let ss: f64 = rows[k].iter().map(|a| (a - mean[k]).powi(2)).sum();
        std[k] = (ss / (m - 1) as f64).sqrt();
    }
    Ok(Flat { rows, mean, std })
}

/// Σ x̂ x̂ᵀ + I over the standardized rows (pytorch-AdaIN's `cov_eye`: a sum, not a mean).
fn cov_eye(f: &Flat) -> [[f64; 3]; 3] {
    let mut c = [[0.0; 3]; 3];
    let norm = |k: usize, i: usize| (f.rows[k][i] - f.mean[k]) / f.std[k];
    for (i, row) in c.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..f.rows[0].len())
                .map(|p| norm(i, p) * norm(j, p))
                .sum::<f64>();
            if i == j {
                *v += 1.0;
            }
        }
    }
    c
}

/// Recolors `style` to `content`'s color statistics (CORAL, as pytorch-AdaIN's `coral(source,
/// target)`): standardize the style per channel, whiten with (Σₛ + I)^(-1/2), color with
/// (Σ_c + I)^(1/2), then the content's per-channel std and mean. Not clamped (the reference
/// does not clamp either). A channel with zero variance (a flat color) is an error.
///
/// `style`, `content`: (1, 3, H, W) of any sizes → (1, 3, H_style, W_style) f32.
pub fn coral(style: &Tensor, content: &Tensor) -> Result<Tensor> {
    let s = flatten(style, "coral (style)")?;
    let c = flatten(content, "coral (content)")?;
    for (f, which) in [(&s, "style"), (&c, "content")] {
        if let Some(k) = (0..3).find(|&k| f.std[k].is_nan() || f.std[k] <= 0.0) {
            return Err(Error::input(
                "color preservation (coral)",
                format!(
                    "the {which} image's {} channel is flat; its colors have no covariance to match",
                    ["red", "green", "blue"][k]
                ),
            ));
        }
    }
    let to = sym_pow(&cov_eye(&c), 0.5);
    let from_inv = sym_pow(&cov_eye(&s), -0.5);
    let m = mat_mul(&to, &from_inv);
    let n = s.rows[0].len();
    let mut out = vec![0f32; 3 * n];
    for p in 0..n {
        let z = [0, 1, 2].map(|k| (s.rows[k][p] - s.mean[k]) / s.std[k]);
        for k in 0..3 {
            let v = m[k][0] * z[0] + m[k][1] * z[1] + m[k][2] * z[2];
            out[k * n + p] = (v * c.std[k] + c.mean[k]) as f32;
        }
    }
    Ok(Tensor::from_vec(out, style.dims(), &Device::Cpu)?.to_device(style.device())?)
}

/// Keeps the luminance of `stylized` and the chroma (Cb, Cr) of `content`, BT.601 full range.
///
/// `stylized`, `content`: (1, 3, H, W), the same size → (1, 3, H, W) f32 (not clamped).
pub fn keep_luminance(stylized: &Tensor, content: &Tensor) -> Result<Tensor> {
    if stylized.dims() != content.dims() {
        return Err(Error::input(
            "color preservation (luminance)",
            format!(
                "output {:?} and content {:?} differ in size",
                stylized.dims(),
                content.dims()
            ),
        ));
    }
    let ch = |x: &Tensor, k: usize| x.to_dtype(DType::F32)?.narrow(1, k, 1);
    let (r, g, b) = (ch(stylized, 0)?, ch(stylized, 1)?, ch(stylized, 2)?);
    let y = ((r * 0.299)? + (g * 0.587)? + (b * 0.114)?)?;
    let (r, g, b) = (ch(content, 0)?, ch(content, 1)?, ch(content, 2)?);
    let cb = ((&b - ((&r * 0.299)? + (&g * 0.587)? + (&b * 0.114)?)?)? * (0.5 / 0.886))?;
    let cr = ((&r - ((&r * 0.299)? + (&g * 0.587)? + (&b * 0.114)?)?)? * (0.5 / 0.701))?;
    let r = (&y + (&cr * 1.402)?)?;
    let g = ((&y - (&cb * 0.344136)?)? - (&cr * 0.714136)?)?;
    let b = (&y + (&cb * 1.772)?)?;
    Ok(Tensor::cat(&[r, g, b], 1)?)
}

fn mat_mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

/// A^p for a symmetric positive-definite 3×3 matrix, through its eigen-decomposition (cyclic
/// Jacobi; for such a matrix the reference's SVD gives the same U D Uᵀ).
fn sym_pow(a: &[[f64; 3]; 3], p: f64) -> [[f64; 3]; 3] {
    let mut m = *a;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..64 {
        let off: f64 = m[0][1].powi(2) + m[0][2].powi(2) + m[1][2].powi(2);
        if off <= 1e-30 * (m[0][0].powi(2) + m[1][1].powi(2) + m[2][2].powi(2)) {
            break;
        }
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            if m[i][j] == 0.0 {
                continue;
            }
            let theta = (m[j][j] - m[i][i]) / (2.0 * m[i][j]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // m ← Jᵀ m J, v ← v J with the rotation J in the (i, j) plane.
            for row in m.iter_mut() {
                let (mki, mkj) = (row[i], row[j]);
                row[i] = c * mki - s * mkj;
                row[j] = s * mki + c * mkj;
            }
            let (ri, rj) = (m[i], m[j]);
            for k in 0..3 {
                m[i][k] = c * ri[k] - s * rj[k];
                m[j][k] = s * ri[k] + c * rj[k];
            }
            for row in v.iter_mut() {
                let (vi, vj) = (row[i], row[j]);
                row[i] = c * vi - s * vj;
                row[j] = s * vi + c * vj;
            }
        }
    }
    let d = [0, 1, 2].map(|k| m[k][k].max(0.0).powf(p));
    let mut out = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = (0..3).map(|k| v[i][k] * d[k] * v[j][k]).sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_powers_invert_each_other() {
        let a = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]];
        let r = sym_pow(&a, 0.5);
        let back = mat_mul(&r, &r);
        let inv = mat_mul(&sym_pow(&a, -0.5), &r);
        for i in 0..3 {
            for j in 0..3 {
                assert!((back[i][j] - a[i][j]).abs() < 1e-12);
                assert!((inv[i][j] - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn luminance_of_a_gray_content_is_the_output_luma() {
        let dev = Device::Cpu;
        let styl = Tensor::new(&[[[[0.9f32]], [[0.2]], [[0.1]]]], &dev).unwrap();
        let content = Tensor::new(&[[[[0.5f32]], [[0.5]], [[0.5]]]], &dev).unwrap();
        let y: Vec<f32> = keep_luminance(&styl, &content)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let luma = 0.299 * 0.9 + 0.587 * 0.2 + 0.114 * 0.1;
        for v in y {
            assert!((v - luma).abs() < 1e-6, "{v}");
        }
    }
}
