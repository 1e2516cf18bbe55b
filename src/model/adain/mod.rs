//! AdaIN (Huang & Belongie, ICCV 2017), exactly as naoto0804/pytorch-AdaIN's `net.py` and
//! `test.py`: the "normalised" VGG-19 encoder up to relu4_1, statistics alignment, and the mirrored
//! decoder. Weight keys are the `nn.Sequential` module indices of the released files
//! (`vgg_normalised.pth`: `0.weight` … `29.bias`, a full 53-module file or one truncated after
//! relu4_1; `decoder.pth`: `1.weight` … `28.bias`).
//!
//! Images are (1, 3, H, W) f32 RGB in [0, 1]; features are (1, C, ⌈H/8⌉, ⌈W/8⌉) for relu4_1
//! (ceil-mode pooling). [`AdaIn::stylize`] returns each output cropped to its content's size.

mod transfer;

pub use transfer::{Mask, StyleInput, TransferOptions, MIN_SIDE};

use std::path::Path;

use candle::{Device, Tensor};

use crate::ops::{conv2d, max_pool2x2_ceil, reflection_pad2d, upsample_nearest2x};
use crate::weights::TensorMap;
use crate::{Error, Result};

/// Channels of relu4_1, the AdaIN feature space.
pub const FEATURE_CHANNELS: usize = 512;

/// One layer of the encoder or decoder, in module order.
#[derive(Clone, Debug)]
enum Layer {
    /// Reflection pad 1 (for 3×3) or none (1×1), conv, optional ReLU.
    Conv {
        weight: Tensor,
        bias: Tensor,
        relu: bool,
    },
    /// 2×2 max pool, stride 2, ceil mode.
    Pool,
    /// Nearest ×2 upsampling.
    Up,
}

impl Layer {
    fn conv(
        map: &TensorMap,
        index: usize,
        (cin, cout, k): (usize, usize, usize),
        relu: bool,
    ) -> Result<Self> {
        Ok(Layer::Conv {
            weight: map.get(&format!("{index}.weight"), &[cout, cin, k, k])?,
            bias: map.get(&format!("{index}.bias"), &[cout])?,
            relu,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Layer::Conv { weight, bias, relu } => {
                let k = weight.dims()[3];
                let x = reflection_pad2d(x, k / 2)?;
                let y = conv2d(&x, weight, Some(bias), 1, 1)?;
                Ok(if *relu { y.relu()? } else { y })
            }
            Layer::Pool => max_pool2x2_ceil(x),
            Layer::Up => upsample_nearest2x(x),
        }
    }
}

/// A conv's module index and (Cin, Cout, k), or `None` for a max pool.
type Step = Option<(usize, (usize, usize, usize))>;

/// The normalised VGG-19 encoder up to relu4_1.
#[derive(Clone, Debug)]
pub struct Encoder {
    /// Four stages ending at relu1_1, relu2_1, relu3_1, relu4_1 (pytorch-AdaIN's enc_1 … enc_4).
    stages: [Vec<Layer>; 4],
}

impl Encoder {
    /// Conv module indices and (Cin, Cout, k) per stage, as DESIGN.md §4 lists them; `None`
    /// marks a max pool.
    const STAGES: [&'static [Step]; 4] = [
        &[Some((0, (3, 3, 1))), Some((2, (3, 64, 3)))],
        &[Some((5, (64, 64, 3))), None, Some((9, (64, 128, 3)))],
        &[Some((12, (128, 128, 3))), None, Some((16, (128, 256, 3)))],
        &[
            Some((19, (256, 256, 3))),
            Some((22, (256, 256, 3))),
            Some((25, (256, 256, 3))),
            None,
            Some((29, (256, 512, 3))),
        ],
    ];

    /// Builds the encoder from a checkpoint with the released key names.
    pub fn load(map: &TensorMap) -> Result<Self> {
        let stage = |s: usize| -> Result<Vec<Layer>> {
            Self::STAGES[s]
                .iter()
                .map(|l| match l {
                    // The leading 1×1 conv (RGB → BGR·255 − mean) has no ReLU.
                    Some((0, dims)) => Layer::conv(map, 0, *dims, false),
                    Some((i, dims)) => Layer::conv(map, *i, *dims, true),
                    None => Ok(Layer::Pool),
                })
                .collect()
        };
        Ok(Encoder {
            stages: [stage(0)?, stage(1)?, stage(2)?, stage(3)?],
        })
    }

    /// relu4_1 features: (N, 3, H, W) → (N, 512, ⌈H/8⌉, ⌈W/8⌉).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.taps(x)?.pop().unwrap_or_else(|| x.clone()))
    }

    /// The four taps relu1_1, relu2_1, relu3_1, relu4_1 (64, 128, 256, 512 channels at full,
    /// ½, ¼ and ⅛ resolution, rounded up).
    pub fn taps(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut out = Vec::with_capacity(4);
        let mut h = x.clone();
        for stage in &self.stages {
            for layer in stage {
                h = layer.forward(&h)?;
            }
            out.push(h.clone());
        }
        Ok(out)
    }
}

/// The decoder: relu4_1 features → RGB (no final activation; ≈ [0, 1]).
#[derive(Clone, Debug)]
pub struct Decoder {
    layers: Vec<Layer>,
}

impl Decoder {
    /// Builds the decoder from a checkpoint with the released key names.
    pub fn load(map: &TensorMap) -> Result<Self> {
        let c = |i, dims| Layer::conv(map, i, dims, true);
        let layers = vec![
            c(1, (512, 256, 3))?,
            Layer::Up,
            c(5, (256, 256, 3))?,
            c(8, (256, 256, 3))?,
            c(11, (256, 256, 3))?,
            c(14, (256, 128, 3))?,
            Layer::Up,
            c(18, (128, 128, 3))?,
            c(21, (128, 64, 3))?,
            Layer::Up,
            c(25, (64, 64, 3))?,
            Layer::conv(map, 28, (64, 3, 3), false)?,
        ];
        Ok(Decoder { layers })
    }

    /// (N, 512, h, w) → (N, 3, 8h, 8w).
    pub fn forward(&self, t: &Tensor) -> Result<Tensor> {
        let mut h = t.clone();
        for layer in &self.layers {
            h = layer.forward(&h)?;
        }
        Ok(h)
    }
}

/// The AdaIN network: encoder and decoder.
#[derive(Clone, Debug)]
pub struct AdaIn {
    /// The VGG encoder.
    pub encoder: Encoder,
    /// The decoder.
    pub decoder: Decoder,
}

impl AdaIn {
    /// Loads both checkpoints (legacy `.pth`, zip `.pth` or safetensors). Errors name the file,
    /// and a file of the wrong part (the decoder given as the encoder, …) says so.
    pub fn load(vgg: &Path, decoder: &Path, device: &Device) -> Result<Self> {
        Ok(AdaIn {
            encoder: load_part(
                vgg,
                device,
                "the normalised VGG-19 encoder (vgg_normalised.pth)",
                Encoder::load,
            )?,
            decoder: load_part(
                decoder,
                device,
                "an AdaIN decoder (decoder.pth)",
                Decoder::load,
            )?,
        })
    }

    /// Builds the network from checkpoints already in memory.
    pub fn from_maps(vgg: &TensorMap, decoder: &TensorMap) -> Result<Self> {
        Ok(AdaIn {
            encoder: Encoder::load(vgg)?,
            decoder: Decoder::load(decoder)?,
        })
    }
}

/// Loads one checkpoint and builds `which` from it; a missing key says the file is not `which`.
fn load_part<T>(
    path: &Path,
    device: &Device,
    which: &str,
    build: impl Fn(&TensorMap) -> Result<T>,
) -> Result<T> {
    let map = TensorMap::load(path, device)?;
    build(&map).map_err(|e| match e {
        Error::MissingTensor { key } => Error::InFile {
            path: path.to_path_buf(),
            inner: Box::new(Error::Parse {
                what: format!("missing tensor `{key}`"),
                msg: format!("this is not {which}"),
            }),
        },
        other => other.in_file(path),
    })
}
