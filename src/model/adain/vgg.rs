//! The normalised VGG-19 encoder up to relu4_1 (pytorch-AdaIN `net.py::vgg`, modules 0–30).

use candle::Tensor;
use candle_nn::VarBuilder;

use super::{Layer, Step};
use crate::weights::TensorMap;
use crate::Result;

/// The normalised VGG-19 encoder up to relu4_1.
#[derive(Clone, Debug)]
pub struct Encoder {
    /// Four stages ending at relu1_1, relu2_1, relu3_1, relu4_1 (pytorch-AdaIN's enc_1 … enc_4).
    stages: [Vec<Layer>; 4],
}

impl Encoder {
    /// Conv module indices and (Cin, Cout, k) per stage, as docs/ARCHITECTURE.md §4 lists them; `None`
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

    /// Every conv: module index and (Cin, Cout, k), in order.
    pub fn conv_shapes() -> impl Iterator<Item = (usize, (usize, usize, usize))> {
        Self::STAGES.into_iter().flatten().filter_map(|s| *s)
    }

    /// Builds it from a checkpoint in memory (see [`Self::new`]).
    pub fn load(map: &TensorMap) -> Result<Self> {
        Self::new(&map.var_builder(&map.device()))
    }

    /// Builds the encoder from a checkpoint with the released key names.
    pub fn new(vb: &VarBuilder) -> Result<Self> {
        let stage = |s: usize| -> Result<Vec<Layer>> {
            Self::STAGES[s]
                .iter()
                .map(|l| match l {
                    // The leading 1×1 conv (RGB → BGR·255 − mean) has no ReLU.
                    Some((0, dims)) => Layer::conv(vb, 0, *dims, false),
                    Some((i, dims)) => Layer::conv(vb, *i, *dims, true),
                    None => Ok(Layer::Pool),
                })
                .collect()
        };
        Ok(Encoder {
            stages: [stage(0)?, stage(1)?, stage(2)?, stage(3)?],
        })
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> candle::DType {
        super::layers_dtype(self.stages.iter().flatten())
    }

    /// relu4_1 features: (N, 3, H, W) → (N, 512, ⌈H/8⌉, ⌈W/8⌉), in the weights' dtype (the
    /// input is cast to it).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.taps(x)?.pop().unwrap_or_else(|| x.clone()))
    }

    /// The four taps relu1_1, relu2_1, relu3_1, relu4_1 (64, 128, 256, 512 channels at full,
    /// ½, ¼ and ⅛ resolution, rounded up).
    pub fn taps(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut out = Vec::with_capacity(4);
        let mut h = x.to_dtype(self.dtype())?;
        for stage in &self.stages {
            for layer in stage {
                h = layer.forward(&h)?;
            }
            out.push(h.clone());
        }
        Ok(out)
    }
}

/// A Candle module: drops into any candle-nn model (`x.apply(&m)`); gives relu4_1 features, as [`Encoder::forward`].
impl candle::Module for Encoder {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        Ok(Encoder::forward(self, xs)?)
    }
}
