//! `normstyle convert IN OUT.safetensors`: any supported checkpoint → safetensors, key names kept.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use normstyle::weights::{sha256_hex, write_tensors, TensorMap};

/// Arguments of `normstyle convert`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle convert vgg_normalised.pth vgg_normalised.safetensors
  normstyle convert decoder.pth decoder.safetensors --force")]
pub struct Args {
    /// Checkpoint to read: PyTorch .pth (legacy or zip format) or safetensors.
    #[arg(value_hint = clap::ValueHint::FilePath)]
    input: PathBuf,
    /// The safetensors file to write (tensors keep their names and dtypes; the metadata records
    /// the source file's name and sha256).
    #[arg(value_hint = clap::ValueHint::FilePath)]
    output: PathBuf,
    /// Overwrite an existing output.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "{}: the output must be a .safetensors file",
            args.output.display()
        );
    }
    if args.output.exists() && !args.force {
        bail!(
            "{}: already exists (use --force to overwrite)",
            args.output.display()
        );
    }
    if args.input.canonicalize().ok() == args.output.canonicalize().ok() && args.output.exists() {
        bail!(
            "{}: the output would overwrite the input",
            args.output.display()
        );
    }
    let bytes =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let map = TensorMap::from_bytes(
        &bytes,
        &args.input.display().to_string(),
        &candle::Device::Cpu,
    )?;
    let mut meta = BTreeMap::new();
    meta.insert("source_sha256".to_string(), sha256_hex(&bytes));
    meta.insert(
        "source_file".to_string(),
        args.input
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    );
    meta.insert(
        "converted_by".to_string(),
        format!("normstyle {}", env!("CARGO_PKG_VERSION")),
    );
    write_tensors(&args.output, &map, meta)?;
    eprintln!(
        "{} → {} ({} tensors)",
        args.input.display(),
        args.output.display(),
        map.keys().len()
    );
    Ok(ExitCode::SUCCESS)
}
