//! # normstyle
//!
//! Neural style transfer on [Candle](https://github.com/huggingface/candle) with normalization
//! layers you can swap: the AdaIN model (Huang & Belongie, ICCV 2017) and the Magenta arbitrary-
//! style and 26-style networks (Ghiasi et al. 2017; Dumoulin et al. 2017), each runnable with its
//! instance-norm statistics replaced by batch-, layer- or group-norm statistics.
//!
//! - [`norm`]: BatchNorm2d, LayerNorm, GroupNorm, InstanceNorm2d and statistics alignment
//!   (AdaIN, Ada-BN/LN/GN), PyTorch semantics.
//! - [`model`]: AdaIN (released PyTorch weights) and the Magenta family (embedded weights).
//! - [`weights`]: checkpoints (PyTorch legacy/zip `.pth`, safetensors) as named tensors, checked
//!   for dtype, shape and finite values.
//! - [`color`]: color preservation (CORAL, luminance transfer).

pub mod cli;
pub mod color;
pub mod compare;
pub mod device;
pub mod error;
pub mod grid;
pub mod imaging;
pub mod model;
pub mod norm;
pub mod ops;
pub mod profile;
pub mod weights;

pub use error::{Error, Result};
pub use norm::NormKind;
