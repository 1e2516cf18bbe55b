//! Which instruction set the CPU kernels run: detected once, here only. Every kernel family
//! (Winograd, direct, strided, upsampling, the AVX2 element-wise loops) asks [`Isa::detect`];
//! nothing else reads `NORMSTYLE_KERNEL`.
//!
//! `NORMSTYLE_KERNEL=portable|avx2|avx512` pins a set the CPU has (benchmarks, tests);
//! `NORMSTYLE_KERNEL=candle` sends every convolution and normalization down the path other
//! devices take (Candle's ops), so the GPU's code is checked on the CPU.

use std::sync::OnceLock;

/// An instruction set of the crate's own kernels, narrowest first (`Ord` follows width).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust, any CPU (the compiler's baseline for the target).
    Portable,
    /// x86-64 AVX2 + FMA: 8 f32 lanes, 16 vector registers.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86-64 AVX-512F + VL (with AVX2, FMA): 16 lanes, 32 registers.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// What `NORMSTYLE_KERNEL` and the CPU decided, once per process.
#[derive(Clone, Copy, Debug)]
struct Selection {
    isa: Isa,
    candle: bool,
}

fn selection() -> Selection {
    static SELECTION: OnceLock<Selection> = OnceLock::new();
    *SELECTION.get_or_init(|| {
        let all = Isa::available();
        let best = all[all.len() - 1];
        match std::env::var("NORMSTYLE_KERNEL").ok().as_deref() {
            Some("candle") => Selection {
                isa: best,
                candle: true,
            },
            Some(name) => Selection {
                // A set the CPU lacks (or a typo) falls back to the best: never an illegal
                // instruction.
                isa: all
                    .iter()
                    .copied()
                    .find(|i| i.name() == name)
                    .unwrap_or(best),
                candle: false,
            },
            None => Selection {
                isa: best,
                candle: false,
            },
        }
    })
}

impl Isa {
    /// The set the kernels run: the widest this CPU has, or the one `NORMSTYLE_KERNEL` names
    /// when the CPU has it.
    #[inline]
    pub fn detect() -> Isa {
        selection().isa
    }

    /// The sets this CPU runs, narrowest first (always starts with [`Isa::Portable`]).
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Isa::Avx2);
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
                    v.push(Isa::Avx512);
                }
            }
        }
        v
    }

    /// Its name in reports, `NORMSTYLE_KERNEL` and `NORMSTYLE_REQUIRE_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
        }
    }
}

/// Whether `NORMSTYLE_KERNEL=candle` sends every op down the other-device path (Candle's ops).
#[inline]
pub fn candle_only() -> bool {
    selection().candle
}

/// Whether the element-wise loops of [`avx2_or_plain!`] run their AVX2 build: the selected set
/// is AVX2 or wider.
#[inline]
pub(crate) fn has_avx2() -> bool {
    Isa::detect() > Isa::Portable
}

/// The instruction set the `gemm` crate picks at run time on this CPU (its own detection, which
/// `NORMSTYLE_KERNEL` does not steer).
pub(crate) fn gemm_isa() -> &'static str {
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

/// The sets a kernel test loops over: every one this CPU has. Prints them, so a test log says
/// what ran, and panics when `NORMSTYLE_REQUIRE_ISA` (`avx2`, `avx512`) names one the CPU lacks:
/// CI sets it from `/proc/cpuinfo`, so a machine with AVX-512 cannot pass without running the
/// AVX-512 kernels.
#[cfg(test)]
pub(crate) fn tested(kernel: &str) -> Vec<Isa> {
    let all = Isa::available();
    let names: Vec<&str> = all.iter().map(|i| i.name()).collect();
    eprintln!("{kernel}: testing on {}", names.join(", "));
    if let Ok(required) = std::env::var("NORMSTYLE_REQUIRE_ISA") {
        for want in required.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            assert!(
                names.contains(&want),
                "{kernel}: NORMSTYLE_REQUIRE_ISA={required} but this CPU runs only {names:?}"
            );
        }
    }
    all
}

/// Defines `fn $name(args) -> ret` that runs `$inner` (an `#[inline(always)]` function of the
/// same arguments) compiled for AVX2 when the selected set has it, and as built otherwise: the
/// loops in `$inner` then vectorize twice as wide with the same operations (no FMA contraction,
/// same summation order), so the same results.
macro_rules! avx2_or_plain {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $inner:ident) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $inner($($arg),*)
                }
                if $crate::ops::isa::has_avx2() {
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
