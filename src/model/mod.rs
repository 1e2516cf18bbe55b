//! The style-transfer models.
