//! Direct stride-1 convolution for few output channels (≤ 8: the Magenta 9×9 layers, its 16→8
//! expand conv, AdaIN's 64→3 output conv), where an unfolded GEMM with so few rows would spend
//! its time copying patches.
//!
//! Each output row is cut into blocks of `NV` vectors; a block of every output channel is
//! accumulated in registers over the (ci, ky, kx) taps — one load of shifted input per tap feeds
//! all `CO` channels — in passes of a few input channels over the whole row (partial sums kept
//! in the output between passes), and bias and activation are applied by the last pass: the
//! output is never zeroed. The padding is read on the fly: blocks inside the map read the input
//! rows in place, the edge blocks a small gathered copy. AVX-512 (16 lanes, 32 registers) or
//! AVX2/FMA (8 lanes, 16 registers) when the CPU has them, else plain loops.

use rayon::prelude::*;

use crate::ops::isa::{simd_isas, Isa};
use crate::ops::shared::{epilogue, in_pool, tap_major, Activation, Geometry, Input, OutPtr};

/// Up to this many output channels a stride-1 convolution runs here.
pub(crate) const MAX_COUT: usize = 8;

/// Input rows (whole channels of kh rows) one pass of the SIMD kernels reads.
const PASS_ROWS: usize = 24;

/// act(conv(pad(x)) + bias) of one sample: `x` (Cin, H, W) with its padding, `w` (Cout, Cin,
/// kh, kw) row-major, `g` the padded geometry → `dst` (Cout, Ho, Wo), every element written (it
/// may start uninitialized).
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
    debug_assert!(g.stride == 1 && g.cout <= MAX_COUT);
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
    let job = Job {
        x,
        w: &wt,
        bias: &b,
        dst,
        g,
        act,
    };
    in_pool(|| {
        (0..g.ho).into_par_iter().for_each(|y| {
            // SAFETY: row y of every channel is written by this task only; the kernel is one
            // this CPU runs.
            unsafe { job.row(y, kernel) }
        });
    });
}

/// What every row task of one convolution shares.
struct Job<'a> {
    x: &'a Input<'a>,
    /// (ci, ky, kx, co) order.
    w: &'a [f32],
    /// Cout values (zeros without a bias).
    bias: &'a [f32],
    dst: OutPtr,
    g: &'a Geometry,
    act: Activation,
}

thread_local! {
    /// The gathered edge blocks of one task's row, reused.
    static EDGE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Job<'_> {
    /// Output row `y` of every channel.
    ///
    /// # Safety
    /// Row y is this task's alone; `kernel` runs on this CPU.
    unsafe fn row(&self, y: usize, kernel: Isa) {
        debug_assert!(
            y < self.g.ho && self.w.len() >= self.g.cin * self.g.kh * self.g.kw * self.g.cout
        );
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            let (g, x) = (self.g, self.x);
            let (pt, pb, _, _) = x.pads;
            // The source row of each (ci, ky), None for a zero row.
            let rows: Vec<Option<&[f32]>> = (0..g.cin)
                .flat_map(|ci| (0..g.kh).map(move |ky| (ci, ky)))
                .map(|(ci, ky)| {
                    x.source(y + ky, x.h, pt, pb)
                        .map(|sy| &x.data[(ci * x.h + sy) * x.w..][..x.w])
                })
                .collect();
            EDGE.with_borrow_mut(|edge| match kernel {
                // Registers: CO·NV accumulators + NV inputs + 1 broadcast ≤ 32 zmm.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => match g.cout {
                    1 => self.row_avx512::<1, 4>(y, &rows, edge),
                    2 => self.row_avx512::<2, 4>(y, &rows, edge),
                    3 => self.row_avx512::<3, 4>(y, &rows, edge),
                    4 => self.row_avx512::<4, 4>(y, &rows, edge),
                    5 => self.row_avx512::<5, 4>(y, &rows, edge),
                    6 => self.row_avx512::<6, 3>(y, &rows, edge),
                    7 => self.row_avx512::<7, 3>(y, &rows, edge),
                    _ => self.row_avx512::<8, 3>(y, &rows, edge),
                },
                // Registers: CO·NV accumulators + NV inputs + 1 broadcast ≤ 16 ymm.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => match g.cout {
                    1 => self.row_avx2::<1, 4>(y, &rows, edge),
                    2 => self.row_avx2::<2, 4>(y, &rows, edge),
                    3 => self.row_avx2::<3, 3>(y, &rows, edge),
                    4 => self.row_avx2::<4, 2>(y, &rows, edge),
                    5 => self.row_avx2::<5, 2>(y, &rows, edge),
                    6 => self.row_avx2::<6, 1>(y, &rows, edge),
                    7 => self.row_avx2::<7, 1>(y, &rows, edge),
                    _ => self.row_avx2::<8, 1>(y, &rows, edge),
                },
                Isa::Portable => self.row_portable(y, &rows, edge),
            })
        }
    }

    /// Where the (ci, ky) input rows of the block at padded columns x0 .. x0 + width + kw − 1
    /// are: `None` when the block lies inside the map (read in place), else the offset in
    /// `edge` at which they were gathered (padding applied), `width + kw − 1` floats a row.
    fn gather(
        &self,
        rows: &[Option<&[f32]>],
        x0: usize,
        width: usize,
        edge: &mut Vec<f32>,
    ) -> Option<usize> {
        let x = self.x;
        let (_, _, pl, pr) = x.pads;
        let seg = width + self.g.kw - 1;
        if x0 >= pl && x0 + seg <= x.w + pl && rows.iter().all(Option::is_some) {
            return None;
        }
        let at = edge.len();
        // The map's own columns copied as a run, the padding columns looked up.
        let (c0, c1) = (x0.max(pl), (x0 + seg).min(pl + x.w));
        let pad = |r: &[f32], c: usize| x.source(c, x.w, pl, pr).map_or(0.0, |sx| r[sx]);
        for r in rows {
            match r {
                Some(r) => {
                    edge.extend((x0..c0.min(x0 + seg)).map(|c| pad(r, c)));
                    if c0 < c1 {
                        edge.extend_from_slice(&r[c0 - pl..c1 - pl]);
                    }
                    edge.extend((c1.max(c0)..x0 + seg).map(|c| pad(r, c)));
                }
                None => edge.resize(edge.len() + seg, 0.0),
            }
        }
        Some(at)
    }

    /// Input row `t` of the block at `x0` whose rows are where [`Self::gather`] put them
    /// (`seg` = width + kw − 1 readable floats from the returned pointer).
    fn row_ptr(
        &self,
        rows: &[Option<&[f32]>],
        t: usize,
        x0: usize,
        at: Option<usize>,
        edge: &[f32],
        seg: usize,
    ) -> *const f32 {
        match (at, rows[t]) {
            (Some(off), _) => edge[off + t * seg..].as_ptr(),
            (None, Some(r)) => r[x0 - self.x.pads.2..].as_ptr(),
            // Unreachable: a block is read in place only when every row exists.
            (None, None) => edge.as_ptr(),
        }
    }

    /// Plain loops over a whole gathered row (CPUs without AVX2; rows narrower than a block).
    fn row_portable(&self, y: usize, rows: &[Option<&[f32]>], edge: &mut Vec<f32>) {
        let g = self.g;
        edge.clear();
        let at = self.gather(rows, 0, g.wo, edge);
        let ptrs: Vec<*const f32> = (0..rows.len())
            .map(|t| self.row_ptr(rows, t, 0, at, edge, g.wp))
            .collect();
        let plane = g.ho * g.wo;
        let mut acc = vec![0f32; g.wo];
        for co in 0..g.cout {
            acc.fill(0.0);
            let mut t = 0;
            for &row in &ptrs {
                // SAFETY: each pointer has wo + kw − 1 readable floats (block_rows).
                let row = unsafe { std::slice::from_raw_parts(row, g.wo + g.kw - 1) };
                for kx in 0..g.kw {
                    let wv = self.w[t * g.cout + co];
                    for (a, v) in acc.iter_mut().zip(&row[kx..]) {
                        *a += wv * v;
                    }
                    t += 1;
                }
            }
            epilogue(&mut acc, self.bias[co], self.act);
            // SAFETY: row y of channel co lies inside dst and is this task's.
            let out =
                unsafe { std::slice::from_raw_parts_mut(self.dst.at(co * plane + y * g.wo), g.wo) };
            out.copy_from_slice(&acc);
        }
    }
}

/// The SIMD row kernel for one vector type: blocks of NV vectors × CO channels in registers.
macro_rules! simd_row {
    ($name:ident, $feat:literal, $lanes:literal, $v:ty, $zero:ident, $set1:ident, $load:ident,
     $fma:ident, $add:ident, $max:ident, $min:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        impl Job<'_> {
            #[target_feature(enable = $feat)]
            unsafe fn $name<const CO: usize, const NV: usize>(
                &self,
                y: usize,
                rows: &[Option<&[f32]>],
                edge: &mut Vec<f32>,
            ) {
                // SAFETY: the caller upholds this function's `# Safety` contract.
                unsafe {
                    use std::arch::x86_64::*;
                    let g = self.g;
                    let width = $lanes * NV;
                    if g.wo < width {
                        return self.row_portable(y, rows, edge);
                    }
                    let plane = g.ho * g.wo;
                    // The activation as a clamp: max(lo, s) and min(hi, s) return s when it is NaN,
                    // as PyTorch's ReLU does.
                    let (lo, hi) = self.act.bounds();
                    let (lo, hi) = ($set1(lo), $set1(hi));
                    // Blocks of `width` columns; a last, partial one ends at the row's end,
                    // overlapping the one before (its outputs are recomputed identically).
                    let seg = width + g.kw - 1;
                    edge.clear();
                    let mut blocks = Vec::with_capacity(g.wo / width + 1);
                    let mut x = 0;
                    while x + width <= g.wo {
                        blocks.push((x, self.gather(rows, x, width, edge)));
                        x += width;
                    }
                    let full = blocks.len();
                    if x < g.wo {
                        let x = g.wo - width;
                        blocks.push((x, self.gather(rows, x, width, edge)));
                    }
                    // Passes over a few input channels at a time, each pass over the whole row:
                    // the planes of a map lie ~1 MiB apart, in the same L1 sets, so the 192 rows of
                    // a 64-channel 3×3 layer taken at once thrashed L1. Partial sums go through
                    // `dst` (exact f32, the same order of taps), the overlapping block's in `tail`.
                    let per_pass = (PASS_ROWS / g.kh).max(1) * g.kh;
                    let mut tail: [[$v; NV]; CO] = [[$zero(); NV]; CO];
                    let mut p0 = 0;
                    while p0 < rows.len() {
                        let p1 = (p0 + per_pass).min(rows.len());
                        let (first, last) = (p0 == 0, p1 == rows.len());
                        for (bi, &(x, at)) in blocks.iter().enumerate() {
                            let out = |co: usize| self.dst.at(co * plane + y * g.wo + x);
                            let mut acc: [[$v; NV]; CO] = if bi == full {
                                tail
                            } else if first {
                                [[$zero(); NV]; CO]
                            } else {
                                std::array::from_fn(|co| {
                                    std::array::from_fn(|v| $load(out(co).add($lanes * v)))
                                })
                            };
                            let mut wp = self.w.as_ptr().add(p0 * g.kw * CO);
                            for t in p0..p1 {
                                let row = self.row_ptr(rows, t, x, at, edge, seg);
                                for kx in 0..g.kw {
                                    let xs: [$v; NV] =
                                        std::array::from_fn(|v| $load(row.add(kx + $lanes * v)));
                                    for co in 0..CO {
                                        let wv = $set1(*wp.add(co));
                                        for v in 0..NV {
                                            acc[co][v] = $fma(wv, xs[v], acc[co][v]);
                                        }
                                    }
                                    wp = wp.add(CO);
                                }
                            }
                            if bi == full && !last {
                                tail = acc;
                                continue;
                            }
                            for co in 0..CO {
                                let b = $set1(self.bias[co]);
                                for v in 0..NV {
                                    let s = if last {
                                        $min(hi, $max(lo, $add(acc[co][v], b)))
                                    } else {
                                        acc[co][v]
                                    };
                                    $store(out(co).add($lanes * v), s);
                                }
                            }
                        }
                        p0 = p1;
                    }
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

    /// Every kernel this CPU runs, every output-channel count, 3×3 and 9×9, rows narrower than
    /// a block, one block, and many blocks with an overlapping last one; reflection and zero
    /// padding; against float64, within 1e-5 of the output scale. The output starts as NaN, so
    /// an output left unwritten fails.
    #[test]
    fn every_kernel_matches_a_float64_convolution() {
        let mut rnd = crate::ops::shared::centered_stream(11);
        // (cin, h, w, k, pad, reflect)
        let shapes = [
            (3, 5, 7, 3, 1, true),
            (16, 6, 48, 3, 1, true),
            (8, 7, 71, 9, 4, true),
            (3, 12, 150, 9, 4, true),
            (5, 4, 37, 3, 1, false),
            (2, 9, 20, 9, 4, true),
        ];
        for kernel in crate::ops::isa::tested("direct") {
            for &(cin, h, w, k, pad, reflect) in &shapes {
                for cout in 1..=MAX_COUT {
                    let act = [Activation::None, Activation::Relu, Activation::Relu6][cout % 3];
                    let data: Vec<f32> = (0..cin * h * w).map(|_| 4.0 * rnd()).collect();
                    let wt: Vec<f32> = (0..cout * cin * k * k).map(|_| rnd()).collect();
                    let b: Vec<f32> = (0..cout).map(|_| rnd()).collect();
                    let x = Input {
                        data: &data,
                        h,
                        w,
                        pads: (pad, pad, pad, pad),
                        reflect,
                    };
                    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
                    let (ho, wo) = (hp - k + 1, wp - k + 1);
                    let g = Geometry {
                        cin,
                        hp,
                        wp,
                        cout,
                        kh: k,
                        kw: k,
                        stride: 1,
                        ho,
                        wo,
                    };
                    let mut out = vec![f32::NAN; cout * ho * wo];
                    // SAFETY: `out` holds Cout·Ho·Wo floats; the kernel runs on this CPU.
                    unsafe { run(kernel, &x, &wt, Some(&b), OutPtr(out.as_mut_ptr()), &g, act) };
                    let want = reference(&x, &wt, &b, &g, act);
                    let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
                    for (i, (&got, &want)) in out.iter().zip(&want).enumerate() {
                        assert!(
                            (f64::from(got) - want).abs() <= 1e-5 * scale,
                            "{kernel:?} cin {cin} cout {cout} {h}x{w} k {k}: [{i}] {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
