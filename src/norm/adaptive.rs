//! Statistics alignment: Adaptive Instance Normalization (Huang & Belongie, ICCV 2017) and its
//! batch-, layer- and group-norm counterparts.
//!
//! AdaIN(c, s) = σ(s)·(c − μ(c))/σ(c) + μ(s), with μ, σ per sample and channel over (H, W). The
//! reference (naoto0804/pytorch-AdaIN `function.py::calc_mean_std`) takes σ = sqrt(var + ε) with
//! the **unbiased** variance; the swap variants pool μ, σ as their [`NormKind`] says:
//! - `bn`: per channel over every pixel of every content image of the batch (images may differ in
//!   size); each style image is its own batch of one, so its statistics are its IN statistics;
//! - `ln`: one μ, σ per image over (C, H, W) — per-channel style is not transferred;
//! - `gn:G`: per image over gcd(G, C) groups of channels — between the two.
//!
//! The same [`align`] with target statistics (γ as σ, β as μ) is conditional instance norm.

use candle::Tensor;

use super::device_stats;
use super::stats::{affine_planes_then, Moments, PlaneAffine, PostOp, Variance};
use super::temporal::{smoothed, TemporalStats};
use super::{NormKind, DEFAULT_EPS};
use crate::{Error, Result};

const WHAT: &str = "statistics alignment";

/// Mean and standard deviation per (sample, channel) of a batch of feature maps, pooled as a
/// [`NormKind`] says (entries of one pool repeat the same values), in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureStats {
    channels: usize,
    /// Indexed `sample · channels + channel`.
    mean: Vec<f64>,
    /// Indexed like `mean`; σ = sqrt(var + ε).
    std: Vec<f64>,
}

impl FeatureStats {
    /// Statistics of a batch given as tensors of shape (Nᵢ, C, Hᵢ, Wᵢ) (the same C; sizes may
    /// differ). Samples are numbered across the tensors in order. σ = sqrt(var + `eps`) with the
    /// given estimator; every pool must hold at least two values for the unbiased one.
    pub fn of_batch(xs: &[&Tensor], kind: NormKind, var: Variance, eps: f64) -> Result<Self> {
        let channels = batch_channels(xs)?;
        // Plane-or-group moments of every tensor, and which pool each plane reads.
        let mut moments = Moments::default();
        let mut pool_of_plane = Vec::new();
        for x in xs {
            let (n, c, h, w) = dims4(x)?;
            let groups = kind.groups(c);
            let per_group = c / groups;
            let row_len = if kind == NormKind::Bn {
                h * w
            } else {
                per_group * h * w
            };
            let base = moments.len();
            moments.extend(&Moments::of_rows(x, row_len)?);
            for p in 0..n * c {
                pool_of_plane.push(match kind {
                    NormKind::Bn => p % c,
                    _ => base + (p / c) * groups + (p % c) / per_group,
                });
            }
        }
        if kind == NormKind::Bn {
            moments = moments.merge_by(channels, |i| i % channels);
        }
        let mut mean = Vec::with_capacity(pool_of_plane.len());
        let mut std = Vec::with_capacity(pool_of_plane.len());
        for &k in &pool_of_plane {
            if var == Variance::Unbiased && moments.count[k] < 2.0 {
                return Err(Error::input(
                    WHAT,
                    format!(
                        "`{kind}` statistics would pool a single value; the image is too small"
                    ),
                ));
            }
            mean.push(moments.mean[k]);
            std.push((moments.variance(k, var) + eps).sqrt());
        }
        Ok(FeatureStats {
            channels,
            mean,
            std,
        })
    }

    /// Statistics given directly (e.g. conditional-IN β as `mean` and γ as `std`): `samples ·
    /// channels` values each, sample-major.
    pub fn from_parts(channels: usize, mean: Vec<f64>, std: Vec<f64>) -> Result<Self> {
        if channels == 0
            || mean.len() != std.len()
            || mean.is_empty()
            || !mean.len().is_multiple_of(channels)
        {
            return Err(Error::input(
                WHAT,
                format!(
                    "{} means and {} deviations for {channels} channels",
                    mean.len(),
                    std.len()
                ),
            ));
        }
        Ok(FeatureStats {
            channels,
            mean,
            std,
        })
    }

    /// Channels C.
    pub fn channels(&self) -> usize {
        self.channels
    }
    /// Samples N.
    pub fn samples(&self) -> usize {
        self.mean.len() / self.channels
    }
    /// Means, `samples · channels` values, sample-major.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }
    /// Standard deviations sqrt(var + ε), laid out like [`mean`](Self::mean).
    pub fn std(&self) -> &[f64] {
        &self.std
    }
    /// The statistics of sample `i` alone.
    pub fn sample(&self, i: usize) -> Result<FeatureStats> {
        self.samples_range(i, 1)
    }

    /// The statistics of samples `first .. first + n`.
    pub fn samples_range(&self, first: usize, n: usize) -> Result<FeatureStats> {
        if n == 0 || first + n > self.samples() {
            return Err(Error::input(
                WHAT,
                format!("samples {first}..{} of {}", first + n, self.samples()),
            ));
        }
        let r = first * self.channels..(first + n) * self.channels;
        Ok(FeatureStats {
            channels: self.channels,
            mean: self.mean[r.clone()].to_vec(),
            std: self.std[r].to_vec(),
        })
    }
}

/// Aligns x's statistics: y = (x − μ_from)/σ_from · σ_to + μ_to per plane.
///
/// `x`: (N, C, H, W), any float dtype; `from`: N samples (x's own statistics, however pooled);
/// `to`: 1 sample (broadcast) or N → same shape and dtype as `x`.
pub fn align(x: &Tensor, from: &FeatureStats, to: &FeatureStats) -> Result<Tensor> {
    align_then(x, from, to, PostOp::None)
}

/// [`align`] followed by `post` in the same pass.
pub fn align_then(
    x: &Tensor,
    from: &FeatureStats,
    to: &FeatureStats,
    post: PostOp,
) -> Result<Tensor> {
    let (n, c, h, w) = dims4(x)?;
    if from.channels != c || to.channels != c {
        return Err(Error::input(
            WHAT,
            format!(
                "feature map has {c} channels, statistics have {} and {}",
                from.channels, to.channels
            ),
        ));
    }
    if from.samples() != n || (to.samples() != 1 && to.samples() != n) {
        return Err(Error::input(
            WHAT,
            format!(
                "{n} feature maps, {} source and {} target statistics",
                from.samples(),
                to.samples()
            ),
        ));
    }
    let mut ab = PlaneAffine::with_capacity(n * c);
    for p in 0..n * c {
        let q = if to.samples() == 1 { p % c } else { p };
        ab.push(from.mean[p], to.std[q] / from.std[p], to.mean[q]);
    }
    affine_planes_then(x, h * w, &ab, post)
}

/// AdaIN exactly as pytorch-AdaIN's `adaptive_instance_normalization`.
///
/// `content`: (N, C, H, W); `style`: (1 or N, C, H', W') → (N, C, H, W), content's dtype.
pub fn adain(content: &Tensor, style: &Tensor) -> Result<Tensor> {
    adaptive_norm(content, style, NormKind::In)
}

/// Statistics alignment with `kind`'s statistics (unbiased variance + 1e-5, as the reference).
/// The content batch is `content`'s N samples (pooled together for `bn`); each style sample is
/// its own batch of one.
///
/// `content`: (N, C, H, W); `style`: (1 or N, C, H', W') → (N, C, H, W).
pub fn adaptive_norm(content: &Tensor, style: &Tensor, kind: NormKind) -> Result<Tensor> {
    if device_stats::wanted(content) || style.track_op() {
        let from = device_stats::batch_stats(&[content], kind, Variance::Unbiased, DEFAULT_EPS)?;
        let to = style_stats_on_device(style, kind)?;
        return device_stats::align(content, &from[0], &to, PostOp::None);
    }
    let from = FeatureStats::of_batch(&[content], kind, Variance::Unbiased, DEFAULT_EPS)?;
    let to = style_stats(style, kind)?;
    align(content, &from, &to)
}

/// [`adaptive_norm`] for content images of different sizes that form one batch (for `bn`,
/// every pixel of every image is pooled). Each `contents[i]`: (1, C, Hᵢ, Wᵢ) → the same shapes.
pub fn adaptive_norm_batch(
    contents: &[Tensor],
    style: &Tensor,
    kind: NormKind,
) -> Result<Vec<Tensor>> {
    adaptive_norm_batch_temporal(contents, style, kind, None)
}

/// [`adaptive_norm_batch`] with the content statistics smoothed over the frames of a clip by
/// `temporal` (one [`TemporalStats::smooth`] call), when given.
pub fn adaptive_norm_batch_temporal(
    contents: &[Tensor],
    style: &Tensor,
    kind: NormKind,
    mut temporal: Option<&mut TemporalStats>,
) -> Result<Vec<Tensor>> {
    let refs: Vec<&Tensor> = contents.iter().collect();
    untracked_for_temporal(&refs, temporal.is_some())?;
    // On a GPU the statistics stay there; smoothing over frames reads them to the host.
    if temporal.is_none() && (contents.iter().any(device_stats::wanted) || style.track_op()) {
        let from = device_stats::batch_stats(&refs, kind, Variance::Unbiased, DEFAULT_EPS)?;
        let to = style_stats_on_device(style, kind)?;
        return contents
            .iter()
            .zip(&from)
            .map(|(x, f)| device_stats::align(x, f, &to, PostOp::None))
            .collect();
    }
    let from = FeatureStats::of_batch(&refs, kind, Variance::Unbiased, DEFAULT_EPS)?;
    let from = smoothed(&mut temporal, from)?;
    let to = style_stats(style, kind)?;
    let mut first = 0;
    let mut out = Vec::with_capacity(contents.len());
    for x in contents {
        let n = dims4(x)?.0;
        out.push(align(x, &from.samples_range(first, n)?, &to)?);
        first += n;
    }
    Ok(out)
}

/// Conditional normalization (conditional instance norm and its swaps, as in the Magenta
/// networks): each map is normalized with `kind` statistics — **biased** variance, ε inside the
/// square root — then scaled and shifted by its own per-channel γ, β.
///
/// `xs[i]`: (1, C, Hᵢ, Wᵢ) (for `bn` the statistics pool every map); `gamma_beta[i]`: (γ, β), C
/// values each → maps of the same shapes.
pub fn conditional_norm_batch(
    xs: &[Tensor],
    kind: NormKind,
    gamma_beta: &[(Vec<f64>, Vec<f64>)],
    eps: f64,
) -> Result<Vec<Tensor>> {
    conditional_norm_batch_then(xs, kind, gamma_beta, eps, PostOp::None)
}

/// [`conditional_norm_batch`] followed by `post` (the layer's activation) in the same pass.
pub fn conditional_norm_batch_then(
    xs: &[Tensor],
    kind: NormKind,
    gamma_beta: &[(Vec<f64>, Vec<f64>)],
    eps: f64,
    post: PostOp,
) -> Result<Vec<Tensor>> {
    conditional_norm_batch_temporal(xs, kind, gamma_beta, eps, post, None)
}

/// [`conditional_norm_batch_then`] with the maps' statistics smoothed over the frames of a clip
/// by `temporal` (one [`TemporalStats::smooth`] call), when given.
pub fn conditional_norm_batch_temporal(
    xs: &[Tensor],
    kind: NormKind,
    gamma_beta: &[(Vec<f64>, Vec<f64>)],
    eps: f64,
    post: PostOp,
    mut temporal: Option<&mut TemporalStats>,
) -> Result<Vec<Tensor>> {
    if xs.len() != gamma_beta.len() {
        return Err(Error::input(
            WHAT,
            format!("{} maps but {} (γ, β) pairs", xs.len(), gamma_beta.len()),
        ));
    }
    let refs: Vec<&Tensor> = xs.iter().collect();
    untracked_for_temporal(&refs, temporal.is_some())?;
    if temporal.is_none() && xs.iter().any(device_stats::wanted) {
        let from = device_stats::batch_stats(&refs, kind, Variance::Biased, eps)?;
        return xs
            .iter()
            .zip(&from)
            .zip(gamma_beta)
            .map(|((x, f), (gamma, beta))| {
                let c = dims4(x)?.1;
                if gamma.len() != c || beta.len() != c {
                    return Err(Error::input(
                        WHAT,
                        format!(
                            "{} γ and {} β values for {c} channels",
                            gamma.len(),
                            beta.len()
                        ),
                    ));
                }
                let to = (
                    device_stats::channel_tensor(beta, x)?,
                    device_stats::channel_tensor(gamma, x)?,
                );
                device_stats::align(x, f, &to, post)
            })
            .collect();
    }
    let from = FeatureStats::of_batch(&refs, kind, Variance::Biased, eps)?;
    let from = smoothed(&mut temporal, from)?;
    let mut first = 0;
    let mut out = Vec::with_capacity(xs.len());
    for (x, (gamma, beta)) in xs.iter().zip(gamma_beta) {
        let n = dims4(x)?.0;
        let to = FeatureStats::from_parts(from.channels, beta.clone(), gamma.clone())?;
        out.push(align_then(x, &from.samples_range(first, n)?, &to, post)?);
        first += n;
    }
    Ok(out)
}

/// Statistics of style feature maps: every sample is its own batch of one, so `bn` reduces to
/// per-image statistics (equal to IN's).
pub fn style_stats(style: &Tensor, kind: NormKind) -> Result<FeatureStats> {
    let per_sample = if kind == NormKind::Bn {
        NormKind::In
    } else {
        kind
    };
    FeatureStats::of_batch(&[style], per_sample, Variance::Unbiased, DEFAULT_EPS)
}

/// [`style_stats`] as (N, C, 1, 1) tensors on the style's device.
/// Temporal smoothing reads the statistics to the host as numbers, which would silently cut a
/// recorded graph: refuse maps that record one.
fn untracked_for_temporal(xs: &[&Tensor], temporal: bool) -> Result<()> {
    if temporal && xs.iter().any(|x| x.track_op()) {
        return Err(Error::input(
            WHAT,
            "temporal smoothing works on plain numbers and cannot keep a gradient graph; \
             detach the feature maps (inference) or train without it",
        ));
    }
    Ok(())
}

fn style_stats_on_device(style: &Tensor, kind: NormKind) -> Result<(Tensor, Tensor)> {
    let per_sample = if kind == NormKind::Bn {
        NormKind::In
    } else {
        kind
    };
    let mut s = device_stats::batch_stats(&[style], per_sample, Variance::Unbiased, DEFAULT_EPS)?;
    s.pop()
        .ok_or_else(|| Error::input(WHAT, "no style statistics"))
}

/// The channel count of a batch of (Nᵢ, C, Hᵢ, Wᵢ) maps, checked: at least one map, the same C,
/// none empty.
pub(super) fn batch_channels(xs: &[&Tensor]) -> Result<usize> {
    let Some(first) = xs.first() else {
        return Err(Error::input(WHAT, "no feature maps given"));
    };
    let channels = dims4(first)?.1;
    for x in xs {
        let (n, c, h, w) = dims4(x)?;
        if c != channels {
            return Err(Error::input(
                WHAT,
                format!("feature maps with {channels} and {c} channels in one batch"),
            ));
        }
        if n * h * w == 0 {
            return Err(Error::input(
                WHAT,
                format!("empty feature map of shape {:?}", x.dims()),
            ));
        }
    }
    Ok(channels)
}

pub(super) fn dims4(x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    x.dims4().map_err(|_| {
        Error::input(
            WHAT,
            format!(
                "expected (N, C, H, W) feature maps, found shape {:?}",
                x.dims()
            ),
        )
    })
}
