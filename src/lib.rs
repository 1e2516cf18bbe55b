//! # normstyle
//!
//! Neural style transfer on [Candle](https://github.com/huggingface/candle) with normalization
//! layers you can swap: the AdaIN model (Huang & Belongie, ICCV 2017) and the Magenta arbitrary-
//! style and 26-style networks (Ghiasi et al. 2017; Dumoulin et al. 2017), each runnable with its
//! instance-norm statistics replaced by batch-, layer- or group-norm statistics.
//!
//! Paint a photo in a painting's style with the embedded Magenta weights (offline), then again
//! with layer-norm statistics at 80 % strength:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use normstyle::candle::Device;
//! use normstyle::image;
//! use normstyle::{NormKind, Stylizer};
//!
//! let content = image::open("assets/photos/chicago.jpg")?.thumbnail(96, 96);
//! let style = image::open("assets/styles/brushstrokes.jpg")?;
//! let st = Stylizer::magenta(&Device::Cpu)?;
//! let out: image::RgbImage = st.stylize(&content, &style)?;
//! assert_eq!(out.dimensions(), (content.width(), content.height()));
//!
//! let ln = st.with_norm(NormKind::Ln).with_alpha(0.8).stylize(&content, &style)?;
//! assert_eq!(ln.dimensions(), out.dimensions());
//! # Ok(()) }
//! ```
//!
//! - [`pipeline`]: the high-level API — [`Stylizer`] (models, options, blends, masks, presets,
//!   `bn` batches), batch runs over files, comparisons of the variants as a grid and numbers.
//! - [`norm`]: BatchNorm2d, LayerNorm, GroupNorm, InstanceNorm2d and statistics alignment
//!   (AdaIN, Ada-BN/LN/GN), PyTorch semantics.
//! - [`model`]: AdaIN (released PyTorch weights) and the Magenta family (embedded weights).
//! - [`weights`]: checkpoints (PyTorch legacy/zip `.pth`, safetensors) as named tensors, checked
//!   for dtype, shape and finite values; the Hugging Face Hub and a local store.
//! - [`imaging`], [`color`], [`compare`], [`grid`]: images in and out, color preservation,
//!   metrics and labeled grids.
//! - `serve` (feature `serve`): the web app of `normstyle serve` and its JSON/HTTP API.
//! - [`video`]: clips in and out (ffmpeg pipes, GIFs, folders of frames), stylized with
//!   normalization statistics kept over time, and a flicker measure.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod color;
pub mod compare;
pub mod device;
pub mod error;
pub mod experiment;
#[cfg(feature = "grid")]
pub mod grid;
pub mod imaging;
pub mod model;
pub mod norm;
pub mod ops;
pub mod pipeline;
pub mod profile;
pub mod rng;
#[cfg(feature = "serve")]
pub mod serve;
pub mod train;
pub mod video;
pub mod weights;

/// The Candle this crate builds on (tensors, devices, `Module`), so examples compile with the
/// same version.
pub use candle;
pub use error::{Error, Result};
/// The image crate this crate reads and writes images with.
pub use image;
pub use norm::{Norm, NormKind};
pub use pipeline::Stylizer;
