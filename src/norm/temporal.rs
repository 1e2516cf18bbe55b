//! Normalization statistics kept over time: the running statistics that batch norm keeps over a
//! batch, kept over the frames of a clip instead, so that instance-norm statistics do not jump
//! from frame to frame (the flicker of frame-by-frame stylization).
//!
//! For each normalization layer, frame t uses μₜ = M·μₜ₋₁ + (1 − M)·μ(frameₜ) and the same for
//! σ (the standard deviation sqrt(var + ε), as the layer computes it). The first frame, and the
//! first frame after [`TemporalStats::reset`] (a scene cut), use their own statistics. M = 0 is
//! plain per-frame normalization.

use super::adaptive::FeatureStats;
use crate::{Error, Result};

/// Exponential moving averages of the statistics of every normalization layer of a network,
/// across the frames of one clip.
///
/// A network calls [`TemporalStats::smooth`] once per normalization it computes, in forward
/// order; [`TemporalStats::begin_frame`] rewinds to the first layer before each frame. The k-th
/// call of a frame is matched with the k-th call of the previous frame, so every frame must run
/// the same layers in the same order (true for a fixed model, style and options).
#[derive(Clone, Debug)]
pub struct TemporalStats {
    momentum: f64,
    /// The smoothed statistics of each call of the last frame, in call order.
    layers: Vec<FeatureStats>,
    /// The next call's index within the current frame.
    next: usize,
}

impl TemporalStats {
    /// Smoothing with momentum M in [0, 1): the weight of the past.
    pub fn new(momentum: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&momentum) {
            return Err(Error::config(
                "temporal statistics",
                format!("momentum {momentum} is outside [0, 1)"),
            ));
        }
        Ok(TemporalStats {
            momentum,
            layers: Vec::new(),
            next: 0,
        })
    }

    /// The momentum M.
    pub fn momentum(&self) -> f64 {
        self.momentum
    }

    /// Starts a frame: the next [`smooth`](Self::smooth) call is the first layer's.
    pub fn begin_frame(&mut self) {
        self.next = 0;
    }

    /// Forgets the past (a scene cut): the next frame uses its own statistics.
    pub fn reset(&mut self) {
        self.layers.clear();
        self.next = 0;
    }

    /// The statistics the current layer uses this frame: `current` (this frame's own) blended
    /// with the same layer's statistics of the previous frame. Their layouts (channels, samples)
    /// must match; a layer seen for the first time uses `current` as is.
    pub fn smooth(&mut self, current: FeatureStats) -> Result<FeatureStats> {
        let k = self.next;
        self.next += 1;
        let Some(past) = self.layers.get(k) else {
            self.layers.push(current.clone());
            return Ok(current);
        };
        if past.channels() != current.channels() || past.samples() != current.samples() {
            return Err(Error::input(
                "temporal statistics",
                format!(
                    "layer {k} had {}×{} statistics in the previous frame and {}×{} now \
                     (frames must run the same network)",
                    past.samples(),
                    past.channels(),
                    current.samples(),
                    current.channels()
                ),
            ));
        }
        let m = self.momentum;
        let mix = |a: &[f64], b: &[f64]| -> Vec<f64> {
            a.iter()
                .zip(b)
                .map(|(p, c)| m * p + (1.0 - m) * c)
                .collect()
        };
        let blended = FeatureStats::from_parts(
            current.channels(),
            mix(past.mean(), current.mean()),
            mix(past.std(), current.std()),
        )?;
        self.layers[k] = blended.clone();
        Ok(blended)
    }
}

/// `stats` smoothed by `temporal` when there is one.
pub(crate) fn smoothed(
    temporal: &mut Option<&mut TemporalStats>,
    stats: FeatureStats,
) -> Result<FeatureStats> {
    match temporal {
        Some(t) => t.smooth(stats),
        None => Ok(stats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(mean: f64, std: f64) -> FeatureStats {
        FeatureStats::from_parts(2, vec![mean, mean + 1.0], vec![std, std * 2.0]).unwrap()
    }

    #[test]
    fn moving_average_per_layer_and_reset() {
        let mut t = TemporalStats::new(0.75).unwrap();
        t.begin_frame();
        assert_eq!(t.smooth(stats(4.0, 1.0)).unwrap(), stats(4.0, 1.0));
        assert_eq!(t.smooth(stats(-4.0, 3.0)).unwrap(), stats(-4.0, 3.0));
        t.begin_frame();
        // 0.75·4 + 0.25·8 = 5; 0.75·1 + 0.25·5 = 2.
        assert_eq!(t.smooth(stats(8.0, 5.0)).unwrap(), stats(5.0, 2.0));
        // The second layer blends with its own past, not the first layer's.
        assert_eq!(t.smooth(stats(-4.0, 3.0)).unwrap(), stats(-4.0, 3.0));
        t.reset();
        t.begin_frame();
        assert_eq!(t.smooth(stats(0.0, 7.0)).unwrap(), stats(0.0, 7.0));
    }

    #[test]
    fn zero_momentum_is_per_frame_and_bad_momentum_is_refused() {
        let mut t = TemporalStats::new(0.0).unwrap();
        t.smooth(stats(1.0, 1.0)).unwrap();
        t.begin_frame();
        assert_eq!(t.smooth(stats(3.0, 2.0)).unwrap(), stats(3.0, 2.0));
        for m in [1.0, 1.5, -0.1, f64::NAN] {
            assert!(TemporalStats::new(m).is_err(), "{m}");
        }
        let mut t = TemporalStats::new(0.5).unwrap();
        t.smooth(stats(1.0, 1.0)).unwrap();
        t.begin_frame();
        let three = FeatureStats::from_parts(3, vec![0.0; 3], vec![1.0; 3]).unwrap();
        assert!(t.smooth(three).is_err());
    }
}
