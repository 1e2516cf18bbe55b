//! A flicker measure for clips whose motion is known: how far each stylized frame is from the
//! previous stylized frame moved by that motion (the warping error of Lai et al., ECCV 2018,
//! "Learning Blind Video Temporal Consistency", with the exact motion in place of optical
//! flow, which nothing here computes).
//!
//! The motion file is JSON written by whatever made the clip ([`synth`](super::synth) does):
//!
//! ```json
//! {"width": 320, "height": 180, "to_previous": [[1.0, 0.0, 2.5, 0.0, 1.0, -1.0], ...]}
//! ```
//!
//! `to_previous[t - 1]` = [a, b, c, d, e, f] maps the pixel (x, y) of frame t to the point
//! (a·x + b·y + c, d·x + e·y + f) of frame t − 1, in the pixel units of a `width`×`height`
//! frame with pixel centers at integer coordinates. Clips of another size (a stylized output at
//! another `--content-size`) are measured with the motion scaled to their size.

use serde::{Deserialize, Serialize};

use crate::imaging::Rgb;
use crate::{Error, Result};

/// The known motion of a clip: one affine map per frame after the first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Motion {
    /// Width of the frames the coordinates refer to.
    pub width: u32,
    /// Height of the frames the coordinates refer to.
    pub height: u32,
    /// For frame t ≥ 1, [a, b, c, d, e, f]: pixel (x, y) of frame t shows what pixel
    /// (a·x + b·y + c, d·x + e·y + f) of frame t − 1 showed.
    pub to_previous: Vec<[f64; 6]>,
}

impl Motion {
    /// Reads a motion file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|err| Error::Io {
            path: path.to_path_buf(),
            err,
        })?;
        let m: Motion = serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
            what: path.display().to_string(),
            msg: format!("not a motion file ({e})"),
        })?;
        if m.width == 0 || m.height == 0 || m.to_previous.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::Parse {
                what: path.display().to_string(),
                msg: "a motion file needs a width, a height and finite coefficients".into(),
            });
        }
        Ok(m)
    }

    /// The map of frame `t` (≥ 1) in the pixel units of a `w`×`h` frame.
    fn scaled(&self, t: usize, w: u32, h: u32) -> Option<[f64; 6]> {
        let [a, b, c, d, e, f] = *self.to_previous.get(t.checked_sub(1)?)?;
        // u = sx·(x + ½) − ½ converts this size's pixel coordinates to the file's.
        let (sx, sy) = (
            f64::from(self.width) / f64::from(w),
            f64::from(self.height) / f64::from(h),
        );
        let (ox, oy) = (0.5 * sx - 0.5, 0.5 * sy - 0.5);
        // x' = (u' + ½)/sx − ½ with u' = a·u + b·v + c.
        let (ix, iy) = (1.0 / sx, 1.0 / sy);
        Some([
            a * sx * ix,
            b * sy * ix,
            (a * ox + b * oy + c + 0.5) * ix - 0.5,
            d * sx * iy,
            e * sy * iy,
            (d * ox + e * oy + f + 0.5) * iy - 0.5,
        ])
    }
}

/// The flicker numbers of an input clip and its stylized output, RGB in [0, 1] units.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Flicker {
    /// Frames compared (the shorter clip's count).
    pub frames: u64,
    /// Mean over frames t ≥ 1 of the mean absolute difference between output frame t and output
    /// frame t − 1 moved by the motion; pixels whose source lies outside frame t − 1 are masked.
    pub warping_error: f64,
    /// Mean over frames t ≥ 1 of the mean absolute difference between consecutive output frames.
    pub frame_diff_out: f64,
    /// The same for the input.
    pub frame_diff_in: f64,
}

/// Accumulates [`Flicker`] frame by frame (clips need not fit in memory).
#[derive(Debug)]
pub struct FlickerMeter<'a> {
    motion: &'a Motion,
    previous: Option<(Rgb, Rgb)>,
    frames: u64,
    warp: f64,
    diff_out: f64,
    diff_in: f64,
}

impl<'a> FlickerMeter<'a> {
    /// A meter for clips moving by `motion`.
    pub fn new(motion: &'a Motion) -> Self {
        FlickerMeter {
            motion,
            previous: None,
            frames: 0,
            warp: 0.0,
            diff_out: 0.0,
            diff_in: 0.0,
        }
    }

    /// Adds the next (input, output) frame pair. Inputs must keep one size, and so must outputs.
    pub fn push(&mut self, input: Rgb, output: Rgb) -> Result<()> {
        let t = self.frames as usize;
        if let Some((pin, pout)) = &self.previous {
            if pin.dimensions() != input.dimensions() || pout.dimensions() != output.dimensions() {
                return Err(Error::input(
                    "video-metrics",
                    format!("frame {t} changes size"),
                ));
            }
            let (w, h) = output.dimensions();
            let map = self.motion.scaled(t, w, h).ok_or_else(|| {
                Error::input(
                    "video-metrics",
                    format!(
                        "the motion file describes {} frames; the clip has more",
                        self.motion.to_previous.len() + 1
                    ),
                )
            })?;
            self.warp += warping_error(pout, &output, map);
            self.diff_out += crate::pipeline::mean_abs_difference(pout, &output);
            self.diff_in += crate::pipeline::mean_abs_difference(pin, &input);
        }
        self.previous = Some((input, output));
        self.frames += 1;
        Ok(())
    }

    /// The numbers so far (zeros for fewer than two frames).
    pub fn finish(&self) -> Flicker {
        let pairs = self.frames.saturating_sub(1).max(1) as f64;
        Flicker {
            frames: self.frames,
            warping_error: self.warp / pairs,
            frame_diff_out: self.diff_out / pairs,
            frame_diff_in: self.diff_in / pairs,
        }
    }
}

/// Mean absolute difference between `current` and `previous` sampled (bilinear) where `map`
/// sends each pixel of `current`; pixels mapped outside `previous` are left out.
pub fn warping_error(previous: &Rgb, current: &Rgb, map: [f64; 6]) -> f64 {
    let (w, h) = current.dimensions();
    let [a, b, c, d, e, f] = map;
    let (maxx, maxy) = (f64::from(w) - 1.0, f64::from(h) - 1.0);
    let prev = previous.as_raw();
    let at = |x: usize, y: usize, k: usize| f64::from(prev[(y * w as usize + x) * 3 + k]);
    let (mut sum, mut n) = (0.0, 0u64);
    for (x, y, p) in current.enumerate_pixels() {
        let (xf, yf) = (f64::from(x), f64::from(y));
        let (sx, sy) = (a * xf + b * yf + c, d * xf + e * yf + f);
        // A hair of slack keeps exact integer motion at the last row and column.
        const SLACK: f64 = 1e-9;
        if !(sx >= -SLACK && sy >= -SLACK && sx <= maxx + SLACK && sy <= maxy + SLACK) {
            continue;
        }
        let (sx, sy) = (sx.clamp(0.0, maxx), sy.clamp(0.0, maxy));
        let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w as usize - 1), (y0 + 1).min(h as usize - 1));
        let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
        for k in 0..3 {
            let v = (at(x0, y0, k) * (1.0 - fx) + at(x1, y0, k) * fx) * (1.0 - fy)
                + (at(x0, y1, k) * (1.0 - fx) + at(x1, y1, k) * fx) * fy;
            sum += (f64::from(p.0[k]) - v).abs();
        }
        n += 3;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: u32, h: u32, shift: f32) -> Rgb {
        Rgb::from_fn(w, h, |x, y| {
            let v = ((x as f32 + shift) * 0.05).sin() * 0.4 + 0.5 + y as f32 * 0.001;
            image::Rgb([v, 1.0 - v, 0.5 * v])
        })
    }

    #[test]
    fn exact_motion_has_no_warping_error() {
        // Frame 1 is frame 0 moved 3 pixels left: (x, y) of frame 1 was (x + 3, y).
        let m = Motion {
            width: 40,
            height: 20,
            to_previous: vec![[1.0, 0.0, 3.0, 0.0, 1.0, 0.0]],
        };
        let (f0, f1) = (ramp(40, 20, 0.0), ramp(40, 20, 3.0));
        let mut meter = FlickerMeter::new(&m);
        meter.push(f0.clone(), f0).unwrap();
        meter.push(f1.clone(), f1).unwrap();
        let r = meter.finish();
        assert_eq!(r.frames, 2);
        assert!(r.warping_error < 1e-6, "{r:?}");
        assert!(r.frame_diff_in > 0.01 && r.frame_diff_in == r.frame_diff_out);
        // Wrong motion: an error shows.
        let map = [1.0, 0.0, -3.0, 0.0, 1.0, 0.0];
        assert!(warping_error(&ramp(40, 20, 0.0), &ramp(40, 20, 3.0), map) > 0.01);
    }

    #[test]
    fn motion_scales_to_other_sizes() {
        let m = Motion {
            width: 40,
            height: 20,
            to_previous: vec![[1.0, 0.0, 4.0, 0.0, 1.0, -2.0]],
        };
        // At half the size the shift halves.
        let s = m.scaled(1, 20, 10).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(
            close(s[0], 1.0) && close(s[2], 2.0) && close(s[5], -1.0),
            "{s:?}"
        );
        assert_eq!(m.scaled(2, 20, 10), None);
        assert_eq!(m.scaled(0, 20, 10), None);
    }
}
