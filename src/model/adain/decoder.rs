//! The AdaIN decoder (pytorch-AdaIN `net.py::decoder`): the encoder mirrored, nearest ×2
//! upsampling in place of pooling.

use candle::Tensor;
use candle_nn::VarBuilder;

use super::{Layer, Step};
use crate::weights::TensorMap;
use crate::Result;

/// The decoder: relu4_1 features → RGB (no final activation; ≈ [0, 1]).
#[derive(Clone, Debug)]
pub struct Decoder {
    layers: Vec<Layer>,
}

impl Decoder {
    /// Conv module indices and (Cin, Cout, k) in order, as docs/ARCHITECTURE.md §4 lists them; `None`
    /// marks a nearest ×2 upsampling.
    const STEPS: [Step; 12] = [
        Some((1, (512, 256, 3))),
        None,
        Some((5, (256, 256, 3))),
        Some((8, (256, 256, 3))),
        Some((11, (256, 256, 3))),
        Some((14, (256, 128, 3))),
        None,
        Some((18, (128, 128, 3))),
        Some((21, (128, 64, 3))),
        None,
        Some((25, (64, 64, 3))),
        Some((28, (64, 3, 3))),
    ];

    /// Every conv: module index and (Cin, Cout, k), in order.
    pub fn conv_shapes() -> impl Iterator<Item = (usize, (usize, usize, usize))> {
        Self::STEPS.into_iter().flatten()
    }

    /// Builds it from a checkpoint in memory (see [`Self::new`]).
    pub fn load(map: &TensorMap) -> Result<Self> {
        Self::new(&map.var_builder(&map.device()))
    }

    /// Builds the decoder from a checkpoint with the released key names.
    pub fn new(vb: &VarBuilder) -> Result<Self> {
        let layers = Self::STEPS
            .iter()
            .map(|s| match s {
                // The last conv outputs RGB: no ReLU.
                Some((28, dims)) => Layer::conv(vb, 28, *dims, false),
                Some((i, dims)) => Layer::conv(vb, *i, *dims, true),
                None => Ok(Layer::Up),
            })
            .collect::<Result<_>>()?;
        Ok(Decoder { layers })
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> candle::DType {
        super::layers_dtype(&self.layers)
    }

    /// (N, 512, h, w) → (N, 3, 8h, 8w) f32 (the input is cast to the weights' dtype, the image
    /// back to f32).
    pub fn forward(&self, t: &Tensor) -> Result<Tensor> {
        let mut h = t.to_dtype(self.dtype())?;
        for layer in &self.layers {
            h = layer.forward(&h)?;
        }
        Ok(h.to_dtype(candle::DType::F32)?)
    }
}

/// A Candle module: drops into any candle-nn model (`x.apply(&m)`); gives the image, as [`Decoder::forward`].
impl candle::Module for Decoder {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        Ok(Decoder::forward(self, xs)?)
    }
}
