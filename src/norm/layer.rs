//! Layer normalization over the trailing `normalized_shape`, with PyTorch's `nn.LayerNorm`
//! semantics (Ba et al. 2016). For images the shape is (C, H, W): one mean and variance per sample.

use candle::{Device, Module, Tensor};
use candle_nn::{Init, VarBuilder};

use super::stats::normalize_rows;
use super::{check_eps, check_pair, check_param, graph, load_param, DEFAULT_EPS};
use crate::weights::TensorMap;
use crate::{Error, Result};

const LAYER: &str = "LayerNorm";

/// Hyper-parameters of [`LayerNorm`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormConfig {
    /// Added to the variance before the square root. Default 1e-5.
    pub eps: f64,
    /// Learnable γ, β with the shape of `normalized_shape` (element-wise, not per channel).
    /// Default true.
    pub elementwise_affine: bool,
}

impl Default for LayerNormConfig {
    fn default() -> Self {
        LayerNormConfig {
            eps: DEFAULT_EPS,
            elementwise_affine: true,
        }
    }
}

/// `nn.LayerNorm(normalized_shape)`: x (*, normalized_shape…) → same shape and dtype.
///
/// Each run of the trailing dimensions is normalized with its mean and biased variance; γ and β
/// (shape `normalized_shape`) then apply element-wise.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    normalized_shape: Vec<usize>,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    cfg: LayerNormConfig,
}

impl LayerNorm {
    /// A fresh layer (γ = 1, β = 0 when affine).
    pub fn new(normalized_shape: &[usize], cfg: LayerNormConfig, device: &Device) -> Result<Self> {
        let s = normalized_shape;
        let ones = || Tensor::ones(s, candle::DType::F32, device);
        let zeros = || Tensor::zeros(s, candle::DType::F32, device);
        Self::from_tensors(
            normalized_shape,
            cfg.elementwise_affine.then(ones).transpose()?,
            cfg.elementwise_affine.then(zeros).transpose()?,
            cfg,
        )
    }

    /// A layer from γ and β of shape `normalized_shape` (required when
    /// `cfg.elementwise_affine`, else absent).
    pub fn from_tensors(
        normalized_shape: &[usize],
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        cfg: LayerNormConfig,
    ) -> Result<Self> {
        if normalized_shape.is_empty() || normalized_shape.contains(&0) {
            return Err(Error::config(
                LAYER,
                format!("normalized_shape must be non-empty with every size ≥ 1, got {normalized_shape:?}"),
            ));
        }
        check_eps(LAYER, cfg.eps)?;
        check_pair(
            LAYER,
            &weight,
            &bias,
            cfg.elementwise_affine,
            "weight and bias (elementwise_affine)",
        )?;
        Ok(LayerNorm {
            normalized_shape: normalized_shape.to_vec(),
            weight: check_param(LAYER, "weight", weight, normalized_shape)?,
            bias: check_param(LAYER, "bias", bias, normalized_shape)?,
            cfg,
        })
    }

    /// Loads `prefix.{weight,bias}` when affine.
    pub fn load(
        map: &TensorMap,
        prefix: &str,
        normalized_shape: &[usize],
        cfg: LayerNormConfig,
    ) -> Result<Self> {
        let w = load_param(
            map,
            prefix,
            "weight",
            normalized_shape,
            cfg.elementwise_affine,
        )?;
        let b = load_param(
            map,
            prefix,
            "bias",
            normalized_shape,
            cfg.elementwise_affine,
        )?;
        Self::from_tensors(normalized_shape, w, b, cfg)
    }

    /// x: (*, normalized_shape…) → same shape and dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let k = self.normalized_shape.len();
        let dims = x.dims();
        if dims.len() < k || dims[dims.len() - k..] != self.normalized_shape[..] {
            return Err(Error::input(
                LAYER,
                format!(
                    "expected input with trailing dimensions {:?}, found shape {dims:?}",
                    self.normalized_shape
                ),
            ));
        }
        if x.elem_count() == 0 {
            return Err(Error::input(
                LAYER,
                format!("empty input of shape {dims:?}"),
            ));
        }
        let row_len: usize = self.normalized_shape.iter().product();
        if graph::needed(x, &[self.weight.as_ref(), self.bias.as_ref()]) {
            let cd = graph::compute_dtype(x)?;
            let rows = x.to_dtype(cd)?.reshape(((), row_len))?;
            let (mean, var) = graph::moments_last(&rows)?;
            let mut y = graph::standardize(&rows, &mean, &var, self.cfg.eps)?.reshape(dims)?;
            if let (Some(g), Some(b)) = (&self.weight, &self.bias) {
                y = y
                    .broadcast_mul(&g.to_dtype(cd)?)?
                    .broadcast_add(&b.to_dtype(cd)?)?;
            }
            return Ok(y.to_dtype(x.dtype())?);
        }
        let ew = match (&self.weight, &self.bias) {
            (Some(g), Some(b)) => Some((g, b)),
            _ => None,
        };
        normalize_rows(x, row_len, row_len, self.cfg.eps, &[1.0], &[0.0], ew)
    }

    /// The trailing shape normalized over.
    pub fn normalized_shape(&self) -> &[usize] {
        &self.normalized_shape
    }
    /// γ with shape `normalized_shape`, f32, when affine.
    pub fn weight(&self) -> Option<&Tensor> {
        self.weight.as_ref()
    }
    /// β with shape `normalized_shape`, f32, when affine.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    /// The configuration.
    pub fn config(&self) -> &LayerNormConfig {
        &self.cfg
    }
}

/// A [`LayerNorm`] over `normalized_shape` whose elementwise γ (`weight`, 1) and β (`bias`, 0)
/// live in `vb`, as PyTorch names them.
pub fn layer_norm(
    normalized_shape: &[usize],
    cfg: LayerNormConfig,
    vb: VarBuilder,
) -> Result<LayerNorm> {
    let get = |name: &str, init: f64| -> Result<Option<Tensor>> {
        Ok(cfg
            .elementwise_affine
            .then(|| vb.get_with_hints(normalized_shape, name, Init::Const(init)))
            .transpose()?)
    };
    LayerNorm::from_tensors(
        normalized_shape,
        get("weight", 1.0)?,
        get("bias", 0.0)?,
        cfg,
    )
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        LayerNorm::forward(self, xs).map_err(candle::Error::wrap)
    }
}
