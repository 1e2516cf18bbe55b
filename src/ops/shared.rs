//! The layer every kernel and the convolution API share: a convolution's options
//! ([`ConvSpec`]), its validated shapes ([`Geometry`]), one sample's unpadded input ([`Input`]),
//! the output pointer bands share ([`OutPtr`]), the bias + activation epilogue, and the thread
//! pool. It imports no kernel (see docs/ARCHITECTURE.md, "Kernels").

use rayon::prelude::*;

use crate::{Error, Result};

/// Padding applied before the convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// None (a VALID convolution).
    None,
    /// PyTorch `ReflectionPad2d(p)`.
    Reflect(usize),
    /// TensorFlow 'SAME' zero padding for the kernel and stride (half before, rounded down),
    /// per axis: a kh × kw kernel pads rows for kh and columns for kw.
    Same,
}

impl Padding {
    /// (top, bottom, left, right) for an (h, w) map and a (kh, kw) kernel at `stride`: the one
    /// computation every path (own kernels, Candle's ops) pads by.
    pub fn sides(
        self,
        (h, w): (usize, usize),
        (kh, kw): (usize, usize),
        stride: usize,
    ) -> Result<(usize, usize, usize, usize)> {
        Ok(match self {
            Padding::None => (0, 0, 0, 0),
            Padding::Reflect(r) => {
                if r >= h || r >= w {
                    return Err(Error::input(
                        "reflection_pad2d",
                        format!("padding {r} needs a map larger than {r}×{r}, got {h}×{w}"),
                    ));
                }
                (r, r, r, r)
            }
            Padding::Same => {
                if stride == 0 {
                    return Err(Error::input("same_pad2d", "stride 0"));
                }
                let total = |n: usize, k: usize| {
                    ((n.div_ceil(stride).max(1) - 1) * stride + k).saturating_sub(n)
                };
                let (th, tw) = (total(h, kh), total(w, kw));
                (th / 2, th - th / 2, tw / 2, tw - tw / 2)
            }
        })
    }
}

/// The activation applied to a convolution's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// None.
    None,
    /// max(·, 0).
    Relu,
    /// min(max(·, 0), 6) (MobileNet).
    Relu6,
}

impl Activation {
    /// The activation as a clamp to [lo, hi] (what the SIMD epilogues apply).
    #[inline]
    pub(crate) fn bounds(self) -> (f32, f32) {
        match self {
            Activation::None => (f32::NEG_INFINITY, f32::INFINITY),
            Activation::Relu => (0.0, f32::INFINITY),
            Activation::Relu6 => (0.0, 6.0),
        }
    }
}

/// A convolution's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Stride (both axes).
    pub stride: usize,
    /// Groups (1, or the channel count for depthwise).
    pub groups: usize,
    /// Padding.
    pub padding: Padding,
    /// Activation of the output.
    pub act: Activation,
}

impl Default for ConvSpec {
    fn default() -> Self {
        ConvSpec {
            stride: 1,
            groups: 1,
            padding: Padding::None,
            act: Activation::None,
        }
    }
}

/// Shapes of one sample's convolution, checked: stride ≥ 1, the padded map at least the kernel,
/// and Ho, Wo derived from them. Kernels index with these fields and trust them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) cin: usize,
    /// Padded height and width.
    pub(crate) hp: usize,
    pub(crate) wp: usize,
    pub(crate) cout: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) stride: usize,
    pub(crate) ho: usize,
    pub(crate) wo: usize,
}

impl Geometry {
    /// Cin × (Hp, Wp) padded input, Cout × Cin × (kh, kw) kernel (per group), `stride`.
    pub(crate) fn new(
        cin: usize,
        (hp, wp): (usize, usize),
        cout: usize,
        (kh, kw): (usize, usize),
        stride: usize,
    ) -> Result<Geometry> {
        if stride == 0 || kh == 0 || kw == 0 {
            return Err(Error::input(
                "conv2d",
                format!("{kh}×{kw} kernel at stride {stride}"),
            ));
        }
        if hp < kh || wp < kw {
            return Err(Error::input(
                "conv2d",
                format!("{hp}×{wp} input (padded) is smaller than the {kh}×{kw} kernel"),
            ));
        }
        Ok(Geometry {
            cin,
            hp,
            wp,
            cout,
            kh,
            kw,
            stride,
            ho: (hp - kh) / stride + 1,
            wo: (wp - kw) / stride + 1,
        })
    }

    /// Floats of one padded input sample and one output sample.
    pub(crate) fn lens(&self) -> (usize, usize) {
        (self.cin * self.hp * self.wp, self.cout * self.ho * self.wo)
    }
}

/// One sample's input, unpadded, with the padding the convolution applies (the Winograd,
/// direct and strided kernels read the padding on the fly).
pub(crate) struct Input<'a> {
    /// (Cin, H, W), row-major.
    pub(crate) data: &'a [f32],
    pub(crate) h: usize,
    pub(crate) w: usize,
    /// Padding (top, bottom, left, right).
    pub(crate) pads: (usize, usize, usize, usize),
    /// Reflection (PyTorch `ReflectionPad2d`) or zeros.
    pub(crate) reflect: bool,
}

impl Input<'_> {
    /// The source index of padded coordinate `p` along an axis of length `n` padded by
    /// (`before`, `after`); `None` for zeros (zero padding, or past the padded map, where the
    /// values only reach outputs that are cut off).
    #[inline]
    pub(crate) fn source(&self, p: usize, n: usize, before: usize, after: usize) -> Option<usize> {
        let i = p as isize - before as isize;
        let n_i = n as isize;
        if (0..n_i).contains(&i) {
            Some(i as usize)
        } else if !self.reflect || p >= n + before + after {
            None
        } else if i < 0 {
            Some((-i) as usize)
        } else {
            Some((2 * (n_i - 1) - i) as usize)
        }
    }
}

/// A raw pointer that bands of one output share; each band writes disjoint rows.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: the pointer is only used to write disjoint regions from different threads (one band
// of output rows each), and the buffer outlives the parallel loop.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not the field).
    // `#[inline]`: the kernels call it in their inner loops from other codegen units.
    #[inline]
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Adds the bias and applies the activation in one pass.
#[inline]
pub(crate) fn epilogue(row: &mut [f32], b: f32, act: Activation) {
    match act {
        Activation::Relu => row.iter_mut().for_each(|v| *v = (*v + b).max(0.0)),
        Activation::Relu6 => row.iter_mut().for_each(|v| *v = (*v + b).clamp(0.0, 6.0)),
        Activation::None if b != 0.0 => row.iter_mut().for_each(|v| *v += b),
        Activation::None => {}
    }
}

/// The weights `w` (Cout, Cin, kh, kw) with taps in (ci, ky, kx) order, the Cout weights of one
/// tap adjacent (one broadcast each), and the bias as Cout values (zeros without one).
pub(crate) fn tap_major(w: &[f32], bias: Option<&[f32]>, g: &Geometry) -> (Vec<f32>, Vec<f32>) {
    let taps = g.cin * g.kh * g.kw;
    debug_assert!(w.len() >= taps * g.cout);
    let mut wt = vec![0f32; taps * g.cout];
    for co in 0..g.cout {
        for t in 0..taps {
            wt[t * g.cout + co] = w[co * taps + t];
        }
    }
    let b = (0..g.cout).map(|c| bias.map_or(0.0, |b| b[c])).collect();
    (wt, b)
}

/// The f32 values of a custom op's contiguous CPU operand.
pub(crate) fn contiguous_f32<'a>(
    s: &'a candle::CpuStorage,
    l: &candle::Layout,
) -> candle::Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => candle::bail!("normstyle conv: expected a contiguous input"),
    }
}

/// `f` on the values of a CPU f32 tensor, in place when it is contiguous (a copy otherwise).
pub(crate) fn with_f32<R>(t: &candle::Tensor, f: impl FnOnce(&[f32]) -> R) -> candle::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle::Storage::Cpu(cpu) = &*storage else {
        candle::bail!("normstyle: expected a CPU tensor");
    };
    Ok(f(contiguous_f32(cpu, layout)?))
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
        // SAFETY: the caller's contract.
        unsafe { std::ptr::write_bytes(p, 0, len) };
        return;
    }
    let p = OutPtr(p);
    in_pool(|| {
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

/// The threads of Candle's pool, read once: `candle::utils::get_num_threads` reads
/// /proc/cpuinfo on every call (~4 % of a training step when the kernels asked per layer).
pub fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| candle::utils::get_num_threads().max(1))
}

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

/// Test reference: float64 act(conv(x) + b) of one sample, `x` (Cin, H, W) padded as it says,
/// stride `g.stride`.
#[cfg(test)]
pub(crate) fn reference_conv(
    x: &Input,
    w: &[f32],
    b: &[f32],
    g: &Geometry,
    act: Activation,
) -> Vec<f64> {
    let (pt, pb, pl, pr) = x.pads;
    let mut out = vec![0f64; g.cout * g.ho * g.wo];
    for co in 0..g.cout {
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let mut s = f64::from(b[co]);
                for ci in 0..g.cin {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let sy = x.source(g.stride * oy + ky, x.h, pt, pb);
                            let sx = x.source(g.stride * ox + kx, x.w, pl, pr);
                            if let (Some(sy), Some(sx)) = (sy, sx) {
                                let v = x.data[(ci * x.h + sy) * x.w + sx];
                                let k = w[((co * g.cin + ci) * g.kh + ky) * g.kw + kx];
                                s += f64::from(v) * f64::from(k);
                            }
                        }
                    }
                }
                out[(co * g.ho + oy) * g.wo + ox] = match act {
                    Activation::None => s,
                    Activation::Relu => s.max(0.0),
                    Activation::Relu6 => s.clamp(0.0, 6.0),
                };
            }
        }
    }
    out
}

/// The eight partial sums of [`sum_f64`] and its kin, added in a fixed order.
#[inline(always)]
pub(crate) fn fold8(a: [f64; 8]) -> f64 {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

crate::ops::isa::avx2_or_plain! {
    /// Σ v in f64 as eight interleaved partial sums added in a fixed order: the same bits on
    /// every run and thread count, and the adds vectorize (one chain of f64 adds waits ~4
    /// cycles per element).
    pub(crate) fn sum_f64(v: &[f32]) -> f64 = sum_f64_in
}

#[inline(always)]
fn sum_f64_in(v: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for (a, &x) in acc.iter_mut().zip(ch) {
            *a += f64::from(x);
        }
    }
    let mut total = fold8(acc);
    for &x in rest {
        total += f64::from(x);
    }
    total
}

crate::ops::isa::avx2_or_plain! {
    /// Σ (v − m)² in f64, summed as [`sum_f64`].
    pub(crate) fn sq_dev_sum(v: &[f32], m: f64) -> f64 = sq_dev_sum_in
}

#[inline(always)]
fn sq_dev_sum_in(v: &[f32], m: f64) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for (a, &x) in acc.iter_mut().zip(ch) {
            let d = f64::from(x) - m;
            *a += d * d;
        }
    }
    let mut total = fold8(acc);
    for &x in rest {
        let d = f64::from(x) - m;
        total += d * d;
    }
    total
}
