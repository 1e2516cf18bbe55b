//! Winograd F(4×4, 3×3) for stride-1 3×3 convolutions (Lavin & Gray 2016): each 4×4 output
//! tile comes from a 6×6 input tile with 36 multiplications per (input, output) channel pair
//! instead of 144.
//!
//! - Weights: U = G·g·Gᵀ (6×6) per (Cout, Cin) pair, computed in f64, stored as 36 matrices
//!   Cout × Cin ([`transform_weights`]; the models do it once, at load).
//! - Input: V = Bᵀ·d·B for every 6×6 tile of the padded input, 8 tiles at a time in SIMD lanes.
//! - 36 GEMMs per block of tiles, M_ξ = U_ξ · V_ξ (the `gemm` crate's packed kernels: AVX-512,
//!   AVX2/FMA or portable, chosen at run time).
//! - Output: Y = Aᵀ·M·A, then bias and activation, written straight into the output rows.
//!
//! Tiles are processed in blocks sized so V and M of a block stay in cache; blocks run in
//! parallel. Accuracy: ~1e-6 relative per layer in f32 (tests: the real layer shapes against a
//! float64 direct convolution).

use rayon::prelude::*;

use super::conv::{epilogue, Geometry, OutPtr};
use super::Activation;

/// G of F(4, 3).
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Tiles transformed together in SIMD lanes.
const LANES: usize = 8;
type Lanes = [f32; LANES];

/// Whether Winograd pays for this convolution: stride-1 3×3 with enough channels that the GEMMs
/// dominate the transforms (the 3-channel first layer and thin layers keep the direct path).
pub(super) fn applies(g: &Geometry, groups: usize) -> bool {
    groups == 1 && g.stride == 1 && g.kh == 3 && g.kw == 3 && g.cin >= 16 && g.cout >= 16
}

/// The transformed weights: 36 matrices Cout × Cin (ξ-major), from (Cout, Cin, 3, 3).
pub fn transform_weights(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut u = vec![0f32; 36 * cout * cin];
    for co in 0..cout {
        for ci in 0..cin {
            let k = &w[(co * cin + ci) * 9..][..9];
            // t = G·g (6×3), then U = t·Gᵀ (6×6).
            let mut t = [[0f64; 3]; 6];
            for i in 0..6 {
                for j in 0..3 {
                    t[i][j] = (0..3).map(|r| G[i][r] * f64::from(k[r * 3 + j])).sum();
                }
            }
            for i in 0..6 {
                for j in 0..6 {
                    let v: f64 = (0..3).map(|r| t[i][r] * G[j][r]).sum();
                    u[(i * 6 + j) * cout * cin + co * cin + ci] = v as f32;
                }
            }
        }
    }
    u
}

/// One padded sample `src` (Cin, Hp, Wp) → `dst` (Cout, Ho, Wo), Ho = Hp − 2, Wo = Wp − 2;
/// `u` from [`transform_weights`].
pub(super) fn conv(
    src: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    dst: &mut [f32],
    g: &Geometry,
    act: Activation,
) {
    let (th, tw) = (g.ho.div_ceil(4), g.wo.div_ceil(4));
    let tiles = th * tw;
    // Large blocks: each of the 36 GEMMs packs all of U_ξ (Cout × Cin), so it must serve many
    // tiles; V and M of a block (36·(Cin + Cout)·T floats) within 32 MiB (measured: 2 MiB
    // blocks 2.83 s, 32 MiB 2.12 s, 96 MiB 2.24 s for AdaIN 512²), in whole lane groups.
    let per_tile = 36 * (g.cin + g.cout) * 4;
    let block = ((32 << 20) / per_tile).clamp(LANES, 128 * LANES) / LANES * LANES;
    let threads = candle::utils::get_num_threads().max(1);
    // Enough blocks to keep every thread busy on small maps.
    let block = block
        .min(tiles.div_ceil(2 * threads).div_ceil(LANES) * LANES)
        .max(LANES);
    let blocks = tiles.div_ceil(block);
    let out = OutPtr(dst.as_mut_ptr());
    candle::utils::with_threadpool(|| {
        (0..blocks).into_par_iter().for_each(|b| {
            SCRATCH.with_borrow_mut(|(v, m)| {
                let t0 = b * block;
                let nt = block.min(tiles - t0);
                let ntp = nt.div_ceil(LANES) * LANES;
                // Grown once per thread and reused: fresh 32 MiB buffers per block cost page
                // faults and zeroing (21 % of a run). Every element used is written below.
                if v.len() < 36 * g.cin * ntp {
                    v.resize(36 * g.cin * ntp, 0.0);
                }
                if m.len() < 36 * g.cout * ntp {
                    m.resize(36 * g.cout * ntp, 0.0);
                }
                input_transform(src, g, tw, (t0, nt, ntp), v);
                for xi in 0..36 {
                    // SAFETY: M_ξ (Cout × ntp) = U_ξ (Cout × Cin) · V_ξ (Cin × ntp), all
                    // row-major inside their buffers (sizes set above).
                    unsafe {
                        gemm::gemm(
                            g.cout,
                            ntp,
                            g.cin,
                            m.as_mut_ptr().add(xi * g.cout * ntp),
                            1,
                            ntp as isize,
                            false,
                            u.as_ptr().add(xi * g.cout * g.cin),
                            1,
                            g.cin as isize,
                            v.as_ptr().add(xi * g.cin * ntp),
                            1,
                            ntp as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
                output_transform(m, g, tw, (t0, nt, ntp), bias, act, out);
            })
        });
    });
}

thread_local! {
    /// Per-thread V and M of a tile block.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Tiles t0 .. t0 + nt of a block padded to ntp lanes.
type Block = (usize, usize, usize);

/// V[ξ][ci][t] = (Bᵀ·d·B)[ξ] for the block's tiles (lanes past nt are zero tiles).
fn input_transform(src: &[f32], g: &Geometry, tw: usize, (t0, nt, ntp): Block, v: &mut [f32]) {
    let plane = g.hp * g.wp;
    for ci in 0..g.cin {
        let p = &src[ci * plane..][..plane];
        for lane0 in (0..ntp).step_by(LANES) {
            let mut d = [[[0f32; LANES]; 6]; 6];
            for l in 0..LANES.min(nt.saturating_sub(lane0)) {
                let t = t0 + lane0 + l;
                let (y0, x0) = (t / tw * 4, t % tw * 4);
                for (i, row) in d.iter_mut().enumerate() {
                    let y = y0 + i;
                    if y >= g.hp {
                        break;
                    }
                    let line = &p[y * g.wp..][..g.wp];
                    for (j, cell) in row.iter_mut().enumerate() {
                        if x0 + j < g.wp {
                            cell[l] = line[x0 + j];
                        }
                    }
                }
            }
            let r = sandwich6(&d);
            for (xi, val) in r.iter().flatten().enumerate() {
                v[(xi * g.cin + ci) * ntp + lane0..][..LANES].copy_from_slice(val);
            }
        }
    }
}

/// Bᵀ·d·B for 6×6 tiles in lanes: Bᵀ on the columns, then on the rows.
#[inline(always)]
fn sandwich6(d: &[[Lanes; 6]; 6]) -> [[Lanes; 6]; 6] {
    let mut t = [[[0f32; LANES]; 6]; 6];
    for j in 0..6 {
        let col = bt6([&d[0][j], &d[1][j], &d[2][j], &d[3][j], &d[4][j], &d[5][j]]);
        for (i, v) in col.into_iter().enumerate() {
            t[i][j] = v;
        }
    }
    let mut r = [[[0f32; LANES]; 6]; 6];
    for i in 0..6 {
        r[i] = bt6([&t[i][0], &t[i][1], &t[i][2], &t[i][3], &t[i][4], &t[i][5]]);
    }
    r
}

/// Bᵀ·x for six lane vectors (Bᵀ = [[4,0,−5,0,1,0], [0,−4,−4,1,1,0], [0,4,−4,−1,1,0], [0,−2,−1,2,1,0],
/// [0,2,−1,−2,1,0], [0,4,0,−5,0,1]], written out so it vectorizes).
#[inline(always)]
fn bt6(x: [&Lanes; 6]) -> [Lanes; 6] {
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
fn at6(x: [&Lanes; 6]) -> [Lanes; 4] {
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

/// Y = Aᵀ·M·A per (co, tile), + bias, activation, into the output rows; `block` = (t0, nt, ntp).
fn output_transform(
    m: &[f32],
    g: &Geometry,
    tw: usize,
    (t0, nt, ntp): Block,
    bias: Option<&[f32]>,
    act: Activation,
    out: OutPtr,
) {
    let plane = g.ho * g.wo;
    for co in 0..g.cout {
        let b = bias.map_or(0.0, |b| b[co]);
        for lane0 in (0..ntp).step_by(LANES) {
            let mut mm = [[[0f32; LANES]; 6]; 6];
            for (xi, cell) in mm.iter_mut().flatten().enumerate() {
                cell.copy_from_slice(&m[(xi * g.cout + co) * ntp + lane0..][..LANES]);
            }
            let mut t = [[[0f32; LANES]; 6]; 4]; // Aᵀ·M
            for j in 0..6 {
                let col = at6([
                    &mm[0][j], &mm[1][j], &mm[2][j], &mm[3][j], &mm[4][j], &mm[5][j],
                ]);
                for (i, v) in col.into_iter().enumerate() {
                    t[i][j] = v;
                }
            }
            let mut y = [[[0f32; LANES]; 4]; 4]; // (Aᵀ·M)·A
            for i in 0..4 {
                y[i] = at6([&t[i][0], &t[i][1], &t[i][2], &t[i][3], &t[i][4], &t[i][5]]);
            }
            for l in 0..LANES.min(nt.saturating_sub(lane0)) {
                let t_idx = t0 + lane0 + l;
                let (y0, x0) = (t_idx / tw * 4, t_idx % tw * 4);
                for (i, yi) in y.iter().enumerate().take(g.ho - y0) {
                    let w = 4.min(g.wo - x0);
                    let mut row = [0f32; 4];
                    for (j, r) in row.iter_mut().enumerate().take(w) {
                        *r = yi[j][l] + b;
                    }
                    // SAFETY: tile rows of different blocks are disjoint; (co, y0 + i, x0 .. x0 + w)
                    // lies inside the (Cout, Ho, Wo) output.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out.at(co * plane + (y0 + i) * g.wo + x0), w)
                    };
                    dst.copy_from_slice(&row[..w]);
                    epilogue(dst, 0.0, act);
                }
            }
        }
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

    /// The written-out transforms equal the matrices of Lavin & Gray.
    #[test]
    fn transforms_equal_their_matrices() {
        let x: [Lanes; 6] =
            std::array::from_fn(|k| std::array::from_fn(|l| (k * 8 + l) as f32 * 0.37 - 5.0));
        let r = [&x[0], &x[1], &x[2], &x[3], &x[4], &x[5]];
        let (b, a) = (bt6(r), at6(r));
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

    /// float64 direct convolution of a padded sample.
    fn reference(src: &[f32], w: &[f32], bias: &[f32], g: &Geometry) -> Vec<f64> {
        let mut out = vec![0f64; g.cout * g.ho * g.wo];
        for co in 0..g.cout {
            for y in 0..g.ho {
                for x in 0..g.wo {
                    let mut s = f64::from(bias[co]);
                    for ci in 0..g.cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                s += f64::from(src[(ci * g.hp + y + ky) * g.wp + x + kx])
                                    * f64::from(w[((co * g.cin + ci) * 3 + ky) * 3 + kx]);
                            }
                        }
                    }
                    out[(co * g.ho + y) * g.wo + x] = s;
                }
            }
        }
        out
    }

    /// AdaIN's real layer shapes (channel pairs of the encoder and decoder), odd map sizes
    /// that leave partial tiles, He-scaled weights and post-ReLU-like inputs: relative RMS error
    /// ≤ 2e-6 and max error ≤ 3e-5 of the output scale (direct f32 convolution: ~1e-7).
    #[test]
    fn matches_a_float64_direct_convolution_on_the_real_layer_shapes() {
        let mut seed = 7u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f64 / (1u64 << 24) as f64) as f32
        };
        for (cin, cout, h, w) in [
            (64, 64, 13, 11),
            (64, 128, 9, 14),
            (128, 256, 7, 6),
            (256, 256, 6, 9),
            (256, 512, 5, 5),
            (512, 256, 6, 7),
            (128, 64, 10, 10),
            (32, 16, 4, 4),
        ] {
            let (hp, wp) = (h + 2, w + 2);
            let src: Vec<f32> = (0..cin * hp * wp).map(|_| rnd() * 3.0).collect();
            let bound = (6.0 / (cin * 9) as f32).sqrt();
            let wts: Vec<f32> = (0..cout * cin * 9)
                .map(|_| (rnd() * 2.0 - 1.0) * bound)
                .collect();
            let bias: Vec<f32> = (0..cout).map(|_| rnd() - 0.5).collect();
            let g = Geometry {
                cin,
                hp,
                wp,
                cout,
                kh: 3,
                kw: 3,
                stride: 1,
                ho: h,
                wo: w,
            };
            let mut dst = vec![0f32; cout * h * w];
            conv(
                &src,
                &transform_weights(&wts, cout, cin),
                Some(&bias),
                &mut dst,
                &g,
                Activation::None,
            );
            let want = reference(&src, &wts, &bias, &g);
            let scale = (want.iter().map(|v| v * v).sum::<f64>() / want.len() as f64).sqrt();
            let err: Vec<f64> = dst
                .iter()
                .zip(&want)
                .map(|(a, b)| f64::from(*a) - b)
                .collect();
            let rms = (err.iter().map(|e| e * e).sum::<f64>() / err.len() as f64).sqrt() / scale;
            let max = err.iter().fold(0f64, |m, e| m.max(e.abs())) / scale;
            eprintln!("{cin}→{cout} {h}×{w}: rms {rms:.2e}, max {max:.2e}");
            assert!(
                rms <= 2e-6 && max <= 3e-5,
                "{cin}→{cout} {h}×{w}: rms {rms:e}, max {max:e}"
            );
        }
    }
}
