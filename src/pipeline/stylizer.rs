//! [`Stylizer`]: a loaded model family plus the options of one stylization.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use candle::{DType, Device, Tensor};
use image::{DynamicImage, RgbImage};

use crate::color::{coral, keep_luminance, PreserveColor};
use crate::imaging::{self, Rgb};
use crate::model::adain::{AdaIn, Mask, StyleInput, TransferOptions, MIN_SIDE};
use crate::model::magenta::{Multistyle, StylePredictor, Transformer, PRESET_COUNT, STYLE_DIM};
use crate::model::trained::{NormMode, TrainedModel};
use crate::norm::{NormKind, TemporalStats};
#[cfg(feature = "hub")]
use crate::weights::hub::{HubConfig, RepoSpec};
use crate::{Error, Result};

/// The side of the square the Magenta style predictor sees.
const PREDICTOR_SIDE: u32 = 256;

/// Which model family a [`Stylizer`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// The Magenta arbitrary-style network and the 26-style network (embedded weights).
    Magenta,
    /// AdaIN with the released (or compatible) weights.
    Adain,
    /// A feed-forward single-style network trained by `normstyle train` (or PyTorch's
    /// `fast_neural_style`): its style is built in.
    Trained,
}

impl Family {
    /// The family's name in logs, file names and JSON (`magenta`, `adain`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Magenta => "magenta",
            Family::Adain => "adain",
            Family::Trained => "trained",
        }
    }
}

#[derive(Clone)]
enum Nets {
    Adain(Arc<AdaIn>),
    Magenta {
        predictor: Arc<StylePredictor>,
        transformer: Arc<Transformer>,
        multistyle: Arc<Multistyle>,
    },
    Trained(Arc<TrainedModel>),
}

/// A loaded model and the options of a stylization, with the CLI's defaults: IN statistics,
/// α = 1, no color preservation, AdaIN contents and styles resized to a shorter side of 512,
/// Magenta contents capped at a longer side of 1024, no crop.
///
/// Cloning is cheap (the weights are shared), so one loaded model serves several option sets:
/// `st.clone().with_norm(NormKind::Bn)`.
///
/// Images go in as [`DynamicImage`]s (any color type; alpha is composited on white) and come out
/// as 8-bit [`RgbImage`]s at the size the content runs at (after resizing and cropping).
#[derive(Clone)]
pub struct Stylizer {
    nets: Nets,
    device: Device,
    norm: NormKind,
    alpha: f64,
    preserve: Option<PreserveColor>,
    content_size: Option<u32>,
    style_size: Option<u32>,
    crop: bool,
    /// Whether `norm` was chosen ([`Stylizer::with_norm`]); a trained model otherwise runs its
    /// recorded norm as deployed.
    norm_chosen: bool,
}

impl std::fmt::Debug for Stylizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stylizer")
            .field("family", &self.family())
            .field("device", &self.device)
            .field("norm", &self.norm)
            .field("alpha", &self.alpha)
            .field("preserve", &self.preserve)
            .field("content_size", &self.content_size)
            .field("style_size", &self.style_size)
            .field("crop", &self.crop)
            .finish_non_exhaustive()
    }
}

/// A content image prepared by [`Stylizer::content`]: resized, on the device, and (AdaIN)
/// encoded once for every style it is rendered with.
pub struct Content {
    image: Rgb,
    tensor: Tensor,
    /// AdaIN: relu4_1 features (1, 512, ⌈H/8⌉, ⌈W/8⌉).
    features: Option<Tensor>,
    /// Magenta: the content's own style vector, for α < 1 (computed on first use).
    vector: OnceLock<Vec<f32>>,
}

impl Content {
    /// The image as the model runs it, RGB f32 in [0, 1].
    pub fn image(&self) -> &Rgb {
        &self.image
    }

    /// The image as a (1, 3, H, W) f32 tensor in [0, 1] on the stylizer's device.
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// The (width, height) of the outputs rendered for this content.
    pub fn dimensions(&self) -> (u32, u32) {
        self.image.dimensions()
    }

    /// AdaIN: the relu4_1 features (1, 512, ⌈H/8⌉, ⌈W/8⌉); `None` for Magenta.
    pub fn adain_features(&self) -> Option<&Tensor> {
        self.features.as_ref()
    }
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("dimensions", &self.dimensions())
            .field(
                "adain_features",
                &self.features.as_ref().map(|t| t.dims().to_vec()),
            )
            .field("style_vector", &self.vector.get().is_some())
            .finish_non_exhaustive()
    }
}

/// A style image prepared by [`Stylizer::style`]: resized as the model wants it, with its
/// features (AdaIN) or style vector (Magenta) computed on first use and kept, so a batch run
/// encodes each style once.
pub struct Style {
    image: Rgb,
    features: OnceLock<Tensor>,
    vector: OnceLock<Vec<f32>>,
}

impl Style {
    /// The image as the model uses it (AdaIN: resized; Magenta: the full image, of which the
    /// predictor takes a 256×256 center square).
    pub fn image(&self) -> &Rgb {
        &self.image
    }
}

impl std::fmt::Debug for Style {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Style")
            .field("dimensions", &self.image.dimensions())
            .field(
                "adain_features",
                &self.features.get().map(|t| t.dims().to_vec()),
            )
            .field("style_vector", &self.vector.get().is_some())
            .finish_non_exhaustive()
    }
}

/// What the contents are painted with.
#[derive(Clone)]
pub enum Styling<'a> {
    /// One style, or a blend of several with weights ≥ 0 summing to 1 (AdaIN mixes the
    /// aligned features, Magenta the style vectors).
    Blend(Vec<(&'a Style, f64)>),
    /// Spatial control: white pixels of the mask take `white`, black ones `black` (AdaIN
    /// aligns each region of the relu4_1 map separately; Magenta composites two renders).
    Masked {
        /// The style of the white (foreground) pixels.
        white: &'a Style,
        /// The style of the black (background) pixels.
        black: &'a Style,
        /// The mask, resized to fit.
        mask: &'a Mask,
    },
    /// A blend of the 26-style network's presets: 26 weights ≥ 0 summing to 1 (Magenta only).
    Preset(Vec<f64>),
    /// The style a trained network has built in ([`Stylizer::trained`]); no style image.
    Trained,
}

impl<'a> Styling<'a> {
    /// One style at full weight.
    pub fn single(style: &'a Style) -> Self {
        Styling::Blend(vec![(style, 1.0)])
    }
}

impl Stylizer {
    /// The Magenta family with its embedded weights (works offline): the arbitrary-style
    /// predictor and transformer, and the 26-style network for [`Styling::Preset`].
    pub fn magenta(device: &Device) -> Result<Self> {
        Self::magenta_dtype(device, DType::F32)
    }

    /// [`Self::magenta`] with the weights in `dtype`: f16 or bf16 on a GPU (half the memory,
    /// the GPU's half-precision units; statistics stay f32, images are f32 in and out).
    pub fn magenta_dtype(device: &Device, dtype: DType) -> Result<Self> {
        let nets = Nets::Magenta {
            predictor: Arc::new(StylePredictor::embedded_dtype(device, dtype)?),
            transformer: Arc::new(Transformer::embedded_dtype(device, dtype)?),
            multistyle: Arc::new(Multistyle::embedded_dtype(device, dtype)?),
        };
        Ok(Self::with_nets(nets, device))
    }

    /// AdaIN from the encoder and decoder checkpoints (legacy or zip `.pth`, or safetensors).
    /// Errors name the file, and a file of the wrong part says so.
    pub fn adain(
        vgg: impl AsRef<Path>,
        decoder: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self> {
        Self::adain_dtype(vgg, decoder, device, DType::F32)
    }

    /// [`Self::adain`] with the weights in `dtype` (f16 or bf16 on a GPU; see
    /// [`Self::magenta_dtype`]).
    pub fn adain_dtype(
        vgg: impl AsRef<Path>,
        decoder: impl AsRef<Path>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let net = AdaIn::load_dtype(vgg.as_ref(), decoder.as_ref(), device, dtype)?;
        Ok(Self::from_adain(net, device))
    }

    #[cfg(feature = "hub")]
    /// AdaIN from the local store or the Hugging Face Hub: the weights added with
    /// `normstyle weights add` when `repo` is `None`, else those of `repo` (downloaded once,
    /// validated and converted into the store; no request when cached or `HF_HUB_OFFLINE`).
    /// `warn` receives warnings (e.g. a sha256 that differs from the model card's).
    pub fn adain_from_store(
        repo: Option<&RepoSpec>,
        hub: &HubConfig,
        warn: &dyn Fn(String),
        device: &Device,
    ) -> Result<Self> {
        let parts = crate::model::adain::layouts();
        let p = crate::weights::store::resolve_adain(repo, hub, &parts, warn)?;
        Self::adain(&p.vgg, &p.decoder, device)
    }

    /// A trained feed-forward network from a file: a `.safetensors` written by
    /// `normstyle train`, or a `.pth` state_dict of PyTorch's `fast_neural_style` (see
    /// [`TrainedModel::load`]). It paints with [`Styling::Trained`]; by default with its
    /// recorded norm as deployed (BN on its running statistics), and
    /// [`Stylizer::with_norm`] swaps the statistics.
    pub fn trained(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Ok(Self::from_trained(
            TrainedModel::load(path.as_ref(), device)?,
            device,
        ))
    }

    /// [`Stylizer::trained`] for a model in memory; its tensors must live on `device`.
    pub fn from_trained(model: TrainedModel, device: &Device) -> Self {
        let mut st = Self::with_nets(Nets::Trained(Arc::new(model)), device);
        if let Nets::Trained(m) = &st.nets {
            st.norm = m.info().norm.unwrap_or(NormKind::In);
        }
        st
    }

    /// The trained model, when this is one.
    pub fn trained_model(&self) -> Option<&TrainedModel> {
        match &self.nets {
            Nets::Trained(m) => Some(m),
            _ => None,
        }
    }

    /// AdaIN from a network built elsewhere (e.g. [`AdaIn::from_maps`]); its tensors must live
    /// on `device`.
    pub fn from_adain(net: AdaIn, device: &Device) -> Self {
        Self::with_nets(Nets::Adain(Arc::new(net)), device)
    }

    fn with_nets(nets: Nets, device: &Device) -> Self {
        Stylizer {
            nets,
            device: device.clone(),
            norm: NormKind::In,
            alpha: 1.0,
            preserve: None,
            content_size: None,
            style_size: None,
            crop: false,
            norm_chosen: false,
        }
    }

    /// Statistics of the normalization layers (AdaIN's alignment, Magenta's conditional IN).
    /// `Bn` pools them over all contents of one [`Stylizer::render`] call.
    /// A trained model runs its recorded norm unless this names another (a statistics swap).
    pub fn with_norm(mut self, norm: NormKind) -> Self {
        self.norm = norm;
        self.norm_chosen = true;
        self
    }

    /// Style strength in [0, 1] (checked when rendering). AdaIN decodes α·t + (1 − α)·f(c);
    /// Magenta interpolates the style vector with the content's own.
    pub fn with_alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Keep the content's colors: CORAL recolors the style first, luminance keeps the output's
    /// luminance with the content's chroma.
    pub fn with_preserve_color(mut self, preserve: Option<PreserveColor>) -> Self {
        self.preserve = preserve;
        self
    }

    /// Content size in pixels; `None` is the model's default, `Some(0)` keeps the size. AdaIN
    /// resizes the shorter side to it (default 512), Magenta caps the longer side (default 1024).
    pub fn with_content_size(mut self, size: Option<u32>) -> Self {
        self.content_size = size;
        self
    }

    /// AdaIN: the style's shorter side in pixels (default 512, `Some(0)` keeps it). Magenta's
    /// predictor always sees a 256×256 center square.
    pub fn with_style_size(mut self, size: Option<u32>) -> Self {
        self.style_size = size;
        self
    }

    /// Center-crop the content (and, for AdaIN, the style) to a square after resizing.
    pub fn with_crop(mut self, crop: bool) -> Self {
        self.crop = crop;
        self
    }

    /// The model family.
    pub fn family(&self) -> Family {
        match self.nets {
            Nets::Adain(_) => Family::Adain,
            Nets::Magenta { .. } => Family::Magenta,
            Nets::Trained(_) => Family::Trained,
        }
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The content size option ([`Self::with_content_size`]).
    pub fn content_size(&self) -> Option<u32> {
        self.content_size
    }

    /// The normalization statistics in use.
    pub fn norm(&self) -> NormKind {
        self.norm
    }

    /// The style strength in use.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The model and options as JSON, for provenance records: `model`, `norm`, `alpha`,
    /// `preserve_color`, `content_size`, `style_size`, `crop`, `normstyle` (the version).
    pub fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "model": self.family().name(),
            "norm": self.norm.to_string(),
            "alpha": self.alpha,
            "preserve_color": self.preserve.map(|p| format!("{p:?}").to_lowercase()),
            "content_size": self.content_size,
            "style_size": self.style_size,
            "crop": self.crop,
            "normstyle": env!("CARGO_PKG_VERSION"),
        })
    }

    /// The AdaIN network, when this is the AdaIN family (for losses and feature taps).
    pub fn adain_net(&self) -> Option<&AdaIn> {
        match &self.nets {
            Nets::Adain(net) => Some(net),
            _ => None,
        }
    }

    /// Paints `content` in the style of `style` with this stylizer's options: what
    /// `normstyle stylize content --style style` writes.
    pub fn stylize(&self, content: &DynamicImage, style: &DynamicImage) -> Result<RgbImage> {
        let c = self.content(content)?;
        let s = self.style(style)?;
        first(self.render(std::slice::from_ref(&c), &Styling::single(&s))?)
    }

    /// Paints `content` with a blend of the 26 presets (`weights`: 26 values ≥ 0 summing to 1;
    /// see [`parse_preset`](super::parse_preset)); Magenta only.
    pub fn stylize_preset(&self, content: &DynamicImage, weights: &[f64]) -> Result<RgbImage> {
        let c = self.content(content)?;
        first(self.render(std::slice::from_ref(&c), &Styling::Preset(weights.to_vec()))?)
    }

    /// Prepares a content image: converted to RGB, resized and cropped as the options say,
    /// moved to the device and (AdaIN) encoded.
    pub fn content(&self, image: &DynamicImage) -> Result<Content> {
        self.content_from_rgb(imaging::to_rgb(image))
    }

    /// [`Stylizer::content`] for an image already decoded to RGB f32 in [0, 1]
    /// ([`imaging::load_rgb`]).
    pub fn content_from_rgb(&self, image: Rgb) -> Result<Content> {
        let image = self.fit(image, self.content_size);
        let features = match &self.nets {
            Nets::Adain(net) => {
                check_adain_size(&image)?;
                let tensor = imaging::to_tensor(&image, &self.device)?;
                let _t = crate::profile::scope("encode content");
                Some((net.encode(&tensor)?, tensor))
            }
            Nets::Magenta { .. } | Nets::Trained(_) => None,
        };
        let (features, tensor) = match features {
            Some((f, t)) => (Some(f), t),
            None => (None, imaging::to_tensor(&image, &self.device)?),
        };
        Ok(Content {
            image,
            tensor,
            features,
            vector: OnceLock::new(),
        })
    }

    /// Prepares a style image (AdaIN: resized and cropped as the options say).
    pub fn style(&self, image: &DynamicImage) -> Result<Style> {
        self.style_from_rgb(imaging::to_rgb(image))
    }

    /// [`Stylizer::style`] for an image already decoded to RGB f32 in [0, 1].
    pub fn style_from_rgb(&self, image: Rgb) -> Result<Style> {
        let image = match self.nets {
            Nets::Adain(_) => {
                let img = self.fit(image, self.style_size);
                check_adain_size(&img)?;
                img
            }
            // The predictor takes its own 256² center square of the full image.
            Nets::Magenta { .. } | Nets::Trained(_) => image,
        };
        Ok(Style {
            image,
            features: OnceLock::new(),
            vector: OnceLock::new(),
        })
    }

    /// The size a content image of `(width, height)` runs at, and its output has: resized as
    /// [`Stylizer::with_content_size`] says, then cropped as [`Stylizer::with_crop`] says.
    /// Known before decoding the pixels, e.g. to plan memory.
    pub fn content_dimensions(&self, (width, height): (u32, u32)) -> (u32, u32) {
        let (w, h) = self.resized_dims((width, height), self.content_size);
        if self.crop {
            (w.min(h), w.min(h))
        } else {
            (w, h)
        }
    }

    /// The size an image of `dims` is resized to at `size`, before any crop — AdaIN: shorter
    /// side → `size` (default 512); Magenta: longer side capped at `size` (default 1024).
    fn resized_dims(&self, dims: (u32, u32), size: Option<u32>) -> (u32, u32) {
        match self.nets {
            Nets::Adain(_) => imaging::short_side_dims(dims, size.unwrap_or(512)),
            Nets::Magenta { .. } | Nets::Trained(_) => {
                imaging::capped_dims(dims, size.unwrap_or(1024))
            }
        }
    }

    /// An image resized as the model runs it ([`Self::resized_dims`]), then center-cropped if
    /// asked.
    fn fit(&self, img: Rgb, size: Option<u32>) -> Rgb {
        let (w, h) = self.resized_dims(img.dimensions(), size);
        let img = imaging::resize_to(img, w, h);
        if self.crop {
            imaging::crop_center_square(img)
        } else {
            img
        }
    }

    /// One 8-bit output per content, styled by `styling`. The contents form one batch: `bn`
    /// statistics pool over all of them.
    pub fn render(&self, contents: &[Content], styling: &Styling) -> Result<Vec<RgbImage>> {
        self.render_tensors(contents, styling)?
            .iter()
            .map(imaging::to_rgb8)
            .collect()
    }

    /// [`Stylizer::render`] before quantization: one (1, 3, H, W) f32 tensor per content,
    /// values ≈ [0, 1] (AdaIN's decoder is not clamped), on the device.
    pub fn render_tensors(&self, contents: &[Content], styling: &Styling) -> Result<Vec<Tensor>> {
        self.render_tensors_temporal(contents, styling, None)
    }

    /// [`Stylizer::render_tensors`] on one frame of a clip: the normalization statistics are
    /// smoothed over the frames by `temporal` (see [`FrameStylizer`](super::FrameStylizer),
    /// which keeps that state for a whole clip).
    pub fn render_tensors_temporal(
        &self,
        contents: &[Content],
        styling: &Styling,
        temporal: Option<&mut TemporalStats>,
    ) -> Result<Vec<Tensor>> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::config(
                "Stylizer",
                format!("alpha {} is outside [0, 1]", self.alpha),
            ));
        }
        if contents.is_empty() {
            return Err(Error::input("Stylizer", "no content images given"));
        }
        let out = match &self.nets {
            Nets::Trained(model) => self.render_trained(model, contents, styling, temporal)?,
            _ if matches!(styling, Styling::Trained) => {
                return Err(Error::config(
                    "Stylizer",
                    "the built-in style of a trained network needs a trained model",
                ))
            }
            Nets::Adain(net) => self.render_adain(net, contents, styling, temporal)?,
            Nets::Magenta {
                predictor,
                transformer,
                multistyle,
            } => {
                let m = Magenta {
                    st: self,
                    predictor,
                    transformer,
                };
                match styling {
                    Styling::Preset(w) => {
                        check_preset(w)?;
                        let xs: Vec<Tensor> = contents.iter().map(|c| c.tensor.clone()).collect();
                        multistyle.forward_temporal(&xs, w, self.norm, temporal)?
                    }
                    _ => m.render(contents, styling, temporal)?,
                }
            }
        };
        if self.preserve != Some(PreserveColor::Luminance) {
            return Ok(out);
        }
        out.iter()
            .zip(contents)
            .map(|(y, c)| keep_luminance(y, &c.tensor))
            .collect()
    }

    fn render_trained(
        &self,
        model: &TrainedModel,
        contents: &[Content],
        styling: &Styling,
        temporal: Option<&mut TemporalStats>,
    ) -> Result<Vec<Tensor>> {
        if !matches!(styling, Styling::Trained) {
            return Err(Error::config(
                "Stylizer",
                "a trained network has its style built in: it takes no style images or presets",
            ));
        }
        if temporal.is_some() {
            return Err(Error::config(
                "Stylizer",
                "temporal statistics apply to the Magenta and AdaIN families",
            ));
        }
        if self.alpha != 1.0 {
            return Err(Error::config(
                "Stylizer",
                "alpha applies to the Magenta and AdaIN families (a trained network has no \
                 style to interpolate)",
            ));
        }
        let recorded = model.info().norm;
        let mode = if !self.norm_chosen || recorded == Some(self.norm) {
            NormMode::Eval
        } else {
            NormMode::Swap(self.norm)
        };
        let xs: Vec<Tensor> = contents.iter().map(|c| c.tensor.clone()).collect();
        model.net().paint(&xs, mode)
    }

    fn render_adain(
        &self,
        net: &AdaIn,
        contents: &[Content],
        styling: &Styling,
        mut temporal: Option<&mut TemporalStats>,
    ) -> Result<Vec<Tensor>> {
        let (blend, mask) = match styling {
            Styling::Blend(b) => (b.clone(), None),
            Styling::Masked { white, black, mask } => {
                (vec![(*white, 0.5), (*black, 0.5)], Some((*mask).clone()))
            }
            Styling::Preset(_) | Styling::Trained => {
                return Err(Error::config(
                    "Stylizer",
                    "the 26 presets belong to the Magenta family",
                ))
            }
        };
        check_blend(&blend)?;
        let opts = TransferOptions {
            alpha: self.alpha,
            norm: self.norm,
            mask,
        };
        let feats: Vec<Tensor> = contents
            .iter()
            .map(|c| c.features.clone().ok_or_else(not_prepared))
            .collect::<Result<_>>()?;
        let targets: Vec<Tensor> = if self.preserve == Some(PreserveColor::Coral) {
            // The recolored style depends on the content: one transfer per content (the content
            // batch stays whole, so `bn` statistics are unchanged).
            let mut out = Vec::with_capacity(contents.len());
            for (i, c) in contents.iter().enumerate() {
                let inputs = blend
                    .iter()
                    .map(|(s, w)| {
                        let recolored = coral(&self.tensor_of(&s.image)?, &c.tensor)?;
                        Ok(StyleInput {
                            features: net.encode(&recolored)?,
                            weight: *w,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                out.push(
                    net.transfer_temporal(&feats, &inputs, &opts, temporal.as_deref_mut())?
                        .swap_remove(i),
                );
            }
            out
        } else {
            let inputs = blend
                .iter()
                .map(|(s, w)| {
                    Ok(StyleInput {
                        features: self.adain_features(net, s)?,
                        weight: *w,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            net.transfer_temporal(&feats, &inputs, &opts, temporal)?
        };
        targets
            .iter()
            .zip(contents)
            .map(|(t, c)| {
                let (w, h) = c.dimensions();
                net.decode(t, (h as usize, w as usize))
            })
            .collect()
    }

    /// A style's relu4_1 features, encoded once.
    fn adain_features(&self, net: &AdaIn, s: &Style) -> Result<Tensor> {
        if let Some(f) = s.features.get() {
            return Ok(f.clone());
        }
        let _t = crate::profile::scope("encode style");
        let f = net.encode(&self.tensor_of(&s.image)?)?;
        Ok(s.features.get_or_init(|| f).clone())
    }

    fn tensor_of(&self, img: &Rgb) -> Result<Tensor> {
        imaging::to_tensor(img, &self.device)
    }
}

/// The Magenta arbitrary-style path of [`Stylizer::render_tensors`].
struct Magenta<'a> {
    st: &'a Stylizer,
    predictor: &'a StylePredictor,
    transformer: &'a Transformer,
}

impl Magenta<'_> {
    fn render(
        &self,
        contents: &[Content],
        styling: &Styling,
        mut temporal: Option<&mut TemporalStats>,
    ) -> Result<Vec<Tensor>> {
        match styling {
            Styling::Masked { white, black, mask } => {
                let ya = self.transform(contents, &[(*white, 1.0)], temporal.as_deref_mut())?;
                let yb = self.transform(contents, &[(*black, 1.0)], temporal)?;
                ya.iter()
                    .zip(&yb)
                    .map(|(a, b)| composite(a, b, mask))
                    .collect()
            }
            Styling::Blend(blend) => {
                check_blend(blend)?;
                self.transform(contents, blend, temporal)
            }
            // Presets run on the 26-style network (render_tensors routes them there).
            Styling::Preset(_) | Styling::Trained => Err(Error::config(
                "Stylizer",
                "presets run on the 26-style network, not the arbitrary-style transformer",
            )),
        }
    }

    /// The transformer with each content's (blended, α-mixed) style vector.
    fn transform(
        &self,
        contents: &[Content],
        blend: &[(&Style, f64)],
        temporal: Option<&mut TemporalStats>,
    ) -> Result<Vec<Tensor>> {
        // CORAL makes the vectors content-dependent; without it they are shared.
        let recolor = self.st.preserve == Some(PreserveColor::Coral);
        let mut shared: Option<Vec<f32>> = None;
        let mut vectors = Vec::with_capacity(contents.len());
        for c in contents {
            let v = match &shared {
                Some(v) => v.clone(),
                None => {
                    let mut v = vec![0f32; STYLE_DIM];
                    for (s, w) in blend {
                        let sv = if recolor {
                            self.recolored_vector(s, c)?
                        } else {
                            self.style_vector(s)?
                        };
                        for (a, b) in v.iter_mut().zip(sv) {
                            *a += *w as f32 * b;
                        }
                    }
                    if !recolor {
                        shared = Some(v.clone());
                    }
                    v
                }
            };
            vectors.push(self.mix_alpha(v, c)?);
        }
        let xs: Vec<Tensor> = contents.iter().map(|c| c.tensor.clone()).collect();
        self.transformer
            .forward_temporal(&xs, &vectors, self.st.norm, temporal)
    }

    /// v = α·v_style + (1 − α)·v_content, as Magenta interpolates.
    fn mix_alpha(&self, v: Vec<f32>, c: &Content) -> Result<Vec<f32>> {
        let alpha = self.st.alpha as f32;
        if alpha >= 1.0 {
            return Ok(v);
        }
        let own = match c.vector.get() {
            Some(own) => own,
            None => {
                let own = self.vector_of(&imaging::center_square(&c.image, PREDICTOR_SIDE))?;
                c.vector.get_or_init(|| own)
            }
        };
        Ok(v.iter()
            .zip(own)
            .map(|(s, x)| alpha * s + (1.0 - alpha) * x)
            .collect())
    }

    fn style_vector(&self, s: &Style) -> Result<Vec<f32>> {
        if let Some(v) = s.vector.get() {
            return Ok(v.clone());
        }
        let v = self.vector_of(&imaging::center_square(&s.image, PREDICTOR_SIDE))?;
        Ok(s.vector.get_or_init(|| v).clone())
    }

    /// The style's predictor square recolored to the content's colors (CORAL), then its vector.
    fn recolored_vector(&self, s: &Style, c: &Content) -> Result<Vec<f32>> {
        let square = imaging::center_square(&s.image, PREDICTOR_SIDE);
        let t = coral(&self.st.tensor_of(&square)?, &c.tensor)?;
        predictor_vector(self.predictor, &t)
    }

    fn vector_of(&self, img: &Rgb) -> Result<Vec<f32>> {
        predictor_vector(self.predictor, &self.st.tensor_of(img)?)
    }
}

/// The predictor's 100-d style vector of a (1, 3, H, W) image tensor.
fn predictor_vector(p: &StylePredictor, t: &Tensor) -> Result<Vec<f32>> {
    Ok(p.forward(t)?.flatten_all()?.to_vec1::<f32>()?)
}

impl Stylizer {
    /// The Magenta predictor's 100-d style vector of an image: its 256×256 center square
    /// (Magenta only).
    pub fn style_vector(&self, image: &Rgb) -> Result<Vec<f32>> {
        match &self.nets {
            Nets::Magenta { predictor, .. } => predictor_vector(
                predictor,
                &self.tensor_of(&imaging::center_square(image, PREDICTOR_SIDE))?,
            ),
            Nets::Adain(_) | Nets::Trained(_) => Err(Error::config(
                "Stylizer",
                "style vectors belong to the Magenta family",
            )),
        }
    }
}

/// AdaIN's encoder needs each side ≥ [`MIN_SIDE`] pixels.
fn check_adain_size(img: &Rgb) -> Result<()> {
    let (w, h) = img.dimensions();
    if (w.min(h) as usize) < MIN_SIDE {
        return Err(Error::TooSmall {
            width: w,
            height: h,
            min: MIN_SIDE as u32,
        });
    }
    Ok(())
}

fn check_blend(blend: &[(&Style, f64)]) -> Result<()> {
    if blend.is_empty() {
        return Err(Error::input("Stylizer", "no style images given"));
    }
    let sum: f64 = blend.iter().map(|(_, w)| w).sum();
    if blend.iter().any(|(_, w)| !w.is_finite() || *w < 0.0) || (sum - 1.0).abs() > 1e-6 {
        return Err(Error::input(
            "Stylizer",
            "style weights must be ≥ 0 and sum to 1 (see normalize_weights)",
        ));
    }
    Ok(())
}

fn check_preset(w: &[f64]) -> Result<()> {
    let sum: f64 = w.iter().sum();
    if w.len() != PRESET_COUNT
        || w.iter().any(|v| !v.is_finite() || *v < 0.0)
        || (sum - 1.0).abs() > 1e-6
    {
        return Err(Error::input(
            "Stylizer",
            format!("a preset blend is {PRESET_COUNT} weights ≥ 0 summing to 1"),
        ));
    }
    Ok(())
}

fn not_prepared() -> Error {
    Error::input(
        "Stylizer",
        "this content was prepared by a stylizer of another model family",
    )
}

fn first(mut v: Vec<RgbImage>) -> Result<RgbImage> {
    v.pop()
        .ok_or_else(|| Error::input("Stylizer", "no output was rendered"))
}

/// m·a + (1 − m)·b with the mask resized (nearest) to the images' size.
fn composite(a: &Tensor, b: &Tensor, mask: &Mask) -> Result<Tensor> {
    let (_, _, h, w) = a.dims4()?;
    let m: Vec<f32> = mask
        .resized(w, h)
        .iter()
        .map(|&x| f32::from(u8::from(x)))
        .collect();
    let m = Tensor::from_vec(m, (1, 1, h, w), a.device())?;
    let inv = (1.0 - &m)?;
    Ok((a.broadcast_mul(&m)? + b.broadcast_mul(&inv)?)?)
}
