//! The 26-style conditional instance norm network (Dumoulin et al. 2017; docs/ARCHITECTURE.md §5.4): the
//! transformer's skeleton at 32 channels, 6 residual blocks, no conv biases, and per-style γ, β
//! tables; a blend of styles is the weighted sum of table rows.

use candle::{Device, Tensor};
use candle_nn::VarBuilder;

use super::transformer::{GammaBeta, Skeleton};
use super::{check_images, embedded, MULTISTYLE_WEIGHTS};
use crate::norm::{NormKind, TemporalStats};
use crate::weights::{tensor, TensorMap};
use crate::{Error, Result};

/// Number of built-in styles.
pub const PRESET_COUNT: usize = 26;

/// The 26-style network.
#[derive(Clone, Debug)]
pub struct Multistyle {
    net: Skeleton,
    /// (γ table, β table) per conditional-IN layer, each (26, C) row-major.
    tables: Vec<(Vec<f32>, Vec<f32>, usize)>,
}

impl Multistyle {
    /// The embedded pretrained network on `device`.
    pub fn embedded(device: &Device) -> Result<Self> {
        Self::embedded_dtype(device, candle::DType::F32)
    }

    /// The embedded network with its weights in `dtype` (f16 or bf16 on a GPU).
    pub fn embedded_dtype(device: &Device, dtype: candle::DType) -> Result<Self> {
        Self::new(&embedded(MULTISTYLE_WEIGHTS, device)?.var_builder_dtype(device, dtype))
    }

    /// Builds it from a checkpoint in memory (see [`Self::new`]).
    pub fn load(map: &TensorMap) -> Result<Self> {
        Self::new(&map.var_builder(&map.device()))
    }

    /// Loads `multistyle.*` tensors.
    pub fn new(vb: &VarBuilder) -> Result<Self> {
        let net = Skeleton::load(
            vb,
            "multistyle",
            [(3, 32, 9), (32, 32, 3), (32, 32, 3)],
            6,
            32,
            [(32, 8, 3), (8, 4, 3), (4, 3, 9)],
            false,
        )?;
        let widths: Vec<usize> = std::iter::repeat_n(32, 15).chain([8, 4, 3]).collect();
        let tables = net
            .norm_prefixes("multistyle")
            .iter()
            .zip(widths)
            .map(|(p, c)| {
                let g = tensor(vb, &format!("{p}.gamma_table"), &[PRESET_COUNT, c])?
                    .flatten_all()?
                    .to_dtype(candle::DType::F32)?
                    .to_vec1()?;
                let b = tensor(vb, &format!("{p}.beta_table"), &[PRESET_COUNT, c])?
                    .flatten_all()?
                    .to_dtype(candle::DType::F32)?
                    .to_vec1()?;
                Ok((g, b, c))
            })
            .collect::<Result<_>>()?;
        Ok(Multistyle { net, tables })
    }

    /// `contents`: (1, 3, Hᵢ, Wᵢ) RGB in [0, 1], one batch; `weights`: 26 style weights (used as
    /// given: the CLI normalizes them to sum 1) → stylized images of the same sizes in (0, 1).
    pub fn forward(
        &self,
        contents: &[Tensor],
        weights: &[f64],
        kind: NormKind,
    ) -> Result<Vec<Tensor>> {
        self.forward_temporal(contents, weights, kind, None)
    }

    /// [`Self::forward`] on one frame of a clip: each conditional-IN layer's statistics are
    /// smoothed over the frames by `temporal` (18 smoothings per call).
    pub fn forward_temporal(
        &self,
        contents: &[Tensor],
        weights: &[f64],
        kind: NormKind,
        temporal: Option<&mut TemporalStats>,
    ) -> Result<Vec<Tensor>> {
        check_images("multistyle", contents, 4)?;
        if weights.len() != PRESET_COUNT {
            return Err(Error::input(
                "multistyle",
                format!(
                    "expected {PRESET_COUNT} style weights, got {}",
                    weights.len()
                ),
            ));
        }
        let blend = |table: &[f32], c: usize| -> Vec<f64> {
            (0..c)
                .map(|ch| {
                    (0..PRESET_COUNT)
                        .map(|s| weights[s] * table[s * c + ch] as f64)
                        .sum()
                })
                .collect()
        };
        let gb = |k: usize| -> Result<GammaBeta> {
            let (g, b, c) = &self.tables[k];
            Ok(vec![(blend(g, *c), blend(b, *c)); contents.len()])
        };
        self.net.forward(contents, kind, &gb, temporal)
    }
}
