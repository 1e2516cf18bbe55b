//! The CPU kernels, one family per file. Each imports only the shared layer
//! (`ops::shared`, `ops::isa`), never another kernel or the convolution API, and takes its
//! shapes as a validated `Geometry`; `ops::conv::plan` chooses among them.

pub(crate) mod depthwise;
pub(crate) mod direct;
pub(crate) mod gemm;
pub(crate) mod strided;
pub(crate) mod upconv;
pub(crate) mod winograd;
