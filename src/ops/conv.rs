//! The convolution API: y = act(conv(pad(x), w) + bias), with [`plan`] choosing where it runs.
//!
//! CPU f32 tensors run the crate's own kernels (`ops::kernels`): Winograd F(4×4, 3×3) for
//! stride-1 3×3 layers with ≥ 16 channels in and out; register-blocked direct loops for stride-1
//! layers with ≤ 8 output channels and stride-2 ones with ≤ 32; depthwise loops; banded im2col +
//! GEMM for the rest (and, as an op with a backward, for training). Winograd and the direct
//! kernels read the padding on the fly; the GEMM and depthwise kernels read a padded copy.
//! Other devices and dtypes, and `NORMSTYLE_KERNEL=candle`, use Candle's ops with the same
//! padding ([`Plan::Candle`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use candle::{DType, Device, Tensor, TensorId};
use rayon::prelude::*;

use super::isa::{self, Isa};
use super::kernels::winograd::{self, Block as _};
use super::kernels::{depthwise, direct, gemm, strided, upconv};
use super::layer_op::LayerOp;
use super::pad::pad_plane_stack;
use super::shared::{
    in_pool, with_f32, zero_par, Activation, ConvSpec, Geometry, Input, OutPtr, Padding,
};
use super::{reflection_pad2d, same_pad2d, upsample_nearest2x};
use crate::{Error, Result};

const WHAT: &str = "conv2d";
const UPCONV: &str = "upsample_conv3x3";

/// Which code computes a convolution (see [`plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Plan {
    /// Winograd F(4×4, 3×3) on the crate's micro-kernels (stride-1 3×3, ≥ 16 channels in and
    /// out).
    Winograd,
    /// Register-blocked direct loops, stride 1, few output channels.
    Direct,
    /// Register-blocked direct loops on column-split rows, stride 2, few output channels.
    Strided,
    /// Banded im2col + the `gemm` crate.
    Gemm,
    /// Depthwise loops (groups = channels).
    Depthwise,
    /// Inputs that record a graph (training): the layer as one Candle op, forward on the
    /// inference kernels, backward on the GEMM and the forward kernels.
    GemmTrain,
    /// The same for a depthwise layer (training through MobileNet).
    DepthwiseTrain,
    /// Candle's own ops: other devices, other dtypes, other group counts, or
    /// `NORMSTYLE_KERNEL=candle`.
    Candle,
}

/// What [`plan`] decides on: the layer, and where its tensors are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Input channels.
    pub cin: usize,
    /// Weight shape (Cout, Cin / groups, kh, kw).
    pub weight: (usize, usize, usize, usize),
    /// Stride, groups, padding, activation.
    pub spec: ConvSpec,
    /// The tensors are f32 on the CPU and the crate's kernels are enabled.
    pub own_kernels: bool,
    /// An input records a graph (autograd).
    pub tracked: bool,
}

/// The code that computes `p`: a pure function of the problem, so reports
/// ([`kernel_path`](super::kernel_path)) and tests see what a run will do.
pub fn plan(p: &Problem) -> Plan {
    let (cout, cin_g, kh, kw) = p.weight;
    let (s, g) = (p.spec.stride, p.spec.groups);
    if !p.own_kernels {
        return Plan::Candle;
    }
    // One filter per channel; a channel multiplier (Cout = k·Cin) takes Candle's path.
    let depthwise = g == p.cin && cin_g == 1 && cout == p.cin;
    if p.tracked {
        return match g {
            1 => Plan::GemmTrain,
            _ if depthwise => Plan::DepthwiseTrain,
            _ => Plan::Candle,
        };
    }
    if g != 1 {
        return if depthwise {
            Plan::Depthwise
        } else {
            Plan::Candle
        };
    }
    let spatial = kh * kw > 1;
    if s == 1 && cout <= direct::MAX_COUT && spatial {
        Plan::Direct
    } else if winograd::applies(p.cin, cout, kh, kw, s, g) {
        Plan::Winograd
    } else if s == 2 && cout <= strided::MAX_COUT && spatial {
        Plan::Strided
    } else {
        Plan::Gemm
    }
}

impl Plan {
    /// Every plan, in the order [`plan`] tries them.
    pub const ALL: [Plan; 8] = [
        Plan::Direct,
        Plan::Winograd,
        Plan::Strided,
        Plan::Gemm,
        Plan::Depthwise,
        Plan::GemmTrain,
        Plan::DepthwiseTrain,
        Plan::Candle,
    ];

    /// The code and the layers it takes, for benchmark reports, with this machine's
    /// instruction sets (chosen at run time).
    pub fn describe(self) -> String {
        let isa = Isa::detect();
        match self {
            Plan::Winograd => format!(
                "winograd F(4x4,3x3) on own {} {}x{} micro-kernels: stride-1 3x3 with >= 16 \
                 channels in and out",
                isa.name(),
                isa.mr(),
                isa.nr()
            ),
            Plan::Direct => format!(
                "own {} direct kernels: stride 1 with <= {} channels out",
                isa.name(),
                direct::MAX_COUT
            ),
            Plan::Strided => format!(
                "own {} strided kernels: stride 2 with <= {} channels out",
                isa.name(),
                strided::MAX_COUT
            ),
            Plan::Gemm => format!(
                "banded im2col + gemm crate ({}): other convolutions",
                isa::gemm_isa()
            ),
            Plan::Depthwise => "own depthwise loops: groups = channels".into(),
            Plan::GemmTrain => format!(
                "one op per layer, inference kernels forward, gemm crate ({}) and full \
                 convolutions backward: training",
                isa::gemm_isa()
            ),
            Plan::DepthwiseTrain => {
                "one op per layer, own depthwise loops both ways: training".into()
            }
            Plan::Candle => "candle's conv2d: other devices and dtypes".into(),
        }
    }
}

/// Whether `x` runs on the crate's kernels (f32 on the CPU, not `NORMSTYLE_KERNEL=candle`).
pub(crate) fn own_kernels(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && !isa::candle_only()
}

/// A 2-D convolution with an optional bias: `x` (N, Cin, H, W), `weight` (Cout, Cin/groups,
/// kh, kw), `bias` (Cout) → (N, Cout, H', W'). No padding: callers pad explicitly.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    groups: usize,
) -> Result<Tensor> {
    conv2d_fused(
        x,
        weight,
        bias,
        ConvSpec {
            stride,
            groups,
            ..ConvSpec::default()
        },
    )
}

/// y = act(conv(pad(x), weight) + bias).
///
/// `x`: (N, Cin, H, W); `weight`: (Cout, Cin/groups, kh, kw); `bias`: (Cout) → (N, Cout, H', W'),
/// x's dtype. Every [`Plan`] equals the float64 convolution within 1e-5 of the output scale
/// (tests).
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
/// A transform made from another tensor than `weight` is an error.
pub fn conv2d_prepared(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: ConvSpec,
    winograd: Option<&WinogradWeights>,
) -> Result<Tensor> {
    conv_output(x, weight, bias, spec, winograd)?.tensor()
}

/// A convolution's result: a tensor, or, from the crate's kernels, the values themselves, which
/// the training ops take without a copy.
pub(crate) enum Output {
    Tensor(Tensor),
    /// Values (N, C, H, W), row-major, and that shape.
    Host(Vec<f32>, Dims4),
}

/// (N, C, H, W).
pub(crate) type Dims4 = (usize, usize, usize, usize);

impl Output {
    pub(crate) fn tensor(self) -> Result<Tensor> {
        Ok(match self {
            Output::Tensor(t) => t,
            Output::Host(v, shape) => Tensor::from_vec(v, shape, &Device::Cpu)?,
        })
    }

    /// The values (copied by the thread pool from a tensor) and the shape.
    pub(crate) fn into_host(self) -> candle::Result<(Vec<f32>, Dims4)> {
        match self {
            Output::Host(v, shape) => Ok((v, shape)),
            Output::Tensor(t) => {
                let shape = t.dims4()?;
                Ok((par_copy(&t)?, shape))
            }
        }
    }
}

/// The values of a CPU f32 tensor, copied by the thread pool.
pub(crate) fn par_copy(t: &Tensor) -> candle::Result<Vec<f32>> {
    with_f32(t, |v| {
        let mut out = vec![0f32; v.len()];
        const CHUNK: usize = 1 << 16;
        in_pool(|| {
            out.par_chunks_mut(CHUNK)
                .zip(v.par_chunks(CHUNK))
                .for_each(|(o, s)| o.copy_from_slice(s))
        });
        out
    })
}

/// [`conv2d_prepared`], its result as [`Output`].
pub(crate) fn conv_output(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: ConvSpec,
    winograd: Option<&WinogradWeights>,
) -> Result<Output> {
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
    if let Some(p) = winograd {
        if p.weight != weight.id() {
            return Err(Error::input(
                WHAT,
                format!(
                    "prepared Winograd weights were made from another tensor than the {:?} \
                     weight",
                    weight.dims()
                ),
            ));
        }
    }
    let tracked = x.track_op() || weight.track_op() || bias.is_some_and(Tensor::track_op);
    let chosen = plan(&Problem {
        cin,
        weight: (cout, cin_g, kh, kw),
        spec,
        own_kernels: own_kernels(x),
        tracked,
    });
    match chosen {
        Plan::Candle => return Ok(Output::Tensor(candle_path(x, weight, bias, spec)?)),
        Plan::GemmTrain | Plan::DepthwiseTrain => {
            return Ok(Output::Tensor(layer_op(
                x, weight, bias, spec, false, winograd,
            )?))
        }
        _ => {}
    }
    let (pt, pb, pl, pr) = spec.padding.sides((h, w), (kh, kw), spec.stride)?;
    let geo = Geometry::new(
        cin_g,
        (h + pt + pb, w + pl + pr),
        cout,
        (kh, kw),
        spec.stride,
    )?;
    let (ho, wo) = (geo.ho, geo.wo);
    let x = x.contiguous()?;
    let bs = bias.map(cpu_f32).transpose()?;
    let prepared = winograd.filter(|_| chosen == Plan::Winograd);
    // The raw weight (a copy) is only needed when no prepared transform serves.
    let ws = if prepared.is_some() {
        Vec::new()
    } else {
        cpu_f32(weight)?
    };
    // Transformed once per call, shared by the batch (cost ≈ 36·Cout·Cin, ≪ the convolution).
    let fresh;
    let packed: Option<&winograd::Packed> = match (chosen, prepared) {
        (Plan::Winograd, Some(p)) => Some(&p.packed),
        (Plan::Winograd, None) => {
            fresh = winograd::pack(&ws, cout, cin, Isa::detect());
            Some(&fresh)
        }
        _ => None,
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
    let reflect = matches!(spec.padding, Padding::Reflect(_));
    if let Some(p) = packed {
        // Winograd takes the whole batch: small maps share micro-kernel panels across samples.
        let all = Input {
            data: xs,
            h,
            w,
            pads: (pt, pb, pl, pr),
            reflect,
        };
        // SAFETY: `out` has room for the N·Cout·Ho·Wo outputs, which nothing else touches.
        unsafe { winograd::conv(&all, n, p, bs.as_deref(), base, (ho, wo), spec.act) };
    }
    // The other kernels run sample by sample.
    let samples = if packed.is_some() { 0..0 } else { 0..n };
    for s in samples {
        let input = &xs[s * cin * h * w..(s + 1) * cin * h * w];
        let dst = OutPtr(base.at(s * per));
        // The direct kernels read the padding on the fly: no padded copy.
        let unpadded = Input {
            data: input,
            h,
            w,
            pads: (pt, pb, pl, pr),
            reflect,
        };
        let act = spec.act;
        let bias = bs.as_deref();
        // SAFETY (every kernel call below): `dst` has room for this sample's Cout·Ho·Wo outputs,
        // which no other code touches during the call, and `geo` was validated.
        match chosen {
            Plan::Direct => unsafe { direct::conv(&unpadded, &ws, bias, dst, &geo, act) },
            Plan::Strided => unsafe { strided::conv(&unpadded, &ws, bias, dst, &geo, act) },
            _ => {
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
                if chosen == Plan::Depthwise {
                    // Depthwise accumulates: its sample is zeroed before the slice is made.
                    let dst = unsafe {
                        zero_par(dst.0, per);
                        std::slice::from_raw_parts_mut(dst.0, per)
                    };
                    depthwise::depthwise(src, &ws, bias, dst, &geo, act);
                } else {
                    unsafe { gemm::dense(src, &ws, bias, (dst, per), &geo, act) };
                }
            }
        }
    }
    drop(storage);
    // SAFETY: every sample's outputs were written above (Winograd: every tile; direct: every
    // block; GEMM: every band; depthwise: zeroed first).
    unsafe { out.set_len(n * per) };
    Ok(Output::Host(out, (n, cout, ho, wo)))
}

/// A 3×3 weight transformed for Winograd F(4×4, 3×3) and packed for this CPU's micro-kernel
/// (36 matrices Cout × Cin in register-block panels), made once when a model loads; see
/// [`conv2d_prepared`]. It remembers the tensor it was made from.
#[derive(Clone, Debug)]
pub struct WinogradWeights {
    packed: Arc<winograd::Packed>,
    weight: TensorId,
}

impl WinogradWeights {
    /// The transform of a (Cout, Cin, 3, 3) CPU f32 weight with at least 16 channels in and
    /// out (where Winograd runs); `None` for other weights.
    pub fn new(weight: &Tensor) -> Result<Option<Self>> {
        let (cout, cin, kh, kw) = weight.dims4()?;
        let fits = winograd::applies(cin, cout, kh, kw, 1, 1);
        if !(fits && own_kernels(weight)) {
            return Ok(None);
        }
        let packed = winograd::pack(&cpu_f32(weight)?, cout, cin, Isa::detect());
        Ok(Some(WinogradWeights {
            packed: Arc::new(packed),
            weight: weight.id(),
        }))
    }

    /// The same transform for `weight`, the tensor it was made from or a detached view of it
    /// (a custom op's operand); shares the packed data.
    pub(crate) fn for_view(&self, weight: &Tensor) -> WinogradWeights {
        WinogradWeights {
            packed: Arc::clone(&self.packed),
            weight: weight.id(),
        }
    }
}

/// Other devices and dtypes: explicit padding, Candle's convolution, bias, activation.
pub(crate) fn candle_path(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: ConvSpec,
) -> Result<Tensor> {
    let (_, _, kh, kw) = weight.dims4()?;
    let x = pad_input(x, (kh, kw), spec)?;
    let (_, _, hp, wp) = x.dims4()?;
    if hp < kh || wp < kw {
        return Err(Error::input(
            WHAT,
            format!("{hp}×{wp} input (padded) is smaller than the {kh}×{kw} kernel"),
        ));
    }
    let c = x.dim(1)?;
    let depthwise = spec.groups > 1 && spec.groups == c && weight.dims()[..2] == [c, 1];
    let y = if depthwise {
        depthwise_tensor_ops(&x, weight, spec.stride)?
    } else {
        x.conv2d(weight, 0, spec.stride, 1, spec.groups)?
    };
    bias_act(y, bias, spec.act)
}

/// Depthwise convolution of a padded `x` (N, C, Hp, Wp) by `w` (C, 1, kh, kw) as one batched
/// matrix product over the kh·kw shifted views: Candle's grouped convolution runs one
/// convolution per channel (a kernel launch each on a GPU).
fn depthwise_tensor_ops(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (n, c, hp, wp) = x.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    let (ho, wo) = ((hp - kh) / stride + 1, (wp - kw) / stride + 1);
    let mut taps = Vec::with_capacity(kh * kw);
    for ky in 0..kh {
        for kx in 0..kw {
            // Rows ky, ky + s, …, ky + (Ho − 1)·s and likewise columns.
            let v = x.narrow(2, ky, (ho - 1) * stride + 1)?;
            let v = v.narrow(3, kx, (wo - 1) * stride + 1)?;
            let v = if stride == 1 {
                v
            } else {
                let idx = |len: usize| {
                    Tensor::arange_step(0u32, (len * stride) as u32, stride as u32, x.device())
                };
                let v = v.contiguous()?.index_select(&idx(ho)?, 2)?;
                v.contiguous()?.index_select(&idx(wo)?, 3)?
            };
            taps.push(v.reshape((n, c, 1, ho * wo))?);
        }
    }
    let cols = Tensor::cat(&taps, 2)?; // (N, C, kh·kw, Ho·Wo)
    let w = w
        .reshape((1, c, 1, kh * kw))?
        .broadcast_as((n, c, 1, kh * kw))?;
    let y = w.contiguous()?.matmul(&cols.contiguous()?)?; // (N, C, 1, Ho·Wo)
    Ok(y.reshape((n, c, ho, wo))?)
}

/// `conv2d_fused` for f32 CPU tensors that record a graph (groups = 1, or depthwise): padding,
/// bias and activation as tensor ops around the GEMM or depthwise op, so autograd sees them too.
/// One [`LayerOp`]: the layer's forward on the inference kernels, its backward in one node.
fn layer_op(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: ConvSpec,
    upsample: bool,
    winograd: Option<&WinogradWeights>,
) -> Result<Tensor> {
    let cout = weight.dim(0)?;
    // An untracked zero bias when the layer has none: its gradient is never computed.
    let zero;
    let bias = match bias {
        Some(b) => b,
        None => {
            zero = Tensor::zeros(cout, DType::F32, x.device())?;
            &zero
        }
    };
    let (x, w, b) = (x.contiguous()?, weight.contiguous()?, bias.contiguous()?);
    let op = LayerOp::new(spec, upsample, winograd.cloned(), [&x, &w, &b]);
    Ok(x.apply_op3(&w, &b, op)?)
}

/// The input gradient of a stride-1 layer (see `gemm::ConvCore::full_conv`): the "full"
/// convolution of dY (N, Cout, Ho, Wo) by the flipped, transposed weight → dX of the padded
/// input (N, Cin, Ho + kh − 1, Wo + kw − 1), on the inference kernels (neither tensor records a
/// graph). 3×3 layers padded by one pixel take [`input_grad3x3`] instead, which skips the
/// padded map.
pub(crate) fn full_conv(dy: &Tensor, weight: &Tensor, frozen: bool) -> candle::Result<Tensor> {
    let t = transposed(weight, frozen)?;
    let (_, _, kh, kw) = weight.dims4()?;
    let dyp = dy
        .pad_with_zeros(2, kh - 1, kh - 1)?
        .pad_with_zeros(3, kw - 1, kw - 1)?;
    Ok(conv2d_prepared(
        &dyp,
        &t.flipped,
        None,
        ConvSpec::default(),
        t.prepared.as_ref(),
    )?)
}

/// dX of a stride-1 3×3 layer padded by one pixel on each side, by reflection (`reflect`) or
/// with zeros: dY (N, Cout, H, W) → dX (N, Cin, H, W), the gradient of the unpadded input.
///
/// The (H, W) interior of the full convolution is a convolution of dY with one pixel of zero
/// padding by the flipped, transposed weight (Winograd for ≥ 16 channels); with zero padding
/// that is all of dX. Reflection adds the one-pixel ring around it, folded onto the rows and
/// columns it copied (padded row 0 is input row 1, and so on). Only one kernel row (top,
/// bottom) or column (sides) reaches the ring, so each side is one matrix product over the
/// whole batch: A (Cin × 3·Cout, that kernel row or column; kept with a frozen weight) times B
/// (3·Cout × the batch's ring positions, shifted copies of one dY row or column).
pub(crate) fn input_grad3x3(
    dy: &Tensor,
    weight: &Tensor,
    frozen: bool,
    reflect: bool,
) -> candle::Result<Tensor> {
    let t = transposed(weight, frozen)?;
    let (n, cout, h, w) = dy.dims4()?;
    let cin = weight.dim(1)?;
    let spec = ConvSpec {
        padding: Padding::Same,
        ..ConvSpec::default()
    };
    let (mut out, _) = conv_output(dy, &t.flipped, None, spec, t.prepared.as_ref())?.into_host()?;
    if reflect && (h < 2 || w < 2) {
        candle::bail!("normstyle conv layer: reflection padding 1 of a {h}×{w} map");
    }
    if reflect {
        fold_ring(&mut out, dy, &t, (n, cin, cout), (h, w))?;
    }
    Tensor::from_vec(out, (n, cin, h, w), &Device::Cpu)
}

/// Adds the ring of [`input_grad3x3`]'s full convolution, folded by reflection, onto its
/// interior `out` (N, Cin, H, W).
fn fold_ring(
    out: &mut [f32],
    dy: &Tensor,
    t: &Transposed,
    (n, cin, cout): (usize, usize, usize),
    (h, w): (usize, usize),
) -> candle::Result<()> {
    let ring = t
        .ring
        .as_deref()
        .ok_or_else(|| candle::Error::Msg("normstyle conv layer: not a 3×3 weight".into()))?;
    let (hp, wp) = (h + 2, w + 2);
    // Side k (top, bottom, left, right): its kernel row or column, the dY row or column it
    // reads, and its length (padded columns for rows; rows 1 ..= H of the padded map for the
    // sides, whose corners belong to the rows).
    let sides = with_f32(dy, |d| -> candle::Result<Vec<Vec<f32>>> {
        (0..4)
            .map(|k| {
                let row = k < 2;
                let len = if row { wp } else { hp };
                let mut b = vec![0f32; 3 * cout * n * len];
                in_pool(|| {
                    b.par_chunks_mut(n * len).enumerate().for_each(|(r, dst)| {
                        let (co, t) = (r / 3, r % 3);
                        for (s, seg) in dst.chunks_exact_mut(len).enumerate() {
                            let plane = &d[(s * cout + co) * h * w..][..h * w];
                            if row {
                                let y = if k == 0 { 0 } else { h - 1 };
                                seg[t..t + w].copy_from_slice(&plane[y * w..][..w]);
                            } else {
                                let x = if k == 2 { 0 } else { w - 1 };
                                // Padded rows 1 ..= H; dY row i − t.
                                for i in 1.max(t)..=h.min(h - 1 + t) {
                                    seg[i] = plane[(i - t) * w + x];
                                }
                            }
                        }
                    })
                });
                let b = Tensor::from_vec(b, (3 * cout, n * len), &Device::Cpu)?;
                ring[k].matmul(&b)?.flatten_all()?.to_vec1::<f32>()
            })
            .collect()
    })??;
    let (top, bottom, left, right) = (&sides[0], &sides[1], &sides[2], &sides[3]);
    // Padded column j → input column (reflection).
    let col = |j: usize| match j {
        0 => 1,
        j if j == w + 1 => w - 2,
        j => j - 1,
    };
    in_pool(|| {
        out.par_chunks_mut(h * w)
            .enumerate()
            .for_each(|(plane, o)| {
                let (s, ci) = (plane / cin, plane % cin);
                // This plane's run in the (Cin, N·len) products.
                let (rows, cols) = ((ci * n + s) * wp, (ci * n + s) * hp);
                for j in 0..wp {
                    o[w + col(j)] += top[rows + j];
                    o[(h - 2) * w + col(j)] += bottom[rows + j];
                }
                for i in 1..=h {
                    o[(i - 1) * w + 1] += left[cols + i];
                    o[(i - 1) * w + w - 2] += right[cols + i];
                }
            })
    });
    Ok(())
}

/// A weight (Cout, Cin, kh, kw) turned for the input gradient: flipped and transposed to
/// (Cin, Cout, kh, kw), its Winograd transform, and for 3×3 the four ring matrices of
/// [`input_grad3x3`]. A frozen weight's is made once and kept ([`TRANSPOSED`]): a loss
/// network's backward would otherwise transform the same weights at every step.
#[derive(Clone)]
struct Transposed {
    flipped: Tensor,
    prepared: Option<WinogradWeights>,
    /// Top, bottom, left, right: Cin × 3·Cout, (ci, co·3 + t) = w[co][ci] at kernel row 0, 2
    /// (column t) or column 0, 2 (row t).
    ring: Option<Arc<[Tensor; 4]>>,
}

fn transposed(weight: &Tensor, frozen: bool) -> candle::Result<Transposed> {
    let make = || -> Result<Transposed> {
        let (cout, cin, kh, kw) = weight.dims4()?;
        let w = cpu_f32(weight)?;
        let mut f = vec![0f32; w.len()];
        // Made at every step for a trained layer: on the pool, one input channel per task.
        in_pool(|| {
            f.par_chunks_mut(cout * kh * kw)
                .enumerate()
                .for_each(|(ci, row)| {
                    for (co, dst) in row.chunks_exact_mut(kh * kw).enumerate() {
                        let src = &w[(co * cin + ci) * kh * kw..][..kh * kw];
                        for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                            *d = *s;
                        }
                    }
                })
        });
        let flipped = Tensor::from_vec(f, (cin, cout, kh, kw), &Device::Cpu)?;
        let prepared = WinogradWeights::new(&flipped)?;
        let ring = if (kh, kw) == (3, 3) {
            let side = |row: bool, k: usize| -> Vec<f32> {
                let mut a = vec![0f32; cin * cout * 3];
                for (ci, dst) in a.chunks_exact_mut(3 * cout).enumerate() {
                    for (co, d) in dst.chunks_exact_mut(3).enumerate() {
                        let taps = &w[(co * cin + ci) * 9..][..9];
                        for (t, d) in d.iter_mut().enumerate() {
                            *d = if row {
                                taps[k * 3 + t]
                            } else {
                                taps[t * 3 + k]
                            };
                        }
                    }
                }
                a
            };
            // Top, bottom, left, right, made side by side.
            let sides: Vec<Vec<f32>> = in_pool(|| {
                [(true, 0), (true, 2), (false, 0), (false, 2)]
                    .into_par_iter()
                    .map(|(row, k)| side(row, k))
                    .collect()
            });
            let ring = sides
                .into_iter()
                .map(|a| Tensor::from_vec(a, (cin, 3 * cout), &Device::Cpu))
                .collect::<candle::Result<Vec<_>>>()?;
            let ring: [Tensor; 4] = ring
                .try_into()
                .map_err(|_| Error::input(WHAT, "four ring sides expected"))?;
            Some(Arc::new(ring))
        } else {
            None
        };
        Ok(Transposed {
            flipped,
            prepared,
            ring,
        })
    };
    Ok(if frozen {
        TRANSPOSED.get_or_make(weight.id(), make)?
    } else {
        make()?
    })
}

/// [`Transposed`] frozen weights by the id of the weight they came from; the oldest go first
/// past [`TransposedCache::CAPACITY`] entries.
static TRANSPOSED: TransposedCache = TransposedCache(Mutex::new(VecDeque::new()));

struct TransposedCache(Mutex<VecDeque<(TensorId, Transposed)>>);

impl TransposedCache {
    /// Enough for every convolution of a loss network (VGG up to relu4_1 has 9).
    const CAPACITY: usize = 64;

    fn get_or_make(
        &self,
        id: TensorId,
        make: impl FnOnce() -> Result<Transposed>,
    ) -> Result<Transposed> {
        let lookup = |c: &VecDeque<(TensorId, Transposed)>| {
            c.iter().find(|(k, _)| *k == id).map(|(_, v)| v.clone())
        };
        if let Some(hit) = self.0.lock().ok().and_then(|c| lookup(&c)) {
            return Ok(hit);
        }
        let made = make()?;
        if let Ok(mut c) = self.0.lock() {
            if lookup(&c).is_none() {
                if c.len() == Self::CAPACITY {
                    c.pop_front();
                }
                c.push_back((id, made.clone()));
            }
        }
        Ok(made)
    }
}

/// The input padded as `spec` says for a (kh, kw) kernel, with tensor ops (differentiable, any
/// device).
pub(crate) fn pad_input(x: &Tensor, k: (usize, usize), spec: ConvSpec) -> Result<Tensor> {
    Ok(match spec.padding {
        Padding::None => x.clone(),
        Padding::Reflect(p) => reflection_pad2d(x, p)?,
        Padding::Same => same_pad2d(x, k, spec.stride)?,
    })
}

/// act(y + bias) with tensor ops.
pub(crate) fn bias_act(y: Tensor, bias: Option<&Tensor>, act: Activation) -> Result<Tensor> {
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

/// act(conv3×3(reflection_pad1(upsample_nearest2x(x))) + bias), as PyTorch computes it with
/// `F.interpolate(scale_factor=2)`, `ReflectionPad2d(1)` and `Conv2d(k=3)`.
///
/// `x`: (N, Cin, H, W); `weight`: (Cout, Cin, 3, 3); `bias`: (Cout) → (N, Cout, 2H, 2W), x's
/// dtype. `winograd`: the weight's prepared transform, used when the layer runs unfused (see
/// [`conv2d_prepared`]). Equal to the unfused ops up to float summation order (tests: ≤ 1e-5 of
/// the output scale).
pub fn upsample_conv3x3(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    winograd: Option<&WinogradWeights>,
) -> Result<Tensor> {
    upsample_output(x, weight, bias, act, winograd)?.tensor()
}

/// [`upsample_conv3x3`], its result as [`Output`].
pub(crate) fn upsample_output(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    winograd: Option<&WinogradWeights>,
) -> Result<Output> {
    let (n, cin, h, w) = x.dims4()?;
    let (cout, wcin, kh, kw) = weight.dims4()?;
    if (wcin, kh, kw) != (cin, 3, 3) {
        return Err(Error::input(
            UPCONV,
            format!(
                "input has {cin} channels, weight {:?} (expected ({cout}, {cin}, 3, 3))",
                weight.dims()
            ),
        ));
    }
    if let Some(b) = bias {
        if b.dims() != [cout] {
            return Err(Error::input(
                UPCONV,
                format!("bias {:?} for {cout} output channels", b.dims()),
            ));
        }
    }
    let tracked = x.track_op() || weight.track_op() || bias.is_some_and(Tensor::track_op);
    if tracked && own_kernels(x) && h >= 2 && w >= 2 {
        let spec = ConvSpec {
            act,
            ..ConvSpec::default()
        };
        return Ok(Output::Tensor(layer_op(
            x, weight, bias, spec, true, winograd,
        )?));
    }
    let fused = own_kernels(x) && !tracked && cout <= upconv::MAX_COUT && h >= 1 && w >= 1;
    if !fused {
        let spec = ConvSpec {
            padding: Padding::Reflect(1),
            act,
            ..ConvSpec::default()
        };
        return conv_output(&upsample_nearest2x(x)?, weight, bias, spec, winograd);
    }
    let x = x.contiguous()?;
    let wt = upconv::subpixel_weights(&weight.flatten_all()?.to_vec1::<f32>()?, cout, cin);
    let b: Vec<f32> = match bias {
        Some(b) => b.to_vec1()?,
        None => vec![0.0; cout],
    };
    let per = cout * 4 * h * w;
    let mut out: Vec<f32> = Vec::with_capacity(n * per);
    let base = OutPtr(out.spare_capacity_mut().as_mut_ptr().cast::<f32>());
    {
        let (storage, layout) = x.storage_and_layout();
        let candle::Storage::Cpu(cpu) = &*storage else {
            return Err(Error::input(UPCONV, "expected a CPU tensor"));
        };
        let start = layout.start_offset();
        let xs = &cpu.as_slice::<f32>()?[start..start + n * cin * h * w];
        for s in 0..n {
            let x = &xs[s * cin * h * w..(s + 1) * cin * h * w];
            // SAFETY: sample s's Cout·2H·2W outputs lie in the capacity.
            unsafe { upconv::conv(x, (cin, h, w), &wt, &b, OutPtr(base.at(s * per)), act) };
        }
    }
    // SAFETY: every output of every sample was written (each row pair by its task).
    unsafe { out.set_len(n * per) };
    Ok(Output::Host(out, (n, cout, 2 * h, 2 * w)))
}

/// The f32 values of a CPU tensor, contiguous.
fn cpu_f32(x: &Tensor) -> Result<Vec<f32>> {
    Ok(x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The textbook convolution in f64.
    fn naive(x: &Tensor, w: &Tensor, b: Option<&Tensor>, spec: ConvSpec) -> Tensor {
        let x = match spec.padding {
            Padding::None => x.clone(),
            Padding::Reflect(p) => reflection_pad2d(x, p).unwrap(),
            Padding::Same => same_pad2d(x, (w.dims()[2], w.dims()[3]), spec.stride).unwrap(),
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
        let mut rng = Rng::new(2, 0);
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
        // A depthwise layer with a channel multiplier (Cout = 2·Cin) on every path.
        let cases: Vec<_> = cases
            .into_iter()
            .chain([(
                1,
                4,
                9,
                8,
                8,
                3,
                2,
                4,
                Padding::Same,
                Activation::Relu,
                true,
            )])
            .collect();
        for (i, &(n, cin, h, w, cout, k, stride, groups, padding, act, has_bias)) in
            cases.iter().enumerate()
        {
            let x = rng.normal_tensor(0.0, 1.0, (n, cin, h, w), &dev).unwrap();
            let wt = rng
                .normal_tensor(0.0, 0.5, (cout, cin / groups, k, k), &dev)
                .unwrap();
            let b = rng.normal_tensor(0.0, 1.0, cout, &dev).unwrap();
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

    /// Prepared Winograd weights give the unprepared result, are ignored by a convolution of
    /// their weight that does not run Winograd (stride 2), and are refused with another weight.
    #[test]
    fn prepared_weights_serve_only_their_own_layer() {
        let mut rng = Rng::new(3, 0);
        let dev = Device::Cpu;
        let x = rng.normal_tensor(0.0, 1.0, (2, 16, 11, 13), &dev).unwrap();
        let w = rng.normal_tensor(0.0, 0.2, (24, 16, 3, 3), &dev).unwrap();
        let b = rng.normal_tensor(0.0, 1.0, 24, &dev).unwrap();
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
        // Weights from another tensor are refused, whatever their shape: a transform of the
        // same shape would otherwise compute silently with the wrong numbers.
        let spec = ConvSpec {
            padding: Padding::Reflect(1),
            ..ConvSpec::default()
        };
        for other in [
            rng.normal_tensor(0.0, 0.2, (24, 16, 3, 3), &dev).unwrap(),
            rng.normal_tensor(0.0, 0.2, (24, 16, 5, 5), &dev).unwrap(),
        ] {
            let e = conv2d_prepared(&x, &other, None, spec, Some(&prepared)).unwrap_err();
            assert!(e.to_string().contains("another tensor"), "{e}");
        }
        // A clone is the same tensor.
        let same = w.clone();
        assert!(conv2d_prepared(&x, &same, None, spec, Some(&prepared)).is_ok());
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

    use candle::Var;

    /// Gradients through the fast op equal Candle's own conv2d backward (same padding, bias and
    /// ReLU written with Candle ops), for stride 1 and 2, reflection and SAME padding (3×3
    /// stride 1: the interior convolution, and the folded ring of reflection); the
    /// stride-1 input gradients run on each forward kernel (direct loops for ≤ 8 input
    /// channels, Winograd for ≥ 16 in and out, the GEMM between) and the weight gradients
    /// over several bands.
    #[test]
    fn backward_matches_candle() {
        let mut rng = Rng::new(4, 0);
        let dev = Device::Cpu;
        for (stride, padding, k, (cin, cout), (h, w)) in [
            (1, Padding::Reflect(1), 3, (5, 7), (11, 10)),
            (2, Padding::Same, 3, (5, 7), (11, 10)),
            (1, Padding::None, 1, (5, 7), (11, 10)),
            (1, Padding::Reflect(4), 9, (5, 7), (11, 10)),
            (1, Padding::Reflect(4), 9, (3, 8), (23, 21)),
            (1, Padding::Reflect(1), 3, (16, 16), (20, 18)),
            (1, Padding::Reflect(1), 3, (12, 20), (33, 9)),
            // Zero padding 1 (the interior alone) and the smallest maps reflection allows.
            (1, Padding::Same, 3, (16, 20), (7, 6)),
            (1, Padding::Reflect(1), 3, (4, 5), (2, 3)),
            (1, Padding::Reflect(1), 3, (16, 16), (3, 2)),
        ] {
            let x = Var::from_tensor(&rng.normal_tensor(0.0, 1.0, (2, cin, h, w), &dev).unwrap())
                .unwrap();
            let w = Var::from_tensor(
                &rng.normal_tensor(0.0, 0.3, (cout, cin, k, k), &dev)
                    .unwrap(),
            )
            .unwrap();
            let b = Var::from_tensor(&rng.normal_tensor(0.0, 0.3, cout, &dev).unwrap()).unwrap();
            let spec = ConvSpec {
                stride,
                padding,
                act: Activation::Relu,
                ..ConvSpec::default()
            };
            let what = format!("{stride} {padding:?}");
            gradients_match_candle(&x, &w, &b, spec, &mut rng, &what);
        }
    }

    /// A weight that is not a variable gets no gradient (a frozen encoder).
    #[test]
    fn frozen_weights_get_no_gradient() {
        let mut rng = Rng::new(5, 0);
        let dev = Device::Cpu;
        let x =
            Var::from_tensor(&rng.normal_tensor(0.0, 1.0, (1, 3, 8, 8), &dev).unwrap()).unwrap();
        let w = rng.normal_tensor(0.0, 0.3, (4, 3, 3, 3), &dev).unwrap();
        let spec = ConvSpec {
            padding: Padding::Reflect(1),
            ..ConvSpec::default()
        };
        let y = conv2d_fused(&x, &w, None, spec).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(&x).is_some());
        assert!(g.get(&w).is_none());
    }

    /// A frozen layer with prepared Winograd weights (a loss network's): the input gradient
    /// through the fused op equals Candle's, the first time (flipped transform made) and the
    /// second (taken from the cache), on a map whose padded output is not a whole number of
    /// tiles.
    #[test]
    fn frozen_prepared_layer_gives_candles_input_gradient() {
        let mut rng = Rng::new(14, 0);
        let dev = Device::Cpu;
        let w = rng.normal_tensor(0.0, 0.1, (24, 16, 3, 3), &dev).unwrap();
        let b = rng.normal_tensor(0.0, 0.1, 24, &dev).unwrap();
        let prepared = WinogradWeights::new(&w).unwrap();
        assert!(prepared.is_some());
        // No activation: the two paths' rounding may put a value near 0 on either side of a
        // ReLU, which moves a whole 3×3 patch of the gradient.
        let spec = ConvSpec {
            padding: Padding::Reflect(1),
            ..ConvSpec::default()
        };
        for round in 0..3 {
            let x = Var::from_tensor(&rng.normal_tensor(0.0, 1.0, (2, 16, 10, 13), &dev).unwrap())
                .unwrap();
            let ours = conv2d_prepared(&x, &w, Some(&b), spec, prepared.as_ref()).unwrap();
            let theirs = candle_path(&x, &w, Some(&b), spec).unwrap();
            let r = rng.normal_tensor(0.0, 1.0, ours.shape(), &dev).unwrap();
            let grads = |y: &Tensor| (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let (g1, g2) = (grads(&ours), grads(&theirs));
            assert!(g1.get(&w).is_none(), "a frozen weight got a gradient");
            let (a, e) = (g1.get(&x).unwrap().clone(), g2.get(&x).unwrap().clone());
            let (scale, d) = (max_abs(&e), max_abs(&(a - e).unwrap()));
            assert!(d <= 1e-5 * scale, "round {round}: |Δ| {d} (scale {scale})");
        }
    }

    /// The public op equals upsampling then convolving (the unfused path it replaces), with
    /// and without bias, through the tensor API; a wider layer takes the unfused path.
    #[test]
    fn op_equals_upsample_then_conv() -> Result<()> {
        let mut rng = Rng::new(6, 0);
        let dev = Device::Cpu;
        for (cin, cout) in [(6, 5), (16, 24)] {
            let x = rng.normal_tensor(0.0, 1.0, (2, cin, 7, 9), &dev)?;
            let w = rng.normal_tensor(0.0, 0.2, (cout, cin, 3, 3), &dev)?;
            let b = rng.normal_tensor(0.0, 0.2, cout, &dev)?;
            for bias in [None, Some(&b)] {
                let got = upsample_conv3x3(&x, &w, bias, Activation::Relu, None)?;
                let spec = ConvSpec {
                    padding: Padding::Reflect(1),
                    act: Activation::Relu,
                    ..ConvSpec::default()
                };
                let want = super::super::conv2d_fused(&upsample_nearest2x(&x)?, &w, bias, spec)?;
                assert_eq!(got.dims(), [2, cout, 14, 18]);
                let d = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(d < 1e-4, "cin {cin} cout {cout}: max |Δ| {d}");
            }
        }
        let x = Tensor::zeros((1, 4, 5, 5), DType::F32, &dev)?;
        let w = Tensor::zeros((2, 3, 3, 3), DType::F32, &dev)?;
        assert!(upsample_conv3x3(&x, &w, None, Activation::None, None).is_err());
        Ok(())
    }

    /// Gradients through the fused upsampling layer (a feed-forward network's `deconv` layers
    /// in training: one op for upsampling, reflection padding, convolution, bias and ReLU)
    /// equal those of Candle's upsampling followed by Candle's path.
    #[test]
    fn upsampling_layer_backward_matches_candle() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(13, 0);
        for (cin, cout, h, w) in [(6, 5, 5, 7), (16, 24, 4, 6)] {
            let var = |t: Tensor| Var::from_tensor(&t).unwrap();
            let x = var(rng.normal_tensor(0.0, 1.0, (2, cin, h, w), &dev).unwrap());
            let wt = var(rng
                .normal_tensor(0.0, 0.3, (cout, cin, 3, 3), &dev)
                .unwrap());
            let b = var(rng.normal_tensor(0.0, 0.3, cout, &dev).unwrap());
            let ours = upsample_conv3x3(&x, &wt, Some(&b), Activation::Relu, None).unwrap();
            let spec = ConvSpec {
                padding: Padding::Reflect(1),
                act: Activation::Relu,
                ..ConvSpec::default()
            };
            let up = x.upsample_nearest2d(2 * h, 2 * w).unwrap();
            let theirs = candle_path(&up, &wt, Some(&b), spec).unwrap();
            let r = rng.normal_tensor(0.0, 1.0, ours.shape(), &dev).unwrap();
            let grads = |y: &Tensor| (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let (g1, g2) = (grads(&ours), grads(&theirs));
            for (name, t) in [
                ("y", None),
                ("x", Some(&x)),
                ("w", Some(&wt)),
                ("b", Some(&b)),
            ] {
                let (a, e) = match t {
                    None => (ours.clone(), theirs.clone()),
                    Some(v) => (g1.get(v).unwrap().clone(), g2.get(v).unwrap().clone()),
                };
                let (scale, d) = (max_abs(&e), max_abs(&(a - e).unwrap()));
                assert!(d <= 1e-5 * scale.max(1.0), "{cin}→{cout} {name}: |Δ| {d}");
            }
        }
    }

    /// 'SAME' padding with non-square kernels and both strides gives the same shapes and values
    /// on the crate's kernels, on Candle's path and in float64.
    #[test]
    fn same_padding_agrees_on_every_path_for_non_square_kernels() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(9, 0);
        for (kh, kw, stride, cout) in [(1, 3, 1, 6), (3, 1, 2, 6), (5, 3, 2, 40), (1, 7, 1, 20)] {
            let x = rng.normal_tensor(0.0, 1.0, (1, 4, 9, 11), &dev).unwrap();
            let w = rng
                .normal_tensor(0.0, 0.3, (cout, 4, kh, kw), &dev)
                .unwrap();
            let spec = ConvSpec {
                stride,
                padding: Padding::Same,
                ..ConvSpec::default()
            };
            let want = naive(&x, &w, None, spec);
            assert_eq!(
                want.dims()[2..],
                [9usize.div_ceil(stride), 11usize.div_ceil(stride)]
            );
            for (path, got) in [
                ("own", conv2d_fused(&x, &w, None, spec).unwrap()),
                ("candle", candle_path(&x, &w, None, spec).unwrap()),
            ] {
                assert_eq!(got.dims(), want.dims(), "{kh}x{kw} s{stride} {path}");
                let d = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
                let d = d.to_scalar::<f32>().unwrap();
                assert!(d <= 1e-5, "{kh}x{kw} s{stride} {path}: max |Δ| {d}");
            }
        }
    }

    /// The plan of each layer shape the models use.
    #[test]
    fn plan_picks_the_kernel_each_layer_shape_needs() {
        let problem = |cin, weight, stride, groups, own_kernels, tracked| Problem {
            cin,
            weight,
            spec: ConvSpec {
                stride,
                groups,
                ..ConvSpec::default()
            },
            own_kernels,
            tracked,
        };
        // (problem, plan): VGG 3x3, AdaIN's output conv, Magenta's 9x9 and stride-2 layers,
        // a 1x1, a depthwise, training, another device.
        let cases = [
            (
                problem(64, (64, 64, 3, 3), 1, 1, true, false),
                Plan::Winograd,
            ),
            (problem(64, (3, 64, 3, 3), 1, 1, true, false), Plan::Direct),
            (problem(3, (32, 3, 9, 9), 1, 1, true, false), Plan::Gemm),
            (
                problem(32, (32, 32, 3, 3), 2, 1, true, false),
                Plan::Strided,
            ),
            (problem(64, (128, 64, 3, 3), 2, 1, true, false), Plan::Gemm),
            (problem(16, (32, 16, 1, 1), 1, 1, true, false), Plan::Gemm),
            (
                problem(32, (32, 1, 3, 3), 1, 32, true, false),
                Plan::Depthwise,
            ),
            (
                problem(64, (64, 64, 3, 3), 1, 1, true, true),
                Plan::GemmTrain,
            ),
            (
                problem(64, (64, 64, 3, 3), 1, 1, false, false),
                Plan::Candle,
            ),
            (problem(8, (8, 2, 3, 3), 1, 4, true, false), Plan::Candle),
            (problem(8, (16, 1, 3, 3), 1, 8, true, false), Plan::Candle),
        ];
        for (p, want) in cases {
            assert_eq!(plan(&p), want, "{p:?}");
            assert!(!want.describe().is_empty());
        }
    }

    /// Gradients through the depthwise op (the style predictor's layers, stride 1 and 2, SAME
    /// padding, ReLU6) equal those of the tensor-op depthwise convolution, for the input, the
    /// weight and the bias.
    #[test]
    fn depthwise_backward_matches_candle() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(12, 0);
        for (stride, c, k, h, w) in [(1, 8, 3, 9, 11), (2, 6, 3, 12, 10), (2, 4, 5, 9, 9)] {
            let x = Var::from_tensor(&rng.normal_tensor(0.0, 1.0, (2, c, h, w), &dev).unwrap())
                .unwrap();
            let wt = Var::from_tensor(&rng.normal_tensor(0.0, 0.3, (c, 1, k, k), &dev).unwrap())
                .unwrap();
            let b = Var::from_tensor(&rng.normal_tensor(0.0, 0.3, c, &dev).unwrap()).unwrap();
            let spec = ConvSpec {
                stride,
                groups: c,
                padding: Padding::Same,
                act: Activation::Relu6,
            };
            gradients_match_candle(&x, &wt, &b, spec, &mut rng, &format!("stride {stride}"));
        }
    }

    /// The largest |value| of a tensor.
    fn max_abs(t: &Tensor) -> f32 {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// The forward and the gradients of x, w, b through the crate's op equal those through
    /// Candle's path (relative max error < 1e-5), for the loss Σ y·r with a random r.
    fn gradients_match_candle(
        x: &Var,
        w: &Var,
        b: &Var,
        spec: ConvSpec,
        rng: &mut Rng,
        what: &str,
    ) {
        let ours = conv2d_fused(x, w, Some(b), spec).unwrap();
        let theirs = candle_path(x, w, Some(b), spec).unwrap();
        let r = rng
            .normal_tensor(0.0, 1.0, ours.shape(), &Device::Cpu)
            .unwrap();
        let g1 = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&theirs * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let rel = |a: &Tensor, b: &Tensor| -> f32 {
            let m = b
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            d.to_scalar::<f32>().unwrap() / m.max(1e-6)
        };
        assert!(rel(&ours, &theirs) < 1e-5, "{what}: forward");
        for (name, v) in [("x", x), ("w", w), ("b", b)] {
            let d = rel(g1.get(v).unwrap(), g2.get(v).unwrap());
            assert!(d < 1e-5, "{what} d{name}: {d}");
        }
    }
}
