//! Weights I/O: named tensors from checkpoints, checked for presence, dtype and shape.

use std::collections::HashMap;
use std::path::Path;

use candle::{DType, Device, Tensor};

use crate::{Error, Result};

/// Named tensors of a checkpoint with PyTorch `state_dict` keys (`encoder.0.weight`, …).
///
/// Lookups check presence, dtype (f32, f16, bf16 and f64 are accepted and converted to f32) and
/// shape, so a model never sees a tensor it cannot use.
#[derive(Clone, Debug, Default)]
pub struct TensorMap {
    tensors: HashMap<String, Tensor>,
}

impl TensorMap {
    /// Wraps already-loaded tensors.
    pub fn new(tensors: HashMap<String, Tensor>) -> Self {
        TensorMap { tensors }
    }

    /// Reads a safetensors file onto `device`.
    pub fn from_safetensors(path: &Path, device: &Device) -> Result<Self> {
        let data = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Ok(TensorMap::new(candle::safetensors::load_buffer(&data, device)?))
    }

    /// The tensor `key` as f32 with exactly `shape`.
    pub fn get(&self, key: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensors.get(key).ok_or_else(|| Error::MissingTensor { key: key.to_string() })?;
        if t.dims() != shape {
            return Err(Error::TensorShape {
                key: key.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        match t.dtype() {
            DType::F32 => Ok(t.clone()),
            DType::F16 | DType::BF16 | DType::F64 => Ok(t.to_dtype(DType::F32)?),
            other => Err(Error::Input {
                layer: "checkpoint",
                msg: format!("tensor `{key}`: expected a float dtype (f32, f16, bf16, f64), found {other:?}"),
            }),
        }
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    /// Adds or replaces a tensor.
    pub fn insert(&mut self, key: impl Into<String>, t: Tensor) {
        self.tensors.insert(key.into(), t);
    }
}
