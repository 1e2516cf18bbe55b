//! Feed-forward single-style networks: Johnson et al.'s TransformerNet as PyTorch's
//! `fast_neural_style` example builds it, and a `small` variant of the same shape with a quarter
//! of the channels (docs/ARCHITECTURE.md §7). `normstyle train` trains them
//! ([`crate::train`]); this module runs them, from a `.safetensors` file written by `train` or a
//! `.pth` state_dict saved by PyTorch's example (its released candy, mosaic, rain_princess and
//! udnie models).
//!
//! The layers, with PyTorch's state_dict names (the same on both sides, so one file loads in
//! both): reflection padding k/2 before every convolution; `conv1` 9×9 3→w₀, `conv2` 3×3 stride 2
//! w₀→w₁, `conv3` 3×3 stride 2 w₁→w₂, each followed by a norm (`in1`…`in3`) and ReLU; five
//! residual blocks `res1`…`res5` (3×3 conv, norm, ReLU, 3×3 conv, norm, + input); `deconv1` and
//! `deconv2` (nearest ×2 upsampling, 3×3 conv, norm `in4`/`in5`, ReLU); `deconv3` 9×9 w₀→3 with
//! neither norm nor activation. Widths (w₀, w₁, w₂): (32, 64, 128) for `johnson`, (8, 16, 32)
//! for `small`. Every norm slot holds the crate's [`Norm`] of the recorded kind, or nothing
//! (`none`). The network works on pixel values in [0, 255], as the PyTorch example does.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use candle::{Device, Tensor};
use candle_nn::VarBuilder;

use crate::norm::{conditional_norm_batch_then, Norm, NormKind, PostOp, DEFAULT_EPS};
use crate::ops::{
    conv2d_prepared, upsample_conv3x3, Activation, ConvSpec, Padding, WinogradWeights,
};
use crate::weights::{tensor, TensorMap};
use crate::{Error, Result};

const WHAT: &str = "trained model";

/// Residual blocks of both architectures.
pub const RESIDUAL_BLOCKS: usize = 5;

/// The metadata keys `normstyle train` writes into a model file.
pub mod meta {
    /// `small` or `johnson`.
    pub const ARCH: &str = "normstyle.arch";
    /// `in`, `bn`, `ln`, `gn:G` or `none`, as `--norm` spells it.
    pub const NORM: &str = "normstyle.norm";
    /// sha256 of the style image file trained on.
    pub const STYLE_SHA256: &str = "normstyle.style_sha256";
    /// `predictor` or `vgg`.
    pub const LOSS_NET: &str = "normstyle.loss_net";
    /// Optimizer steps trained.
    pub const STEPS: &str = "normstyle.steps";
    /// The training crop side in pixels.
    pub const SIZE: &str = "normstyle.size";
}

/// The architecture of a feed-forward network (`--arch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// 8/16/32 channels: the Magenta transformer's shape, small enough to train on a CPU.
    Small,
    /// 32/64/128 channels: the TransformerNet of PyTorch's `fast_neural_style`.
    Johnson,
}

impl Arch {
    /// Channel widths (w₀, w₁, w₂) of the three resolutions.
    pub fn widths(self) -> [usize; 3] {
        match self {
            Arch::Small => [8, 16, 32],
            Arch::Johnson => [32, 64, 128],
        }
    }

    /// The name `--arch` and the metadata use.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Small => "small",
            Arch::Johnson => "johnson",
        }
    }

    /// Every convolution in the order the network runs them.
    pub fn layers(self) -> Vec<LayerDef> {
        let [w0, w1, w2] = self.widths();
        let conv = |name: String, cin, cout, k, stride, norm: Option<String>, relu| LayerDef {
            name,
            cin,
            cout,
            k,
            stride,
            upsample: false,
            norm,
            relu,
        };
        let mut v = vec![
            conv("conv1".into(), 3, w0, 9, 1, Some("in1".into()), true),
            conv("conv2".into(), w0, w1, 3, 2, Some("in2".into()), true),
            conv("conv3".into(), w1, w2, 3, 2, Some("in3".into()), true),
        ];
        for r in 1..=RESIDUAL_BLOCKS {
            v.push(conv(
                format!("res{r}.conv1"),
                w2,
                w2,
                3,
                1,
                Some(format!("res{r}.in1")),
                true,
            ));
            v.push(conv(
                format!("res{r}.conv2"),
                w2,
                w2,
                3,
                1,
                Some(format!("res{r}.in2")),
                false,
            ));
        }
        for (name, cin, cout, norm) in [("deconv1", w2, w1, "in4"), ("deconv2", w1, w0, "in5")] {
            v.push(LayerDef {
                upsample: true,
                ..conv(name.into(), cin, cout, 3, 1, Some(norm.into()), true)
            });
        }
        v.push(conv("deconv3".into(), w0, 3, 9, 1, None, false));
        v
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "small" => Ok(Arch::Small),
            "johnson" => Ok(Arch::Johnson),
            other => Err(Error::Parse {
                what: "architecture".into(),
                msg: format!("unknown architecture `{other}` (expected small or johnson)"),
            }),
        }
    }
}

/// The norm slots' spelling (`in`, `bn`, `ln`, `gn:G`, `none`), shared with the experiments.
pub use crate::norm::{norm_name, parse_norm};

/// One convolution of a feed-forward network: `name.conv2d.{weight,bias}` of shape
/// (cout, cin, k, k) and (cout), then the norm `norm` (if any) and ReLU (if `relu`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDef {
    /// The layer's prefix (`conv1`, `res3.conv2`, `deconv1`, …).
    pub name: String,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Nearest ×2 upsampling before the convolution.
    pub upsample: bool,
    /// The norm layer's prefix, if the slot has one.
    pub norm: Option<String>,
    /// ReLU after the norm.
    pub relu: bool,
}

#[derive(Clone, Debug)]
struct Layer {
    def: LayerDef,
    weight: Tensor,
    bias: Tensor,
    winograd: Option<Arc<WinogradWeights>>,
    norm: Option<Norm>,
    /// γ, β of the norm as numbers, for statistics swaps (`--norm` other than the recorded
    /// one); `None` in a trainable network (read when needed).
    affine: Option<(Vec<f64>, Vec<f64>)>,
}

/// Which statistics the norm slots use in a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormMode {
    /// Training: batch statistics for BN (running statistics updated), per-sample for the rest.
    Train,
    /// The recorded norm as deployed: BN on its running statistics.
    Eval,
    /// Another kind's statistics with the trained γ and β (the swap `--norm` makes); the
    /// images of one call form the batch for `bn`.
    Swap(NormKind),
}

/// A feed-forward style network (see the module documentation).
///
/// Input and output: (N, 3, H, W) f32 pixel values in [0, 255] ([`TransformNet::forward_t`]);
/// [`TransformNet::paint`] takes and gives [0, 1]. H and W ≥ 16 (checked: the residual
/// blocks' reflection padding needs at least 2 pixels at ¼ resolution).
#[derive(Clone, Debug)]
pub struct TransformNet {
    arch: Arch,
    norm: Option<NormKind>,
    layers: Vec<Layer>,
}

impl TransformNet {
    /// Builds the network from the tensors in `vb` (names as in the module documentation), for
    /// inference: stride-1 3×3 weights get their Winograd transform once.
    pub fn new(vb: &VarBuilder, arch: Arch, norm: Option<NormKind>) -> Result<Self> {
        Self::build(vb, arch, norm, false)
    }

    /// A network whose weights are created in `vb`'s `VarMap` (zero; initialize them, e.g. as
    /// `normstyle::train` does, before training) or taken from it when present.
    pub fn trainable(vb: &VarBuilder, arch: Arch, norm: Option<NormKind>) -> Result<Self> {
        Self::build(vb, arch, norm, true)
    }

    fn build(vb: &VarBuilder, arch: Arch, norm: Option<NormKind>, training: bool) -> Result<Self> {
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            if training {
                Ok(vb.get_with_hints(shape, name, candle_nn::Init::Const(0.0))?)
            } else {
                tensor(vb, name, shape)
            }
        };
        let mut layers = Vec::new();
        for def in arch.layers() {
            let p = format!("{}.conv2d", def.name);
            let weight = get(&format!("{p}.weight"), &[def.cout, def.cin, def.k, def.k])?;
            let bias = get(&format!("{p}.bias"), &[def.cout])?;
            // Trainable weights change at every step: no transform made once.
            let winograd = (!training && def.stride == 1)
                .then(|| WinogradWeights::new(&weight))
                .transpose()?
                .flatten()
                .map(Arc::new);
            let (norm_layer, affine) = match (&def.norm, norm) {
                (Some(prefix), Some(kind)) => {
                    let layer = Norm::new(kind, def.cout, vb.pp(prefix))?;
                    // Read once for inference; trainable γ, β change, so they are read per call.
                    let affine = if training {
                        None
                    } else {
                        Some(affine_numbers(&layer)?)
                    };
                    (Some(layer), affine)
                }
                _ => (None, None),
            };
            layers.push(Layer {
                def,
                weight,
                bias,
                winograd,
                norm: norm_layer,
                affine,
            });
        }
        Ok(TransformNet { arch, norm, layers })
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The norm the network was built with (`None`: no norm layers).
    pub fn norm(&self) -> Option<NormKind> {
        self.norm
    }

    /// (N, 3, H, W) pixel values in [0, 255] → the same shape, unclamped (≈ [0, 255]).
    /// `train` selects BN's batch statistics (and updates its running ones).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mode = if train {
            NormMode::Train
        } else {
            NormMode::Eval
        };
        let mut out = self.forward_list(std::slice::from_ref(x), mode)?;
        out.pop()
            .ok_or_else(|| Error::input(WHAT, "the network produced no output"))
    }

    /// Images of different sizes through the network as one batch (for `NormMode::Swap(Bn)`
    /// their statistics pool). Each `xs[i]`: (Nᵢ, 3, Hᵢ, Wᵢ) in [0, 255].
    pub fn forward_list(&self, xs: &[Tensor], mode: NormMode) -> Result<Vec<Tensor>> {
        if let (NormMode::Swap(_), None) = (mode, self.norm) {
            return Err(Error::config(
                "norm",
                "the model was trained without normalization layers: there are no statistics \
                 to swap",
            ));
        }
        for x in xs {
            let (_, c, h, w) = x.dims4()?;
            if c != 3 || h < 16 || w < 16 {
                return Err(Error::input(
                    WHAT,
                    format!(
                        "expected (N, 3, H, W) images with H, W ≥ 16, got {:?}",
                        x.dims()
                    ),
                ));
            }
        }
        crate::ops::in_pool(|| {
            let mut hs: Vec<Tensor> = xs.to_vec();
            let mut residual: Vec<Tensor> = Vec::new();
            for layer in &self.layers {
                let block_start = layer.def.name.ends_with(".conv1");
                if block_start {
                    residual = hs.clone();
                }
                hs = self.layer_forward(layer, &hs, mode)?;
                if layer.def.name.ends_with(".conv2") && layer.def.name.starts_with("res") {
                    hs = hs
                        .iter()
                        .zip(&residual)
                        .map(|(h, r)| Ok((h + r)?))
                        .collect::<Result<_>>()?;
                }
            }
            Ok(hs)
        })
    }

    fn layer_forward(&self, layer: &Layer, xs: &[Tensor], mode: NormMode) -> Result<Vec<Tensor>> {
        let d = &layer.def;
        // Without a norm the ReLU runs inside the convolution.
        let act = if layer.norm.is_none() && d.relu {
            Activation::Relu
        } else {
            Activation::None
        };
        let ys = xs
            .iter()
            .map(|x| {
                if d.upsample {
                    upsample_conv3x3(
                        x,
                        &layer.weight,
                        Some(&layer.bias),
                        act,
                        layer.winograd.as_deref(),
                    )
                } else {
                    let spec = ConvSpec {
                        stride: d.stride,
                        groups: 1,
                        padding: Padding::Reflect(d.k / 2),
                        act,
                    };
                    conv2d_prepared(
                        x,
                        &layer.weight,
                        Some(&layer.bias),
                        spec,
                        layer.winograd.as_deref(),
                    )
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(norm) = &layer.norm else {
            return Ok(ys);
        };
        match mode {
            NormMode::Swap(kind) => {
                let affine = match &layer.affine {
                    Some(a) => a.clone(),
                    None => affine_numbers(norm)?,
                };
                let post = if d.relu { PostOp::Relu } else { PostOp::None };
                let pairs = vec![affine; ys.len()];
                conditional_norm_batch_then(&ys, kind, &pairs, DEFAULT_EPS, post)
            }
            NormMode::Train | NormMode::Eval => {
                let post = if d.relu { PostOp::Relu } else { PostOp::None };
                ys.iter()
                    .map(|y| norm.forward_t_then(y, mode == NormMode::Train, post))
                    .collect()
            }
        }
    }

    /// (N, 3, H, W) RGB in [0, 1] → the stylized images, the same shape (cropped to it),
    /// clamped to [0, 1], in the recorded norm's eval mode (or `mode`'s swap).
    pub fn paint(&self, xs: &[Tensor], mode: NormMode) -> Result<Vec<Tensor>> {
        let scaled = xs
            .iter()
            .map(|x| Ok((x * 255.0)?))
            .collect::<Result<Vec<_>>>()?;
        // Sides that are not multiples of 4 come back up to 3 pixels larger (two stride-2
        // layers, then two ×2 upsamplings): cropped to the input's size.
        self.forward_list(&scaled, mode)?
            .into_iter()
            .zip(xs)
            .map(|(y, x)| {
                let (_, _, h, w) = x.dims4()?;
                Ok((y.narrow(2, 0, h)?.narrow(3, 0, w)? / 255.0)?.clamp(0f32, 1f32)?)
            })
            .collect()
    }
}

/// A norm layer's γ and β as numbers.
fn affine_numbers(layer: &Norm) -> Result<(Vec<f64>, Vec<f64>)> {
    match (layer.weight(), layer.bias()) {
        (Some(g), Some(b)) => Ok((numbers(g)?, numbers(b)?)),
        _ => Err(Error::input(WHAT, "a norm layer without γ and β")),
    }
}

fn numbers(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.detach()
        .to_dtype(candle::DType::F64)?
        .flatten_all()?
        .to_vec1()?)
}

/// Where a trained model came from and what it records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// The architecture.
    pub arch: Arch,
    /// The trained norm (`None`: no norm layers).
    pub norm: Option<NormKind>,
    /// The other `normstyle.*` metadata of the file (empty for a `.pth`).
    pub metadata: HashMap<String, String>,
}

/// A trained feed-forward network loaded from a file: a `.safetensors` written by
/// `normstyle train` (architecture and norm from its metadata) or a `.pth` state_dict of
/// PyTorch's `fast_neural_style` (the architecture from the first layer's width, IN when it has
/// norm layers — the example's only norm; the stale `running_mean`/`running_var` of its
/// instance norms are not read).
#[derive(Clone, Debug)]
pub struct TrainedModel {
    net: TransformNet,
    info: ModelInfo,
}

impl TrainedModel {
    /// Loads `path` onto `device` (f32).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let data = std::fs::read(path).map_err(|err| Error::Io {
            path: path.to_path_buf(),
            err,
        })?;
        let in_file = |e: Error| e.in_file(path);
        let map =
            TensorMap::from_bytes(&data, &path.display().to_string(), device).map_err(in_file)?;
        let metadata = safetensors_metadata(&data);
        let info = if let Some(arch) = metadata.get(meta::ARCH) {
            let arch: Arch = arch.parse().map_err(in_file)?;
            let norm = metadata
                .get(meta::NORM)
                .ok_or_else(|| {
                    in_file(Error::Parse {
                        what: meta::NORM.into(),
                        msg: "missing: the file records an architecture but no norm".into(),
                    })
                })
                .and_then(|n| parse_norm(n).map_err(in_file))?;
            ModelInfo {
                arch,
                norm,
                metadata,
            }
        } else {
            let first = map.get_raw("conv1.conv2d.weight").ok_or_else(|| {
                in_file(Error::Parse {
                    what: WHAT.into(),
                    msg: "not a feed-forward style network: no `conv1.conv2d.weight` (expected a \
                          model written by `normstyle train` or a fast_neural_style state_dict)"
                        .into(),
                })
            })?;
            let arch = match first.dims() {
                [32, 3, 9, 9] => Arch::Johnson,
                [8, 3, 9, 9] => Arch::Small,
                other => {
                    return Err(in_file(Error::Parse {
                        what: WHAT.into(),
                        msg: format!(
                            "`conv1.conv2d.weight` has shape {other:?}; expected (32, 3, 9, 9) \
                             (johnson) or (8, 3, 9, 9) (small)"
                        ),
                    }))
                }
            };
            let norm = map.contains("in1.weight").then_some(NormKind::In);
            ModelInfo {
                arch,
                norm,
                metadata,
            }
        };
        Self::from_map(&map, info.arch, info.norm, info.metadata, device).map_err(in_file)
    }

    /// A model from tensors in memory (names as in the module documentation).
    pub fn from_map(
        map: &TensorMap,
        arch: Arch,
        norm: Option<NormKind>,
        metadata: HashMap<String, String>,
        device: &Device,
    ) -> Result<Self> {
        let net = TransformNet::new(&map.var_builder(device), arch, norm)?;
        Ok(TrainedModel {
            net,
            info: ModelInfo {
                arch,
                norm,
                metadata,
            },
        })
    }

    /// The network.
    pub fn net(&self) -> &TransformNet {
        &self.net
    }

    /// What the file records.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }
}

/// The `__metadata__` of a safetensors file (empty for other formats or none).
pub(crate) fn safetensors_metadata(data: &[u8]) -> HashMap<String, String> {
    safetensors::SafeTensors::read_metadata(data)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .unwrap_or_default()
}
