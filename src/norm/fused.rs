//! A normalization layer's training forward — statistics, γ·x̂ + β, optional ReLU — as one
//! Candle op with its analytic backward, for CPU f32 tensors that record a graph.
//!
//! Recorded with tensor ops ([`super::graph`]) one layer is about ten graph nodes (means,
//! differences, squares, square roots, broadcasts) and twice as many in the backward, each a pass
//! over the activations into a fresh buffer; in a training step on the CPU those passes cost more
//! than the convolutions. Here the forward is three passes (sum, squared deviations, affine) and
//! the backward two (per-plane sums, input gradient; the forward's statistics are kept), planes
//! in parallel, sums in f64 in eight interleaved lanes added in a fixed order (bit-identical
//! across runs and thread counts), the ReLU's gradient masked without branches.
//!
//! With x̂ = (x − μ)·r, r = 1/sqrt(σ² + ε) over a set of M values and g the output gradient
//! (zero where the ReLU cut): dβ_c = Σ g, dγ_c = Σ g·x̂ over channel c's values, and
//! dx = r·(γ_c·g − mean_set(γ·g) − x̂·mean_set(γ·g·x̂)).

use candle::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::PostOp;
use crate::ops::shared::{fold8, sq_dev_sum, sum_f64, with_f32};
use crate::ops::{avx2_or_plain, in_pool};
use crate::Result;

/// Which values share a mean and variance, for x viewed as (N, C, S) planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pool {
    /// Per sample, over groups of C/G consecutive channels: IN (G = C), GN, LN (G = 1).
    Groups(usize),
    /// Per channel over the batch: BN in training.
    Batch,
}

/// Whether the fused op serves `x` with these parameters: a CPU f32 tensor, the crate's own
/// kernels in use, and a graph being recorded (otherwise the host inference path is faster).
pub(crate) fn applies(x: &Tensor, params: &[Option<&Tensor>]) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && x.rank() >= 3
        && !crate::ops::isa::candle_only()
        && params
            .iter()
            .all(|p| p.is_none_or(|p| p.dtype() == DType::F32 && p.device().is_cpu()))
        && (x.track_op() || params.iter().flatten().any(|p| p.track_op()))
}

/// post(γ·x̂ + β): x (N, C, …) f32 → same shape. γ, β (C,) f32 (`None`: 1 and 0, no gradient).
/// `post` is `None` or `Relu`.
pub(crate) fn forward(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    pool: Pool,
    eps: f64,
    post: PostOp,
) -> Result<Tensor> {
    let c = x.dim(1)?;
    let filled = |v: f32| Tensor::full(v, c, x.device());
    let gamma = match gamma {
        Some(g) => g.contiguous()?,
        None => filled(1.0)?,
    };
    let beta = match beta {
        Some(b) => b.contiguous()?,
        None => filled(0.0)?,
    };
    let op = NormOp {
        pool,
        eps,
        stats: std::sync::OnceLock::new(),
        relu: match post {
            PostOp::None => false,
            PostOp::Relu => true,
            PostOp::Sigmoid => {
                return Err(crate::Error::config(
                    "normalization",
                    "the fused training op takes ReLU or no activation",
                ))
            }
        },
    };
    Ok(x.contiguous()?.apply_op3(&gamma, &beta, op)?)
}

struct NormOp {
    pool: Pool,
    eps: f64,
    relu: bool,
    /// The forward's statistics, which the backward reuses (the op is made per call, for one
    /// input).
    stats: std::sync::OnceLock<Stats>,
}

/// dy where the fused ReLU passed (y > 0), else 0, without a branch (the mask is as random as
/// the activations' signs).
#[inline(always)]
fn relu_pass(relu: bool, y: f32, d: f32) -> f32 {
    let keep = !relu || y > 0.0;
    f32::from_bits(d.to_bits() & u32::from(keep).wrapping_neg())
}

avx2_or_plain! {
    /// (Σ g, Σ g·(x − m)) of one plane, g = dy through the ReLU (`relu`) at output y.
    fn grad_sums(x: &[f32], y: &[f32], dy: &[f32], m: f64, relu: bool) -> (f64, f64)
        = grad_sums_in
}

#[inline(always)]
fn grad_sums_in(x: &[f32], y: &[f32], dy: &[f32], m: f64, relu: bool) -> (f64, f64) {
    let (mut sg, mut sgd) = ([0f64; 8], [0f64; 8]);
    let (xc, yc, dc) = (x.chunks_exact(8), y.chunks_exact(8), dy.chunks_exact(8));
    let tail = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .zip(dc.remainder());
    for ((x8, y8), d8) in xc.zip(yc).zip(dc) {
        for l in 0..8 {
            let g = f64::from(relu_pass(relu, y8[l], d8[l]));
            sg[l] += g;
            sgd[l] += g * (f64::from(x8[l]) - m);
        }
    }
    let (mut a, mut b) = (fold8(sg), fold8(sgd));
    for ((&x, &y), &d) in tail {
        let g = f64::from(relu_pass(relu, y, d));
        a += g;
        b += g * (f64::from(x) - m);
    }
    (a, b)
}

avx2_or_plain! {
    /// out = k1·g + k2·x + k3 of one plane, g as in [`grad_sums`].
    fn grad_plane(out: &mut [f32], x: &[f32], y: &[f32], dy: &[f32], k: (f32, f32, f32), relu: bool)
        = grad_plane_in
}

#[inline(always)]
fn grad_plane_in(
    out: &mut [f32],
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    (k1, k2, k3): (f32, f32, f32),
    relu: bool,
) {
    for (((o, &x), &y), &d) in out.iter_mut().zip(x).zip(y).zip(dy) {
        *o = k1 * relu_pass(relu, y, d) + k2 * x + k3;
    }
}

/// The shape of x as planes: (N, C, S).
fn planes(dims: &[usize]) -> (usize, usize, usize) {
    (dims[0], dims[1], dims[2..].iter().product())
}

/// μ and r = 1/sqrt(σ² + ε) of every set, and which set each plane belongs to.
struct Stats {
    mean: Vec<f64>,
    rstd: Vec<f64>,
    set: Vec<usize>,
    count: f64,
}

impl Stats {
    fn new(x: &[f32], (n, c, s): (usize, usize, usize), pool: Pool, eps: f64) -> Stats {
        let (sets, set, count): (usize, Vec<usize>, usize) = match pool {
            Pool::Groups(g) => {
                let per = c / g;
                let set = (0..n * c).map(|p| (p / c) * g + (p % c) / per).collect();
                (n * g, set, per * s)
            }
            Pool::Batch => (c, (0..n * c).map(|p| p % c).collect(), n * s),
        };
        let count = count as f64;
        let plane_sums = |f: &(dyn Fn(usize, &[f32]) -> f64 + Sync)| -> Vec<f64> {
            in_pool(|| x.par_chunks(s).enumerate().map(|(p, v)| f(p, v)).collect())
        };
        // Two passes (mean, then squared deviations): no cancellation for large means.
        let sums = plane_sums(&|_, v| sum_f64(v));
        let mut mean = vec![0f64; sets];
        for (p, v) in sums.iter().enumerate() {
            mean[set[p]] += v;
        }
        mean.iter_mut().for_each(|m| *m /= count);
        let devs = plane_sums(&|p, v| {
            let m = mean[set[p]];
            sq_dev_sum(v, m)
        });
        let mut var = vec![0f64; sets];
        for (p, v) in devs.iter().enumerate() {
            var[set[p]] += v;
        }
        let rstd = var.iter().map(|v| 1.0 / (v / count + eps).sqrt()).collect();
        Stats {
            mean,
            rstd,
            set,
            count,
        }
    }
}

fn host_f32(s: &CpuStorage, l: &Layout) -> candle::Result<Vec<f32>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s.as_slice::<f32>()?[a..b].to_vec()),
        None => candle::bail!("normstyle norm: expected a contiguous input"),
    }
}

impl CustomOp3 for NormOp {
    fn name(&self) -> &'static str {
        "normstyle-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let dims = planes(l1.dims());
        let (_, c, s) = dims;
        let x = match l1.contiguous_offsets() {
            Some((a, b)) => &s1.as_slice::<f32>()?[a..b],
            None => candle::bail!("normstyle norm: expected a contiguous input"),
        };
        let (gamma, beta) = (host_f32(s2, l2)?, host_f32(s3, l3)?);
        let st = self
            .stats
            .get_or_init(|| Stats::new(x, dims, self.pool, self.eps));
        let mut y = vec![0f32; x.len()];
        in_pool(|| {
            y.par_chunks_mut(s)
                .zip(x.par_chunks(s))
                .enumerate()
                .for_each(|(p, (o, v))| {
                    let set = st.set[p];
                    let a = f64::from(gamma[p % c]) * st.rstd[set];
                    let b = f64::from(beta[p % c]) - st.mean[set] * a;
                    let (a, b) = (a as f32, b as f32);
                    if self.relu {
                        o.iter_mut()
                            .zip(v)
                            .for_each(|(o, &v)| *o = (a * v + b).max(0.0));
                    } else {
                        o.iter_mut().zip(v).for_each(|(o, &v)| *o = a * v + b);
                    }
                })
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = planes(x.dims());
        let gv: Vec<f32> = gamma.to_vec1()?;
        let need_dx = x.track_op();
        // The activations are read in place (no host copies).
        let (dx, dgamma, dbeta) = with_f32(x, |xv| {
            with_f32(y, |yv| {
                with_f32(dy, |dyv| self.grads([xv, yv, dyv], &gv, dims, need_dx))
            })
        })???;
        let dx = dx
            .map(|d| Tensor::from_vec(d, x.shape(), x.device()))
            .transpose()?;
        let vector = |v: Vec<f64>, like: &Tensor| -> candle::Result<Tensor> {
            let v: Vec<f32> = v.into_iter().map(|a| a as f32).collect();
            Tensor::from_vec(v, like.shape(), like.device())
        };
        let dgamma = gamma
            .track_op()
            .then(|| vector(dgamma, gamma))
            .transpose()?;
        let dbeta = beta.track_op().then(|| vector(dbeta, beta)).transpose()?;
        Ok((dx, dgamma, dbeta))
    }
}

impl NormOp {
    /// (dx if `need_dx`, dγ, dβ) from x, y, dy as (N, C, S) planes and γ.
    fn grads(
        &self,
        [xv, yv, dyv]: [&[f32]; 3],
        gv: &[f32],
        dims: (usize, usize, usize),
        need_dx: bool,
    ) -> (Option<Vec<f32>>, Vec<f64>, Vec<f64>) {
        let (n, c, s) = dims;
        let st = self
            .stats
            .get_or_init(|| Stats::new(xv, dims, self.pool, self.eps));
        let relu = self.relu;
        // Per plane: Σ g and Σ g·x̂.
        let sums: Vec<(f64, f64)> = in_pool(|| {
            (0..n * c)
                .into_par_iter()
                .map(|p| {
                    let set = st.set[p];
                    let (m, r) = (st.mean[set], st.rstd[set]);
                    let plane = p * s..(p + 1) * s;
                    let (sg, sgd) =
                        grad_sums(&xv[plane.clone()], &yv[plane.clone()], &dyv[plane], m, relu);
                    (sg, sgd * r)
                })
                .collect()
        });
        let mut dbeta = vec![0f64; c];
        let mut dgamma = vec![0f64; c];
        let sets = st.mean.len();
        let (mut a, mut b) = (vec![0f64; sets], vec![0f64; sets]);
        for (p, &(sg, sgx)) in sums.iter().enumerate() {
            let ch = p % c;
            dbeta[ch] += sg;
            dgamma[ch] += sgx;
            let gm = f64::from(gv[ch]);
            a[st.set[p]] += gm * sg;
            b[st.set[p]] += gm * sgx;
        }
        let dx = need_dx.then(|| {
            let mut dx = vec![0f32; xv.len()];
            in_pool(|| {
                dx.par_chunks_mut(s).enumerate().for_each(|(p, d)| {
                    let set = st.set[p];
                    let (m, r) = (st.mean[set], st.rstd[set]);
                    let (am, bm) = (a[set] / st.count, b[set] / st.count);
                    let gm = f64::from(gv[p % c]);
                    let plane = p * s..(p + 1) * s;
                    // dx = r·(γ·g − A − x̂·B) = k1·g + k2·x + k3 per plane.
                    let (k1, k2) = ((r * gm) as f32, (-r * r * bm) as f32);
                    let k3 = (-r * am + r * r * bm * m) as f32;
                    grad_plane(
                        d,
                        &xv[plane.clone()],
                        &yv[plane.clone()],
                        &dyv[plane],
                        (k1, k2, k3),
                        relu,
                    );
                })
            });
            dx
        });
        (dx, dgamma, dbeta)
    }
}
