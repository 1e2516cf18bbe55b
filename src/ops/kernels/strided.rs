//! Direct stride-2 convolution for few output channels (Magenta's contract convs 8→16 and
//! 16→32, the predictor's stem), where an unfolded GEMM with so few rows spends its time
//! copying patches.
//!
//! A task takes a band of output rows; it copies the padded input rows the band reads into a
//! small buffer that stays in cache, each row split into its even and odd columns. Tap (ky, kx)
//! of output column x then reads column x + kx/2 of the (kx mod 2) half of padded row
//! 2y + ky: contiguous vectors, as in the stride-1 direct kernel. Blocks of every few output
//! channels are accumulated in registers over all taps (one vector load feeds every channel of
//! the group), with bias and activation applied before the one store. AVX-512 or AVX2/FMA when
//! the CPU has them (`NORMSTYLE_KERNEL` as for the direct kernel), else plain loops.

use rayon::prelude::*;

use crate::ops::isa::{avx2_or_plain, simd_isas, Isa};
use crate::ops::shared::{epilogue, in_pool, tap_major, Activation, Geometry, Input, OutPtr};

/// Up to this many output channels a stride-2 convolution runs here (the GEMM wins above).
pub(crate) const MAX_COUT: usize = 32;

/// Bytes of split input rows one task aims to keep (within L2 beside the output rows).
const BAND_BYTES: usize = 256 << 10;

/// act(conv(pad(x), stride 2) + bias) of one sample: `x` (Cin, H, W) with its padding, `w`
/// (Cout, Cin, kh, kw) row-major, `g` the padded geometry (stride 2) → `dst` (Cout, Ho, Wo),
/// every element written (it may start uninitialized).
///
/// # Safety
/// `dst` points to Cout·Ho·Wo writable floats that nothing else accesses during the call.
pub(crate) unsafe fn conv(
    x: &Input,
    w: &[f32],
    bias: Option<&[f32]>,
    dst: OutPtr,
    g: &Geometry,
    act: Activation,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe { run(Isa::detect(), x, w, bias, dst, g, act) }
}

/// [`conv`] on a given kernel.
///
/// # Safety
/// As for [`conv`]; `kernel` runs on this CPU.
unsafe fn run(
    kernel: Isa,
    x: &Input,
    w: &[f32],
    bias: Option<&[f32]>,
    dst: OutPtr,
    g: &Geometry,
    act: Activation,
) {
    debug_assert!(g.stride == 2 && g.cout <= MAX_COUT);
    debug_assert!(
        x.data.len() >= g.cin * x.h * x.w,
        "input shorter than Cin·H·W"
    );
    debug_assert!(
        w.len() >= g.cout * g.cin * g.kh * g.kw,
        "weight shorter than its shape"
    );
    debug_assert_eq!(
        (x.h + x.pads.0 + x.pads.1, x.w + x.pads.2 + x.pads.3),
        (g.hp, g.wp),
        "padding and geometry disagree"
    );
    let (wt, b) = tap_major(w, bias, g);
    let half = g.wp.div_ceil(2);
    // Output rows per band: the 2·rows + kh − 2 split rows it reads fit in BAND_BYTES.
    let row_bytes = g.cin * 2 * half * 4;
    let band = (BAND_BYTES / row_bytes).saturating_sub(g.kh) / 2;
    let band = band.clamp(1, g.ho.div_ceil(2).max(1));
    let job = Job {
        x,
        w: &wt,
        bias: &b,
        dst,
        g,
        act,
        half,
    };
    in_pool(|| {
        (0..g.ho.div_ceil(band)).into_par_iter().for_each(|i| {
            let rows = i * band..((i + 1) * band).min(g.ho);
            SPLIT.with_borrow_mut(|buf| {
                job.split(rows.start, rows.end, buf);
                for y in rows.clone() {
                    // SAFETY: rows of this band are written by this task only; the kernel is
                    // one this CPU runs.
                    unsafe { job.row(y, 2 * (y - rows.start), buf, kernel) };
                }
            })
        });
    });
}

thread_local! {
    /// One task's split input rows, reused.
    static SPLIT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What every band task of one convolution shares.
struct Job<'a> {
    x: &'a Input<'a>,
    /// (ci, ky, kx, co) order.
    w: &'a [f32],
    /// Cout values (zeros without a bias).
    bias: &'a [f32],
    dst: OutPtr,
    g: &'a Geometry,
    act: Activation,
    /// Floats in each half (even, odd columns) of a split padded row: ⌈Wp/2⌉.
    half: usize,
}

avx2_or_plain!(
    /// even[j] = src[2j], odd[j] = src[2j + 1] for j < even.len() (= odd.len(), src 2× as long).
    fn deinterleave(src: &[f32], even: &mut [f32], odd: &mut [f32]) = deinterleave_inner
);

#[inline(always)]
fn deinterleave_inner(src: &[f32], even: &mut [f32], odd: &mut [f32]) {
    for ((pair, e), o) in src.chunks_exact(2).zip(even).zip(odd) {
        *e = pair[0];
        *o = pair[1];
    }
}

impl Job<'_> {
    /// Splits the padded rows output rows y0 .. y1 read into `buf`: [row][ci][even | odd],
    /// each half `half` floats (a padded column past Wp, there when Wp is odd, is 0).
    fn split(&self, y0: usize, y1: usize, buf: &mut Vec<f32>) {
        let (g, x, half) = (self.g, self.x, self.half);
        let (pt, pb, pl, pr) = x.pads;
        let rows = 2 * (y1 - 1 - y0) + g.kh;
        buf.resize(rows * g.cin * 2 * half, 0.0);
        // Padded columns whose pairs (2j, 2j + 1) both lie inside the map: j0 .. j1.
        let j0 = pl.div_ceil(2);
        let j1 = ((pl + x.w) / 2).max(j0);
        let value = |r: Option<&[f32]>, px: usize| match r {
            Some(r) if px < g.wp => x.source(px, x.w, pl, pr).map_or(0.0, |sx| r[sx]),
            _ => 0.0,
        };
        for lr in 0..rows {
            let sy = x.source(2 * y0 + lr, x.h, pt, pb);
            for ci in 0..g.cin {
                let r = sy.map(|sy| &x.data[(ci * x.h + sy) * x.w..][..x.w]);
                let at = (lr * g.cin + ci) * 2 * half;
                let (even, odd) = buf[at..at + 2 * half].split_at_mut(half);
                for j in (0..j0).chain(j1..half) {
                    even[j] = value(r, 2 * j);
                    odd[j] = value(r, 2 * j + 1);
                }
                match r {
                    Some(r) if j1 > j0 => deinterleave(
                        &r[2 * j0 - pl..2 * j1 - pl],
                        &mut even[j0..j1],
                        &mut odd[j0..j1],
                    ),
                    _ => {
                        even[j0..j1].fill(0.0);
                        odd[j0..j1].fill(0.0);
                    }
                }
            }
        }
    }

    /// Output row `y` of every channel from the split rows at `buf` row `lr` (= 2y + ky's
    /// offset in the band), in groups of output channels.
    ///
    /// # Safety
    /// Row y is this task's alone; `kernel` runs on this CPU.
    unsafe fn row(&self, y: usize, lr: usize, buf: &[f32], kernel: Isa) {
        debug_assert!(y < self.g.ho && (lr + self.g.kh) * self.g.cin * 2 * self.half <= buf.len());
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            let g = self.g;
            // Where tap (ci, ky, kx) reads output column 0.
            let taps: Vec<*const f32> = (0..g.cin)
                .flat_map(|ci| (0..g.kh).flat_map(move |ky| (0..g.kw).map(move |kx| (ci, ky, kx))))
                .map(|(ci, ky, kx)| {
                    let at =
                        ((lr + ky) * g.cin + ci) * 2 * self.half + (kx % 2) * self.half + kx / 2;
                    buf[at..].as_ptr()
                })
                .collect();
            let mut co0 = 0;
            while co0 < g.cout {
                let left = g.cout - co0;
                // Registers: CO·NV accumulators + NV inputs + a broadcast.
                co0 += match kernel {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => match left.min(8) {
                        1 => self.row_avx512::<1, 4>(y, co0, &taps),
                        2 => self.row_avx512::<2, 4>(y, co0, &taps),
                        3 => self.row_avx512::<3, 4>(y, co0, &taps),
                        4 => self.row_avx512::<4, 4>(y, co0, &taps),
                        5 => self.row_avx512::<5, 4>(y, co0, &taps),
                        6 => self.row_avx512::<6, 3>(y, co0, &taps),
                        7 => self.row_avx512::<7, 3>(y, co0, &taps),
                        _ => self.row_avx512::<8, 3>(y, co0, &taps),
                    },
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => match left.min(4) {
                        1 => self.row_avx2::<1, 4>(y, co0, &taps),
                        2 => self.row_avx2::<2, 4>(y, co0, &taps),
                        3 => self.row_avx2::<3, 3>(y, co0, &taps),
                        _ => self.row_avx2::<4, 2>(y, co0, &taps),
                    },
                    Isa::Portable => self.row_portable(y, co0, left, &taps),
                };
            }
        }
    }

    /// Output channels co0 .. co0 + count of row y, plain loops; returns `count`.
    fn row_portable(&self, y: usize, co0: usize, count: usize, taps: &[*const f32]) -> usize {
        let g = self.g;
        let mut acc = vec![0f32; g.wo];
        for co in co0..co0 + count {
            acc.fill(0.0);
            for (t, &p) in taps.iter().enumerate() {
                // SAFETY: each tap has wo readable floats (see `split`).
                let src = unsafe { std::slice::from_raw_parts(p, g.wo) };
                let k = self.w[t * g.cout + co];
                for (a, v) in acc.iter_mut().zip(src) {
                    *a += k * v;
                }
            }
            epilogue(&mut acc, self.bias[co], self.act);
            // SAFETY: row y of channel co lies inside dst and is this task's.
            let out = unsafe {
                std::slice::from_raw_parts_mut(self.dst.at((co * g.ho + y) * g.wo), g.wo)
            };
            out.copy_from_slice(&acc);
        }
        count
    }
}

/// The SIMD row kernel for one vector type: blocks of NV vectors × CO channels in registers.
macro_rules! simd_row {
    ($name:ident, $feat:literal, $lanes:literal, $v:ty, $zero:ident, $set1:ident, $load:ident,
     $fma:ident, $add:ident, $max:ident, $min:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        impl Job<'_> {
            /// Output channels co0 .. co0 + CO of row y; returns CO.
            #[target_feature(enable = $feat)]
            unsafe fn $name<const CO: usize, const NV: usize>(
                &self,
                y: usize,
                co0: usize,
                taps: &[*const f32],
            ) -> usize {
                // SAFETY: the caller upholds this function's `# Safety` contract.
                unsafe {
                    use std::arch::x86_64::*;
                    let g = self.g;
                    let width = $lanes * NV;
                    if g.wo < width {
                        return self.row_portable(y, co0, CO, taps);
                    }
                    let (lo, hi) = self.act.bounds();
                    let (lo, hi) = ($set1(lo), $set1(hi));
                    // Blocks of `width` columns; a last, partial one ends at the row's end,
                    // overlapping the one before (its outputs are recomputed identically).
                    let mut x = 0;
                    loop {
                        let x0 = x.min(g.wo - width);
                        let mut acc: [[$v; NV]; CO] = [[$zero(); NV]; CO];
                        let mut wp = self.w.as_ptr().add(co0);
                        for &p in taps {
                            let xs: [$v; NV] =
                                std::array::from_fn(|v| $load(p.add(x0 + $lanes * v)));
                            for co in 0..CO {
                                let wv = $set1(*wp.add(co));
                                for v in 0..NV {
                                    acc[co][v] = $fma(wv, xs[v], acc[co][v]);
                                }
                            }
                            wp = wp.add(g.cout);
                        }
                        for co in 0..CO {
                            let b = $set1(self.bias[co0 + co]);
                            let out = self.dst.at(((co0 + co) * g.ho + y) * g.wo + x0);
                            for v in 0..NV {
                                $store(
                                    out.add($lanes * v),
                                    $min(hi, $max(lo, $add(acc[co][v], b))),
                                );
                            }
                        }
                        x += width;
                        if x >= g.wo {
                            break;
                        }
                    }
                    CO
                }
            }
        }
    };
}

simd_isas!(simd_row);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::shared::reference_conv as reference;

    /// Every kernel this CPU runs against a float64 stride-2 convolution, within 1e-5 of the
    /// output scale: output-channel counts making every group size, 3×3 and 5×4 kernels, odd
    /// and even sizes, rows narrower than a block and many blocks with an overlapping last one,
    /// reflection and zero ('SAME'-like, asymmetric) padding; the output starts as NaN.
    #[test]
    fn every_kernel_matches_a_float64_convolution() {
        let mut rnd = crate::ops::shared::centered_stream(7);
        // (cin, h, w, kh, kw, pads, reflect)
        let shapes = [
            (3, 5, 7, 3, 3, (1, 1, 1, 1), true),
            (8, 9, 130, 3, 3, (1, 1, 1, 1), true),
            (4, 8, 100, 3, 3, (0, 1, 0, 1), false),
            (2, 11, 67, 5, 4, (2, 2, 1, 2), false),
            (3, 6, 33, 3, 3, (1, 1, 1, 1), true),
        ];
        for kernel in crate::ops::isa::tested("strided") {
            for &(cin, h, w, kh, kw, pads, reflect) in &shapes {
                for cout in [1, 2, 3, 4, 5, 6, 7, 8, 13, 32] {
                    let act = [Activation::None, Activation::Relu, Activation::Relu6][cout % 3];
                    let data: Vec<f32> = (0..cin * h * w).map(|_| 4.0 * rnd()).collect();
                    let wt: Vec<f32> = (0..cout * cin * kh * kw).map(|_| rnd()).collect();
                    let b: Vec<f32> = (0..cout).map(|_| rnd()).collect();
                    let x = Input {
                        data: &data,
                        h,
                        w,
                        pads,
                        reflect,
                    };
                    let (hp, wp) = (h + pads.0 + pads.1, w + pads.2 + pads.3);
                    let (ho, wo) = ((hp - kh) / 2 + 1, (wp - kw) / 2 + 1);
                    let g = Geometry {
                        cin,
                        hp,
                        wp,
                        cout,
                        kh,
                        kw,
                        stride: 2,
                        ho,
                        wo,
                    };
                    let mut out = vec![f32::NAN; cout * ho * wo];
                    // SAFETY: `out` holds Cout·Ho·Wo floats; the kernel runs on this CPU.
                    unsafe { run(kernel, &x, &wt, Some(&b), OutPtr(out.as_mut_ptr()), &g, act) };
                    let want = reference(&x, &wt, &b, &g, act);
                    for (i, (&got, &want)) in out.iter().zip(&want).enumerate() {
                        assert!(
                            (f64::from(got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "{kernel:?} cin {cin} cout {cout} {h}x{w} k {kh}x{kw}: [{i}] {got} \
                             vs {want}"
                        );
                    }
                }
            }
        }
    }
}
