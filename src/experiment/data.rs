//! The experiment's data: oriented gratings, drawn procedurally from a seed (no download).
//!
//! Class k of `CLASSES` is a sinusoidal grating at angle k·180°/`CLASSES`, with a random spatial
//! period (3–8 pixels), phase and per-channel color, then a random brightness (−0.5…0.5) and
//! contrast (0.2…2.0) per image and Gaussian pixel noise (σ = 0.25). Telling neighbouring
//! angles 22.5° apart takes real features, and the per-image brightness/contrast is the kind
//! of nuisance that per-sample normalizations remove and BatchNorm does not.

use candle::{Device, Tensor};

pub use crate::rng::Rng;
use crate::Result;

/// Classes (orientations).
pub const CLASSES: usize = 8;

/// The side of each (square) image.
pub const SIDE: usize = 16;

/// `n` labelled images from `rng`: images (n, 3, SIDE, SIDE) f32 on `device`, labels (n,) u32.
pub fn gratings(rng: &mut Rng, n: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let plane = SIDE * SIDE;
    let mut pixels = Vec::with_capacity(n * 3 * plane);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let class = rng.below(CLASSES);
        let angle = std::f64::consts::PI * class as f64 / CLASSES as f64;
        let (dx, dy) = (angle.cos(), angle.sin());
        let freq = 2.0 * std::f64::consts::PI / rng.range(3.0, 8.0);
        let phase = rng.range(0.0, 2.0 * std::f64::consts::PI);
        let color = [
            rng.range(0.2, 1.0),
            rng.range(0.2, 1.0),
            rng.range(0.2, 1.0),
        ];
        let (brightness, contrast) = (rng.range(-0.5, 0.5), rng.range(0.2, 2.0));
        for c in color {
            for y in 0..SIDE {
                for x in 0..SIDE {
                    let wave = (freq * (x as f64 * dx + y as f64 * dy) + phase).sin();
                    let v = contrast * c * wave + brightness + 0.25 * rng.normal();
                    pixels.push(v as f32);
                }
            }
        }
        labels.push(class as u32);
    }
    Ok((
        Tensor::from_vec(pixels, (n, 3, SIDE, SIDE), device)?,
        Tensor::from_vec(labels, n, device)?,
    ))
}
