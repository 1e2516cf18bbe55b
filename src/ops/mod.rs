//! Tensor ops Candle lacks or that need PyTorch's exact semantics: reflection padding, TF-'SAME'
//! padding, ceil-mode max pooling, nearest upsampling, and a conv helper.

mod conv;
mod conv_grad;
mod direct;
mod pad;
mod resample;
mod strided;
mod upconv;
mod winograd;

pub use conv::{conv2d_fused, conv2d_prepared, Activation, ConvSpec, Padding, WinogradWeights};
pub use pad::{reflection_pad2d, same_pad2d};
pub use resample::{max_pool2x2_ceil, upsample_nearest2x};
pub use upconv::upsample_conv3x3;

use candle::Tensor;

use crate::Result;

/// The CPU kernels this machine runs, for benchmark reports: the Winograd micro-kernel, the
/// direct kernels for few output channels (stride 1, stride 2, and upsampling fused into the
/// next conv) and the `gemm` crate's instruction set (all chosen at run time: AVX-512,
/// AVX2/FMA or portable).
pub fn kernel_path() -> String {
    let isa = winograd::Isa::detect();
    format!(
        "winograd F(4x4,3x3) on own {} {}x{} micro-kernels for stride-1 3x3 convs with >= 16 \
         channels in and out; own {} direct kernels for stride-1 convs with <= {} channels out, \
         stride-2 convs with <= {} and nearest x2 upsampling + 3x3 conv with <= {} (on the \
         small map); banded im2col + gemm crate ({}) otherwise",
        isa.name(),
        isa.mr(),
        isa.nr(),
        direct::kernel_name(),
        direct::MAX_COUT,
        strided::MAX_COUT,
        upconv::MAX_COUT,
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

/// Whether the CPU has AVX2 (checked once): element-wise loops compiled for it run twice as wide
/// as the x86-64 baseline (SSE2) the crate is built for, with the same results (no FMA
/// contraction, same summation order).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
}

/// Defines `fn $name(args) -> ret` that runs `$inner` (an `#[inline(always)]` function of the
/// same arguments) compiled for AVX2 when the CPU has it, and as built otherwise: the loops in
/// `$inner` then vectorize twice as wide with the same operations, so the same results.
macro_rules! avx2_or_plain {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $inner:ident) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $inner($($arg),*)
                }
                if $crate::ops::has_avx2() {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $inner($($arg),*)
        }
    };
}
pub(crate) use avx2_or_plain;

/// Instantiates a row-kernel macro `$m` (direct, strided, upconv) for AVX2/FMA (`row_avx2`, 8
/// lanes) and AVX-512 (`row_avx512`, 16 lanes): name, target features, lanes, vector type and
/// the intrinsics it uses, then any per-ISA extras (after `;`: the AVX2 one, the AVX-512 one).
macro_rules! simd_isas {
    ($m:ident $(; $avx2:ident, $avx512:ident)?) => {
        $m!(
            row_avx2,
            "avx2,fma",
            8,
            __m256,
            _mm256_setzero_ps,
            _mm256_set1_ps,
            _mm256_loadu_ps,
            _mm256_fmadd_ps,
            _mm256_add_ps,
            _mm256_max_ps,
            _mm256_min_ps,
            _mm256_storeu_ps
            $(, $avx2)?
        );
        $m!(
            row_avx512,
            "avx512f,avx512vl,avx2,fma",
            16,
            __m512,
            _mm512_setzero_ps,
            _mm512_set1_ps,
            _mm512_loadu_ps,
            _mm512_fmadd_ps,
            _mm512_add_ps,
            _mm512_max_ps,
            _mm512_min_ps,
            _mm512_storeu_ps
            $(, $avx512)?
        );
    };
}
pub(crate) use simd_isas;

/// Test data: a deterministic stream uniform in [−0.5, 0.5) (a 64-bit LCG's top 24 bits).
#[cfg(test)]
pub(crate) fn centered_stream(mut seed: u64) -> impl FnMut() -> f32 {
    move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 40) as f64 / (1u64 << 24) as f64) as f32 - 0.5
    }
}

/// A zeroed f32 buffer of `len`, zeroed by the thread pool: a fresh multi-MiB buffer's page
/// faults and zeroing on the calling thread alone were ~15 % of a 2-thread Magenta 1024² run.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: the capacity holds `len` floats; all of them are zeroed before `set_len`.
    unsafe {
        zero_par(v.as_mut_ptr(), len);
        v.set_len(len);
    }
    v
}

/// Zeroes `len` floats at `p`, on the thread pool when there are many.
///
/// # Safety
/// `p .. p + len` is writable memory of one allocation that nothing else accesses meanwhile.
pub(crate) unsafe fn zero_par(p: *mut f32, len: usize) {
    const CHUNK: usize = 1 << 16;
    if len < 4 * CHUNK {
        std::ptr::write_bytes(p, 0, len);
        return;
    }
    let p = conv::OutPtr(p);
    in_pool(|| {
        use rayon::prelude::*;
        (0..len.div_ceil(CHUNK)).into_par_iter().for_each(|i| {
            let n = CHUNK.min(len - i * CHUNK);
            // SAFETY: chunk i lies inside `p .. p + len` and no other task writes it.
            unsafe { std::ptr::write_bytes(p.at(i * CHUNK), 0, n) };
        })
    });
}

/// Runs `f` on a thread pool: the one the caller already runs on (a network entered once, or a
/// caller's own pool, e.g. one thread per video frame), else Candle's (see
/// `candle::utils::with_threadpool`).
pub fn in_pool<F: FnOnce() -> R + Send, R: Send>(f: F) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        candle::utils::with_threadpool(f)
    }
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
