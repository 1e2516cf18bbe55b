//! Tensor ops Candle lacks or that need PyTorch's exact semantics: reflection padding, TF-'SAME'
//! padding, ceil-mode max pooling, nearest upsampling, and a conv helper.

mod conv;
mod conv_grad;
mod pad;
mod resample;
mod winograd;

pub use conv::{conv2d_fused, conv2d_prepared, Activation, ConvSpec, Padding, WinogradWeights};
pub use pad::{reflection_pad2d, same_pad2d};
pub use resample::{max_pool2x2_ceil, upsample_nearest2x};

use candle::Tensor;

use crate::Result;

/// The CPU kernels this machine runs, for benchmark reports: the GEMM's instruction set (chosen
/// at run time: AVX-512, AVX2/FMA or portable) and which convolutions use Winograd.
pub fn kernel_path() -> String {
    let isa = winograd::Isa::detect();
    format!(
        "winograd F(4x4,3x3) on own {} {}x{} micro-kernels for stride-1 3x3 convs with >= 16 \
         channels in and out; banded im2col + gemm crate ({}) otherwise",
        isa.name(),
        isa.mr(),
        isa.nr(),
        gemm_isa()
    )
}

/// The instruction set the `gemm` crate picks at run time on this CPU.
fn gemm_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2+fma";
        }
    }
    "portable"
}

/// A zeroed f32 buffer of `len`, zeroed by the thread pool: a fresh multi-MiB buffer's page
/// faults and zeroing on the calling thread alone were ~15 % of a 2-thread Magenta 1024² run.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    const CHUNK: usize = 1 << 16;
    if len < 4 * CHUNK {
        return vec![0f32; len];
    }
    let mut v: Vec<f32> = Vec::with_capacity(len);
    candle::utils::with_threadpool(|| {
        use rayon::prelude::*;
        v.spare_capacity_mut()[..len]
            .par_chunks_mut(CHUNK)
            .for_each(|c| c.fill(std::mem::MaybeUninit::new(0.0)));
    });
    // SAFETY: all `len` elements were initialized above.
    unsafe { v.set_len(len) };
    v
}

/// A 2-D convolution with an optional bias: `x` (N, Cin, H, W), `weight` (Cout, Cin/groups,
/// kh, kw), `bias` (Cout) → (N, Cout, H', W'). No padding: callers pad explicitly.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    groups: usize,
) -> Result<Tensor> {
    conv2d_fused(
        x,
        weight,
        bias,
        ConvSpec {
            stride,
            groups,
            ..ConvSpec::default()
        },
    )
}
