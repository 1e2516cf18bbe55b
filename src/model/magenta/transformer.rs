//! The arbitrary-style transformer (docs/ARCHITECTURE.md §5.3), and the encoder/decoder skeleton it shares
//! with the 26-style network: contract (9×9, two stride-2 3×3), residual blocks, expand (nearest
//! ×2 upsampling + convs, a final 9×9 conv and sigmoid). Every conv is reflection-padded.

use candle::{Device, Tensor};
use candle_nn::VarBuilder;

use super::{
    check_images, cond_norm, crop_to, each, embedded, Conv, STYLE_DIM, TRANSFORMER_WEIGHTS,
};
use crate::norm::{NormKind, PostOp, TemporalStats};
use crate::ops::Activation;
use crate::weights::{tensor, TensorMap};
use crate::{Error, Result};

/// (γ, β) per image for one conditional-norm layer.
pub(super) type GammaBeta = Vec<(Vec<f64>, Vec<f64>)>;

/// The shared skeleton. Conditional-norm layers are numbered in forward order: the contract
/// convs (when normalized), then two per residual block, then the three expand convs.
#[derive(Clone, Debug)]
pub(super) struct Skeleton {
    pub contract: Vec<Conv>,
    pub contract_norm: bool,
    pub residual: Vec<(Conv, Conv)>,
    pub expand: Vec<Conv>,
}

impl Skeleton {
    /// Loads `{prefix}.contract.conv{1,2,3}`, `{prefix}.residual.{i}.conv{1,2}` and
    /// `{prefix}.expand.conv{1,2,3}` with the given channel widths.
    pub fn load(
        vb: &VarBuilder,
        prefix: &str,
        contract: [(usize, usize, usize); 3],
        blocks: usize,
        width: usize,
        expand: [(usize, usize, usize); 3],
        biases: bool,
    ) -> Result<Self> {
        let stride = [1, 2, 2];
        let contract = (0..3)
            .map(|i| {
                Conv::load(
                    vb,
                    &format!("{prefix}.contract.conv{}", i + 1),
                    contract[i],
                    stride[i],
                    1,
                    biases,
                )
            })
            .collect::<Result<_>>()?;
        let residual = (0..blocks)
            .map(|i| {
                let conv = |j| {
                    Conv::load(
                        vb,
                        &format!("{prefix}.residual.{i}.conv{j}"),
                        (width, width, 3),
                        1,
                        1,
                        false,
                    )
                };
                Ok((conv(1)?, conv(2)?))
            })
            .collect::<Result<_>>()?;
        let expand = (0..3)
            .map(|i| {
                Conv::load(
                    vb,
                    &format!("{prefix}.expand.conv{}", i + 1),
                    expand[i],
                    1,
                    1,
                    false,
                )
            })
            .collect::<Result<_>>()?;
        Ok(Skeleton {
            contract,
            contract_norm: !biases,
            residual,
            expand,
        })
    }

    /// The names (`….norm`) of the conditional-norm layers, in forward order.
    pub fn norm_prefixes(&self, prefix: &str) -> Vec<String> {
        let mut v = Vec::new();
        if self.contract_norm {
            v.extend((1..=3).map(|i| format!("{prefix}.contract.conv{i}.norm")));
        }
        for i in 0..self.residual.len() {
            v.extend((1..=2).map(|j| format!("{prefix}.residual.{i}.conv{j}.norm")));
        }
        v.extend((1..=3).map(|i| format!("{prefix}.expand.conv{i}.norm")));
        v
    }

    /// `xs`: (1, 3, Hᵢ, Wᵢ) images in [0, 1], one batch (for `bn`, statistics pool all of them);
    /// `gb(k)`: (γ, β) per image of norm layer k; `temporal`: statistics kept over a clip's
    /// frames, one smoothing per norm layer → stylized images, cropped to the input sizes.
    pub fn forward(
        &self,
        xs: &[Tensor],
        kind: NormKind,
        gb: &(dyn Fn(usize) -> Result<GammaBeta> + Sync),
        temporal: Option<&mut TemporalStats>,
    ) -> Result<Vec<Tensor>> {
        // One entry into the thread pool for the whole network: the ops below then start their
        // parallel loops from a pool thread, without the two thread switches an entry from
        // outside costs (~4 % of a 1-thread 1024² run, more on small images).
        crate::ops::in_pool(|| self.forward_in_pool(xs, kind, gb, temporal))
    }

    fn forward_in_pool(
        &self,
        xs: &[Tensor],
        kind: NormKind,
        gb: &(dyn Fn(usize) -> Result<GammaBeta> + Sync),
        mut temporal: Option<&mut TemporalStats>,
    ) -> Result<Vec<Tensor>> {
        let mut k = 0;
        // Each conditional norm applies its layer's activation in the same pass.
        let mut norm = |ys: Vec<Tensor>, post: PostOp| -> Result<Vec<Tensor>> {
            let _t = crate::profile::scope("transformer: conditional IN (+ activation)");
            let r = cond_norm(&ys, kind, &gb(k)?, post, temporal.as_deref_mut());
            k += 1;
            r
        };
        // Images in f32; the network runs in its weights' dtype.
        let dtype = self.contract[0].weight.dtype();
        let mut x = xs
            .iter()
            .map(|t| t.to_dtype(dtype))
            .collect::<candle::Result<Vec<_>>>()?;
        for (ci, conv) in self.contract.iter().enumerate() {
            let _t = crate::profile::scope(
                [
                    "transformer: contract conv 1",
                    "transformer: contract conv 2",
                    "transformer: contract conv 3",
                ][ci],
            );
            x = if self.contract_norm {
                let y = each(&x, |t| conv.forward_reflect(t, Activation::None))?;
                norm(y, PostOp::Relu)?
            } else {
                // Folded batch norm: the ReLU fuses into the convolution.
                each(&x, |t| conv.forward_reflect(t, Activation::Relu))?
            };
        }
        for (c1, c2) in &self.residual {
            let h = {
                let _t = crate::profile::scope("transformer: residual convs");
                each(&x, |t| c1.forward_reflect(t, Activation::None))?
            };
            let h = norm(h, PostOp::Relu)?;
            let h = {
                let _t = crate::profile::scope("transformer: residual convs");
                each(&h, |t| c2.forward_reflect(t, Activation::None))?
            };
            let h = norm(h, PostOp::None)?;
            let _t = crate::profile::scope("transformer: residual adds");
            x = x
                .iter()
                .zip(&h)
                .map(|(a, b)| Ok((a + b)?))
                .collect::<Result<_>>()?;
        }
        for (i, conv) in self.expand.iter().enumerate() {
            let post = if i < 2 { PostOp::Relu } else { PostOp::Sigmoid };
            let y = {
                let _t = crate::profile::scope(
                    [
                        "transformer: expand conv 1 (with upsampling ×2)",
                        "transformer: expand conv 2 (with upsampling ×2)",
                        "transformer: expand conv 3",
                    ][i],
                );
                // The first two upsample ×2 first, fused into the convolution.
                if i < 2 {
                    each(&x, |t| conv.forward_upsampled(t, Activation::None))?
                } else {
                    each(&x, |t| conv.forward_reflect(t, Activation::None))?
                }
            };
            x = norm(y, post)?;
        }
        let x = x
            .iter()
            .map(|t| t.to_dtype(candle::DType::F32))
            .collect::<candle::Result<Vec<_>>>()?;
        crop_to(x, xs)
    }
}

/// A style projection: γ or β = W·v + b with W (C, 100).
#[derive(Clone, Debug)]
struct Projection {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Projection {
    fn load(vb: &VarBuilder, prefix: &str, c: usize) -> Result<Self> {
        // Kept on the host in f32 whatever the model's dtype (γ, β are computed there).
        let weight = tensor(vb, &format!("{prefix}.weight"), &[c, STYLE_DIM])?
            .flatten_all()?
            .to_dtype(candle::DType::F32)?
            .to_vec1()?;
        let bias = tensor(vb, &format!("{prefix}.bias"), &[c])?
            .to_dtype(candle::DType::F32)?
            .to_vec1()?;
        Ok(Projection { weight, bias })
    }

    fn apply(&self, v: &[f32]) -> Vec<f64> {
        self.bias
            .iter()
            .enumerate()
            .map(|(o, &b)| {
                let row = &self.weight[o * STYLE_DIM..(o + 1) * STYLE_DIM];
                b as f64
                    + row
                        .iter()
                        .zip(v)
                        .map(|(&w, &x)| w as f64 * x as f64)
                        .sum::<f64>()
            })
            .collect()
    }
}

/// Channels of the transformer's 13 conditional-IN layers, in forward order.
pub const NORM_CHANNELS: [usize; 13] = [32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 16, 8, 3];

/// The arbitrary-style transformer: a content image and a style vector → the stylized image.
#[derive(Clone, Debug)]
pub struct Transformer {
    net: Skeleton,
    /// (γ projection, β projection) per conditional-IN layer, in forward order.
    norms: Vec<(Projection, Projection)>,
}

impl Transformer {
    /// The embedded pretrained transformer on `device`.
    pub fn embedded(device: &Device) -> Result<Self> {
        Self::embedded_dtype(device, candle::DType::F32)
    }

    /// The embedded transformer with its weights in `dtype` (f16 or bf16 on a GPU); images go
    /// in and come out as f32.
    pub fn embedded_dtype(device: &Device, dtype: candle::DType) -> Result<Self> {
        Self::new(&embedded(TRANSFORMER_WEIGHTS, device)?.var_builder_dtype(device, dtype))
    }

    /// Builds it from a checkpoint in memory (see [`Self::new`]).
    pub fn load(map: &TensorMap) -> Result<Self> {
        Self::new(&map.var_builder(&map.device()))
    }

    /// Loads `transformer.*` tensors.
    pub fn new(vb: &VarBuilder) -> Result<Self> {
        let net = Skeleton::load(
            vb,
            "transformer",
            [(3, 8, 9), (8, 16, 3), (16, 32, 3)],
            5,
            32,
            [(32, 16, 3), (16, 8, 3), (8, 3, 9)],
            true,
        )?;
        let norms = net
            .norm_prefixes("transformer")
            .iter()
            .zip(NORM_CHANNELS)
            .map(|(p, c)| {
                Ok((
                    Projection::load(vb, &format!("{p}.gamma_proj"), c)?,
                    Projection::load(vb, &format!("{p}.beta_proj"), c)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Transformer { net, norms })
    }

    /// `contents`: (1, 3, Hᵢ, Wᵢ) RGB in [0, 1], one batch (`bn` pools its statistics over all of
    /// them, layer by layer); `vectors[i]`: the 100-d style vector for content i → stylized
    /// (1, 3, Hᵢ, Wᵢ) in (0, 1).
    pub fn forward(
        &self,
        contents: &[Tensor],
        vectors: &[Vec<f32>],
        kind: NormKind,
    ) -> Result<Vec<Tensor>> {
        self.forward_temporal(contents, vectors, kind, None)
    }

    /// One content with a style vector as a tensor, IN statistics: `content` (1, 3, H, W) RGB in
    /// [0, 1], `style` (1, 100) from [`StylePredictor`](super::StylePredictor) → (1, 3, H, W)
    /// in (0, 1).
    pub fn forward_style(&self, content: &Tensor, style: &Tensor) -> Result<Tensor> {
        let v: Vec<f32> = style
            .flatten_all()?
            .to_dtype(candle::DType::F32)?
            .to_vec1()?;
        let mut out = self.forward(std::slice::from_ref(content), &[v], NormKind::In)?;
        out.pop()
            .ok_or_else(|| Error::input("transformer", "the network returned no output"))
    }

    /// [`Self::forward`] on one frame of a clip: each conditional-IN layer's statistics are
    /// smoothed over the frames by `temporal` (13 smoothings per call).
    pub fn forward_temporal(
        &self,
        contents: &[Tensor],
        vectors: &[Vec<f32>],
        kind: NormKind,
        temporal: Option<&mut TemporalStats>,
    ) -> Result<Vec<Tensor>> {
        let _t = crate::profile::scope("transformer");
        check_images("transformer", contents, 4)?;
        if vectors.len() != contents.len() || vectors.iter().any(|v| v.len() != STYLE_DIM) {
            return Err(Error::input(
                "transformer",
                format!(
                    "expected {} style vectors of {STYLE_DIM} values",
                    contents.len()
                ),
            ));
        }
        let gb = |k: usize| -> Result<GammaBeta> {
            let (g, b) = &self.norms[k];
            Ok(vectors.iter().map(|v| (g.apply(v), b.apply(v))).collect())
        };
        self.net.forward(contents, kind, &gb, temporal)
    }
}
