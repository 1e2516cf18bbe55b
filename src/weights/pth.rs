//! PyTorch checkpoints: the legacy serialization (before PyTorch 1.6, used by the released AdaIN
//! weights; Candle cannot read it) and the zip format of PyTorch ≥ 1.6, both read through the
//! crate's own [`pickle`] VM.
//!
//! Legacy layout (docs/ARCHITECTURE.md §4): four pickles — the magic number 0x1950a86a20f9469cfc6c, the
//! protocol version 1001, a sys-info dict, the state dict whose tensors point at storages by
//! key — then the pickled list of storage keys, then each storage in that order as a
//! little-endian u64 element count and its raw bytes.
//! Zip layout: `<archive>/data.pkl` (the state dict) and `<archive>/data/<key>` (raw storages).

use std::collections::HashMap;
use std::io::Read;

use candle::{Device, Tensor};

use super::pickle::{self, StorageRef, TensorRef, Value};
use crate::{Error, Result};

/// The legacy format's magic number (the first pickle).
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// The legacy format's protocol version (the second pickle).
const LEGACY_PROTOCOL: i128 = 1001;

/// Whether `data` starts like a legacy `.pth` file (a protocol-2 pickle of a 10-byte long).
pub fn is_legacy(data: &[u8]) -> bool {
    data.starts_with(b"\x80\x02\x8a\x0a")
}

/// Whether `data` starts like a zip archive.
pub fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04")
}

/// The tensors of a legacy-format checkpoint, by state-dict key. `what` names the file.
pub fn read_legacy(data: &[u8], what: &str, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bad = |msg: String| Error::Parse {
        what: what.to_string(),
        msg,
    };
    let (magic, pos) = pickle::load(data, 0, what)?;
    if magic != Value::Int(LEGACY_MAGIC) {
        return Err(bad("not a legacy PyTorch file (wrong magic number)".into()));
    }
    let (proto, pos) = pickle::load(data, pos, what)?;
    if proto != Value::Int(LEGACY_PROTOCOL) {
        return Err(bad(format!(
            "unsupported legacy protocol version {proto:?} (expected 1001)"
        )));
    }
    let (info, pos) = pickle::load(data, pos, what)?;
    if let Value::Dict(items) = &info {
        let little = items
            .iter()
            .find(|(k, _)| *k == Value::Str("little_endian".into()));
        if matches!(little, Some((_, Value::Bool(false)))) {
            return Err(bad("big-endian checkpoints are not supported".into()));
        }
    }
    let (state, pos) = pickle::load(data, pos, what)?;
    let (keys, mut pos) = pickle::load(data, pos, what)?;
    let Value::List(keys) = keys else {
        return Err(bad("the storage key list is missing".into()));
    };
    let tensors = collect_tensors(state, what)?;
    // Storage sizes come from the state dict; the byte stream must agree with them.
    let mut wanted: HashMap<&str, &StorageRef> = HashMap::new();
    for t in tensors.values() {
        wanted.insert(t.storage.key.as_str(), &t.storage);
    }
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in &keys {
        let Value::Str(key) = key else {
            return Err(bad("a storage key is not a string".into()));
        };
        let head = data
            .get(pos..pos + 8)
            .ok_or_else(|| bad(format!("truncated before storage `{key}`")))?;
        let numel = u64::from_le_bytes(head.try_into().map_err(|_| bad("storage header".into()))?);
        pos += 8;
        // The element size comes from the tensor that uses the storage.
        let size = wanted
            .get(key.as_str())
            .map(|s| s.dtype.size_in_bytes())
            .ok_or_else(|| bad(format!("storage `{key}` is used by no tensor")))?;
        let len = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(size))
            .filter(|&n| n <= data.len() - pos)
            .ok_or_else(|| {
                bad(format!(
                    "storage `{key}` claims {numel} elements, more than the file holds (truncated?)"
                ))
            })?;
        if let Some(s) = wanted.get(key.as_str()) {
            if s.numel as u64 != numel {
                return Err(bad(format!(
                    "storage `{key}` holds {numel} elements, the state dict says {}",
                    s.numel
                )));
            }
        }
        storages.insert(key.clone(), &data[pos..pos + len]);
        pos += len;
    }
    build(tensors, |key| storages.get(key).copied(), what, device)
}

/// The tensors of a zip-format checkpoint (PyTorch ≥ 1.6), by state-dict key.
pub fn read_zip(data: &[u8], what: &str, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bad = |msg: String| Error::Parse {
        what: what.to_string(),
        msg,
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(data))
        .map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("/data.pkl") || n == "data.pkl")
        .ok_or_else(|| bad("zip archive without data.pkl (not a PyTorch checkpoint)".into()))?;
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or_default().to_string();
    let mut entry = |name: &str, limit: u64| -> Result<Vec<u8>> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| bad(format!("entry `{name}`: {e}")))?;
        if f.size() > limit {
            return Err(bad(format!(
                "entry `{name}` is {} bytes, expected at most {limit}",
                f.size()
            )));
        }
        let mut buf = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut buf)
            .map_err(|e| bad(format!("entry `{name}`: {e}")))?;
        Ok(buf)
    };
    let limit = data.len() as u64;
    if let Ok(order) = entry(&format!("{prefix}byteorder"), 16) {
        if order != b"little" {
            return Err(bad("big-endian checkpoints are not supported".into()));
        }
    }
    let state = entry(&pkl, limit)?;
    let (state, _) = pickle::load(&state, 0, what)?;
    let tensors = collect_tensors(state, what)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for t in tensors.values() {
        let s = &t.storage;
        if storages.contains_key(&s.key) {
            continue;
        }
        let bytes = entry(&format!("{prefix}data/{}", s.key), limit)?;
        if bytes.len() != s.numel.saturating_mul(s.dtype.size_in_bytes()) {
            return Err(bad(format!(
                "storage `{}` has {} bytes, the state dict says {} elements of {:?}",
                s.key,
                bytes.len(),
                s.numel,
                s.dtype
            )));
        }
        storages.insert(s.key.clone(), bytes);
    }
    build(
        tensors,
        |key| storages.get(key).map(Vec::as_slice),
        what,
        device,
    )
}

/// The state dict's `key → tensor view` entries. A checkpoint that wraps its state dict (e.g.
/// `{"state_dict": {...}}`) is unwrapped when the wrapper holds exactly one dict of tensors.
fn collect_tensors(state: Value, what: &str) -> Result<HashMap<String, TensorRef>> {
    let bad = |msg: &str| Error::Parse {
        what: what.to_string(),
        msg: msg.to_string(),
    };
    let Value::Dict(items) = state else {
        return Err(bad(
            "the checkpoint is not a state dict (no dict of tensors)",
        ));
    };
    let mut out = HashMap::new();
    let mut nested = Vec::new();
    for (k, v) in items {
        match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => {
                out.insert(k, t);
            }
            (_, d @ Value::Dict(_)) => nested.push(d),
            _ => {}
        }
    }
    if out.is_empty() && nested.len() == 1 {
        if let Some(d) = nested.pop() {
            return collect_tensors(d, what);
        }
    }
    if out.is_empty() {
        return Err(bad("the checkpoint holds no tensors"));
    }
    Ok(out)
}

/// Materializes every tensor view from its storage bytes (little-endian).
fn build<'a>(
    tensors: HashMap<String, TensorRef>,
    storage: impl Fn(&str) -> Option<&'a [u8]>,
    what: &str,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    if cfg!(target_endian = "big") {
        return Err(Error::Parse {
            what: what.to_string(),
            msg: "reading checkpoints needs a little-endian machine".into(),
        });
    }
    let mut out = HashMap::with_capacity(tensors.len());
    for (key, t) in tensors {
        let bad = |msg: String| Error::Parse {
            what: what.to_string(),
            msg: format!("tensor `{key}`: {msg}"),
        };
        let bytes = storage(&t.storage.key)
            .ok_or_else(|| bad(format!("storage `{}` is missing", t.storage.key)))?;
        let size = t.storage.dtype.size_in_bytes();
        let numel = t.storage.numel.min(bytes.len() / size);
        let count: usize = t
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("shape overflows".into()))?;
        // A view may repeat storage elements (stride 0), but not so much that a few bytes of
        // file could ask for gigabytes.
        if count > numel.saturating_mul(16).max(16) {
            return Err(bad(format!(
                "view of {count} elements over a storage of {numel} (refused: a checkpoint tensor repeats its storage at most 16×)"
            )));
        }
        // The last element the view touches must lie inside the storage.
        if count > 0 {
            let last = t
                .shape
                .iter()
                .zip(&t.stride)
                .try_fold(t.offset, |a, (&d, &s)| {
                    (d - 1).checked_mul(s).and_then(|x| x.checked_add(a))
                });
            if last.is_none_or(|l| l >= numel) {
                return Err(bad(format!(
                    "view (offset {}, shape {:?}, stride {:?}) exceeds its storage of {numel} elements",
                    t.offset, t.shape, t.stride
                )));
            }
        }
        let contiguous = t
            .shape
            .iter()
            .zip(&t.stride)
            .rev()
            .try_fold(1usize, |expect, (&d, &s)| {
                (d == 1 || s == expect).then_some(expect * d)
            })
            .is_some();
        let raw: std::borrow::Cow<'_, [u8]> = if count == 0 {
            // An empty tensor reads nothing, wherever its offset points (found by fuzzing).
            std::borrow::Cow::Borrowed(&[])
        } else if contiguous {
            let start = t.offset * size;
            std::borrow::Cow::Borrowed(&bytes[start..start + count * size])
        } else {
            let mut v = Vec::with_capacity(count * size);
            let mut idx = vec![0usize; t.shape.len()];
            for _ in 0..count {
                let e: usize =
                    t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
                v.extend_from_slice(&bytes[e * size..(e + 1) * size]);
                for d in (0..idx.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < t.shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
            std::borrow::Cow::Owned(v)
        };
        let tensor = Tensor::from_raw_buffer(&raw, t.storage.dtype, &t.shape, &Device::Cpu)?
            .to_device(device)?;
        out.insert(key, tensor);
    }
    Ok(out)
}
