//! The AdaIN transfer step as pytorch-AdaIN's `test.py::style_transfer` and the official Lua
//! `test.lua`: statistics alignment (any [`NormKind`]), style interpolation, α, spatial control.

use candle::{DType, Tensor};

use super::AdaIn;
use crate::norm::{adaptive_norm_batch_temporal, NormKind, TemporalStats};
use crate::{Error, Result};

const WHAT: &str = "AdaIN";

/// One style of a blend: relu4_1 features (1, 512, h, w) and a weight (weights of a blend sum to 1).
#[derive(Clone, Debug)]
pub struct StyleInput {
    /// Style features from [`AdaIn::encode`].
    pub features: Tensor,
    /// Blend weight.
    pub weight: f64,
}

/// A binary spatial mask at image resolution: `true` (white) takes the first style, `false`
/// (black) the second.
#[derive(Clone, Debug)]
pub struct Mask {
    width: usize,
    height: usize,
    white: Vec<bool>,
}

impl Mask {
    /// A mask from row-major gray values in [0, 1], thresholded at 0.5 (≥ 0.5 is white).
    pub fn from_gray(width: usize, height: usize, gray: &[f32]) -> Result<Self> {
        if width == 0 || height == 0 || gray.len() != width * height {
            return Err(Error::input(
                "mask",
                format!("{} values for a {width}×{height} mask", gray.len()),
            ));
        }
        Ok(Mask {
            width,
            height,
            white: gray.iter().map(|&g| g >= 0.5).collect(),
        })
    }

    /// The mask resized to `w`×`h` (nearest, sampling each target pixel's center), row-major.
    pub fn resized(&self, w: usize, h: usize) -> Vec<bool> {
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h {
            let sy = ((2 * y + 1) * self.height / (2 * h)).min(self.height - 1);
            for x in 0..w {
                let sx = ((2 * x + 1) * self.width / (2 * w)).min(self.width - 1);
                out.push(self.white[sy * self.width + sx]);
            }
        }
        out
    }
}

/// How content features become the decoder's input.
#[derive(Clone, Debug)]
pub struct TransferOptions {
    /// Style strength in [0, 1]: t' = α·t + (1 − α)·f(c).
    pub alpha: f64,
    /// Statistics used for the alignment (docs/ARCHITECTURE.md §3); `bn` pools all contents of the call.
    pub norm: NormKind,
    /// Spatial control with exactly two styles (weights are then ignored).
    pub mask: Option<Mask>,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            alpha: 1.0,
            norm: NormKind::In,
            mask: None,
        }
    }
}

impl AdaIn {
    /// relu4_1 features of an image: (1, 3, H, W) in [0, 1] → (1, 512, ⌈H/8⌉, ⌈W/8⌉).
    /// Images larger than a tile (1024 pixels) run in tiles ([`Self::encode_tiled`]).
    pub fn encode(&self, image: &Tensor) -> Result<Tensor> {
        let _t = crate::profile::scope("encode (VGG)");
        check_image(image)?;
        // One pool entry for the network: its ops then start their parallel loops from a pool
        // thread, without the two thread switches an entry from outside costs.
        crate::ops::in_pool(|| self.encode_tiled(image, super::tiles::DEFAULT_TILE))
    }

    /// The encoder on the whole image at once.
    pub(super) fn encode_whole(&self, image: &Tensor) -> Result<Tensor> {
        self.encoder.forward(image)
    }

    /// The decoder's inputs for each content: t = Σ wᵢ·align(f(c), f(sᵢ)), then
    /// α·t + (1 − α)·f(c). With a mask, white positions align to `styles[0]` and black ones to
    /// `styles[1]`, statistics taken over each region only.
    ///
    /// `contents`: relu4_1 features (1, 512, hᵢ, wᵢ), one batch for `bn` statistics → the
    /// targets, same shapes.
    pub fn transfer(
        &self,
        contents: &[Tensor],
        styles: &[StyleInput],
        opts: &TransferOptions,
    ) -> Result<Vec<Tensor>> {
        self.transfer_temporal(contents, styles, opts, None)
    }

    /// [`Self::transfer`] on one frame of a clip: the content-feature statistics of each
    /// alignment are smoothed over the frames by `temporal` (one smoothing per style, two with
    /// a mask).
    pub fn transfer_temporal(
        &self,
        contents: &[Tensor],
        styles: &[StyleInput],
        opts: &TransferOptions,
        mut temporal: Option<&mut TemporalStats>,
    ) -> Result<Vec<Tensor>> {
        let _t = crate::profile::scope("transfer (AdaIN)");
        if !(0.0..=1.0).contains(&opts.alpha) {
            return Err(Error::input(
                WHAT,
                format!("alpha {} is outside [0, 1]", opts.alpha),
            ));
        }
        if contents.is_empty() || styles.is_empty() {
            return Err(Error::input(
                WHAT,
                "needs at least one content and one style",
            ));
        }
        let targets = match &opts.mask {
            None => {
                let mut acc: Option<Vec<Tensor>> = None;
                for s in styles {
                    let t = adaptive_norm_batch_temporal(
                        contents,
                        &s.features,
                        opts.norm,
                        temporal.as_deref_mut(),
                    )?;
                    acc = Some(match acc {
                        None => t
                            .into_iter()
                            .map(|x| x * s.weight)
                            .collect::<candle::Result<_>>()?,
                        Some(a) => a
                            .iter()
                            .zip(&t)
                            .map(|(a, x)| a + (x * s.weight)?)
                            .collect::<candle::Result<_>>()?,
                    });
                }
                acc.unwrap_or_default()
            }
            Some(mask) => masked(contents, styles, mask, opts.norm, temporal)?,
        };
        if opts.alpha == 1.0 {
            return Ok(targets);
        }
        targets
            .iter()
            .zip(contents)
            .map(|(t, c)| Ok(((t * opts.alpha)? + (c * (1.0 - opts.alpha))?)?))
            .collect()
    }

    /// Decodes features and crops the raw 8h×8w output to the content's `(height, width)` (the
    /// top-left part: for sides that are multiples of 8 it is the raw output itself).
    ///
    /// `t`: (1, 512, ⌈H/8⌉, ⌈W/8⌉) → (1, 3, H, W), RGB ≈ [0, 1] (not clamped).
    pub fn decode(&self, t: &Tensor, (height, width): (usize, usize)) -> Result<Tensor> {
        let _t = crate::profile::scope("decode (network)");
        // One pool entry for the network (see `encode`).
        crate::ops::in_pool(|| self.decode_tiled(t, (height, width), super::tiles::DEFAULT_TILE))
    }

    /// The decoder on the whole map at once, cropped.
    pub(super) fn decode_whole(
        &self,
        t: &Tensor,
        (height, width): (usize, usize),
    ) -> Result<Tensor> {
        let y = self.decoder.forward(t)?;
        let (_, _, h, w) = y.dims4()?;
        if height > h || width > w {
            return Err(Error::input(
                WHAT,
                format!("cannot crop a {w}×{h} output to {width}×{height}"),
            ));
        }
        Ok(y.narrow(2, 0, height)?.narrow(3, 0, width)?)
    }

    /// The network as pytorch-AdaIN's `style_transfer` runs it, α = 1 and IN statistics:
    /// `content` (1, 3, H, W) and `style` (1, 3, H', W') RGB in [0, 1] → (1, 3, H, W) RGB
    /// ≈ [0, 1], not clamped.
    pub fn forward(&self, content: &Tensor, style: &Tensor) -> Result<Tensor> {
        let mut out = self.stylize(
            std::slice::from_ref(content),
            &[(style.clone(), 1.0)],
            &TransferOptions::default(),
        )?;
        out.pop()
            .ok_or_else(|| Error::input(WHAT, "the network returned no output"))
    }

    /// Stylizes each content with the blend of `styles` (images (1, 3, H, W) in [0, 1] with
    /// weights summing to 1) → one (1, 3, H, W) output per content, at the content's size.
    pub fn stylize(
        &self,
        contents: &[Tensor],
        styles: &[(Tensor, f64)],
        opts: &TransferOptions,
    ) -> Result<Vec<Tensor>> {
        let feats: Vec<Tensor> = contents
            .iter()
            .map(|c| self.encode(c))
            .collect::<Result<_>>()?;
        let styles: Vec<StyleInput> = styles
            .iter()
            .map(|(s, w)| {
                Ok(StyleInput {
                    features: self.encode(s)?,
                    weight: *w,
                })
            })
            .collect::<Result<_>>()?;
        let targets = self.transfer(&feats, &styles, opts)?;
        targets
            .iter()
            .zip(contents)
            .map(|(t, c)| {
                let (_, _, h, w) = c.dims4()?;
                self.decode(t, (h, w))
            })
            .collect()
    }
}

/// Spatial control: each content's feature positions split by the mask (resized to the feature
/// map), each region aligned to its style with statistics over that region only (pooled over
/// the regions of all contents for `bn`), then put back in place.
fn masked(
    contents: &[Tensor],
    styles: &[StyleInput],
    mask: &Mask,
    kind: NormKind,
    mut temporal: Option<&mut TemporalStats>,
) -> Result<Vec<Tensor>> {
    if styles.len() != 2 {
        return Err(Error::input(
            "mask",
            format!(
                "spatial control needs exactly two styles, got {}",
                styles.len()
            ),
        ));
    }
    let device = contents[0].device();
    let mut regions: [Vec<Tensor>; 2] = [Vec::new(), Vec::new()];
    let mut slots: Vec<[Option<usize>; 2]> = Vec::new();
    let mut orders = Vec::new();
    for f in contents {
        let (_, c, h, w) = f.dims4()?;
        let white = mask.resized(w, h);
        let idx: [Vec<u32>; 2] = [
            (0..h * w).filter(|&i| white[i]).map(|i| i as u32).collect(),
            (0..h * w)
                .filter(|&i| !white[i])
                .map(|i| i as u32)
                .collect(),
        ];
        let flat = f.reshape((1, c, 1, h * w))?;
        let mut slot = [None, None];
        for r in 0..2 {
            match idx[r].len() {
                0 => {}
                1 => {
                    return Err(Error::input(
                        "mask",
                        format!(
                            "the {} region covers 1 of {} feature positions ({w}×{h}); statistics need at least 2",
                            ["white", "black"][r],
                            h * w
                        ),
                    ))
                }
                n => {
                    let i = Tensor::from_vec(idx[r].clone(), n, device)?;
                    slot[r] = Some(regions[r].len());
                    regions[r].push(flat.index_select(&i, 3)?);
                }
            }
        }
        // Where each position ends up after concatenating [white…, black…].
        let mut inverse = vec![0u32; h * w];
        for (k, &p) in idx[0].iter().chain(&idx[1]).enumerate() {
            inverse[p as usize] = k as u32;
        }
        orders.push(Tensor::from_vec(inverse, h * w, device)?);
        slots.push(slot);
    }
    let mut aligned: [Vec<Tensor>; 2] = [Vec::new(), Vec::new()];
    for r in 0..2 {
        if !regions[r].is_empty() {
            aligned[r] = adaptive_norm_batch_temporal(
                &regions[r],
                &styles[r].features,
                kind,
                temporal.as_deref_mut(),
            )?;
        }
    }
    contents
        .iter()
        .zip(slots)
        .zip(orders)
        .map(|((f, slot), order)| {
            let parts: Vec<&Tensor> = (0..2)
                .filter_map(|r| slot[r].map(|k| &aligned[r][k]))
                .collect();
            let joined = Tensor::cat(&parts, 3)?;
            Ok(joined.index_select(&order, 3)?.reshape(f.dims())?)
        })
        .collect()
}

/// The smallest side the encoder takes: relu4_1 runs at ⌈H/8⌉ and its reflection padding
/// needs at least 2 rows.
pub const MIN_SIDE: usize = 9;

/// Checks for a (1, 3, H, W) float image with H, W ≥ [`MIN_SIDE`].
fn check_image(x: &Tensor) -> Result<()> {
    match x.dims4() {
        Ok((1, 3, h, w)) if h >= MIN_SIDE && w >= MIN_SIDE && x.dtype() != DType::U8 => Ok(()),
        _ => Err(Error::input(
            WHAT,
            format!(
                "expected a (1, 3, H, W) float image with H, W ≥ {MIN_SIDE}, found shape {:?}",
                x.dims()
            ),
        )),
    }
}
