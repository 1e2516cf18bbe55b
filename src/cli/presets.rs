//! `normstyle presets`: the 26 built-in styles of the 26-style network on one photo, as a
//! labeled contact sheet.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use normstyle::imaging;
use normstyle::model::magenta::PRESET_COUNT;
use normstyle::pipeline::presets_sheet;
use normstyle::{NormKind, Stylizer};

use super::{check_output, progress_bar};

/// The photo used when `--photo` is not given (embedded, so installed binaries have it too).
static DEFAULT_PHOTO: &[u8] = include_bytes!("../../assets/photos/golden_gate.jpg");

/// Arguments of `normstyle presets`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle presets -o presets.png
  normstyle presets --photo me.jpg --tile 192 --norm ln -o sheet.png")]
pub struct Args {
    /// The sheet to write (PNG, JPEG or WebP by extension).
    #[arg(short, long, default_value = "presets.png", value_hint = clap::ValueHint::FilePath)]
    output: PathBuf,
    /// The photo to stylize (default: the bundled golden_gate.jpg).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    photo: Option<PathBuf>,
    /// Size of each tile's longer side in pixels (the photo runs at this size).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(32..=2048))]
    tile: u32,
    /// Statistics of the conditional-IN layers (in, bn, ln, gn, gn:G).
    #[arg(long, default_value = "in")]
    norm: String,
    /// JPEG quality (1–100).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Overwrite an existing sheet.
    #[arg(long)]
    force: bool,
    /// Device: cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress messages on stderr.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let norm: NormKind = args.norm.parse()?;
    imaging::format_for(&args.output).with_context(|| format!("-o {}", args.output.display()))?;
    check_output(&args.output, &[], args.force)?;
    let photo = match &args.photo {
        Some(p) => imaging::load_rgb(p)?,
        None => imaging::decode_rgb(DEFAULT_PHOTO, "golden_gate.jpg")?,
    };
    let device = normstyle::device::device(&args.device)?;
    let st = Stylizer::magenta(&device)?
        .with_norm(norm)
        .with_content_size(Some(args.tile));
    let bar = progress_bar(PRESET_COUNT, args.quiet);
    let sheet = presets_sheet(&st, photo, args.tile, || bar.inc(1))?;
    bar.finish_and_clear();
    imaging::save(&sheet, &args.output, args.quality)?;
    if !args.quiet {
        let (w, h) = sheet.dimensions();
        eprintln!("{} ({w}×{h})", args.output.display());
    }
    Ok(ExitCode::SUCCESS)
}
