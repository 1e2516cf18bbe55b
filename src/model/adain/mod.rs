//! AdaIN (Huang & Belongie, ICCV 2017), exactly as naoto0804/pytorch-AdaIN's `net.py` and
//! `test.py`: the "normalised" VGG-19 encoder up to relu4_1, statistics alignment, and the mirrored
//! decoder. Weight keys are the `nn.Sequential` module indices of the released files
//! (`vgg_normalised.pth`: `0.weight` … `29.bias`, a full 53-module file or one truncated after
//! relu4_1; `decoder.pth`: `1.weight` … `28.bias`).
//!
//! Images are (1, 3, H, W) f32 RGB in [0, 1]; features are (1, C, ⌈H/8⌉, ⌈W/8⌉) for relu4_1
//! (ceil-mode pooling). [`AdaIn::stylize`] returns each output cropped to its content's size.

mod decoder;
mod tiles;
mod transfer;
mod vgg;

pub use decoder::Decoder;
pub use tiles::MARGIN;
pub use transfer::{Mask, StyleInput, TransferOptions, MIN_SIDE};
pub use vgg::Encoder;

use std::path::Path;

use candle::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::ops::{
    conv2d_prepared, max_pool2x2_ceil, upsample_nearest2x, Activation, ConvSpec, Padding,
    WinogradWeights,
};
use crate::weights::{tensor, Layout, TensorMap};
use crate::{Error, Result};

/// Channels of relu4_1, the AdaIN feature space.
pub const FEATURE_CHANNELS: usize = 512;

/// A conv's module index and (Cin, Cout, k), or `None` for a pool (encoder) or an upsampling
/// (decoder).
type Step = Option<(usize, (usize, usize, usize))>;

/// One layer of the encoder or decoder, in module order.
#[derive(Clone, Debug)]
pub(crate) enum Layer {
    /// Reflection pad 1 (for 3×3) or none (1×1), conv, optional ReLU.
    Conv {
        weight: Tensor,
        bias: Tensor,
        relu: bool,
        /// The 3×3 weight transformed for Winograd, once, at load.
        winograd: Option<std::sync::Arc<WinogradWeights>>,
    },
    /// 2×2 max pool, stride 2, ceil mode.
    Pool,
    /// Nearest ×2 upsampling.
    Up,
}

/// The dtype of the first conv's weight among `layers` (f32 without one).
fn layers_dtype<'a>(layers: impl IntoIterator<Item = &'a Layer>) -> DType {
    layers
        .into_iter()
        .find_map(|l| match l {
            Layer::Conv { weight, .. } => Some(weight.dtype()),
            _ => None,
        })
        .unwrap_or(DType::F32)
}

impl Layer {
    fn conv(
        vb: &VarBuilder,
        index: usize,
        (cin, cout, k): (usize, usize, usize),
        relu: bool,
    ) -> Result<Self> {
        let weight = tensor(vb, &format!("{index}.weight"), &[cout, cin, k, k])?;
        Ok(Layer::Conv {
            winograd: WinogradWeights::new(&weight)?.map(std::sync::Arc::new),
            weight,
            bias: tensor(vb, &format!("{index}.bias"), &[cout])?,
            relu,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Layer::Conv {
                weight,
                bias,
                relu,
                winograd,
            } => {
                let k = weight.dims()[3];
                let spec = ConvSpec {
                    padding: Padding::Reflect(k / 2),
                    act: if *relu {
                        Activation::Relu
                    } else {
                        Activation::None
                    },
                    ..ConvSpec::default()
                };
                conv2d_prepared(x, weight, Some(bias), spec, winograd.as_deref())
            }
            Layer::Pool => max_pool2x2_ceil(x),
            Layer::Up => upsample_nearest2x(x),
        }
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
    /// Loads both checkpoints (legacy `.pth`, zip `.pth`, or safetensors, which are
    /// memory-mapped) through [`crate::weights::var_builder`]. Errors name the file, and a file of
    /// the wrong part (the decoder given as the encoder, …) says so.
    pub fn load(vgg: &Path, decoder: &Path, device: &Device) -> Result<Self> {
        Self::load_dtype(vgg, decoder, device, DType::F32)
    }

    /// [`Self::load`] with the weights in `dtype` (f16 or bf16 on a GPU: half the memory and
    /// the GPU's half-precision units). Images go in and come out as f32 whatever the dtype;
    /// the statistics are computed in f32.
    pub fn load_dtype(vgg: &Path, decoder: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let _t = crate::profile::scope("load weights");
        Ok(AdaIn {
            encoder: load_part(
                vgg,
                device,
                dtype,
                "the normalised VGG-19 encoder (vgg_normalised.pth)",
                Encoder::new,
            )?,
            decoder: load_part(
                decoder,
                device,
                dtype,
                "an AdaIN decoder (decoder.pth)",
                Decoder::new,
            )?,
        })
    }

    /// The dtype of the weights (and of the features [`Self::encode`] returns).
    pub fn dtype(&self) -> DType {
        self.encoder.dtype()
    }

    /// The network with He-uniform random weights (seeded: the same on every run) and zero
    /// biases on `device`, for benchmarks (the timing does not depend on the values) and tests.
    pub fn random(device: &Device) -> Result<Self> {
        let mut rng = crate::rng::Rng::new(0x4ada1, 0);
        let mut map = |convs: &mut dyn Iterator<Item = (usize, (usize, usize, usize))>| {
            let mut m = TensorMap::default();
            for (i, (cin, cout, k)) in convs {
                let bound = (6.0 / (cin * k * k) as f64).sqrt();
                let w = rng.uniform_tensor(-bound, bound, (cout, cin, k, k), device)?;
                m.insert(format!("{i}.weight"), w);
                let b = Tensor::zeros(cout, candle::DType::F32, device)?;
                m.insert(format!("{i}.bias"), b);
            }
            Ok::<_, Error>(m)
        };
        Self::from_maps(
            &map(&mut Encoder::conv_shapes())?,
            &map(&mut Decoder::conv_shapes())?,
        )
    }

    /// Builds the network from two `VarBuilder`s with the released key names (`0.weight` …
    /// for the encoder, `1.weight` … for the decoder), as candle-transformers' models build.
    pub fn new(vgg: &VarBuilder, decoder: &VarBuilder) -> Result<Self> {
        Ok(AdaIn {
            encoder: Encoder::new(vgg)?,
            decoder: Decoder::new(decoder)?,
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

/// The AdaIN checkpoints by role (`vgg`, `decoder`, as the store names them) and the tensors
/// each must hold.
pub fn layouts() -> [(&'static str, Layout); 2] {
    [
        ("vgg", layout_of(Encoder::conv_shapes())),
        ("decoder", layout_of(Decoder::conv_shapes())),
    ]
}

/// `i.weight` (Cout, Cin, k, k) and `i.bias` (Cout) of every conv.
fn layout_of(convs: impl Iterator<Item = (usize, (usize, usize, usize))>) -> Layout {
    let tensors = convs
        .flat_map(|(i, (cin, cout, k))| {
            [
                (format!("{i}.weight"), vec![cout, cin, k, k]),
                (format!("{i}.bias"), vec![cout]),
            ]
        })
        .collect();
    Layout { tensors }
}

/// Loads one checkpoint and builds `which` from it; a missing key says the file is not `which`.
fn load_part<T>(
    path: &Path,
    device: &Device,
    dtype: DType,
    which: &str,
    build: impl Fn(&VarBuilder) -> Result<T>,
) -> Result<T> {
    let vb = crate::weights::var_builder_dtype(path, device, dtype)?;
    build(&vb).map_err(|e| match e {
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
