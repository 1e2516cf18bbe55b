//! [`FrameStylizer`]: a clip stylized frame by frame, with the state that frames share — the
//! style encoded once, and the normalization statistics kept over time ([`TemporalStats`]).

use candle::Tensor;
use image::RgbImage;

use super::stylizer::{Styling, Stylizer};
use crate::imaging::Rgb;
use crate::norm::TemporalStats;
use crate::{Error, Result};

/// The default scene-cut threshold: a mean absolute frame difference above it (RGB in [0, 1])
/// restarts the temporal statistics. A pan of a photo at 24 fps moves far less than this (about
/// 0.02–0.06); a cut between unrelated shots moves more (about 0.2–0.4).
pub const DEFAULT_SCENE_THRESHOLD: f64 = 0.15;

/// How a clip's frames share their normalization statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TemporalOptions {
    /// Momentum M in [0, 1): frame t normalizes with μₜ = M·μₜ₋₁ + (1 − M)·μ(frameₜ), and the same
    /// for σ. 0 (the default) stylizes every frame on its own.
    pub momentum: f64,
    /// A mean absolute difference between consecutive frames (RGB in [0, 1], at the size the
    /// model runs at) above this is a scene cut: the average restarts from that frame's own
    /// statistics.
    pub scene_threshold: f64,
}

impl Default for TemporalOptions {
    fn default() -> Self {
        TemporalOptions {
            momentum: 0.0,
            scene_threshold: DEFAULT_SCENE_THRESHOLD,
        }
    }
}

impl TemporalOptions {
    /// Smoothing with momentum `momentum` and the default scene-cut threshold.
    pub fn with_momentum(momentum: f64) -> Self {
        TemporalOptions {
            momentum,
            ..Self::default()
        }
    }
}

/// Stylizes the frames of one clip in order with one stylizer and one styling.
///
/// Each frame runs as [`Stylizer::render`] runs one content (so `bn` pools over the frame alone
/// and equals `in`), except that with a momentum > 0 every normalization layer — the Magenta
/// networks' conditional IN, AdaIN's content statistics — uses statistics averaged over the
/// frames. The style's features or vector are computed on the first frame and reused.
///
/// ```no_run
/// # fn main() -> normstyle::Result<()> {
/// use normstyle::pipeline::{Styling, TemporalOptions};
/// use normstyle::Stylizer;
/// let st = Stylizer::magenta(&normstyle::candle::Device::Cpu)?.with_content_size(Some(0));
/// let style = st.style_from_rgb(normstyle::imaging::load_rgb("style.jpg".as_ref())?)?;
/// let mut frames = st.frames(Styling::single(&style), TemporalOptions::with_momentum(0.9))?;
/// for i in 0..24 {
///     let frame = normstyle::imaging::load_rgb(format!("frames/{i:04}.png").as_ref())?;
///     frames.next_frame(frame)?.save(format!("out/{i:04}.png")).ok();
/// }
/// # Ok(()) }
/// ```
pub struct FrameStylizer<'a> {
    st: &'a Stylizer,
    styling: Styling<'a>,
    temporal: Option<TemporalStats>,
    scene_threshold: f64,
    /// The previous frame as the model ran it, for scene-cut detection.
    previous: Option<Rgb>,
    cuts: u64,
}

impl<'a> FrameStylizer<'a> {
    /// A clip stylized by `st` with `styling`. Errors for a momentum outside [0, 1) or a
    /// threshold that is not a number ≥ 0.
    pub fn new(st: &'a Stylizer, styling: Styling<'a>, opts: TemporalOptions) -> Result<Self> {
        // NaN is refused too.
        if opts.scene_threshold.is_nan() || opts.scene_threshold < 0.0 {
            return Err(Error::config(
                "temporal statistics",
                format!(
                    "scene-cut threshold {} is not a number ≥ 0",
                    opts.scene_threshold
                ),
            ));
        }
        let temporal = TemporalStats::new(opts.momentum)?;
        Ok(FrameStylizer {
            st,
            styling,
            temporal: (opts.momentum > 0.0).then_some(temporal),
            scene_threshold: opts.scene_threshold,
            previous: None,
            cuts: 0,
        })
    }

    /// Stylizes the next frame (RGB f32 in [0, 1]); the output has the size the content runs at
    /// ([`Stylizer::content_dimensions`]).
    pub fn next_frame(&mut self, frame: Rgb) -> Result<RgbImage> {
        crate::imaging::to_rgb8(&self.next_frame_tensor(frame)?)
    }

    /// [`Self::next_frame`] before quantization: a (1, 3, H, W) f32 tensor, values ≈ [0, 1], on
    /// the stylizer's device (so the caller may quantize it elsewhere, e.g. on a writer thread).
    pub fn next_frame_tensor(&mut self, frame: Rgb) -> Result<Tensor> {
        let content = self.st.content_from_rgb(frame)?;
        if let Some(t) = &mut self.temporal {
            let cut = self.previous.as_ref().is_some_and(|p| {
                p.dimensions() != content.dimensions()
                    || mean_abs_difference(p, content.image()) > self.scene_threshold
            });
            if cut {
                t.reset();
                self.cuts += 1;
            }
            t.begin_frame();
            self.previous = Some(content.image().clone());
        }
        let out = self.st.render_tensors_temporal(
            std::slice::from_ref(&content),
            &self.styling,
            self.temporal.as_mut(),
        )?;
        out.into_iter()
            .next()
            .ok_or_else(|| Error::input("FrameStylizer", "no output was rendered"))
    }

    /// Whether frames depend on the frames before them (a momentum > 0). Without that, frames
    /// may be rendered in any order, or several at once, with [`Self::render_independent`].
    pub fn is_temporal(&self) -> bool {
        self.temporal.is_some()
    }

    /// Stylizes a frame on its own, as [`Self::next_frame_tensor`] does without a momentum;
    /// callable from several threads at once (frames of one clip in flight together). Errors
    /// when this stylizer keeps statistics over time, which needs the frames in order.
    pub fn render_independent(&self, frame: Rgb) -> Result<Tensor> {
        if self.temporal.is_some() {
            return Err(Error::config(
                "FrameStylizer",
                "frames with temporal statistics must be rendered in order (next_frame)",
            ));
        }
        let content = self.st.content_from_rgb(frame)?;
        self.st
            .render_tensors(std::slice::from_ref(&content), &self.styling)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::input("FrameStylizer", "no output was rendered"))
    }

    /// The model family the frames run on.
    pub fn family(&self) -> super::Family {
        self.st.family()
    }

    /// The device the frames run on.
    pub fn device(&self) -> &candle::Device {
        self.st.device()
    }

    /// Scene cuts found so far (each restarted the temporal statistics).
    pub fn scene_cuts(&self) -> u64 {
        self.cuts
    }
}

/// The mean absolute difference of two images of the same size, over all pixels and channels.
pub fn mean_abs_difference(a: &Rgb, b: &Rgb) -> f64 {
    let n = a.as_raw().len().max(1);
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| f64::from((x - y).abs()))
        .sum::<f64>()
        / n as f64
}

impl Stylizer {
    /// A [`FrameStylizer`] for one clip with this stylizer's options: the frame-sequence API
    /// that keeps the style and the temporal statistics between frames.
    pub fn frames<'a>(
        &'a self,
        styling: Styling<'a>,
        opts: TemporalOptions,
    ) -> Result<FrameStylizer<'a>> {
        FrameStylizer::new(self, styling, opts)
    }
}
