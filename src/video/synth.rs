//! Clips with known motion, made by panning and zooming a camera window over a photo: the exact
//! position of every pixel in the previous frame is known, so flicker can be measured without
//! optical flow ([`metrics`](super::metrics)).

use crate::imaging::Rgb;
use crate::{Error, Result};

use super::metrics::Motion;

/// A camera move over a photo.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PanZoom {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Number of frames.
    pub frames: usize,
    /// Pan per frame, in the photo's pixels (x, y); the move is centered on the photo.
    pub step: (f64, f64),
    /// Zoom per frame (1 = none; 1.01 magnifies 1 % per frame).
    pub zoom: f64,
    /// Photo pixels per frame pixel at the middle frame (≥ the value that lets the frame see
    /// the photo at its own resolution is sharper; smaller magnifies).
    pub scale: f64,
}

impl PanZoom {
    /// A pan of `frames` frames of `width`×`height` across the middle of a photo at its own
    /// resolution, `step` photo pixels per frame to the right and a little down.
    pub fn pan(width: u32, height: u32, frames: usize, step: f64) -> Self {
        PanZoom {
            width,
            height,
            frames,
            step: (step, step * 0.25),
            zoom: 1.0,
            scale: 1.0,
        }
    }
}

/// Renders the move over `photo` (bilinear sampling): the frames, and the motion that maps each
/// frame's pixels to the previous frame's.
pub fn pan_zoom(photo: &Rgb, m: &PanZoom) -> Result<(Vec<Rgb>, Motion)> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if m.width < 2 || m.height < 2 || m.frames == 0 || !positive(m.zoom) || !positive(m.scale) {
        return Err(Error::input(
            "pan_zoom",
            "needs frames of at least 2×2, one frame, and a positive zoom and scale",
        ));
    }
    let (pw, ph) = (f64::from(photo.width()), f64::from(photo.height()));
    let (cx, cy) = (
        (f64::from(m.width) - 1.0) / 2.0,
        (f64::from(m.height) - 1.0) / 2.0,
    );
    let mid = (m.frames as f64 - 1.0) / 2.0;
    // Frame t: photo point = center(t) + k(t)·(pixel − frame center).
    let k = |t: usize| m.scale * m.zoom.powf(mid - t as f64);
    let center = |t: usize| {
        (
            (pw - 1.0) / 2.0 + (t as f64 - mid) * m.step.0,
            (ph - 1.0) / 2.0 + (t as f64 - mid) * m.step.1,
        )
    };
    let mut frames = Vec::with_capacity(m.frames);
    for t in 0..m.frames {
        let (kt, (ox, oy)) = (k(t), center(t));
        let (x0, x1) = (ox - kt * cx, ox + kt * cx);
        let (y0, y1) = (oy - kt * cy, oy + kt * cy);
        if x0 < 0.0 || y0 < 0.0 || x1 > pw - 1.0 || y1 > ph - 1.0 {
            return Err(Error::input(
                "pan_zoom",
                format!(
                    "frame {t} would see outside the {}×{} photo: use a smaller frame, step, \
                     zoom or scale",
                    photo.width(),
                    photo.height()
                ),
            ));
        }
        frames.push(Rgb::from_fn(m.width, m.height, |x, y| {
            sample(
                photo,
                ox + kt * (f64::from(x) - cx),
                oy + kt * (f64::from(y) - cy),
            )
        }));
    }
    let to_previous = (1..m.frames)
        .map(|t| {
            // pixel of t−1 = (k(t)/k(t−1))·(p − c) + (center(t) − center(t−1))/k(t−1) + c.
            let r = k(t) / k(t - 1);
            let (a, b) = (center(t), center(t - 1));
            let kp = k(t - 1);
            [
                r,
                0.0,
                cx - r * cx + (a.0 - b.0) / kp,
                0.0,
                r,
                cy - r * cy + (a.1 - b.1) / kp,
            ]
        })
        .collect();
    Ok((
        frames,
        Motion {
            width: m.width,
            height: m.height,
            to_previous,
        },
    ))
}

/// Bilinear sample at (x, y) in pixel-center coordinates (inside the image).
fn sample(img: &Rgb, x: f64, y: f64) -> image::Rgb<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (x0, y0) = (x.floor().max(0.0) as usize, y.floor().max(0.0) as usize);
    let (x0, y0) = (x0.min(w - 1), y0.min(h - 1));
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32);
    let p = |x: usize, y: usize| img.get_pixel(x as u32, y as u32).0;
    let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
    image::Rgb(std::array::from_fn(|k| {
        (a[k] * (1.0 - fx) + b[k] * fx) * (1.0 - fy) + (c[k] * (1.0 - fx) + d[k] * fx) * fy
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::metrics::FlickerMeter;

    #[test]
    fn the_motion_of_a_pan_and_zoom_is_exact() {
        let photo = Rgb::from_fn(200, 150, |x, y| {
            let (x, y) = (x as f32, y as f32);
            image::Rgb([
                (x * 0.07).sin() * 0.5 + 0.5,
                (y * 0.05).cos() * 0.5 + 0.5,
                ((x + y) * 0.03).sin() * 0.5 + 0.5,
            ])
        });
        let m = PanZoom {
            zoom: 1.01,
            ..PanZoom::pan(64, 48, 6, 2.5)
        };
        let (frames, motion) = pan_zoom(&photo, &m).unwrap();
        assert_eq!((frames.len(), motion.to_previous.len()), (6, 5));
        let mut meter = FlickerMeter::new(&motion);
        for f in frames {
            meter.push(f.clone(), f).unwrap();
        }
        let r = meter.finish();
        // Only bilinear resampling of a smooth photo separates the warped frame from the next.
        assert!(r.warping_error < 2e-3, "{r:?}");
        assert!(r.frame_diff_in > 10.0 * r.warping_error, "{r:?}");
        // A move that leaves the photo is refused.
        assert!(pan_zoom(&photo, &PanZoom::pan(190, 48, 6, 5.0)).is_err());
    }
}
