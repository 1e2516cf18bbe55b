//! The style-transfer models.

pub mod magenta;
