//! The style-transfer models: [`adain`] (loads the released PyTorch weights) and [`magenta`]
//! (embedded weights).

pub mod adain;
pub mod magenta;
pub mod trained;
