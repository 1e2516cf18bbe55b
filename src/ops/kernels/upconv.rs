//! Nearest ×2 upsampling fused into the reflection-padded 3×3 convolution after it (the Magenta
//! decoders' expand layers), computed on the small map.
//!
//! Upsampled by 2, row 2r + a of the map repeats row r; reflection-padded by one, the upsampled
//! map's row −1 is row 1, which repeats row 0 (and row 2H is row H − 1): the padding becomes
//! edge replication of the small map. So output row 2r + a reads only small rows r − 1 + a and
//! r + a (clamped to the map), with the 3×3 kernel's rows summed into two (a = 0: {0}, {1, 2};
//! a = 1: {0, 1}, {2}), and output column 2c + b likewise small columns c − 1 + b and c + b: four
//! 2×2 convolutions of the small map, 4/9 of the multiplications, and no upsampled copy. The
//! summed weights differ from the plain convolution only in float summation order.
//!
//! Each output row pair is computed from the small rows in register blocks of both column
//! phases × a few output channels, stored interleaved. AVX-512 or AVX2/FMA when the CPU has
//! them (`NORMSTYLE_KERNEL` as for the direct kernel), else plain loops.

use rayon::prelude::*;

use crate::ops::isa::{simd_isas, Isa};
use crate::ops::shared::{epilogue, in_pool, Activation, OutPtr};

/// Up to this many output channels the fused form runs; wider layers run Winograd on the
/// upsampled map, which needs fewer multiplications (1/4 against 4/9) and reaches full speed.
pub(crate) const MAX_COUT: usize = 16;

/// One sample: `x` (Cin, H, W) small map, `wt` from [`subpixel_weights`], `bias` Cout values
/// (zeros without one) → `dst` (Cout, 2H, 2W), every element written (it may start
/// uninitialized).
///
/// # Safety
/// `dst` points to Cout·2H·2W writable floats that nothing else accesses during the call.
pub(crate) unsafe fn conv(
    x: &[f32],
    (cin, h, w): (usize, usize, usize),
    wt: &[f32],
    bias: &[f32],
    dst: OutPtr,
    act: Activation,
) {
    let cout = bias.len();
    debug_assert!(h >= 1 && w >= 1 && cout <= MAX_COUT);
    debug_assert!(x.len() >= cin * h * w && wt.len() >= 2 * cin * 2 * 4 * cout);
    let job = Job {
        x,
        cin,
        h,
        w,
        cout,
        wt,
        bias,
        dst,
        act,
    };
    // SAFETY: the caller's contract; `Isa::detect` names a set this CPU runs.
    unsafe { job.run(Isa::detect()) }
}

/// The four 2×2 kernels of each row phase a: `w` (Cout, Cin, 3, 3) → [a][ci][i][q][co] with
/// q = 2b + j the (column phase, tap) pair; summed in f64 and rounded once.
pub(crate) fn subpixel_weights(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    // Kernel rows (or columns) summed into tap i of phase a.
    const SETS: [[&[usize]; 2]; 2] = [[&[0], &[1, 2]], [&[0, 1], &[2]]];
    let mut out = vec![0f32; 2 * cin * 2 * 4 * cout];
    for a in 0..2 {
        for ci in 0..cin {
            for i in 0..2 {
                for (q, (b, j)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                    for co in 0..cout {
                        let k = &w[(co * cin + ci) * 9..][..9];
                        let s: f64 = SETS[a][i]
                            .iter()
                            .flat_map(|&ky| SETS[b][j].iter().map(move |&kx| k[ky * 3 + kx]))
                            .map(f64::from)
                            .sum();
                        out[(((a * cin + ci) * 2 + i) * 4 + q) * cout + co] = s as f32;
                    }
                }
            }
        }
    }
    out
}

/// One sample's fused convolution.
struct Job<'a> {
    /// (Cin, H, W) small map.
    x: &'a [f32],
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    /// From [`subpixel_weights`].
    wt: &'a [f32],
    /// Cout values (zeros without a bias).
    bias: &'a [f32],
    /// (Cout, 2H, 2W).
    dst: OutPtr,
    act: Activation,
}

thread_local! {
    /// The gathered edge blocks of one task's row, reused.
    static EDGE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Job<'_> {
    /// Every output row pair, in parallel.
    ///
    /// # Safety
    /// `dst` holds Cout·2H·2W writable floats nothing else accesses; `kernel` runs on this CPU.
    unsafe fn run(&self, kernel: Isa) {
        in_pool(|| {
            (0..self.h).into_par_iter().for_each(|r| {
                EDGE.with_borrow_mut(|edge| {
                    for a in 0..2 {
                        // SAFETY: output row 2r + a of every channel is this task's alone.
                        unsafe { self.row(r, a, kernel, edge) }
                    }
                })
            })
        })
    }

    /// The small rows output row 2r + a reads: [ci][i].
    fn rows(&self, r: usize, a: usize) -> Vec<&[f32]> {
        let (h, w) = (self.h, self.w);
        (0..self.cin)
            .flat_map(|ci| (0..2).map(move |i| (ci, i)))
            .map(|(ci, i)| {
                let y = (r + a + i).saturating_sub(1).min(h - 1);
                &self.x[(ci * h + y) * w..][..w]
            })
            .collect()
    }

    /// Output row 2r + a of every channel, in groups of output channels.
    ///
    /// # Safety
    /// As for [`Self::run`]; row 2r + a is this task's.
    unsafe fn row(&self, r: usize, a: usize, kernel: Isa, edge: &mut Vec<f32>) {
        debug_assert!(r < self.h && a < 2 && self.wt.len() >= 2 * self.cin * 2 * 4 * self.cout);
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            let rows = self.rows(r, a);
            let wt = &self.wt[a * self.cin * 8 * self.cout..][..self.cin * 8 * self.cout];
            let mut co0 = 0;
            while co0 < self.cout {
                let left = self.cout - co0;
                let group = |k: usize| left.min(k);
                // Registers: 2·CO·NV accumulators + the three shifted inputs + a broadcast.
                co0 += match kernel {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => match group(8) {
                        1 => self.row_avx512::<1, 4>(r, a, co0, &rows, wt, edge),
                        2 => self.row_avx512::<2, 4>(r, a, co0, &rows, wt, edge),
                        3 => self.row_avx512::<3, 4>(r, a, co0, &rows, wt, edge),
                        4 => self.row_avx512::<4, 2>(r, a, co0, &rows, wt, edge),
                        5 => self.row_avx512::<5, 2>(r, a, co0, &rows, wt, edge),
                        6 => self.row_avx512::<6, 2>(r, a, co0, &rows, wt, edge),
                        7 => self.row_avx512::<7, 1>(r, a, co0, &rows, wt, edge),
                        _ => self.row_avx512::<8, 1>(r, a, co0, &rows, wt, edge),
                    },
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => match group(4) {
                        1 => self.row_avx2::<1, 3>(r, a, co0, &rows, wt, edge),
                        2 => self.row_avx2::<2, 2>(r, a, co0, &rows, wt, edge),
                        3 => self.row_avx2::<3, 1>(r, a, co0, &rows, wt, edge),
                        _ => self.row_avx2::<4, 1>(r, a, co0, &rows, wt, edge),
                    },
                    Isa::Portable => self.row_portable(r, a, co0, left, &rows, wt),
                };
            }
        }
    }

    /// Output channels co0 .. co0 + count of row 2r + a, plain loops; returns `count`.
    fn row_portable(
        &self,
        r: usize,
        a: usize,
        co0: usize,
        count: usize,
        rows: &[&[f32]],
        wt: &[f32],
    ) -> usize {
        let (w, cout) = (self.w, self.cout);
        let mut acc = vec![0f32; 2 * w];
        for co in co0..co0 + count {
            acc.fill(0.0);
            for (t, row) in rows.iter().enumerate() {
                let k = |q: usize| wt[(t * 4 + q) * cout + co];
                for (c, pair) in acc.chunks_exact_mut(2).enumerate() {
                    let (m, z, p) = (row[c.saturating_sub(1)], row[c], row[(c + 1).min(w - 1)]);
                    pair[0] += k(0) * m + k(1) * z;
                    pair[1] += k(2) * z + k(3) * p;
                }
            }
            epilogue(&mut acc, self.bias[co], self.act);
            let plane = 4 * self.h * w;
            // SAFETY: row 2r + a of channel co lies inside dst and is this task's.
            let out = unsafe {
                std::slice::from_raw_parts_mut(self.dst.at(co * plane + (2 * r + a) * 2 * w), 2 * w)
            };
            out.copy_from_slice(&acc);
        }
        count
    }

    /// Where the small rows of the block at columns c0 .. c0 + width are, from column c0 − 1:
    /// `None` inside the map (read in place), else the offset in `edge` of a gathered copy with
    /// the edge columns replicated (`width + 2` floats a row).
    fn gather(
        &self,
        rows: &[&[f32]],
        c0: usize,
        width: usize,
        edge: &mut Vec<f32>,
    ) -> Option<usize> {
        let w = self.w;
        if c0 >= 1 && c0 + width < w {
            return None;
        }
        let at = edge.len();
        for row in rows {
            edge.extend((0..width + 2).map(|k| row[(c0 + k).saturating_sub(1).min(w - 1)]));
        }
        Some(at)
    }
}

/// The SIMD row kernel for one vector type: blocks of NV vectors of small columns × both column
/// phases × CO output channels in registers, stored interleaved.
macro_rules! simd_row {
    ($name:ident, $feat:literal, $lanes:literal, $v:ty, $zero:ident, $set1:ident, $load:ident,
     $fma:ident, $add:ident, $max:ident, $min:ident, $store:ident, $zip:ident) => {
        #[cfg(target_arch = "x86_64")]
        impl Job<'_> {
            /// Output channels co0 .. co0 + CO of row 2r + a; returns CO.
            #[target_feature(enable = $feat)]
            unsafe fn $name<const CO: usize, const NV: usize>(
                &self,
                r: usize,
                a: usize,
                co0: usize,
                rows: &[&[f32]],
                wt: &[f32],
                edge: &mut Vec<f32>,
            ) -> usize {
                // SAFETY: the caller upholds this function's `# Safety` contract.
                unsafe {
                    use std::arch::x86_64::*;
                    let (w, cout) = (self.w, self.cout);
                    let width = $lanes * NV;
                    if w < width {
                        return self.row_portable(r, a, co0, CO, rows, wt);
                    }
                    let plane = 4 * self.h * w;
                    let (lo, hi) = self.act.bounds();
                    let (lo, hi) = ($set1(lo), $set1(hi));
                    // Blocks of `width` small columns; a last, partial one ends at the row's end,
                    // overlapping the one before (its outputs are recomputed identically).
                    edge.clear();
                    let mut blocks = Vec::with_capacity(w / width + 1);
                    let mut c = 0;
                    while c + width <= w {
                        blocks.push((c, self.gather(rows, c, width, edge)));
                        c += width;
                    }
                    if c < w {
                        let c = w - width;
                        blocks.push((c, self.gather(rows, c, width, edge)));
                    }
                    for &(c0, at) in &blocks {
                        // [column phase][co][vector]
                        let mut acc: [[[$v; NV]; CO]; 2] = [[[$zero(); NV]; CO]; 2];
                        let mut wp = wt.as_ptr().add(co0);
                        for (t, row) in rows.iter().enumerate() {
                            // From small column c0 − 1.
                            let p = match at {
                                Some(off) => edge.as_ptr().add(off + t * (width + 2)),
                                None => row.as_ptr().add(c0 - 1),
                            };
                            for v in 0..NV {
                                let m = $load(p.add($lanes * v));
                                let z = $load(p.add($lanes * v + 1));
                                let q = $load(p.add($lanes * v + 2));
                                for co in 0..CO {
                                    let k = |q: usize| $set1(*wp.add(q * cout + co));
                                    acc[0][co][v] = $fma(k(0), m, acc[0][co][v]);
                                    acc[0][co][v] = $fma(k(1), z, acc[0][co][v]);
                                    acc[1][co][v] = $fma(k(2), z, acc[1][co][v]);
                                    acc[1][co][v] = $fma(k(3), q, acc[1][co][v]);
                                }
                            }
                            wp = wp.add(4 * cout);
                        }
                        for co in 0..CO {
                            let b = $set1(self.bias[co0 + co]);
                            let out = self
                                .dst
                                .at((co0 + co) * plane + (2 * r + a) * 2 * w + 2 * c0);
                            for v in 0..NV {
                                let e = $min(hi, $max(lo, $add(acc[0][co][v], b)));
                                let o = $min(hi, $max(lo, $add(acc[1][co][v], b)));
                                let (first, second) = $zip(e, o);
                                $store(out.add(2 * $lanes * v), first);
                                $store(out.add(2 * $lanes * v + $lanes), second);
                            }
                        }
                    }
                    CO
                }
            }
        }
    };
}

/// (e₀ o₀ e₁ o₁ … , …): the even and odd output columns interleaved, 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn zip_avx2(
    e: std::arch::x86_64::__m256,
    o: std::arch::x86_64::__m256,
) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    // Interleaved within 128-bit halves, then the halves put in order.
    let (l, h) = (_mm256_unpacklo_ps(e, o), _mm256_unpackhi_ps(e, o));
    (
        _mm256_permute2f128_ps::<0x20>(l, h),
        _mm256_permute2f128_ps::<0x31>(l, h),
    )
}

/// As [`zip_avx2`], 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
fn zip_avx512(
    e: std::arch::x86_64::__m512,
    o: std::arch::x86_64::__m512,
) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    let first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let second = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    (
        _mm512_permutex2var_ps(e, first, o),
        _mm512_permutex2var_ps(e, second, o),
    )
}

simd_isas!(simd_row; zip_avx2, zip_avx512);

#[cfg(test)]
mod tests {
    use super::*;

    /// float64 conv3×3(reflection_pad1(upsample_nearest2x(x))) + bias, then `act`.
    fn reference(
        x: &[f32],
        (cin, h, w): (usize, usize, usize),
        wt: &[f32],
        b: &[f32],
        act: Activation,
    ) -> Vec<f64> {
        let cout = b.len();
        let (ho, wo) = (2 * h, 2 * w);
        // Reflection of the upsampled map's coordinate, then the small map's.
        let src = |p: isize, n: usize| {
            let q = if p < 0 {
                -p
            } else if p >= n as isize {
                2 * (n as isize - 1) - p
            } else {
                p
            };
            q as usize / 2
        };
        let mut out = vec![0f64; cout * ho * wo];
        for co in 0..cout {
            for y in 0..ho {
                for xo in 0..wo {
                    let mut s = f64::from(b[co]);
                    for ci in 0..cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let sy = src(y as isize + ky as isize - 1, ho);
                                let sx = src(xo as isize + kx as isize - 1, wo);
                                s += f64::from(x[(ci * h + sy) * w + sx])
                                    * f64::from(wt[((co * cin + ci) * 3 + ky) * 3 + kx]);
                            }
                        }
                    }
                    out[(co * ho + y) * wo + xo] = match act {
                        Activation::None => s,
                        Activation::Relu => s.max(0.0),
                        Activation::Relu6 => s.clamp(0.0, 6.0),
                    };
                }
            }
        }
        out
    }

    /// Every kernel this CPU runs, output-channel counts that make every group size, maps
    /// narrower than a block, one block, and many with an overlapping last one (and one row or
    /// column), against float64 within 1e-5 of the output scale; the output starts as NaN, so
    /// an output left unwritten fails.
    #[test]
    fn every_kernel_matches_upsampling_then_convolving_in_float64() {
        let mut rnd = crate::ops::shared::centered_stream(5);
        // (cin, h, w)
        let shapes = [
            (3, 1, 1),
            (2, 3, 5),
            (16, 4, 16),
            (8, 5, 37),
            (4, 2, 70),
            (5, 33, 1),
        ];
        for kernel in crate::ops::isa::tested("upconv") {
            for &(cin, h, w) in &shapes {
                for cout in [1, 2, 3, 4, 5, 6, 7, 8, 11, 16] {
                    let act = [Activation::None, Activation::Relu, Activation::Relu6][cout % 3];
                    let data: Vec<f32> = (0..cin * h * w).map(|_| 4.0 * rnd()).collect();
                    let wt: Vec<f32> = (0..cout * cin * 9).map(|_| rnd()).collect();
                    let b: Vec<f32> = (0..cout).map(|_| rnd()).collect();
                    let sub = subpixel_weights(&wt, cout, cin);
                    let mut out = vec![f32::NAN; cout * 4 * h * w];
                    let job = Job {
                        x: &data,
                        cin,
                        h,
                        w,
                        cout,
                        wt: &sub,
                        bias: &b,
                        dst: OutPtr(out.as_mut_ptr()),
                        act,
                    };
                    // SAFETY: `out` holds Cout·2H·2W floats; the kernel runs on this CPU.
                    unsafe { job.run(kernel) };
                    let want = reference(&data, (cin, h, w), &wt, &b, act);
                    let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
                    for (i, (&got, &want)) in out.iter().zip(&want).enumerate() {
                        assert!(
                            (f64::from(got) - want).abs() <= 1e-5 * scale,
                            "{kernel:?} cin {cin} cout {cout} {h}x{w}: [{i}] {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
