//! The two model families behind `stylize`: each turns the call's content tensors and one
//! [`StyleSpec`] into one output tensor per content, at the content's size.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle::{Device, Tensor};

use super::stylize::StyleSpec;
use crate::color::{coral, PreserveColor};
use crate::imaging::{self, Rgb};
use crate::model::adain::{AdaIn, Mask, StyleInput, TransferOptions};
use crate::model::magenta::{Multistyle, StylePredictor, Transformer, STYLE_DIM};
use crate::norm::NormKind;

/// What every engine needs besides the spec.
pub struct Common {
    pub device: Device,
    pub alpha: f64,
    pub norm: NormKind,
    pub preserve: Option<PreserveColor>,
    pub mask: Option<Mask>,
}

/// A loaded model family.
#[allow(clippy::large_enum_variant)] // one value per call
pub enum Engine {
    /// AdaIN: relu4_1 features of the contents (computed once) and of each style image.
    Adain {
        net: Box<AdaIn>,
        content_features: Vec<Tensor>,
        style_features: HashMap<PathBuf, Tensor>,
    },
    /// Magenta: predictor (for style images), transformer, 26-style network.
    Magenta {
        predictor: Option<StylePredictor>,
        transformer: Option<Transformer>,
        multistyle: Option<Multistyle>,
        content_vectors: Vec<Vec<f32>>,
        /// Style vectors by style image (computed once per image, not once per pair).
        style_vectors: HashMap<PathBuf, Vec<f32>>,
    },
}

impl Engine {
    /// Loads AdaIN from two checkpoints and encodes the contents.
    pub fn adain(
        vgg: &Path,
        decoder: &Path,
        contents: &[Tensor],
        c: &Common,
    ) -> anyhow::Result<Self> {
        let net = AdaIn::load(vgg, decoder, &c.device)?;
        let _t = crate::profile::scope("encode content");
        let content_features = contents
            .iter()
            .map(|x| net.encode(x))
            .collect::<Result<_, _>>()?;
        Ok(Engine::Adain {
            net: Box::new(net),
            content_features,
            style_features: HashMap::new(),
        })
    }

    /// Loads the embedded Magenta networks the specs need.
    pub fn magenta(presets: bool, contents: &[Rgb], c: &Common) -> anyhow::Result<Self> {
        let (predictor, transformer, multistyle) = if presets {
            (None, None, Some(Multistyle::embedded(&c.device)?))
        } else {
            (
                Some(StylePredictor::embedded(&c.device)?),
                Some(Transformer::embedded(&c.device)?),
                None,
            )
        };
        let mut engine = Engine::Magenta {
            predictor,
            transformer,
            multistyle,
            content_vectors: Vec::new(),
            style_vectors: HashMap::new(),
        };
        engine.set_contents(&[], contents, c)?;
        Ok(engine)
    }

    /// Switches to another set of contents (a batch run, one photo at a time): AdaIN encodes
    /// them; Magenta computes their own style vectors when α < 1.
    pub fn set_contents(
        &mut self,
        tensors: &[Tensor],
        images: &[Rgb],
        c: &Common,
    ) -> anyhow::Result<()> {
        match self {
            Engine::Adain {
                net,
                content_features,
                ..
            } => {
                let _t = crate::profile::scope("encode content");
                *content_features = tensors
                    .iter()
                    .map(|x| net.encode(x))
                    .collect::<Result<_, _>>()?;
            }
            Engine::Magenta { predictor, .. } => {
                // α < 1 interpolates with the content's own style vector (as Magenta does).
                let v = if predictor.is_some() && c.alpha < 1.0 {
                    images
                        .iter()
                        .map(|img| self.style_vector(img, c))
                        .collect::<anyhow::Result<_>>()?
                } else {
                    Vec::new()
                };
                if let Engine::Magenta {
                    content_vectors, ..
                } = self
                {
                    *content_vectors = v;
                }
            }
        }
        Ok(())
    }

    /// The model's name in logs and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Adain { .. } => "adain",
            Engine::Magenta { .. } => "magenta",
        }
    }

    /// One output per content for `spec`. `styles` holds the decoded style images by path
    /// (already resized as the model wants); `contents`/`content_images` are the same images.
    pub fn render(
        &mut self,
        spec: &StyleSpec,
        contents: &[Tensor],
        content_images: &[Rgb],
        styles: &HashMap<PathBuf, Rgb>,
        c: &Common,
    ) -> anyhow::Result<Vec<Tensor>> {
        let blend: Vec<(PathBuf, f64)> = match spec {
            StyleSpec::Images(v) => v.clone(),
            StyleSpec::Masked([a, b]) => vec![(a.clone(), 0.5), (b.clone(), 0.5)],
            StyleSpec::Preset(w) => {
                let Engine::Magenta {
                    multistyle: Some(m),
                    ..
                } = self
                else {
                    anyhow::bail!("--preset needs --model magenta");
                };
                return Ok(m.forward(contents, w, c.norm)?);
            }
        };
        let image = |p: &PathBuf| {
            styles
                .get(p)
                .with_context(|| format!("{}: not loaded", p.display()))
        };
        let coral_for = |p: &PathBuf, content: &Rgb| -> anyhow::Result<Tensor> {
            let s = imaging::to_tensor(image(p)?, &c.device)?;
            let ct = imaging::to_tensor(content, &c.device)?;
            coral(&s, &ct).with_context(|| format!("recoloring {}", p.display()))
        };
        match self {
            Engine::Adain {
                net,
                content_features,
                style_features,
            } => {
                let opts = TransferOptions {
                    alpha: c.alpha,
                    norm: c.norm,
                    mask: c.mask.clone(),
                };
                let mut features = |p: &PathBuf| -> anyhow::Result<Tensor> {
                    if let Some(f) = style_features.get(p) {
                        return Ok(f.clone());
                    }
                    let _t = crate::profile::scope("encode style");
                    let t = imaging::to_tensor(image(p)?, &c.device)?;
                    let f = net.encode(&t).with_context(|| format!("{}", p.display()))?;
                    style_features.insert(p.clone(), f.clone());
                    Ok(f)
                };
                let targets: Vec<Tensor> = if c.preserve == Some(PreserveColor::Coral) {
                    // The recolored style depends on the content: one transfer per content (the
                    // content batch stays whole, so `bn` statistics are unchanged).
                    let mut out = Vec::with_capacity(contents.len());
                    for (i, img) in content_images.iter().enumerate() {
                        let inputs = blend
                            .iter()
                            .map(|(p, w)| {
                                Ok(StyleInput {
                                    features: net.encode(&coral_for(p, img)?)?,
                                    weight: *w,
                                })
                            })
                            .collect::<anyhow::Result<Vec<_>>>()?;
                        out.push(
                            net.transfer(content_features, &inputs, &opts)?
                                .swap_remove(i),
                        );
                    }
                    out
                } else {
                    let inputs = blend
                        .iter()
                        .map(|(p, w)| {
                            Ok(StyleInput {
                                features: features(p)?,
                                weight: *w,
                            })
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    net.transfer(content_features, &inputs, &opts)?
                };
                targets
                    .iter()
                    .zip(contents)
                    .map(|(t, x)| {
                        let (_, _, h, w) = x.dims4()?;
                        Ok(net.decode(t, (h, w))?)
                    })
                    .collect()
            }
            Engine::Magenta { .. } => {
                // Style vectors per content (CORAL makes them content-dependent); without CORAL
                // each style image's vector is computed once and kept.
                let recolor = c.preserve == Some(PreserveColor::Coral);
                if !recolor {
                    let mut paths: Vec<&PathBuf> = blend.iter().map(|(p, _)| p).collect();
                    if let StyleSpec::Masked([a, b]) = spec {
                        paths = vec![a, b];
                    }
                    for p in paths {
                        let missing = matches!(self, Engine::Magenta { style_vectors, .. } if !style_vectors.contains_key(p));
                        if missing {
                            let v = self
                                .style_vector(image(p)?, c)
                                .with_context(|| format!("{}", p.display()))?;
                            if let Engine::Magenta { style_vectors, .. } = self {
                                style_vectors.insert(p.clone(), v);
                            }
                        }
                    }
                }
                let this: &Engine = self;
                let cached = |p: &PathBuf| match this {
                    Engine::Magenta { style_vectors, .. } => style_vectors.get(p).cloned(),
                    Engine::Adain { .. } => None,
                };
                let vector = |p: &PathBuf, content: &Rgb| -> anyhow::Result<Vec<f32>> {
                    if !recolor {
                        if let Some(v) = cached(p) {
                            return Ok(v);
                        }
                    }
                    let square = imaging::center_square(image(p)?, 256);
                    let mut t = imaging::to_tensor(&square, &c.device)?;
                    if recolor {
                        let ct = imaging::to_tensor(content, &c.device)?;
                        t = coral(&t, &ct)
                            .with_context(|| format!("recoloring {}", p.display()))?;
                    }
                    self.vector_of_tensor(&t)
                        .with_context(|| format!("{}", p.display()))
                };
                let per_content = |blend: &[(PathBuf, f64)]| -> anyhow::Result<Vec<Vec<f32>>> {
                    let mut shared: Option<Vec<f32>> = None;
                    let mut out = Vec::with_capacity(contents.len());
                    for (i, img) in content_images.iter().enumerate() {
                        let v = match &shared {
                            Some(v) => v.clone(),
                            None => {
                                let mut v = vec![0f32; STYLE_DIM];
                                for (p, w) in blend {
                                    for (a, b) in v.iter_mut().zip(vector(p, img)?) {
                                        *a += *w as f32 * b;
                                    }
                                }
                                if !recolor {
                                    shared = Some(v.clone());
                                }
                                v
                            }
                        };
                        out.push(self.mix_alpha(v, i, c));
                    }
                    Ok(out)
                };
                match spec {
                    StyleSpec::Masked([a, b]) => {
                        let va = per_content(&[(a.clone(), 1.0)])?;
                        let vb = per_content(&[(b.clone(), 1.0)])?;
                        let ya = self.transform(contents, &va, c)?;
                        let yb = self.transform(contents, &vb, c)?;
                        let mask = c.mask.as_ref().context("--mask not loaded")?;
                        ya.iter()
                            .zip(&yb)
                            .map(|(ya, yb)| composite(ya, yb, mask))
                            .collect()
                    }
                    _ => {
                        let v = per_content(&blend)?;
                        self.transform(contents, &v, c)
                    }
                }
            }
        }
    }

    fn transform(
        &self,
        contents: &[Tensor],
        vectors: &[Vec<f32>],
        c: &Common,
    ) -> anyhow::Result<Vec<Tensor>> {
        match self {
            Engine::Magenta {
                transformer: Some(t),
                ..
            } => Ok(t.forward(contents, vectors, c.norm)?),
            _ => anyhow::bail!("the Magenta transformer is not loaded"),
        }
    }

    /// v = α·v_style + (1 − α)·v_content for content `i`.
    fn mix_alpha(&self, v: Vec<f32>, i: usize, c: &Common) -> Vec<f32> {
        match self {
            Engine::Magenta {
                content_vectors, ..
            } if !content_vectors.is_empty() => v
                .iter()
                .zip(&content_vectors[i])
                .map(|(s, x)| c.alpha as f32 * s + (1.0 - c.alpha as f32) * x)
                .collect(),
            _ => v,
        }
    }

    /// The predictor's style vector of an image (center square, 256×256).
    fn style_vector(&self, img: &Rgb, c: &Common) -> anyhow::Result<Vec<f32>> {
        let t = imaging::to_tensor(&imaging::center_square(img, 256), &c.device)?;
        self.vector_of_tensor(&t)
    }

    /// The AdaIN network and the content features, when this is the AdaIN engine.
    pub fn adain_parts(&self) -> Option<(&AdaIn, &[Tensor])> {
        match self {
            Engine::Adain {
                net,
                content_features,
                ..
            } => Some((net, content_features)),
            Engine::Magenta { .. } => None,
        }
    }

    /// The predictor's style vector of an image tensor (1, 3, H, W) (Magenta only).
    pub fn vector_of_tensor(&self, t: &Tensor) -> anyhow::Result<Vec<f32>> {
        match self {
            Engine::Magenta {
                predictor: Some(p), ..
            } => Ok(p.forward(t)?.flatten_all()?.to_vec1::<f32>()?),
            _ => anyhow::bail!("the style predictor is not loaded"),
        }
    }
}

/// m·a + (1 − m)·b with the mask resized (nearest) to the images' size.
fn composite(a: &Tensor, b: &Tensor, mask: &Mask) -> anyhow::Result<Tensor> {
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
