//! 2-D convolution with padding, bias and ReLU fused, fast on the CPU.
//!
//! CPU f32 path: the input is padded once (reflection or zeros) into a per-sample buffer; the
//! output is cut into bands of whole rows; for each band (in parallel) the patches are unfolded
//! (im2col, row copies for stride 1) into a buffer that stays in cache, one packed GEMM
//! (the `gemm` crate Candle itself uses, single-threaded inside the band) writes the band
//! straight into the NCHW output, and bias + ReLU are applied while the band is still in cache.
//! 1×1 convolutions skip the unfolding; depthwise convolutions are direct loops per channel.
//! Stride-1 3×3 convolutions with ≥ 16 channels in and out run as Winograd F(4×4, 3×3)
//! (`winograd.rs`), which reads the padding on the fly and needs no padded copy; stride-1
//! convolutions with ≤ 8 output channels run as register-blocked direct loops (`direct.rs`),
//! stride-2 ones with ≤ 32 output channels likewise on column-split rows (`strided.rs`).
//! Other devices and dtypes use Candle's convolution with explicit padding.

use candle::{DType, Device, Tensor};
use rayon::prelude::*;

use super::{avx2_or_plain, reflection_pad2d, same_pad2d};
use crate::{Error, Result};

const WHAT: &str = "conv2d";

/// Padding applied before the convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// None (a VALID convolution).
    None,
    /// PyTorch `ReflectionPad2d(p)`.
    Reflect(usize),
    /// TensorFlow 'SAME' zero padding for the kernel and stride (half before, rounded down).
    Same,
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
    pub(super) fn bounds(self) -> (f32, f32) {
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

/// y = act(conv(pad(x), weight) + bias).
///
/// `x`: (N, Cin, H, W); `weight`: (Cout, Cin/groups, kh, kw); `bias`: (Cout) → (N, Cout, H', W'),
/// x's dtype. The CPU f32 path equals the straightforward convolution up to float summation order
/// (tests: ≤ 1e-4 relative).
pub fn conv2d_fused(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: ConvSpec,
) -> Result<Tensor> {
    conv2d_prepared(x, weight, bias, spec, None)
}

/// [`conv2d_fused`] with the weight's Winograd transform made once, at load
/// ([`WinogradWeights::new`]); without it a Winograd layer transforms its weight on every call.
pub fn conv2d_prepared(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: ConvSpec,
    winograd: Option<&WinogradWeights>,
) -> Result<Tensor> {
    let (n, cin, h, w) = x.dims4()?;
    let (cout, cin_g, kh, kw) = weight.dims4()?;
    let g = spec.groups;
    if g == 0 || spec.stride == 0 || cin % g != 0 || cout % g != 0 || cin_g * g != cin {
        return Err(Error::input(
            WHAT,
            format!(
                "input has {cin} channels, weight {:?}, groups {g}, stride {}",
                weight.dims(),
                spec.stride
            ),
        ));
    }
    if let Some(b) = bias {
        if b.dims() != [cout] {
            return Err(Error::input(
                WHAT,
                format!("bias {:?} for {cout} output channels", b.dims()),
            ));
        }
    }
    let on_cpu_f32 = x.device().is_cpu() && x.dtype() == DType::F32;
    let tracked = x.track_op() || weight.track_op() || bias.is_some_and(Tensor::track_op);
    if tracked && on_cpu_f32 && g == 1 {
        // Training: the same GEMM, as an op with a backward (padding, bias and activation as
        // tensor ops around it, so autograd sees them too).
        return super::conv_grad::conv2d_train(x, weight, bias, spec);
    }
    let fast = on_cpu_f32 && !tracked && (g == 1 || (g == cin && cin_g == 1));
    if !fast {
        return candle_path(x, weight, bias, spec);
    }
    let (pt, pb, pl, pr) = pads(spec.padding, (h, w), (kh, kw), spec.stride)?;
    let (hp, wp) = (h + pt + pb, w + pl + pr);
    if hp < kh || wp < kw {
        return Err(Error::input(
            WHAT,
            format!("{h}×{w} input is smaller than the {kh}×{kw} kernel"),
        ));
    }
    let (ho, wo) = ((hp - kh) / spec.stride + 1, (wp - kw) / spec.stride + 1);
    let x = x.contiguous()?;
    let bs = bias.map(cpu_f32).transpose()?;
    let geo = Geometry {
        cin,
        hp,
        wp,
        cout,
        kh,
        kw,
        stride: spec.stride,
        ho,
        wo,
    };
    let direct = g == 1 && spec.stride == 1 && cout <= super::direct::MAX_COUT && kh * kw > 1;
    let strided = g == 1 && spec.stride == 2 && cout <= super::strided::MAX_COUT && kh * kw > 1;
    let wino = !direct && super::winograd::applies(cin, cout, kh, kw, spec.stride, g);
    // A prepared transform serves only a Winograd layer of its own shape (a caller may pass one
    // with another stride, say).
    let prepared = winograd.filter(|p| wino && p.packed.cout == cout && p.packed.cin == cin);
    // The raw weight (a copy) is only needed when no prepared transform serves.
    let ws = if prepared.is_some() {
        Vec::new()
    } else {
        cpu_f32(weight)?
    };
    // Transformed once per call, shared by the batch (cost ≈ 36·Cout·Cin, ≪ the convolution).
    let fresh;
    let wino: Option<&super::winograd::Packed> = match (wino, prepared) {
        (false, _) => None,
        (true, Some(p)) => Some(&p.packed),
        (true, _) => {
            fresh = super::winograd::pack(&ws, cout, cin, super::winograd::Isa::detect());
            Some(&fresh)
        }
    };
    // Winograd, the direct kernels and the GEMM write every output element without reading it,
    // so their output is never zeroed; depthwise accumulates into a zeroed sample.
    let per = cout * ho * wo;
    let mut out: Vec<f32> = Vec::with_capacity(n * per);
    let base = OutPtr(out.spare_capacity_mut().as_mut_ptr().cast::<f32>());
    let mut padded = Vec::new();
    let (storage, layout) = x.storage_and_layout();
    let candle::Storage::Cpu(cpu) = &*storage else {
        return Err(Error::input(WHAT, "expected a CPU tensor"));
    };
    let start = layout.start_offset();
    let xs = &cpu.as_slice::<f32>()?[start..start + n * cin * h * w];
    for s in 0..n {
        let input = &xs[s * cin * h * w..(s + 1) * cin * h * w];
        let dst = base.at(s * per);
        // Winograd and the direct kernel read the padding on the fly: no padded copy.
        let unpadded = super::winograd::Input {
            data: input,
            h,
            w,
            pads: (pt, pb, pl, pr),
            reflect: matches!(spec.padding, Padding::Reflect(_)),
        };
        if let Some(p) = wino {
            // SAFETY: `dst` has room for this sample's Cout·Ho·Wo outputs.
            unsafe {
                super::winograd::conv(&unpadded, p, bs.as_deref(), OutPtr(dst), (ho, wo), spec.act)
            };
            continue;
        }
        if direct {
            // SAFETY: as above; every output is written.
            unsafe {
                super::direct::conv(&unpadded, &ws, bs.as_deref(), OutPtr(dst), &geo, spec.act)
            };
            continue;
        }
        if strided {
            // SAFETY: as above; every output is written.
            unsafe {
                super::strided::conv(&unpadded, &ws, bs.as_deref(), OutPtr(dst), &geo, spec.act)
            };
            continue;
        }
        let src: &[f32] = if (pt, pb, pl, pr) == (0, 0, 0, 0) {
            input
        } else {
            pad_plane_stack(
                input,
                cin,
                (h, w),
                (pt, pb, pl, pr),
                spec.padding,
                &mut padded,
            );
            &padded
        };
        if g == 1 {
            // SAFETY: `dst` has room for this sample's `per` outputs; the GEMM writes them all.
            unsafe { dense(src, &ws, bs.as_deref(), (OutPtr(dst), per), &geo, spec.act) };
            continue;
        }
        // SAFETY: this sample's `per` elements lie inside the capacity; they are zeroed before
        // the slice is made.
        let dst = unsafe {
            super::zero_par(dst, per);
            std::slice::from_raw_parts_mut(dst, per)
        };
        {
            depthwise(src, &ws, bs.as_deref(), dst, &geo, spec.act);
        }
    }
    drop(storage);
    // SAFETY: every sample's outputs were written above (Winograd: every tile; direct: every
    // block; GEMM: every band; depthwise: zeroed first).
    unsafe { out.set_len(n * per) };
    Ok(Tensor::from_vec(out, (n, cout, ho, wo), &Device::Cpu)?)
}

/// A 3×3 weight transformed for Winograd F(4×4, 3×3) and packed for this CPU's micro-kernel
/// (36 matrices Cout × Cin in register-block panels), made once when a model loads; see
/// [`conv2d_prepared`].
#[derive(Clone, Debug)]
pub struct WinogradWeights {
    packed: super::winograd::Packed,
}

impl WinogradWeights {
    /// The transform of a (Cout, Cin, 3, 3) CPU f32 weight with at least 16 channels in and
    /// out (where Winograd runs); `None` for other weights.
    pub fn new(weight: &Tensor) -> Result<Option<Self>> {
        let (cout, cin, kh, kw) = weight.dims4()?;
        let fits = super::winograd::applies(cin, cout, kh, kw, 1, 1);
        if !(fits && weight.device().is_cpu() && weight.dtype() == DType::F32) {
            return Ok(None);
        }
        let isa = super::winograd::Isa::detect();
        let packed = super::winograd::pack(&cpu_f32(weight)?, cout, cin, isa);
        Ok(Some(WinogradWeights { packed }))
    }
}

/// Shapes of one sample's convolution.
pub(super) struct Geometry {
    pub(super) cin: usize,
    pub(super) hp: usize,
    pub(super) wp: usize,
    pub(super) cout: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) stride: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
}

/// Other devices and dtypes: explicit padding, Candle's convolution, bias, ReLU.
pub(super) fn candle_path(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: ConvSpec,
) -> Result<Tensor> {
    let x = pad_input(x, weight.dims()[2], spec)?;
    let y = x.conv2d(weight, 0, spec.stride, 1, spec.groups)?;
    bias_act(y, bias, spec.act)
}

/// The input padded as `spec` says, with tensor ops (differentiable, any device).
pub(super) fn pad_input(x: &Tensor, k: usize, spec: ConvSpec) -> Result<Tensor> {
    Ok(match spec.padding {
        Padding::None => x.clone(),
        Padding::Reflect(p) => reflection_pad2d(x, p)?,
        Padding::Same => same_pad2d(x, k, spec.stride)?,
    })
}

/// act(y + bias) with tensor ops.
pub(super) fn bias_act(y: Tensor, bias: Option<&Tensor>, act: Activation) -> Result<Tensor> {
    let y = match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
        None => y,
    };
    Ok(match act {
        Activation::None => y,
        Activation::Relu => y.relu()?,
        Activation::Relu6 => y.clamp(0f32, 6f32)?,
    })
}

/// (top, bottom, left, right) padding.
fn pads(
    p: Padding,
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    s: usize,
) -> Result<(usize, usize, usize, usize)> {
    Ok(match p {
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
            let total = |n: usize, k: usize| ((n.div_ceil(s) - 1) * s + k).saturating_sub(n);
            let (th, tw) = (total(h, kh), total(w, kw));
            (th / 2, th - th / 2, tw / 2, tw - tw / 2)
        }
    })
}

/// Pads every (h, w) plane of `input` into `out` (resized as needed).
fn pad_plane_stack(
    input: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (pt, pb, pl, pr): (usize, usize, usize, usize),
    mode: Padding,
    out: &mut Vec<f32>,
) {
    let (hp, wp) = (h + pt + pb, w + pl + pr);
    // Zeroed once per call on the thread pool (a serial memset and its page faults were ~10 %
    // of Magenta 1024²); later samples of a batch overwrite the same cells and leave the zero
    // padding as it is.
    if out.len() != planes * hp * wp {
        *out = super::zeroed(planes * hp * wp);
    }
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let j = if i < 0 {
            -i
        } else if i >= n {
            2 * (n - 1) - i
        } else {
            i
        };
        j as usize
    };
    crate::ops::in_pool(|| {
        out.par_chunks_mut(hp * wp)
            .enumerate()
            .for_each(|(c, dst)| {
                let src = &input[c * h * w..(c + 1) * h * w];
                for y in 0..hp {
                    let sy = y as isize - pt as isize;
                    let row = &mut dst[y * wp..(y + 1) * wp];
                    let sy = match mode {
                        Padding::Reflect(_) => reflect(sy, h),
                        _ if sy < 0 || sy >= h as isize => continue, // zero row
                        _ => sy as usize,
                    };
                    let s = &src[sy * w..(sy + 1) * w];
                    row[pl..pl + w].copy_from_slice(s);
                    if matches!(mode, Padding::Reflect(_)) {
                        for x in (0..pl).chain(pl + w..wp) {
                            row[x] = s[reflect(x as isize - pl as isize, w)];
                        }
                    }
                }
            })
    });
}

/// A raw pointer that bands of one output share; each band writes disjoint rows.
#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub(super) *mut f32);
// SAFETY: the pointer is only used to write disjoint regions from different threads (one band
// of output rows each), and the buffer outlives the parallel loop.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not the field).
    pub(super) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Dense convolution of one padded sample: `src` (Cin, Hp, Wp) → `dst` (Cout, Ho, Wo).
///
/// # Safety
/// `dst` points to `dst_len` ≥ Cout·Ho·Wo writable floats (they may be uninitialized: the GEMM
/// writes every output without reading it) that nothing else accesses during the call.
pub(super) unsafe fn dense(
    src: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (out, dst_len): (OutPtr, usize),
    g: &Geometry,
    act: Activation,
) {
    let k = g.cin * g.kh * g.kw;
    let plane = g.ho * g.wo;
    let pointwise = g.kh == 1 && g.kw == 1 && g.stride == 1;
    // Rows per band: the unfolded band (k × rows·Wo floats) stays within ~2 MiB (the GEMM blocks
    // it for the caches itself), and there are enough bands to keep every thread busy.
    let threads = candle::utils::get_num_threads().max(1);
    let by_cache = ((512 * 1024) / (k * g.wo).max(1)).max(1);
    let by_threads = g.ho.div_ceil(4 * threads).max(1);
    let rows = by_cache.min(by_threads).min(g.ho);
    let bands = g.ho.div_ceil(rows);
    crate::ops::in_pool(|| {
        (0..bands)
            .into_par_iter()
            .for_each_init(Vec::new, |col, b| {
                let y0 = b * rows;
                let y1 = (y0 + rows).min(g.ho);
                let nb = (y1 - y0) * g.wo;
                let (rhs, rhs_rs): (&[f32], usize) = if pointwise {
                    // A 1×1 stride-1 convolution multiplies the input rows as they are.
                    (&src[y0 * g.wp..], g.hp * g.wp)
                } else {
                    unfold(src, g, y0, y1, col);
                    (col.as_slice(), nb)
                };
                debug_assert!((g.cout - 1) * plane + y0 * g.wo + nb <= dst_len);
                // SAFETY: dst rows [y0, y1) of every output channel belong to this band only; the
                // GEMM writes (read_dst = false) m = Cout rows of nb values at stride `plane`
                // starting at y0·Wo, all inside `dst` (asserted above). lhs is Cout×k (row-major weights), rhs k×nb with
                // row stride `rhs_rs` (bounds: for the pointwise case, k = Cin rows of the sample).
                unsafe {
                    gemm::gemm(
                        g.cout,
                        nb,
                        k,
                        out.at(y0 * g.wo),
                        1,
                        plane as isize,
                        false,
                        w.as_ptr(),
                        1,
                        k as isize,
                        rhs.as_ptr(),
                        1,
                        rhs_rs as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for co in 0..g.cout {
                    // SAFETY: the same band region as the GEMM wrote, one channel at a time.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(out.at(co * plane + y0 * g.wo), nb)
                    };
                    epilogue(row, bias.map_or(0.0, |b| b[co]), act);
                }
            });
    });
}

/// im2col of output rows [y0, y1): `col` (Cin·kh·kw) × ((y1 − y0)·Wo), row-major, in the
/// weight's (ci, ky, kx) order.
fn unfold(src: &[f32], g: &Geometry, y0: usize, y1: usize, col: &mut Vec<f32>) {
    let nb = (y1 - y0) * g.wo;
    let need = g.cin * g.kh * g.kw * nb;
    // Every element up to `need` is written below; only growth needs initializing.
    if col.len() < need {
        col.resize(need, 0.0);
    }
    let mut r = 0;
    for ci in 0..g.cin {
        let plane = &src[ci * g.hp * g.wp..(ci + 1) * g.hp * g.wp];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let dst = &mut col[r * nb..(r + 1) * nb];
                for (i, y) in (y0..y1).enumerate() {
                    let row = &plane[(y * g.stride + ky) * g.wp..];
                    let d = &mut dst[i * g.wo..(i + 1) * g.wo];
                    if g.stride == 1 {
                        d.copy_from_slice(&row[kx..kx + g.wo]);
                    } else {
                        for (x, v) in d.iter_mut().enumerate() {
                            *v = row[x * g.stride + kx];
                        }
                    }
                }
                r += 1;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) fn has_fma() -> bool {
    static FMA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FMA.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Depthwise convolution (one kh×kw filter per channel), parallel over channels.
fn depthwise(
    src: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    dst: &mut [f32],
    g: &Geometry,
    act: Activation,
) {
    crate::ops::in_pool(|| {
        dst.par_chunks_mut(g.ho * g.wo)
            .enumerate()
            .for_each(|(c, out)| depthwise_plane(out, src, w, bias, g, act, c));
    });
}

avx2_or_plain! {
    /// One channel of [`depthwise`]; AVX2 when the CPU has it (same operations, same results).
    fn depthwise_plane(
        out: &mut [f32],
        src: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        g: &Geometry,
        act: Activation,
        c: usize,
    ) = depthwise_plane_in
}

#[inline(always)]
fn depthwise_plane_in(
    out: &mut [f32],
    src: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    act: Activation,
    c: usize,
) {
    let kk = g.kh * g.kw;
    let plane = &src[c * g.hp * g.wp..(c + 1) * g.hp * g.wp];
    let f = &w[c * kk..(c + 1) * kk];
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let wv = f[ky * g.kw + kx];
            for y in 0..g.ho {
                let row = &plane[(y * g.stride + ky) * g.wp + kx..];
                let o = &mut out[y * g.wo..(y + 1) * g.wo];
                if g.stride == 1 {
                    for (o, x) in o.iter_mut().zip(&row[..g.wo]) {
                        *o += wv * x;
                    }
                } else {
                    for (xo, o) in o.iter_mut().enumerate() {
                        *o += wv * row[xo * g.stride];
                    }
                }
            }
        }
    }
    epilogue(out, bias.map_or(0.0, |b| b[c]), act);
}

/// Adds the bias and applies the activation in one pass.
pub(super) fn epilogue(row: &mut [f32], b: f32, act: Activation) {
    match act {
        Activation::Relu => row.iter_mut().for_each(|v| *v = (*v + b).max(0.0)),
        Activation::Relu6 => row.iter_mut().for_each(|v| *v = (*v + b).clamp(0.0, 6.0)),
        Activation::None if b != 0.0 => row.iter_mut().for_each(|v| *v += b),
        Activation::None => {}
    }
}

/// The f32 values of a CPU tensor, contiguous.
fn cpu_f32(x: &Tensor) -> Result<Vec<f32>> {
    Ok(x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook convolution in f64.
    fn naive(x: &Tensor, w: &Tensor, b: Option<&Tensor>, spec: ConvSpec) -> Tensor {
        let x = match spec.padding {
            Padding::None => x.clone(),
            Padding::Reflect(p) => reflection_pad2d(x, p).unwrap(),
            Padding::Same => same_pad2d(x, w.dims()[2], spec.stride).unwrap(),
        };
        let (n, cin, h, wd) = x.dims4().unwrap();
        let (cout, cg, kh, kw) = w.dims4().unwrap();
        let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let ws: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        let bs: Vec<f32> = b.map_or(vec![0.0; cout], |b| b.to_vec1().unwrap());
        let s = spec.stride;
        let (ho, wo) = ((h - kh) / s + 1, (wd - kw) / s + 1);
        let opg = cout / spec.groups;
        let mut out = vec![0f32; n * cout * ho * wo];
        for i in 0..n {
            for co in 0..cout {
                let grp = co / opg;
                for y in 0..ho {
                    for xo in 0..wo {
                        let mut acc = bs[co] as f64;
                        for cj in 0..cg {
                            let ci = grp * cg + cj;
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    acc += ws[((co * cg + cj) * kh + ky) * kw + kx] as f64
                                        * xs[((i * cin + ci) * h + y * s + ky) * wd + xo * s + kx]
                                            as f64;
                                }
                            }
                        }
                        acc = match spec.act {
                            Activation::None => acc,
                            Activation::Relu => acc.max(0.0),
                            Activation::Relu6 => acc.clamp(0.0, 6.0),
                        };
                        out[((i * cout + co) * ho + y) * wo + xo] = acc as f32;
                    }
                }
            }
        }
        Tensor::from_vec(out, (n, cout, ho, wo), &Device::Cpu).unwrap()
    }

    #[test]
    fn matches_the_textbook_convolution() {
        let dev = Device::Cpu;
        // (n, cin, h, w, cout, k, stride, groups, padding, activation, bias)
        let cases = [
            (
                1,
                3,
                13,
                17,
                8,
                3,
                1,
                1,
                Padding::Reflect(1),
                Activation::Relu,
                true,
            ),
            (
                2,
                5,
                9,
                7,
                4,
                3,
                2,
                1,
                Padding::Same,
                Activation::None,
                true,
            ),
            (
                1,
                4,
                10,
                10,
                6,
                1,
                1,
                1,
                Padding::None,
                Activation::Relu6,
                false,
            ),
            (
                1,
                3,
                12,
                15,
                3,
                9,
                1,
                1,
                Padding::Reflect(4),
                Activation::None,
                true,
            ),
            (
                1,
                6,
                11,
                8,
                6,
                3,
                2,
                6,
                Padding::Same,
                Activation::Relu6,
                true,
            ),
            (
                1,
                6,
                8,
                9,
                6,
                3,
                1,
                6,
                Padding::Same,
                Activation::None,
                false,
            ),
            (
                1,
                64,
                21,
                19,
                32,
                3,
                1,
                1,
                Padding::Reflect(1),
                Activation::Relu,
                true,
            ),
            (
                1,
                8,
                7,
                33,
                16,
                3,
                2,
                1,
                Padding::Reflect(1),
                Activation::Relu,
                true,
            ),
            (
                1,
                16,
                5,
                6,
                16,
                1,
                2,
                1,
                Padding::None,
                Activation::None,
                true,
            ),
            (
                1,
                2,
                2,
                2,
                3,
                3,
                1,
                1,
                Padding::Same,
                Activation::None,
                true,
            ),
        ];
        for (i, &(n, cin, h, w, cout, k, stride, groups, padding, act, has_bias)) in
            cases.iter().enumerate()
        {
            let x = Tensor::randn(0f32, 1.0, (n, cin, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 0.5, (cout, cin / groups, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
            let bias = has_bias.then_some(&b);
            let spec = ConvSpec {
                stride,
                groups,
                padding,
                act,
            };
            let got = conv2d_fused(&x, &wt, bias, spec).unwrap();
            let want = naive(&x, &wt, bias, spec);
            assert_eq!(got.dims(), want.dims(), "case {i}");
            let scale = want
                .abs()
                .unwrap()
                .max_keepdim(3)
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            let scale = scale.to_scalar::<f32>().unwrap().max(1.0);
            let d = (got - &want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            let d = d.to_scalar::<f32>().unwrap();
            assert!(d <= 1e-4 * scale, "case {i}: max |Δ| {d} (scale {scale})");
            // The other-device path (Candle's convolution) agrees too.
            let via = candle_path(&x, &wt, bias, spec).unwrap();
            let d2 = (via - want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            assert!(
                d2.to_scalar::<f32>().unwrap() <= 1e-4 * scale,
                "case {i}: candle path"
            );
        }
    }

    /// Prepared Winograd weights give the unprepared result, and are ignored (not misused) by
    /// a convolution they do not fit (stride 2, other shapes).
    #[test]
    fn prepared_weights_serve_only_their_own_layer() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 16, 11, 13), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.2, (24, 16, 3, 3), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 24, &dev).unwrap();
        let prepared = WinogradWeights::new(&w).unwrap().expect("a Winograd shape");
        for stride in [1, 2] {
            let spec = ConvSpec {
                stride,
                padding: Padding::Reflect(1),
                act: Activation::Relu,
                ..ConvSpec::default()
            };
            let got = conv2d_prepared(&x, &w, Some(&b), spec, Some(&prepared)).unwrap();
            let want = naive(&x, &w, Some(&b), spec);
            let d = (got - want).unwrap().abs().unwrap().flatten_all().unwrap();
            let d = d.max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(d <= 1e-4, "stride {stride}: max |Δ| {d}");
        }
        let other = Tensor::randn(0f32, 0.2, (24, 16, 5, 5), &dev).unwrap();
        let spec = ConvSpec {
            padding: Padding::Reflect(2),
            ..ConvSpec::default()
        };
        let got = conv2d_prepared(&x, &other, None, spec, Some(&prepared)).unwrap();
        let d = (got - naive(&x, &other, None, spec))
            .unwrap()
            .abs()
            .unwrap();
        let d = d
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d <= 1e-4, "5×5 with 3×3 prepared weights: max |Δ| {d}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 4, 5, 5), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((2, 3, 3, 3), DType::F32, &dev).unwrap();
        assert!(conv2d_fused(&x, &w, None, ConvSpec::default()).is_err());
        let w = Tensor::zeros((2, 4, 7, 7), DType::F32, &dev).unwrap();
        let e = conv2d_fused(&x, &w, None, ConvSpec::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("smaller than the 7×7 kernel"), "{e}");
    }
}
