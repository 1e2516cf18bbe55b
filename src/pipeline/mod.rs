//! The high-level API: everything `normstyle` does, for Rust programs.
//!
//! - [`Stylizer`]: a loaded model (Magenta embedded, or AdaIN from its checkpoints) with the
//!   options of a stylization — norm, α, color preservation, sizes, crop, device — as builder
//!   setters. [`Stylizer::stylize`] is `normstyle stylize` with its defaults; prepared
//!   [`Content`]s and [`Style`]s, rendered with a [`Styling`] (blends, masks, presets), cover
//!   the rest, including `bn` statistics over several contents.
//! - [`Batch`]: many files, safe to interrupt and resume, one [`Event`] per output.
//! - [`compare()`]: the variants side by side, a grid image plus a serializable table.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use normstyle::candle::Device;
//! use normstyle::image;
//! use normstyle::{NormKind, Stylizer};
//! let content = image::open("assets/photos/chicago.jpg")?;
//! let style = image::open("assets/styles/brushstrokes.jpg")?;
//! let out = Stylizer::magenta(&Device::Cpu)?
//!     .with_norm(NormKind::Gn(8))
//!     .stylize(&content, &style)?;
//! out.save("chicago_gn8.png")?;
//! # Ok(()) }
//! ```

mod batch;
#[cfg(feature = "grid")]
mod compare;
mod frames;
pub mod manifest;
mod spec;
mod stylizer;

pub use batch::{Batch, Event, Shard, Summary};
#[cfg(feature = "grid")]
pub(crate) use compare::base64;
#[cfg(feature = "grid")]
pub use compare::{
    compare, compare_trained, presets_sheet, CompareOptions, Comparison, Labeled, TileNumbers,
};
pub use frames::{mean_abs_difference, FrameStylizer, TemporalOptions, DEFAULT_SCENE_THRESHOLD};
pub use manifest::Manifest;
pub use spec::{
    list_images, mask_from_image, mask_from_rgb, normalize_weights, output_name, parse_preset,
    stem, StyleSpec,
};
pub use stylizer::{Content, Family, Style, Styling, Stylizer};
