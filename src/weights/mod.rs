//! Weights I/O: named tensors from checkpoints (PyTorch legacy and zip `.pth` through the crate's
//! own [`pickle`] VM, safetensors), checked for presence, dtype, shape and finite values; and the
//! ONNX import of the Magenta weights ([`onnx`]).
//!
//! Both readers serve as `candle_nn::VarBuilder` backends ([`var_builder`],
//! [`TensorMap::var_builder`]), and the models build from a `VarBuilder` as candle-transformers'
//! models do; [`tensor`] reads one tensor from any `VarBuilder` with this module's errors.

#[cfg(feature = "hub")]
pub mod hub;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod pickle;
pub mod pth;
#[cfg(feature = "hub")]
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle::{DType, Device, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// A float32 tensor outside Candle (e.g. dequantized from ONNX): shape and row-major values.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Named tensors of a checkpoint with PyTorch `state_dict` keys (`encoder.0.weight`, …).
///
/// Lookups check presence, dtype (f32, f16, bf16 and f64 are accepted and converted to f32) and
/// shape, so a model never sees a tensor it cannot use.
#[derive(Clone, Debug, Default)]
pub struct TensorMap {
    tensors: HashMap<String, Tensor>,
}

/// The tensors a model needs from one checkpoint: names and shapes. Each model describes its
/// files this way (e.g. `model::adain::layouts()`), so the store validates a file without
/// knowing the models.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// (key, shape) of every tensor the model reads; a file may hold more.
    pub tensors: Vec<(String, Vec<usize>)>,
}

impl Layout {
    /// Checks that `map` holds every tensor of the layout, with its shape, as a finite float
    /// tensor. The error names the first tensor that is missing or wrong.
    pub fn check(&self, map: &TensorMap) -> Result<()> {
        for (key, shape) in &self.tensors {
            map.get(key, shape)?;
        }
        Ok(())
    }
}

/// A `VarBuilder` over a checkpoint file: safetensors are memory-mapped (tensors are read, and
/// checked, when a model asks for them), `.pth` files (legacy or zip) are read whole. Tensors
/// come as f32 on `device`.
pub fn var_builder(path: &Path, device: &Device) -> Result<VarBuilder<'static>> {
    var_builder_dtype(path, device, DType::F32)
}

/// [`var_builder`] giving tensors in `dtype` (f16 and bf16 for GPUs).
pub fn var_builder_dtype(
    path: &Path,
    device: &Device,
    dtype: DType,
) -> Result<VarBuilder<'static>> {
    not_a_folder(path)?;
    let head = {
        let mut f = std::fs::File::open(path).map_err(|err| Error::Io {
            path: path.to_path_buf(),
            err,
        })?;
        let mut b = Vec::with_capacity(16);
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut f, 16), &mut b).map_err(
            |err| Error::Io {
                path: path.to_path_buf(),
                err,
            },
        )?;
        b
    };
    if looks_like_safetensors_header(&head) {
        // SAFETY: the file is mapped read-only; like any mmap it must not be truncated while
        // mapped (candle's reader has the same contract). Every tensor is copied out on `get`.
        let mmap = unsafe { candle::safetensors::MmapedSafetensors::new(path) }.map_err(|e| {
            Error::Parse {
                what: path.display().to_string(),
                msg: format!("corrupt safetensors file: {e}"),
            }
        })?;
        let backend = Checked(mmap);
        return Ok(VarBuilder::from_backend(
            Box::new(backend),
            dtype,
            device.clone(),
        ));
    }
    Ok(TensorMap::load(path, device)?.var_builder_dtype(device, dtype))
}

/// Reads `name` with `shape` from `vb` in the `VarBuilder`'s dtype (read once), with this
/// crate's errors: a missing tensor is [`Error::MissingTensor`] and a wrong shape
/// [`Error::TensorShape`] (both with the full key); NaN or ∞ values are refused by this
/// module's backends.
pub fn tensor(vb: &VarBuilder, name: &str, shape: &[usize]) -> Result<Tensor> {
    let key = match vb.prefix() {
        p if p.is_empty() => name.to_string(),
        p => format!("{p}.{name}"),
    };
    if !vb.contains_tensor(name) {
        return Err(Error::MissingTensor { key });
    }
    match vb.get(shape, name) {
        Ok(t) => Ok(t),
        Err(e) => {
            // Only on failure: read it again, unchecked, to name the shape it has.
            let found = vb.get_unchecked(name).map(|t| t.dims().to_vec());
            match found {
                Ok(found) if found != shape => Err(Error::TensorShape {
                    key,
                    expected: shape.to_vec(),
                    found,
                }),
                _ => Err(e.into()),
            }
        }
    }
}

/// A memory-mapped safetensors file whose tensors are checked like [`TensorMap::get`]'s.
struct Checked(candle::safetensors::MmapedSafetensors);

impl SimpleBackend for Checked {
    fn get(
        &self,
        s: candle::Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle::Result<Tensor> {
        let _ = h; // a checkpoint has every tensor; nothing is initialized
        let t = self.0.load(name, dev)?;
        if t.shape() != &s {
            candle::bail!(
                "tensor `{name}`: expected shape {:?}, found {:?}",
                s.dims(),
                t.dims()
            );
        }
        check_values(name, &t)
            .map_err(candle::Error::wrap)?
            .to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle::Result<Tensor> {
        SimpleBackend::get_unchecked(&self.0, name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        SimpleBackend::contains_tensor(&self.0, name)
    }
}

/// A checkpoint held in memory as a `VarBuilder` backend: lookups check dtype, shape and
/// values as [`TensorMap::get`] does.
impl SimpleBackend for TensorMap {
    fn get(
        &self,
        s: candle::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle::Result<Tensor> {
        let t = TensorMap::get(self, name, s.dims()).map_err(candle::Error::wrap)?;
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle::Result<Tensor> {
        match self.tensors.get(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => Err(candle::Error::CannotFindTensor {
                path: name.to_string(),
            }),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

impl TensorMap {
    /// The map as a `VarBuilder` (f32 on `device`); tensors are shared, not copied.
    pub fn var_builder(&self, device: &Device) -> VarBuilder<'static> {
        self.var_builder_dtype(device, DType::F32)
    }

    /// The map as a `VarBuilder` that gives tensors in `dtype` (f16 and bf16 for GPUs).
    pub fn var_builder_dtype(&self, device: &Device, dtype: DType) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// The device of the tensors (the CPU for an empty map).
    pub fn device(&self) -> Device {
        self.tensors
            .values()
            .next()
            .map_or(Device::Cpu, |t| t.device().clone())
    }

    /// Wraps already-loaded tensors.
    pub fn new(tensors: HashMap<String, Tensor>) -> Self {
        TensorMap { tensors }
    }

    /// Reads a safetensors file onto `device`.
    pub fn from_safetensors(path: &Path, device: &Device) -> Result<Self> {
        let data = read_file(path)?;
        Self::from_bytes(&data, &path.display().to_string(), device).map_err(|e| e.in_file(path))
    }

    /// Reads a checkpoint in any supported format, told apart by its first bytes: PyTorch legacy
    /// `.pth`, PyTorch zip `.pth`, or safetensors. Errors name the file.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let data = read_file(path)?;
        Self::from_bytes(&data, &path.display().to_string(), device).map_err(|e| e.in_file(path))
    }

    /// [`TensorMap::load`] on bytes in memory; `what` names them in parse errors.
    pub fn from_bytes(data: &[u8], what: &str, device: &Device) -> Result<Self> {
        let tensors = if pth::is_legacy(data) {
            pth::read_legacy(data, what, device)?
        } else if pth::is_zip(data) {
            pth::read_zip(data, what, device)?
        } else if looks_like_safetensors(data) {
            candle::safetensors::load_buffer(data, device).map_err(|e| Error::Parse {
                what: what.to_string(),
                msg: format!("corrupt safetensors file: {e}"),
            })?
        } else {
            return Err(Error::Parse {
                what: what.to_string(),
                msg: "not a PyTorch checkpoint (.pth, legacy or zip) or a safetensors file".into(),
            });
        };
        Ok(TensorMap::new(tensors))
    }

    /// The tensor `key` as f32 with exactly `shape`.
    pub fn get(&self, key: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensors.get(key).ok_or_else(|| Error::MissingTensor {
            key: key.to_string(),
        })?;
        if t.dims() != shape {
            return Err(Error::TensorShape {
                key: key.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        check_values(key, t)
    }

    /// The tensor `key` as stored (any dtype and shape), unchecked.
    pub fn get_raw(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
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

/// A safetensors file starts with a little-endian u64 header length and a JSON object.
fn looks_like_safetensors(data: &[u8]) -> bool {
    data.len() >= 9
        && data[8] == b'{'
        && u64::from_le_bytes([
            data[0], data[1], data[2], data[3], data[4], data[5], data[6], data[7],
        ]) <= (data.len() - 8) as u64
}

/// A checkpoint tensor as f32: float dtypes only, finite values only (a NaN or ∞ weight would
/// silently turn every output black).
fn check_values(key: &str, t: &Tensor) -> Result<Tensor> {
    let t = match t.dtype() {
        DType::F32 => t.clone(),
        DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32)?,
        other => {
            return Err(Error::Input {
                layer: "checkpoint",
                msg: format!(
                    "tensor `{key}`: expected a float dtype (f32, f16, bf16, f64), found {other:?}"
                ),
            })
        }
    };
    let finite = t.elem_count() == 0
        || t.flatten_all()?
            .abs()?
            .max(0)?
            .to_scalar::<f32>()?
            .is_finite();
    if !finite {
        return Err(Error::Input {
            layer: "checkpoint",
            msg: format!("tensor `{key}` contains NaN or infinite values"),
        });
    }
    Ok(t)
}

fn not_a_folder(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            err: std::io::Error::other("is a folder, not a weights file"),
        });
    }
    Ok(())
}

/// The first bytes of a safetensors file: a little-endian header length, then `{`.
fn looks_like_safetensors_header(head: &[u8]) -> bool {
    head.len() >= 9 && head[8] == b'{'
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    not_a_folder(path)?;
    std::fs::read(path).map_err(|err| Error::Io {
        path: path.to_path_buf(),
        err,
    })
}

/// Writes float32 tensors to a safetensors file atomically (a temporary file in the same folder,
/// then a rename), with `metadata` in the header. Tensors are written sorted by name.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, FloatTensor)],
    metadata: std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            // safetensors is little-endian, like every target Candle supports.
            let bytes: &[u8] = bytemuck::cast_slice(&t.data);
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Parse {
                    what: name.clone(),
                    msg: e.to_string(),
                })
        })
        .collect::<Result<_>>()?;
    let meta: HashMap<String, String> = metadata.into_iter().collect();
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| Error::Parse {
        what: path.display().to_string(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &canonical_header(bytes, path)?)
}

/// Writes every tensor of `map` (names and dtypes kept) to a safetensors file atomically, with
/// `metadata` in the header.
pub fn write_tensors(
    path: &Path,
    map: &TensorMap,
    metadata: std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let meta: HashMap<String, String> = metadata.into_iter().collect();
    let items: Vec<(&str, &Tensor)> = map
        .keys()
        .into_iter()
        .filter_map(|k| map.tensors.get(k).map(|t| (k, t)))
        .collect();
    let bytes = safetensors::serialize(items, Some(meta)).map_err(|e| Error::Parse {
        what: path.display().to_string(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &canonical_header(bytes, path)?)
}

/// Rewrites a safetensors file's JSON header with sorted keys: `safetensors::serialize` writes
/// the metadata map in hash order, so the same tensors would give different bytes on every run.
/// The header stays padded with spaces to a multiple of 8 bytes (the format's alignment).
fn canonical_header(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    let bad = |msg: &str| Error::Parse {
        what: path.display().to_string(),
        msg: msg.to_string(),
    };
    let n = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| bad("safetensors output without a header"))? as usize;
    let header = bytes
        .get(8..8 + n)
        .ok_or_else(|| bad("safetensors header out of range"))?;
    // serde_json's map is a BTreeMap (no `preserve_order`), so this sorts every object.
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| bad(&format!("safetensors header: {e}")))?;
    let mut text = serde_json::to_vec(&value).map_err(|e| bad(&e.to_string()))?;
    while (8 + text.len()) % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |err| Error::Io {
        path: path.to_path_buf(),
        err,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "the folder {} does not exist (or is not a folder)",
                dir.display()
            ),
        )));
    }
    // tempfile's errors name the temporary file; report the OS error for the real path.
    let plain = |e: std::io::Error| {
        let msg = e.to_string();
        let msg = msg.split(" at path ").next().unwrap_or(&msg).to_string();
        io(std::io::Error::new(e.kind(), msg))
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(std::process::id()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(plain)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    // Temporary files are created private (0600); the result is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io)?;
    }
    tmp.persist(path).map_err(|e| plain(e.error))?;
    Ok(())
}

/// The start of [`write_atomic`]'s temporary files: `.normstyle-tmp.<host>.<pid>.<random>.tmp`,
/// so a later run can tell its own leftovers (from a process that was killed) from the files
/// of a run still going, even on a folder shared between machines.
pub const TEMP_PREFIX: &str = ".normstyle-tmp.";

/// The start of the temporary files of process `pid` on this machine.
pub fn temp_prefix(pid: u32) -> String {
    format!("{TEMP_PREFIX}{}.{pid}.", host())
}

/// This machine's name for temporary-file names (dots replaced; `host` if unknown).
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "host".into()
    } else {
        name
    }
}

/// Removes the temporary files of [`write_atomic`] in `dir` that no running process will
/// finish: those of this machine whose process is gone, and any older than `max_age` (a file
/// from another machine of a shared folder cannot be checked otherwise). Returns what it removed.
pub fn remove_stale_temps(dir: &Path, max_age: std::time::Duration) -> Result<Vec<PathBuf>> {
    let me = host();
    let mut removed = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|err| Error::Io {
        path: dir.to_path_buf(),
        err,
    })?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let mut parts = rest.splitn(3, '.');
        let (h, pid) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let dead = h == me && pid.parse::<u32>().is_ok_and(|p| !process_alive(p));
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > max_age);
        if (dead || old) && std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    Ok(removed)
}

/// Whether process `pid` runs on this machine (Linux: /proc; elsewhere assumed alive, so only
/// age removes a file).
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
