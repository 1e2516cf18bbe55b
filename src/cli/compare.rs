//! `normstyle compare`: the same photos stylized with each normalization variant, side by side,
//! as one labeled grid, with the numbers of every tile (table on stdout, JSON, CSV, HTML).
//! The work is [`normstyle::pipeline::compare`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use normstyle::imaging;
use normstyle::pipeline::{compare, CompareOptions, Labeled};
use normstyle::weights::write_atomic;
use normstyle::NormKind;

use super::{check_output, progress_bar, ModelArgs};

/// Arguments of `normstyle compare`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle compare photo.jpg --style painting.jpg -o grid.png
  normstyle compare a.jpg b.jpg c.jpg --style s.jpg --norms in,bn,ln,gn:8 --json numbers.json
  normstyle compare a.jpg --style s.jpg --alpha-sweep 0,0.5,1 --html report.html
  normstyle compare a.jpg --style s.jpg --norms in,bn --batch-of b.jpg c.jpg   (BN over 3 photos)
  normstyle compare a.jpg b.jpg --style s.jpg --models s_in.safetensors,s_bn.safetensors,s_ln.safetensors")]
pub struct Args {
    /// Content images: one grid row each.
    #[arg(required = true, value_hint = clap::ValueHint::FilePath)]
    content: Vec<PathBuf>,
    /// The style image.
    #[arg(short, long, required = true, value_hint = clap::ValueHint::FilePath)]
    style: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Variants (columns), comma-separated: in, bn, ln, gn, gn:G.
    #[arg(long, value_delimiter = ',', default_value = "in,bn,ln,gn")]
    norms: Vec<String>,
    /// Trained networks side by side instead (columns), comma-separated .safetensors from
    /// `normstyle train` (or fast_neural_style .pth); --style is the training style, and the
    /// numbers add its content and style losses under the embedded predictor.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["norms", "alpha_sweep", "batch_of", "alpha"], value_hint = clap::ValueHint::FilePath)]
    models: Vec<PathBuf>,
    /// Style strength in [0, 1].
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    alpha: f64,
    /// Several strengths as an extra axis: every variant at each α (columns).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    alpha_sweep: Option<Vec<f64>>,
    /// Extra photos that join the batch for `bn` statistics without getting a row of their own.
    #[arg(long, num_args = 1.., value_hint = clap::ValueHint::FilePath)]
    batch_of: Vec<PathBuf>,
    /// Tile size: the longer side of each picture, in pixels (the model runs at this size).
    #[arg(long, default_value_t = 384, value_parser = clap::value_parser!(u32).range(32..=2048))]
    tile: u32,
    /// A title line on top of the grid.
    #[arg(long)]
    title: Option<String>,
    /// The grid image (PNG, JPEG or WebP by extension).
    #[arg(short, long, default_value = "compare.png", value_hint = clap::ValueHint::FilePath)]
    output: PathBuf,
    /// Also write the numbers as JSON.
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    json: Option<PathBuf>,
    /// Also write the numbers as CSV.
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    csv: Option<PathBuf>,
    /// Also write one self-contained HTML page (grid embedded, sortable table).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    html: Option<PathBuf>,
    /// JPEG quality of the grid (1–100).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Overwrite existing outputs.
    #[arg(long)]
    force: bool,
    /// No progress messages on stderr.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = CompareOptions {
        norms: args
            .norms
            .iter()
            .map(|s| s.parse::<NormKind>())
            .collect::<Result<_, _>>()?,
        alphas: args.alpha_sweep.clone().unwrap_or_else(|| vec![args.alpha]),
        sweep: args.alpha_sweep.is_some(),
        tile: args.tile,
        title: args.title.clone(),
    };
    args.model.check()?;
    imaging::format_for(&args.output).with_context(|| format!("-o {}", args.output.display()))?;
    let inputs: Vec<PathBuf> = args
        .content
        .iter()
        .chain([&args.style])
        .chain(&args.batch_of)
        .cloned()
        .collect();
    for p in [&args.output]
        .into_iter()
        .chain(&args.json)
        .chain(&args.csv)
        .chain(&args.html)
    {
        check_output(p, &inputs, args.force)?;
    }
    let load = |p: &PathBuf| -> anyhow::Result<Labeled> {
        Ok(Labeled {
            label: p.display().to_string(),
            image: imaging::load_rgb(p)?,
        })
    };
    let contents: Vec<Labeled> = args.content.iter().map(load).collect::<Result<_, _>>()?;
    let batch_of: Vec<Labeled> = args.batch_of.iter().map(load).collect::<Result<_, _>>()?;
    let style = load(&args.style)?;
    let cmp = if args.models.is_empty() {
        let st = args.model.stylizer(args.quiet)?;
        let bar = progress_bar(opts.norms.len() * opts.alphas.len(), args.quiet);
        let cmp = compare(&st, &contents, &batch_of, &style, &opts, || bar.inc(1))?;
        bar.finish_and_clear();
        cmp
    } else {
        if args.model.model != super::Model::Magenta {
            anyhow::bail!("--model: give the trained networks with --models only");
        }
        let device = normstyle::device::device(&args.model.device)?;
        let models = args
            .models
            .iter()
            .map(|p| {
                let label = p.file_stem().map_or_else(
                    || p.display().to_string(),
                    |s| s.to_string_lossy().into_owned(),
                );
                Ok((
                    label,
                    normstyle::Stylizer::trained(p, &device)
                        .with_context(|| format!("--models {}", p.display()))?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let loss =
            normstyle::train::LossNet::predictor(&device, normstyle::train::StyleLoss::Stats)?;
        let bar = progress_bar(models.len(), args.quiet);
        let cmp = normstyle::pipeline::compare_trained(
            &models,
            &contents,
            &style,
            &loss,
            args.tile,
            args.title.clone(),
            || bar.inc(1),
        )?;
        bar.finish_and_clear();
        cmp
    };

    imaging::save(&cmp.grid, &args.output, args.quality)?;
    print!("{}", cmp.table());
    let write = |p: &Path, text: String| {
        write_atomic(p, text.as_bytes()).with_context(|| format!("writing {}", p.display()))
    };
    if let Some(p) = &args.json {
        let mut doc = serde_json::to_value(&cmp)?;
        doc["grid"] = args.output.display().to_string().into();
        doc["style"] = args.style.display().to_string().into();
        write(p, serde_json::to_string_pretty(&doc)? + "\n")?;
    }
    if let Some(p) = &args.csv {
        write(p, cmp.csv())?;
    }
    if let Some(p) = &args.html {
        write(
            p,
            cmp.html(&imaging::encode(&cmp.grid, image::ImageFormat::Png, 95)?),
        )?;
    }
    if !args.quiet {
        let (w, h) = cmp.grid.dimensions();
        eprintln!("{} ({w}×{h})", args.output.display());
    }
    Ok(ExitCode::SUCCESS)
}
