//! The loss network and the losses of single-style training (docs/ARCHITECTURE.md §7):
//! content loss = MSE of one layer's features of the output and of the content; style loss =
//! Σ over layers of the MSE of the features' per-channel mean and standard deviation (the AdaIN
//! paper's) or of their Gram matrices, against the style image's; total variation on the output.

use std::fmt;
use std::str::FromStr;

use candle::{Device, Tensor};

use crate::model::adain::Encoder;
use crate::model::magenta::StylePredictor;
use crate::{Error, Result};

/// Which network the losses are measured in (`--loss-net`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossNetKind {
    /// The embedded MobileNetV2 style predictor (offline): style at blocks 2, 5, 9, 12
    /// (24, 32, 64, 96 channels), content at block 5 ([`PREDICTOR_CONTENT_BLOCK`]).
    Predictor,
    /// AdaIN's `vgg_normalised` to relu4_1: style at relu1_1 … relu4_1, content at relu4_1.
    Vgg,
}

impl LossNetKind {
    /// The name `--loss-net` and the metadata use.
    pub fn name(self) -> &'static str {
        match self {
            LossNetKind::Predictor => "predictor",
            LossNetKind::Vgg => "vgg",
        }
    }
}

impl fmt::Display for LossNetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LossNetKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "predictor" => Ok(LossNetKind::Predictor),
            "vgg" => Ok(LossNetKind::Vgg),
            other => Err(Error::Parse {
                what: "loss network".into(),
                msg: format!("unknown loss network `{other}` (expected predictor or vgg)"),
            }),
        }
    }
}

/// How style is compared (`--style-loss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StyleLoss {
    /// Per-channel mean and standard deviation (Huang & Belongie 2017, eq. 9).
    Stats,
    /// Gram matrices normalized by C·H·W (Johnson et al. 2016).
    Gram,
}

impl StyleLoss {
    /// The name `--style-loss` uses.
    pub fn name(self) -> &'static str {
        match self {
            StyleLoss::Stats => "stats",
            StyleLoss::Gram => "gram",
        }
    }
}

impl FromStr for StyleLoss {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stats" => Ok(StyleLoss::Stats),
            "gram" => Ok(StyleLoss::Gram),
            other => Err(Error::Parse {
                what: "style loss".into(),
                msg: format!("unknown style loss `{other}` (expected stats or gram)"),
            }),
        }
    }
}

/// Predictor blocks the style loss reads (0-based indices into MobileNetV2's 17 blocks).
pub const PREDICTOR_STYLE_BLOCKS: [usize; 4] = [2, 5, 9, 12];
/// The predictor block the content loss reads: block 5 (32 channels at ⅛ resolution), not the
/// issue's first guess, block 9 (64 channels at 1/16): at 128² crops block 9 is 8×8, and in a
/// 200-step run with it the photo's layout vanished from the output entirely (Chicago's skyline
/// gone), while with block 5 it stays visible.
pub const PREDICTOR_CONTENT_BLOCK: usize = 5;

#[derive(Clone, Debug)]
enum Net {
    Predictor {
        net: StylePredictor,
        style_blocks: Vec<usize>,
        content_block: usize,
    },
    Vgg(Encoder),
}

/// A loss network with its taps.
#[derive(Clone, Debug)]
pub struct LossNet {
    net: Net,
    style_loss: StyleLoss,
}

/// The style's targets at every style tap: (mean, std) pairs of shape (1, C) or Gram matrices
/// (1, C, C), detached.
#[derive(Clone, Debug)]
pub struct StyleTargets(Vec<Target>);

#[derive(Clone, Debug)]
enum Target {
    Stats(Tensor, Tensor),
    Gram(Tensor),
}

/// Features at the taps: the style layers' maps and the content layer's.
#[derive(Clone, Debug)]
pub struct Features {
    /// One (N, Cᵢ, Hᵢ, Wᵢ) map per style tap.
    pub style: Vec<Tensor>,
    /// The content tap's (N, C, H, W) map.
    pub content: Tensor,
}

impl LossNet {
    /// The embedded MobileNetV2 predictor on `device`.
    pub fn predictor(device: &Device, style_loss: StyleLoss) -> Result<Self> {
        Self::predictor_taps(
            device,
            style_loss,
            &PREDICTOR_STYLE_BLOCKS,
            PREDICTOR_CONTENT_BLOCK,
        )
    }

    /// The embedded predictor with other taps: the outputs of `style_blocks` for the style
    /// loss and of `content_block` for the content loss (0-based, < 17).
    pub fn predictor_taps(
        device: &Device,
        style_loss: StyleLoss,
        style_blocks: &[usize],
        content_block: usize,
    ) -> Result<Self> {
        if style_blocks.is_empty()
            || style_blocks
                .iter()
                .chain([&content_block])
                .any(|&b| StylePredictor::block_channels(b).is_none())
        {
            return Err(Error::config(
                "loss network",
                format!("taps {style_blocks:?} and {content_block}: give blocks 0 to 16"),
            ));
        }
        Ok(LossNet {
            net: Net::Predictor {
                net: StylePredictor::embedded(device)?,
                style_blocks: style_blocks.to_vec(),
                content_block,
            },
            style_loss,
        })
    }

    /// AdaIN's VGG encoder (weights of `vgg_normalised.pth`, or random ones of its shapes).
    pub fn vgg(encoder: Encoder, style_loss: StyleLoss) -> Self {
        LossNet {
            net: Net::Vgg(encoder),
            style_loss,
        }
    }

    /// Which network this is.
    pub fn kind(&self) -> LossNetKind {
        match self.net {
            Net::Predictor { .. } => LossNetKind::Predictor,
            Net::Vgg(_) => LossNetKind::Vgg,
        }
    }

    /// The style comparison.
    pub fn style_loss(&self) -> StyleLoss {
        self.style_loss
    }

    /// Features of `x`: (N, 3, H, W) RGB in [0, 1]; a graph `x` records is kept.
    pub fn features(&self, x: &Tensor) -> Result<Features> {
        match &self.net {
            Net::Predictor {
                net,
                style_blocks,
                content_block,
            } => {
                let last = style_blocks
                    .iter()
                    .copied()
                    .chain([*content_block])
                    .max()
                    .unwrap_or(0);
                let blocks = net.block_outputs(x, last)?;
                Ok(Features {
                    style: style_blocks.iter().map(|&i| blocks[i].clone()).collect(),
                    content: blocks[*content_block].clone(),
                })
            }
            Net::Vgg(e) => {
                let taps = e.taps(x)?;
                let content = taps
                    .last()
                    .cloned()
                    .ok_or_else(|| Error::input("loss network", "no relu4_1 features"))?;
                Ok(Features {
                    style: taps,
                    content,
                })
            }
        }
    }

    /// The style image's targets. `style`: (1, 3, H, W) RGB in [0, 1].
    pub fn style_targets(&self, style: &Tensor) -> Result<StyleTargets> {
        let f = self.features(&style.detach())?;
        f.style
            .iter()
            .map(|m| {
                Ok(match self.style_loss {
                    StyleLoss::Stats => {
                        let (mu, sigma) = mean_std(m)?;
                        Target::Stats(mu.detach(), sigma.detach())
                    }
                    StyleLoss::Gram => Target::Gram(gram(m)?.detach()),
                })
            })
            .collect::<Result<_>>()
            .map(StyleTargets)
    }

    /// The style loss of `maps` (the output's style-tap features) against `targets`, a scalar.
    pub fn style_loss_of(&self, maps: &[Tensor], targets: &StyleTargets) -> Result<Tensor> {
        if maps.len() != targets.0.len() {
            return Err(Error::input(
                "style loss",
                format!(
                    "{} feature maps for {} targets",
                    maps.len(),
                    targets.0.len()
                ),
            ));
        }
        let mut total: Option<Tensor> = None;
        for (m, t) in maps.iter().zip(&targets.0) {
            let term = match t {
                Target::Stats(mu_t, sigma_t) => {
                    let (mu, sigma) = mean_std(m)?;
                    (mse(&mu, mu_t)? + mse(&sigma, sigma_t)?)?
                }
                Target::Gram(g_t) => mse(&gram(m)?, g_t)?,
            };
            total = Some(match total {
                None => term,
                Some(acc) => (acc + term)?,
            });
        }
        total.ok_or_else(|| Error::input("style loss", "no style taps"))
    }
}

/// Per-channel mean and standard deviation over (H, W), as pytorch-AdaIN's `calc_mean_std`:
/// unbiased variance + 1e-5 under the root. (N, C, H, W) → two (N, C) tensors.
pub fn mean_std(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (_, _, h, w) = x.dims4()?;
    if h * w < 2 {
        return Err(Error::input(
            "style loss",
            format!("a {h}×{w} feature map has no spread; train on larger crops"),
        ));
    }
    super::stats::mean_std(x)
}

/// Gram matrices F·Fᵀ / (C·H·W): (N, C, H, W) → (N, C, C).
pub fn gram(x: &Tensor) -> Result<Tensor> {
    super::stats::gram(x)
}

/// Mean squared error of `a` against `b`, broadcasting `b`'s batch of 1 over `a`'s.
pub fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    super::stats::mse(a, b)
}

/// Total variation: the mean squared difference of vertically and horizontally adjacent
/// pixels, summed. (N, C, H, W) → a scalar.
pub fn total_variation(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let dy = (x.narrow(2, 1, h - 1)? - x.narrow(2, 0, h - 1)?)?;
    let dx = (x.narrow(3, 1, w - 1)? - x.narrow(3, 0, w - 1)?)?;
    Ok((dy.sqr()?.mean_all()? + dx.sqr()?.mean_all()?)?)
}
