//! `normstyle presets`: the 26 built-in styles of the 26-style network on one photo, as a
//! labeled contact sheet.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::grid::{self, Cell};
use crate::imaging;
use crate::model::magenta::{Multistyle, PRESET_COUNT};
use crate::norm::NormKind;

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
    if args.output.exists() && !args.force {
        bail!(
            "{}: already exists (use --force to overwrite)",
            args.output.display()
        );
    }
    let device = crate::device::device(&args.device)?;
    let photo = match &args.photo {
        Some(p) => imaging::load_rgb(p)?,
        None => imaging::decode_rgb(DEFAULT_PHOTO, "golden_gate.jpg")?,
    };
    let photo = imaging::cap_long_side(photo, args.tile);
    let x = imaging::to_tensor(&photo, &device)?;
    let net = Multistyle::embedded(&device)?;
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(PRESET_COUNT as u64)
    };
    let mut cells = vec![Cell {
        image: Some(imaging::to_rgb8(&x)?),
        lines: vec!["photo".into()],
    }];
    for i in 0..PRESET_COUNT {
        let mut w = vec![0.0; PRESET_COUNT];
        w[i] = 1.0;
        let y = net.forward(std::slice::from_ref(&x), &w, norm)?;
        cells.push(Cell {
            image: Some(imaging::to_rgb8(&y[0])?),
            lines: vec![format!("--preset {i}")],
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let columns = 9;
    let rows: Vec<Vec<Cell>> = cells.chunks(columns).map(<[Cell]>::to_vec).collect();
    let title = format!("normstyle: the 26 presets (--norm {norm})");
    let sheet = grid::render(&rows, args.tile, Some(&title))?;
    imaging::save(&sheet, &args.output, args.quality)?;
    if !args.quiet {
        eprintln!(
            "{} ({}×{})",
            args.output.display(),
            sheet.width(),
            sheet.height()
        );
    }
    Ok(ExitCode::SUCCESS)
}
