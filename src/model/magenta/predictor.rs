//! The style predictor: MobileNetV2 (BatchNorm folded, TF 'SAME' zero padding, ReLU6), a global
//! mean and a linear 1280 → 100 bottleneck (docs/ARCHITECTURE.md §5.2).

use candle::{Device, Tensor, D};
use candle_nn::VarBuilder;

use super::{check_images, embedded, Conv, PREDICTOR_WEIGHTS};
use crate::ops::Activation;
use crate::weights::{tensor, TensorMap};
use crate::Result;

/// Length of the style vector.
pub const STYLE_DIM: usize = 100;

/// (expansion, output channels, stride) of the 17 inverted-residual blocks.
const BLOCKS: [(usize, usize, usize); 17] = [
    (1, 16, 1),
    (6, 24, 2),
    (6, 24, 1),
    (6, 32, 2),
    (6, 32, 1),
    (6, 32, 1),
    (6, 64, 2),
    (6, 64, 1),
    (6, 64, 1),
    (6, 64, 1),
    (6, 96, 1),
    (6, 96, 1),
    (6, 96, 1),
    (6, 160, 2),
    (6, 160, 1),
    (6, 160, 1),
    (6, 320, 1),
];

#[derive(Clone, Debug)]
struct Block {
    expand: Option<Conv>,
    depthwise: Conv,
    project: Conv,
    residual: bool,
}

/// The style predictor: a style image → its 100-d style vector.
#[derive(Clone, Debug)]
pub struct StylePredictor {
    stem: Conv,
    blocks: Vec<Block>,
    head: Conv,
    /// (100, 1280).
    bottleneck: Tensor,
}

impl StylePredictor {
    /// The embedded pretrained predictor on `device`.
    pub fn embedded(device: &Device) -> Result<Self> {
        Self::embedded_dtype(device, candle::DType::F32)
    }

    /// The embedded predictor with its weights in `dtype` (f16 or bf16 on a GPU); the style
    /// vector comes out as f32.
    pub fn embedded_dtype(device: &Device, dtype: candle::DType) -> Result<Self> {
        Self::new(&embedded(PREDICTOR_WEIGHTS, device)?.var_builder_dtype(device, dtype))
    }

    /// Builds it from a checkpoint in memory (see [`Self::new`]).
    pub fn load(map: &TensorMap) -> Result<Self> {
        Self::new(&map.var_builder(&map.device()))
    }

    /// Loads `predictor.*` tensors (names as `normstyle import-magenta` writes them).
    pub fn new(vb: &VarBuilder) -> Result<Self> {
        let stem = Conv::load(vb, "predictor.stem", (3, 32, 3), 2, 1, true)?;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        let mut cin = 32;
        for (i, &(t, cout, stride)) in BLOCKS.iter().enumerate() {
            let p = format!("predictor.blocks.{i}");
            let hidden = cin * t;
            let expand = if t == 1 {
                None
            } else {
                Some(Conv::load(
                    vb,
                    &format!("{p}.expand"),
                    (cin, hidden, 1),
                    1,
                    1,
                    true,
                )?)
            };
            let depthwise = Conv::load(
                vb,
                &format!("{p}.depthwise"),
                (hidden, hidden, 3),
                stride,
                hidden,
                true,
            )?;
            let project = Conv::load(vb, &format!("{p}.project"), (hidden, cout, 1), 1, 1, true)?;
            blocks.push(Block {
                expand,
                depthwise,
                project,
                residual: stride == 1 && cin == cout,
            });
            cin = cout;
        }
        let head = Conv::load(vb, "predictor.head", (320, 1280, 1), 1, 1, true)?;
        let bottleneck = tensor(vb, "predictor.bottleneck.weight", &[STYLE_DIM, 1280])?;
        Ok(StylePredictor {
            stem,
            blocks,
            head,
            bottleneck,
        })
    }

    /// `style`: (1, 3, H, W) RGB in [0, 1] (the model was trained on 256×256 center crops) →
    /// the style vector, (1, 100) f32.
    pub fn forward(&self, style: &Tensor) -> Result<Tensor> {
        let _t = crate::profile::scope("style predictor");
        check_images("style predictor", std::slice::from_ref(style), 16)?;
        // One pool entry for the network (see `Skeleton::forward`).
        crate::ops::in_pool(|| self.forward_in_pool(style))
    }

    fn forward_in_pool(&self, style: &Tensor) -> Result<Tensor> {
        let style = style.to_dtype(self.bottleneck.dtype())?;
        let mut x = self.stem.forward_same(&style, Activation::Relu6)?;
        for b in &self.blocks {
            x = b.forward(&x)?;
        }
        let x = self.head.forward_same(&x, Activation::Relu6)?;
        let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?; // (1, 1280)
        Ok(pooled
            .matmul(&self.bottleneck.t()?)?
            .to_dtype(candle::DType::F32)?)
    }
}

impl StylePredictor {
    /// The outputs of blocks 0 ..= `last` of the 17 inverted-residual blocks (ReLU6 features,
    /// (N, Cᵢ, Hᵢ, Wᵢ) with Cᵢ = 16, 24, 24, 32, 32, 32, 64, … as `BLOCKS` lists), for the
    /// training's loss network. `x`: (N, 3, H, W) RGB in [0, 1], H, W ≥ 16; a graph `x` records
    /// is kept (the depthwise layers run the crate's kernels with a backward).
    pub fn block_outputs(&self, x: &Tensor, last: usize) -> Result<Vec<Tensor>> {
        if last >= BLOCKS.len() {
            return Err(crate::Error::input(
                "style predictor",
                format!("block {last}: the predictor has {} blocks", BLOCKS.len()),
            ));
        }
        match x.dims4() {
            Ok((_, 3, h, w)) if h >= 16 && w >= 16 => {}
            _ => {
                return Err(crate::Error::input(
                    "style predictor",
                    format!(
                        "expected (N, 3, H, W) images with H, W ≥ 16, found {:?}",
                        x.dims()
                    ),
                ))
            }
        }
        crate::ops::in_pool(|| {
            let mut h = self
                .stem
                .forward_same(&x.to_dtype(self.bottleneck.dtype())?, Activation::Relu6)?;
            let mut out = Vec::with_capacity(last + 1);
            for b in &self.blocks[..=last] {
                h = b.forward(&h)?;
                out.push(h.clone());
            }
            Ok(out)
        })
    }

    /// Channels of block `i`'s output.
    pub fn block_channels(i: usize) -> Option<usize> {
        BLOCKS.get(i).map(|b| b.1)
    }
}

impl Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        if let Some(e) = &self.expand {
            h = e.forward_same(&h, Activation::Relu6)?;
        }
        h = self.depthwise.forward_same(&h, Activation::Relu6)?;
        h = self.project.forward_same(&h, Activation::None)?;
        Ok(if self.residual { (x + h)? } else { h })
    }
}

/// A Candle module: drops into any candle-nn model (`x.apply(&m)`); gives the style vector, as [`StylePredictor::forward`].
impl candle::Module for StylePredictor {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        Ok(StylePredictor::forward(self, xs)?)
    }
}
