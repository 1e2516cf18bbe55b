//! Winograd F(4×4, 3×3) for stride-1 3×3 convolutions (Lavin & Gray 2016): each 4×4 output
//! tile comes from a 6×6 input tile with 36 multiplications per (input, output) channel pair
//! instead of 144.
//!
//! - Weights: U = G·g·Gᵀ (6×6) per (Cout, Cin) pair, computed in f64 and packed once, at load,
//!   for the micro-kernel this CPU runs ([`pack`]): 36 matrices, each in panels of `MR` output
//!   channels × Cin.
//! - Input: V = Bᵀ·d·B, one tile row at a time: the six input rows are read straight from the
//!   unpadded map (reflection or zero padding applied on the way, no padded copy), split by
//!   column phase (x mod 4) so both passes of the transform run on contiguous lanes, and written
//!   in the micro-kernel's panel layout (`NR` tiles × Cin), so the GEMM packs nothing.
//! - 36 GEMMs per block of tile rows, M_ξ = U_ξ · V_ξ, on our own register-blocked kernels:
//!   AVX-512 (8 × 32), AVX2/FMA (6 × 16) or portable (4 × 8), chosen at run time.
//! - Output: Y = Aᵀ·M·A, + bias, activation, written as whole rows of 32 outputs.
//!
//! A block (V and M of a few tile rows, ~4 MiB) stays in the cache between the three steps;
//! blocks run in parallel. Accuracy: ~1e-6 relative per layer in f32 (tests: the real layer
//! shapes against a float64 direct convolution, on every kernel the machine can run).

use rayon::prelude::*;

use crate::ops::isa::Isa;
use crate::ops::shared::{in_pool, Activation, Input, OutPtr};

/// G of F(4, 3).
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Tiles transformed together in SIMD lanes; the slots of a tile row are padded to a multiple.
const LANES: usize = 8;
type Lanes = [f32; LANES];

/// V and M of one block of tile rows, in bytes (measured on AdaIN 512², 2 threads: see
/// BENCHMARKS.md; a block of the VGG layers is one to two tile rows).
const BLOCK_BYTES: usize = 4 << 20;

/// Whether Winograd pays for this convolution: stride-1 3×3 with enough channels that the GEMMs
/// dominate the transforms (the 3-channel first layer and thin layers keep the direct path).
pub(crate) fn applies(
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    groups: usize,
) -> bool {
    groups == 1 && stride == 1 && kh == 3 && kw == 3 && cin >= 16 && cout >= 16
}

/// The register block of each instruction set's GEMM micro-kernel.
pub(crate) trait Block {
    /// Output channels per micro-kernel call (rows of a U panel).
    fn mr(self) -> usize;
    /// Tiles per micro-kernel call (columns of a V panel).
    fn nr(self) -> usize;
}

impl Block for Isa {
    fn mr(self) -> usize {
        match self {
            Isa::Portable => 4,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => 6,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => 8,
        }
    }

    fn nr(self) -> usize {
        match self {
            Isa::Portable => 8,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => 16,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => 32,
        }
    }
}

/// A 3×3 weight transformed and packed for one micro-kernel: U_ξ for ξ in 0..36, each as
/// ⌈Cout / MR⌉ panels of Cin × MR (output channels past Cout are zero rows).
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    pub(crate) isa: Isa,
    pub(crate) cout: usize,
    pub(crate) cin: usize,
    u: Vec<f32>,
}

/// Transforms a (Cout, Cin, 3, 3) weight (row-major f32) and packs it for `isa` (for this
/// CPU's best kernel instead if the CPU lacks `isa`'s features: [`conv`] runs the kernel a
/// `Packed` names without checking again).
pub(crate) fn pack(w: &[f32], cout: usize, cin: usize, isa: Isa) -> Packed {
    let isa = if Isa::available().contains(&isa) {
        isa
    } else {
        Isa::detect()
    };
    let mr = isa.mr();
    let ncp = cout.div_ceil(mr);
    // U = G·g·Gᵀ (6×6) per (co, ci), in parallel, then scattered into the panels: one task per
    // (ξ, panel) run of Cin × MR floats. Large layers have Cout·Cin in the 10⁵: a serial pack
    // cost more than the convolution it served in training, where weights change every step.
    let mut t36 = vec![0f32; cout * cin * 36];
    in_pool(|| {
        t36.par_chunks_mut(36)
            .zip(w.par_chunks(9))
            .for_each(|(u, k)| {
                let mut t = [[0f64; 3]; 6];
                for i in 0..6 {
                    for j in 0..3 {
                        t[i][j] = (0..3).map(|q| G[i][q] * f64::from(k[q * 3 + j])).sum();
                    }
                }
                for i in 0..6 {
                    for j in 0..6 {
                        let v: f64 = (0..3).map(|q| t[i][q] * G[j][q]).sum();
                        u[i * 6 + j] = v as f32;
                    }
                }
            })
    });
    let mut u = vec![0f32; 36 * ncp * mr * cin];
    in_pool(|| {
        u.par_chunks_mut(cin * mr)
            .enumerate()
            .for_each(|(run, dst)| {
                let (xi, cp) = (run / ncp, run % ncp);
                for r in 0..mr.min(cout.saturating_sub(cp * mr)) {
                    let co = cp * mr + r;
                    for ci in 0..cin {
                        dst[ci * mr + r] = t36[(co * cin + ci) * 36 + xi];
                    }
                }
            })
    });
    Packed { isa, cout, cin, u }
}

/// act(conv3×3(pad(x)) + bias) of `samples` samples: `x` (N, Cin, H, W) → `dst` (N, Cout, Ho,
/// Wo) with Ho = H + top + bottom − 2 and Wo likewise; `p` from [`pack`]. Every output is
/// written once, so `dst` may be uninitialized.
///
/// The tile rows of all samples form one sequence cut into blocks, so on small maps (a 16²
/// VGG layer has 4 tile rows of 4 tiles) rows of several samples fill one micro-kernel panel
/// and the blocks still spread over the threads.
///
/// # Safety
/// `dst` points to N·Cout·Ho·Wo writable floats that nothing else accesses during the call.
pub(crate) unsafe fn conv(
    x: &Input,
    samples: usize,
    p: &Packed,
    bias: Option<&[f32]>,
    dst: OutPtr,
    (ho, wo): (usize, usize),
    act: Activation,
) {
    debug_assert!(
        x.data.len() >= samples * p.cin * x.h * x.w,
        "input shorter than N·Cin·H·W"
    );
    debug_assert_eq!(
        (ho + 2, wo + 2),
        (x.h + x.pads.0 + x.pads.1, x.w + x.pads.2 + x.pads.3),
        "a 3×3 stride-1 output of the padded input"
    );
    let (th, tw) = (ho.div_ceil(4), wo.div_ceil(4));
    let twp = tw.next_multiple_of(LANES);
    let per_row = 36 * (p.cin + p.cout) * twp * 4;
    let threads = crate::ops::shared::threads();
    let total = samples * th;
    // Blocks that fit the cache and keep every thread busy, but never a panel part-empty for
    // want of rows: a 16² map's tile row fills a quarter of a 32-wide panel.
    let fill = p.isa.nr().div_ceil(twp);
    let rows = (BLOCK_BYTES / per_row)
        .min(total.div_ceil(2 * threads))
        .max(fill);
    let rows = rows / fill * fill;
    let blocks = total.div_ceil(rows);
    let job = Job {
        x,
        p,
        bias,
        out: dst,
        th,
        ho,
        wo,
        twp,
        act,
    };
    in_pool(|| {
        (0..blocks).into_par_iter().for_each(|b| {
            let (r0, r1) = (b * rows, total.min((b + 1) * rows));
            SCRATCH.with_borrow_mut(|s| match p.isa {
                Isa::Portable => job.block::<Portable>(r0, r1, s),
                // SAFETY: `pack` names only kernels this CPU has.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { block_avx2(&job, r0, r1, s) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { block_avx512(&job, r0, r1, s) },
                #[cfg(not(target_arch = "x86_64"))]
                _ => job.block::<Portable>(r0, r1, s),
            })
        });
    });
}

/// The transforms compiled for AVX2 (the block code is inlined here).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(job: &Job, r0: usize, r1: usize, s: &mut Scratch) {
    debug_assert!(r0 < r1);
    job.block::<Avx2>(r0, r1, s)
}

/// The transforms compiled for AVX2 around the AVX-512 micro-kernel (a call per kernel run):
/// compiled for AVX-512, LLVM split the transforms' 8- and 32-lane arrays into zmm/ymm/xmm
/// pieces whose reloads stalled store forwarding, and the block ran ~1.8× slower on Zen 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx512(job: &Job, r0: usize, r1: usize, s: &mut Scratch) {
    debug_assert!(r0 < r1);
    job.block::<Avx512>(r0, r1, s)
}

/// Per-thread buffers, grown once and reused: fresh multi-MiB buffers per block cost page
/// faults and zeroing. Every element read is written first, in the same block.
#[derive(Default)]
struct Scratch {
    /// V: 36 × panels × Cin × NR (what one kernel call reads, one panel of one ξ, is
    /// contiguous: the hardware prefetcher streams it).
    v: Vec<f32>,
    /// M: Cout × lane groups × 36 × 8 (what the output transform reads for one lane group lies
    /// together).
    m: Vec<f32>,
    /// Six input rows split by column phase: [row][phase][tile].
    p: Vec<f32>,
    /// After the column pass: [i][phase][tile].
    q: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// What every block of one convolution shares.
struct Job<'a> {
    x: &'a Input<'a>,
    p: &'a Packed,
    bias: Option<&'a [f32]>,
    out: OutPtr,
    /// Tile rows per sample: block rows r0 .. r1 count across the samples.
    th: usize,
    ho: usize,
    wo: usize,
    /// Tile slots per tile row (tiles, rounded up to whole lane groups).
    twp: usize,
    act: Activation,
}

impl Job<'_> {
    /// Tile rows r0 .. r1: input transform, 36 GEMMs, output transform.
    #[inline(always)]
    fn block<K: Micro>(&self, r0: usize, r1: usize, s: &mut Scratch) {
        let (cin, cout) = (self.p.cin, self.p.cout);
        let slots = (r1 - r0) * self.twp;
        let panels = slots.div_ceil(K::NR);
        let ld = panels * K::NR;
        grow(&mut s.v, 36 * cin * ld);
        grow(&mut s.m, 36 * cout * ld);
        self.input_transform::<K>(r0, r1, panels, s);
        let ncp = cout.div_ceil(K::MR);
        let groups = ld / LANES;
        // ξ outer: U_ξ (≤ 512 KiB for the VGG layers) stays in L2 while the panels stream.
        for xi in 0..36 {
            let u = &self.p.u[xi * ncp * K::MR * cin..][..ncp * K::MR * cin];
            for pn in 0..panels {
                // B: V_ξ of this panel, Cin rows of NR.
                let v = &s.v[(xi * panels + pn) * cin * K::NR..][..cin * K::NR];
                for cp in 0..ncp {
                    let rows = K::MR.min(cout - cp * K::MR);
                    // C: rows co at stride groups·36·8, lane groups of 8 at stride 36·8.
                    let at = ((cp * K::MR * groups + pn * K::NR / LANES) * 36 + xi) * LANES;
                    let need = ((rows - 1) * groups + K::NR / LANES - 1) * 36 * LANES + LANES;
                    let m = &mut s.m[at..][..need];
                    // SAFETY: the slices above hold everything the kernel reads and writes
                    // (k·MR of A, k rows of NR of B, `rows` rows of C); the
                    // kernel matches the CPU (see `conv`).
                    unsafe {
                        K::run(
                            cin,
                            u[cp * K::MR * cin..][..K::MR * cin].as_ptr(),
                            (v.as_ptr(), K::NR),
                            (m.as_mut_ptr(), groups * 36 * LANES),
                            rows,
                        )
                    };
                }
            }
        }
        self.output_transform::<K>(r0, r1, groups, &s.m);
    }

    /// V[ξ][panel][ci][lane] = (Bᵀ·d·B)[ξ] of every tile of rows r0 .. r1.
    #[inline(always)]
    fn input_transform<K: Micro>(&self, r0: usize, r1: usize, panels: usize, s: &mut Scratch) {
        let x = self.x;
        let (cin, twp) = (self.p.cin, self.twp);
        let (pt, pb, pl, pr) = x.pads;
        // Phase arrays hold tiles 0 ..= twp (the last one feeds the shifted reads) plus a lane
        // group of slack: `wl` padded columns, those past `wp` zero.
        let lp = twp + LANES;
        let wl = 4 * lp;
        let wp = (x.w + pl + pr).min(wl);
        grow(&mut s.p, 24 * lp);
        grow(&mut s.q, 24 * lp);
        let cols: Vec<Option<usize>> = (0..wp).map(|c| x.source(c, x.w, pl, pr)).collect();
        let sample = cin * x.h * x.w;
        for ci in 0..cin {
            for t in r0..r1 {
                let (n, ty) = (t / self.th, t % self.th);
                let plane = &x.data[n * sample + ci * x.h * x.w..][..x.h * x.w];
                for r in 0..6 {
                    let row = x
                        .source(4 * ty + r, x.h, pt, pb)
                        .map(|sy| &plane[sy * x.w..][..x.w]);
                    let ph = &mut s.p[r * 4 * lp..][..4 * lp];
                    for g in 0..wl / (4 * LANES) {
                        // 32 padded columns: read in place inside the map (no copy of the row),
                        // padding and the columns past the map looked up.
                        let c0 = 4 * LANES * g;
                        // A window inside the map is split where it lies.
                        if let Some(inside) = row
                            .filter(|_| c0 >= pl && c0 + 4 * LANES <= (pl + x.w).min(wp))
                            .and_then(|row| row[c0 - pl..].first_chunk::<{ 4 * LANES }>())
                        {
                            // SAFETY: K's kernels run only on CPUs that have them (see `conv`).
                            let split = unsafe { K::split4(inside) };
                            for (k, p) in split.iter().enumerate() {
                                ph[k * lp + g * LANES..][..LANES].copy_from_slice(p);
                            }
                            continue;
                        }
                        let mut quad = [0f32; 4 * LANES];
                        if let Some(row) = row {
                            let (lo, hi) = (c0.max(pl), (c0 + 4 * LANES).min(pl + x.w).min(wp));
                            if lo < hi {
                                quad[lo - c0..hi - c0].copy_from_slice(&row[lo - pl..hi - pl]);
                            }
                            let edge = (c0..lo.min(c0 + 4 * LANES))
                                .chain(hi.max(c0)..wp.min(c0 + 4 * LANES));
                            for c in edge {
                                quad[c - c0] = cols[c].map_or(0.0, |sx| row[sx]);
                            }
                        }
                        // SAFETY: K's kernels run only on CPUs that have them (see `conv`).
                        let split = unsafe { K::split4(&quad) };
                        for (k, p) in split.iter().enumerate() {
                            ph[k * lp + g * LANES..][..LANES].copy_from_slice(p);
                        }
                    }
                }
                // Bᵀ down the columns: q[i][k] = Σ_r Bᵀ[i][r]·p[r][k].
                for k in 0..4 {
                    for l0 in (0..lp).step_by(LANES) {
                        let d: [Lanes; 6] =
                            std::array::from_fn(|r| lanes(&s.p[(r * 4 + k) * lp + l0..]));
                        let o = bt6(&d);
                        for (i, oi) in o.iter().enumerate() {
                            s.q[(i * 4 + k) * lp + l0..][..LANES].copy_from_slice(oi);
                        }
                    }
                }
                // Bᵀ along the rows: tile l's columns 0..6 are phases 0..3 of tile l and
                // phases 0, 1 of tile l + 1.
                for l0 in (0..twp).step_by(LANES) {
                    let slot = (t - r0) * twp + l0;
                    let (pn, lane) = (slot / K::NR, slot % K::NR);
                    for i in 0..6 {
                        let q = |k: usize, sh: usize| lanes(&s.q[(i * 4 + k) * lp + l0 + sh..]);
                        let o = bt6(&[q(0, 0), q(1, 0), q(2, 0), q(3, 0), q(0, 1), q(1, 1)]);
                        for (j, oj) in o.iter().enumerate() {
                            let at = (((i * 6 + j) * panels + pn) * cin + ci) * K::NR + lane;
                            s.v[at..][..LANES].copy_from_slice(oj);
                        }
                    }
                }
            }
        }
    }

    /// out[co] = act(Aᵀ·M·A + bias) for every tile of rows r0 .. r1; `groups` = lane groups
    /// per M row.
    #[inline(always)]
    fn output_transform<K: Micro>(&self, r0: usize, r1: usize, groups: usize, m: &[f32]) {
        let (cout, twp, ho, wo) = (self.p.cout, self.twp, self.ho, self.wo);
        let plane = ho * wo;
        let clamp = self.act.bounds();
        for co in 0..cout {
            let b = self.bias.map_or(0.0, |b| b[co]);
            for t in r0..r1 {
                let (n, ty) = (t / self.th, t % self.th);
                let base = n * cout * plane + co * plane;
                for l0 in (0..twp).step_by(LANES) {
                    let x0 = 4 * l0;
                    if x0 >= wo {
                        break;
                    }
                    let g = ((t - r0) * twp + l0) / LANES;
                    let at = (co * groups + g) * 36 * LANES;
                    let mm: [Lanes; 36] = std::array::from_fn(|xi| lanes(&m[at + xi * LANES..]));
                    // Aᵀ·M (4×6), then ·A (4×4).
                    let mut t = [[[0f32; LANES]; 6]; 4];
                    for j in 0..6 {
                        let c = at6(&std::array::from_fn(|i| mm[i * 6 + j]));
                        for i in 0..4 {
                            t[i][j] = c[i];
                        }
                    }
                    let len = 32.min(wo - x0);
                    for (i, ti) in t.iter().enumerate() {
                        let y = 4 * ty + i;
                        if y >= ho {
                            break;
                        }
                        let yi = at6(ti);
                        // Tile l's four columns land at 4l .. 4l + 4 of a 32-wide run.
                        // SAFETY: as for `split4`.
                        let run = unsafe { K::join4(&yi, b, clamp) };
                        // SAFETY: (n, co, y, x0 .. x0 + len) lies inside the (N, Cout, Ho, Wo) output,
                        // and blocks write disjoint tile rows.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(self.out.at(base + y * wo + x0), len)
                        };
                        // A whole run copies as one fixed-size move (a call per run costs).
                        match dst.first_chunk_mut::<{ 4 * LANES }>() {
                            Some(d) => *d = run,
                            None => dst.copy_from_slice(&run[..len]),
                        }
                    }
                }
            }
        }
    }
}

/// Grows a scratch buffer to at least `n` (never shrinks, never clears).
fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// Eight lanes from the start of `s`.
#[inline(always)]
fn lanes(s: &[f32]) -> Lanes {
    let mut o = [0f32; LANES];
    o.copy_from_slice(&s[..LANES]);
    o
}

/// Bᵀ·x for six lane vectors (Bᵀ = [[4,0,−5,0,1,0], [0,−4,−4,1,1,0], [0,4,−4,−1,1,0], [0,−2,−1,2,1,0],
/// [0,2,−1,−2,1,0], [0,4,0,−5,0,1]], written out so it vectorizes).
#[inline(always)]
fn bt6(x: &[Lanes; 6]) -> [Lanes; 6] {
    let mut o = [[0f32; LANES]; 6];
    for l in 0..LANES {
        let (d0, d1, d2, d3, d4, d5) = (x[0][l], x[1][l], x[2][l], x[3][l], x[4][l], x[5][l]);
        o[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
        o[1][l] = -4.0 * (d1 + d2) + d3 + d4;
        o[2][l] = 4.0 * (d1 - d2) - d3 + d4;
        o[3][l] = 2.0 * (d3 - d1) - d2 + d4;
        o[4][l] = 2.0 * (d1 - d3) - d2 + d4;
        o[5][l] = 4.0 * d1 - 5.0 * d3 + d5;
    }
    o
}

/// Aᵀ·x for six lane vectors (Aᵀ = [[1,1,1,1,1,0], [0,1,−1,2,−2,0], [0,1,1,4,4,0], [0,1,−1,8,−8,1]]).
#[inline(always)]
fn at6(x: &[Lanes; 6]) -> [Lanes; 4] {
    let mut o = [[0f32; LANES]; 4];
    for l in 0..LANES {
        let (m0, m1, m2, m3, m4, m5) = (x[0][l], x[1][l], x[2][l], x[3][l], x[4][l], x[5][l]);
        let (a, b, c, d) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        o[0][l] = m0 + a + c;
        o[1][l] = b + 2.0 * d;
        o[2][l] = a + 4.0 * c;
        o[3][l] = b + 8.0 * d + m5;
    }
    o
}

/// A register-blocked GEMM micro-kernel: C = A · B over `k`, A packed as k × MR (the MR values
/// of one k adjacent), B as k rows of NR floats at stride `ldb`; C's row r (< `rows` ≤ MR) at
/// `r·ldc`, its NR columns in groups of 8 at stride 36·8 (M's layout).
trait Micro {
    const MR: usize;
    const NR: usize;
    /// Whether the CPU running this kernel has AVX2 (the transforms' shuffles use it).
    const AVX: bool;
    /// # Safety
    /// `a` holds k·MR floats, `b` (k − 1)·ldb + NR, `c` reaches (rows − 1)·ldc +
    /// (NR/8 − 1)·288 + 8; rows ≤ MR; the CPU has the kernel's features.
    unsafe fn run(
        k: usize,
        a: *const f32,
        b: (*const f32, usize),
        c: (*mut f32, usize),
        rows: usize,
    );

    /// 8 tiles × 4 column phases, tile-major (tile l, phase k at 4l + k) → the 4 phases as
    /// lane vectors.
    ///
    /// # Safety
    /// The CPU has the kernel's features.
    #[inline(always)]
    unsafe fn split4(x: &[f32; 4 * LANES]) -> [Lanes; 4] {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if Self::AVX {
                return split4_avx(x);
            }
            std::array::from_fn(|k| std::array::from_fn(|l| x[4 * l + k]))
        }
    }

    /// The inverse of [`Micro::split4`], + `bias`, clamped to [lo, hi] (the activation).
    ///
    /// # Safety
    /// The CPU has the kernel's features.
    #[inline(always)]
    unsafe fn join4(y: &[Lanes; 4], bias: f32, (lo, hi): (f32, f32)) -> [f32; 4 * LANES] {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if Self::AVX {
                return join4_avx(y, bias, (lo, hi));
            }
            std::array::from_fn(|i| (y[i % 4][i / 4] + bias).max(lo).min(hi))
        }
    }
}

/// [`Micro::split4`] as a 4 × 8 transpose in AVX registers (the scalar version was ~⅓ of the
/// input transform's instructions).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn split4_avx(x: &[f32; 4 * LANES]) -> [Lanes; 4] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        use std::arch::x86_64::*;
        let a: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(x.as_ptr().add(8 * i)));
        // 128-bit halves regrouped: [tile l | tile l + 4] for l = 0..4.
        let b0 = _mm256_permute2f128_ps(a[0], a[2], 0x20);
        let b1 = _mm256_permute2f128_ps(a[0], a[2], 0x31);
        let b2 = _mm256_permute2f128_ps(a[1], a[3], 0x20);
        let b3 = _mm256_permute2f128_ps(a[1], a[3], 0x31);
        // 4 × 4 transposes within each half.
        let c0 = _mm256_unpacklo_ps(b0, b1);
        let c1 = _mm256_unpackhi_ps(b0, b1);
        let c2 = _mm256_unpacklo_ps(b2, b3);
        let c3 = _mm256_unpackhi_ps(b2, b3);
        let p = [
            _mm256_shuffle_ps::<0x44>(c0, c2),
            _mm256_shuffle_ps::<0xEE>(c0, c2),
            _mm256_shuffle_ps::<0x44>(c1, c3),
            _mm256_shuffle_ps::<0xEE>(c1, c3),
        ];
        let mut out = [[0f32; LANES]; 4];
        for (o, v) in out.iter_mut().zip(p) {
            _mm256_storeu_ps(o.as_mut_ptr(), v);
        }
        out
    }
}

/// [`Micro::join4`] in AVX registers (bias and clamp too: done on the array afterwards, LLVM
/// wrote it in 8-, 4-, 2- and 1-lane pieces whose reload stalled store forwarding, ~10 % of the
/// Magenta residual blocks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn join4_avx(y: &[Lanes; 4], bias: f32, (lo, hi): (f32, f32)) -> [f32; 4 * LANES] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        use std::arch::x86_64::*;
        let v: [__m256; 4] = std::array::from_fn(|j| _mm256_loadu_ps(y[j].as_ptr()));
        let t0 = _mm256_unpacklo_ps(v[0], v[1]);
        let t1 = _mm256_unpackhi_ps(v[0], v[1]);
        let t2 = _mm256_unpacklo_ps(v[2], v[3]);
        let t3 = _mm256_unpackhi_ps(v[2], v[3]);
        // Tiles (0 | 4), (1 | 5), (2 | 6), (3 | 7).
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let (b, lo, hi) = (_mm256_set1_ps(bias), _mm256_set1_ps(lo), _mm256_set1_ps(hi));
        // max(lo, ·) before min(hi, ·): both return their second operand, so a NaN stays NaN.
        let fin = |v| _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_add_ps(v, b)));
        let mut out = [0f32; 4 * LANES];
        let o = out.as_mut_ptr();
        _mm256_storeu_ps(o, fin(_mm256_permute2f128_ps(u0, u1, 0x20)));
        _mm256_storeu_ps(o.add(8), fin(_mm256_permute2f128_ps(u2, u3, 0x20)));
        _mm256_storeu_ps(o.add(16), fin(_mm256_permute2f128_ps(u0, u1, 0x31)));
        _mm256_storeu_ps(o.add(24), fin(_mm256_permute2f128_ps(u2, u3, 0x31)));
        out
    }
}

/// Stride between C's groups of 8 columns (one ξ's lanes within M).
const CS: usize = 36 * LANES;

/// Plain Rust, for CPUs without AVX2 (and the reference the SIMD kernels are tested beside).
struct Portable;

impl Micro for Portable {
    const MR: usize = 4;
    const NR: usize = 8;
    const AVX: bool = false;
    unsafe fn run(
        k: usize,
        a: *const f32,
        (b, ldb): (*const f32, usize),
        (c, ldc): (*mut f32, usize),
        rows: usize,
    ) {
        debug_assert!(rows <= Self::MR && ldb >= Self::NR && ldc >= CS);
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            let a = std::slice::from_raw_parts(a, k * 4);
            let mut acc = [[0f32; 8]; 4];
            for (kk, ak) in a.chunks_exact(4).enumerate() {
                let bk = std::slice::from_raw_parts(b.add(kk * ldb), 8);
                for r in 0..4 {
                    for j in 0..8 {
                        acc[r][j] = madd(ak[r], bk[j], acc[r][j]);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate().take(rows) {
                std::slice::from_raw_parts_mut(c.add(r * ldc), 8).copy_from_slice(row);
            }
        }
    }
}

/// a·b + c: fused where the target has a fused multiply-add instruction (aarch64, say); an x86
/// build without FMA would call libm's software `fmaf` (~100× slower), so it rounds twice there.
#[inline(always)]
fn madd(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(any(not(target_arch = "x86_64"), target_feature = "fma")) {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// AVX2 + FMA: 6 × 16, 12 accumulators in ymm registers.
#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Micro for Avx2 {
    const MR: usize = 6;
    const NR: usize = 16;
    const AVX: bool = true;
    #[inline(always)]
    unsafe fn run(
        k: usize,
        a: *const f32,
        b: (*const f32, usize),
        c: (*mut f32, usize),
        rows: usize,
    ) {
        debug_assert!(rows <= Self::MR && b.1 >= Self::NR && c.1 >= CS);
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { micro_avx2(k, a, b, c, rows) }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(
    k: usize,
    a: *const f32,
    (b, ldb): (*const f32, usize),
    (c, ldc): (*mut f32, usize),
    rows: usize,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        use std::arch::x86_64::*;
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        for kk in 0..k {
            let b0 = _mm256_loadu_ps(b.add(kk * ldb));
            let b1 = _mm256_loadu_ps(b.add(kk * ldb + 8));
            for (r, row) in acc.iter_mut().enumerate() {
                let ar = _mm256_broadcast_ss(&*a.add(kk * 6 + r));
                row[0] = _mm256_fmadd_ps(ar, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ar, b1, row[1]);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            if r < rows {
                _mm256_storeu_ps(c.add(r * ldc), row[0]);
                _mm256_storeu_ps(c.add(r * ldc + CS), row[1]);
            }
        }
    }
}

/// AVX-512F + VL: 8 × 32, 16 accumulators in zmm registers. Measured on Zen 4 (AdaIN 512²
/// layers, 1 thread): 8 × 48 with 24 accumulators ran ~25 % slower in place than this, its
/// Cin × 48 panel of V spilling out of L1 on the deep layers; 16 × 16 was about even.
#[cfg(target_arch = "x86_64")]
struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Micro for Avx512 {
    const MR: usize = 8;
    const NR: usize = 32;
    const AVX: bool = true;
    #[inline(always)]
    unsafe fn run(
        k: usize,
        a: *const f32,
        b: (*const f32, usize),
        c: (*mut f32, usize),
        rows: usize,
    ) {
        debug_assert!(rows <= Self::MR && b.1 >= Self::NR && c.1 >= CS);
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { micro_avx512(k, a, b, c, rows) }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn micro_avx512(
    k: usize,
    a: *const f32,
    (b, ldb): (*const f32, usize),
    (c, ldc): (*mut f32, usize),
    rows: usize,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        use std::arch::x86_64::*;
        // Named locals, and AVX-512VL for the 256-bit stores below: without VL those are
        // VEX-encoded and confine the accumulators to zmm0..15, and LLVM then kept a third of them
        // on the stack, a store and a load per FMA (the kernel ran at half the AVX2 one's speed).
        macro_rules! kernel {
        ($(($r:literal, $c0:ident, $c1:ident))*) => {
            $(let (mut $c0, mut $c1) = (_mm512_setzero_ps(), _mm512_setzero_ps());)*
            let (mut ak, mut bk) = (a, b);
            for _ in 0..k {
                let b0 = _mm512_loadu_ps(bk);
                let b1 = _mm512_loadu_ps(bk.add(16));
                $(
                    let ar = _mm512_set1_ps(*ak.add($r));
                    $c0 = _mm512_fmadd_ps(ar, b0, $c0);
                    $c1 = _mm512_fmadd_ps(ar, b1, $c1);
                )*
                ak = ak.add(8);
                bk = bk.add(ldb);
            }
            // Each zmm holds two groups of 8: its halves are stored as two ymm.
            $(
                if $r < rows {
                    let row_at = c.add($r * ldc);
                    for (h, v) in [$c0, $c1].into_iter().enumerate() {
                        let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v));
                        _mm256_storeu_ps(row_at.add(2 * h * CS), _mm512_castps512_ps256(v));
                        _mm256_storeu_ps(row_at.add((2 * h + 1) * CS), _mm256_castpd_ps(hi));
                    }
                }
            )*
        };
    }
        kernel!((0, c00, c01)(1, c10, c11)(2, c20, c21)(3, c30, c31)(
            4, c40, c41
        )(5, c50, c51)(6, c60, c61)(7, c70, c71));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bᵀ of F(4, 3).
    const BT: [[f32; 6]; 6] = [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
        [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ];

    /// Aᵀ of F(4, 3).
    const AT: [[f32; 6]; 4] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ];

    /// Uniform in [0, 1).
    fn rng(seed: u64) -> impl FnMut() -> f32 {
        let mut r = crate::ops::shared::centered_stream(seed);
        move || r() + 0.5
    }

    /// The written-out transforms equal the matrices of Lavin & Gray.
    #[test]
    fn transforms_equal_their_matrices() {
        let x: [Lanes; 6] =
            std::array::from_fn(|k| std::array::from_fn(|l| (k * 8 + l) as f32 * 0.37 - 5.0));
        let (b, a) = (bt6(&x), at6(&x));
        for l in 0..LANES {
            for i in 0..6 {
                let want: f32 = (0..6).map(|k| BT[i][k] * x[k][l]).sum();
                assert!((b[i][l] - want).abs() < 1e-4, "Bᵀ row {i}");
            }
            for i in 0..4 {
                let want: f32 = (0..6).map(|k| AT[i][k] * x[k][l]).sum();
                assert!((a[i][l] - want).abs() < 1e-3, "Aᵀ row {i}");
            }
        }
    }

    /// The AVX phase split and join equal the scalar ones and invert each other.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn phase_split_and_join_match_the_scalar_versions() {
        if !crate::ops::isa::tested("winograd phase split").contains(&Isa::Avx2) {
            return;
        }
        let x: [f32; 32] = std::array::from_fn(|i| i as f32 * 1.5 - 7.0);
        // SAFETY: AVX2 is present (checked above); Portable needs nothing.
        unsafe {
            let split = Portable::split4(&x);
            assert_eq!(split, split4_avx(&x));
            assert_eq!(split[1][2], x[9], "tile 2, phase 1");
            let all = (f32::NEG_INFINITY, f32::INFINITY);
            assert_eq!(Portable::join4(&split, 0.0, all), x);
            assert_eq!(join4_avx(&split, 0.0, all), x);
            // Bias, then the clamp of ReLU6.
            let want = x.map(|v| (v + 0.5).clamp(0.0, 6.0));
            assert_eq!(Portable::join4(&split, 0.5, (0.0, 6.0)), want);
            assert_eq!(join4_avx(&split, 0.5, (0.0, 6.0)), want);
        }
    }

    /// The block shapes `Isa` reports are the kernels' own.
    #[test]
    fn isa_shapes_match_the_kernels() {
        assert_eq!(
            (Isa::Portable.mr(), Isa::Portable.nr()),
            (Portable::MR, Portable::NR)
        );
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!((Isa::Avx2.mr(), Isa::Avx2.nr()), (Avx2::MR, Avx2::NR));
            assert_eq!(
                (Isa::Avx512.mr(), Isa::Avx512.nr()),
                (Avx512::MR, Avx512::NR)
            );
        }
        assert!(Isa::available().contains(&Isa::detect()));
    }

    /// Each micro-kernel this CPU runs against a float64 GEMM, with strided B, every row count
    /// ≤ MR, and nothing written outside C's groups.
    #[test]
    fn micro_kernels_match_a_float64_gemm() {
        let mut rnd = rng(3);
        for isa in crate::ops::isa::tested("winograd micro-kernels") {
            let (mr, nr) = (isa.mr(), isa.nr());
            for (k, rows) in [(1, mr), (17, mr), (64, 1), (256, mr - 1), (512, mr)] {
                let ldb = nr + 24;
                let a: Vec<f32> = (0..k * mr).map(|_| rnd() - 0.5).collect();
                let b: Vec<f32> = (0..k * ldb).map(|_| rnd() - 0.5).collect();
                let ldc = (nr / LANES) * CS + 40;
                let mut c = vec![f32::NAN; mr * ldc];
                let f = match isa {
                    Isa::Portable => Portable::run,
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => Avx2::run,
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => Avx512::run,
                    #[cfg(not(target_arch = "x86_64"))]
                    _ => unreachable!(),
                };
                // SAFETY: sizes as the trait asks; the kernel is one this CPU runs.
                unsafe {
                    f(
                        k,
                        a.as_ptr(),
                        (b.as_ptr(), ldb),
                        (c.as_mut_ptr(), ldc),
                        rows,
                    )
                };
                for r in 0..mr {
                    for at in 0..ldc {
                        let got = c[r * ldc + at];
                        let (g, l) = (at / CS, at % CS);
                        if r >= rows || g >= nr / LANES || l >= LANES {
                            assert!(got.is_nan(), "{isa:?} wrote outside C at ({r}, {at})");
                            continue;
                        }
                        let j = g * LANES + l;
                        let want: f64 = (0..k)
                            .map(|q| f64::from(a[q * mr + r]) * f64::from(b[q * ldb + j]))
                            .sum();
                        let tol = 1e-6 * (k as f64).sqrt() + 1e-6;
                        assert!(
                            (f64::from(got) - want).abs() <= tol,
                            "{isa:?} k={k} ({r}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// float64 direct convolution of `src` (Cin, H, W) padded by `pads` (reflection or zeros).
    fn reference(
        src: &[f32],
        w: &[f32],
        bias: &[f32],
        (cin, cout, h, wd): (usize, usize, usize, usize),
        (pt, pb, pl, pr): (usize, usize, usize, usize),
        reflect: bool,
    ) -> Vec<f64> {
        let (hp, wp) = (h + pt + pb, wd + pl + pr);
        let (ho, wo) = (hp - 2, wp - 2);
        let at = |ci: usize, y: usize, x: usize| -> f64 {
            let pick = |p: usize, n: usize, before: usize| -> Option<usize> {
                let i = p as isize - before as isize;
                if (0..n as isize).contains(&i) {
                    Some(i as usize)
                } else if !reflect {
                    None
                } else if i < 0 {
                    Some((-i) as usize)
                } else {
                    Some((2 * (n as isize - 1) - i) as usize)
                }
            };
            match (pick(y, h, pt), pick(x, wd, pl)) {
                (Some(sy), Some(sx)) => f64::from(src[(ci * h + sy) * wd + sx]),
                _ => 0.0,
            }
        };
        let mut out = vec![0f64; cout * ho * wo];
        for co in 0..cout {
            for y in 0..ho {
                for x in 0..wo {
                    let mut s = f64::from(bias[co]);
                    for ci in 0..cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                s += at(ci, y + ky, x + kx)
                                    * f64::from(w[((co * cin + ci) * 3 + ky) * 3 + kx]);
                            }
                        }
                    }
                    out[(co * ho + y) * wo + x] = s;
                }
            }
        }
        out
    }

    /// AdaIN's real layer shapes (channel pairs of the encoder and decoder), map sizes that
    /// leave partial tiles and partial lane groups, reflection padding (AdaIN), zero padding
    /// (Magenta's 'SAME') and none, He-scaled weights and post-ReLU-like inputs, on every
    /// micro-kernel this CPU runs: relative RMS error ≤ 2e-6 and max error ≤ 3e-5 of the output
    /// scale (direct f32 convolution: ~1e-7).
    #[test]
    fn matches_a_float64_direct_convolution_on_the_real_layer_shapes() {
        let mut rnd = rng(7);
        let cases = [
            (64, 64, 13, 11, (1, 1, 1, 1), true),
            (64, 128, 9, 38, (1, 1, 1, 1), true),
            (128, 256, 7, 6, (1, 1, 1, 1), false),
            (256, 256, 6, 9, (1, 1, 1, 1), true),
            (256, 512, 5, 5, (0, 0, 0, 0), false),
            (512, 256, 6, 7, (1, 1, 1, 1), true),
            (128, 64, 10, 70, (1, 1, 1, 1), true),
            (32, 16, 4, 4, (1, 1, 1, 1), true),
            (16, 20, 3, 2, (1, 1, 1, 1), false),
        ];
        for isa in crate::ops::isa::tested("winograd") {
            for (case, &(cin, cout, h, w, pads, reflect)) in cases.iter().enumerate() {
                // Batches of 1–3: tile rows of several samples share a block and a panel.
                let n = 1 + case % 3;
                let src: Vec<f32> = (0..n * cin * h * w).map(|_| rnd() * 3.0).collect();
                let bound = (6.0 / (cin * 9) as f32).sqrt();
                let wts: Vec<f32> = (0..cout * cin * 9)
                    .map(|_| (rnd() * 2.0 - 1.0) * bound)
                    .collect();
                let bias: Vec<f32> = (0..cout).map(|_| rnd() - 0.5).collect();
                let (ho, wo) = (h + pads.0 + pads.1 - 2, w + pads.2 + pads.3 - 2);
                let mut dst = vec![f32::NAN; n * cout * ho * wo];
                let input = Input {
                    data: &src,
                    h,
                    w,
                    pads,
                    reflect,
                };
                // SAFETY: `dst` holds N·Cout·Ho·Wo floats.
                unsafe {
                    conv(
                        &input,
                        n,
                        &pack(&wts, cout, cin, isa),
                        Some(&bias),
                        OutPtr(dst.as_mut_ptr()),
                        (ho, wo),
                        Activation::None,
                    )
                };
                assert!(
                    !dst.iter().any(|v| v.is_nan()),
                    "{isa:?}: an output was not written"
                );
                let want: Vec<f64> = src
                    .chunks(cin * h * w)
                    .flat_map(|x| reference(x, &wts, &bias, (cin, cout, h, w), pads, reflect))
                    .collect();
                let scale = (want.iter().map(|v| v * v).sum::<f64>() / want.len() as f64).sqrt();
                let err: Vec<f64> = dst
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| f64::from(*a) - b)
                    .collect();
                let rms =
                    (err.iter().map(|e| e * e).sum::<f64>() / err.len() as f64).sqrt() / scale;
                let max = err.iter().fold(0f64, |m, e| m.max(e.abs())) / scale;
                eprintln!("{isa:?} {n}×{cin}→{cout} {h}×{w}: rms {rms:.2e}, max {max:.2e}");
                assert!(
                    rms <= 2e-6 && max <= 3e-5,
                    "{isa:?} {n}×{cin}→{cout} {h}×{w}: rms {rms:e}, max {max:e}"
                );
            }
        }
    }

    /// Bias + ReLU and ReLU6 are applied after the transform.
    #[test]
    fn activations_follow_the_bias() {
        let mut rnd = rng(11);
        let (cin, cout, h, w) = (16, 16, 9, 9);
        let src: Vec<f32> = (0..cin * h * w).map(|_| rnd() * 4.0 - 2.0).collect();
        let wts: Vec<f32> = (0..cout * cin * 9).map(|_| rnd() - 0.5).collect();
        let bias: Vec<f32> = (0..cout).map(|_| rnd() * 4.0 - 2.0).collect();
        let want = reference(&src, &wts, &bias, (cin, cout, h, w), (1, 1, 1, 1), true);
        for (act, f) in [
            (Activation::Relu, (|v: f64| v.max(0.0)) as fn(f64) -> f64),
            (Activation::Relu6, |v: f64| v.clamp(0.0, 6.0)),
        ] {
            let mut dst = vec![0f32; cout * h * w];
            let input = Input {
                data: &src,
                h,
                w,
                pads: (1, 1, 1, 1),
                reflect: true,
            };
            let p = pack(&wts, cout, cin, Isa::detect());
            // SAFETY: `dst` holds Cout·H·W floats.
            unsafe {
                conv(
                    &input,
                    1,
                    &p,
                    Some(&bias),
                    OutPtr(dst.as_mut_ptr()),
                    (h, w),
                    act,
                )
            };
            for (got, want) in dst.iter().zip(&want) {
                assert!((f64::from(*got) - f(*want)).abs() < 1e-4, "{act:?}");
            }
        }
    }
}
