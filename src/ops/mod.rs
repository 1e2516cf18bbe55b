//! Tensor ops Candle lacks or that need PyTorch's exact semantics, and the CPU kernels that
//! make the models fast: fused convolutions (Winograd, direct, strided, depthwise, GEMM, with a
//! backward for training), reflection and TF-'SAME' padding, ceil-mode max pooling, nearest
//! upsampling and upsampling fused into the next convolution.
//!
//! Layers, each importing only those below it (docs/ARCHITECTURE.md, "Kernels"):
//! - [`conv`] (and [`pad`], [`resample`]): the public ops; [`conv::plan`] picks the kernel.
//! - `kernels`: one file per kernel family, each importing only the shared layer.
//! - [`shared`] (`ConvSpec`, `Geometry`, `Input`, `OutPtr`, the epilogue, the thread pool) and
//!   [`isa`] (the one instruction-set detection, the only reader of `NORMSTYLE_KERNEL`).

pub mod conv;
pub mod isa;
mod kernels;
mod layer_op;
pub mod pad;
pub mod resample;
pub mod shared;

pub use conv::{
    conv2d, conv2d_fused, conv2d_prepared, plan, upsample_conv3x3, Plan, Problem, WinogradWeights,
};
pub use isa::Isa;
pub use pad::{reflection_pad2d, same_pad2d};
pub use resample::{max_pool2x2_ceil, upsample_nearest2x};
pub use shared::{in_pool, Activation, ConvSpec, Padding};

pub(crate) use isa::avx2_or_plain;
pub(crate) use shared::zeroed;

/// The CPU kernels this machine runs, for benchmark reports: each [`Plan`] with the layers it
/// takes and its instruction set (chosen at run time: AVX-512, AVX2/FMA or portable).
pub fn kernel_path() -> String {
    let mut s = Plan::ALL
        .iter()
        .filter(|p| !matches!(p, Plan::GemmTrain | Plan::DepthwiseTrain | Plan::Candle))
        .map(|p| p.describe())
        .collect::<Vec<_>>()
        .join("; ");
    s.push_str(&format!(
        "; nearest x2 upsampling + 3x3 conv fused on the small map for <= {} channels out",
        kernels::upconv::MAX_COUT
    ));
    if isa::candle_only() {
        s = format!("NORMSTYLE_KERNEL=candle: {}", Plan::Candle.describe());
    }
    s
}
