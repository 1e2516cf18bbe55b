//! The AdaIN decoder (pytorch-AdaIN `net.py::decoder`): the encoder mirrored, nearest ×2
//! upsampling in place of pooling.

use candle::Tensor;

use super::Layer;
use crate::weights::TensorMap;
use crate::Result;

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
