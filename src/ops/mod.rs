//! Tensor ops Candle lacks or that need PyTorch's exact semantics: reflection padding, TF-'SAME'
//! padding, ceil-mode max pooling, nearest upsampling, and a conv helper.

mod conv;
mod conv_grad;
mod pad;
mod resample;

pub use conv::{conv2d_fused, Activation, ConvSpec, Padding};
pub use pad::{reflection_pad2d, same_pad2d};
pub use resample::{max_pool2x2_ceil, upsample_nearest2x};

use candle::Tensor;

use crate::Result;

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
