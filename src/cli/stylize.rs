//! `normstyle stylize`: paint content photos in a style.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use candle::Tensor;

use crate::imaging;
use crate::model::magenta::{Multistyle, StylePredictor, Transformer, PRESET_COUNT};
use crate::norm::NormKind;

/// The model families `--model` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Model {
    /// Magenta arbitrary-style network (Ghiasi et al. 2017), embedded weights; with `--preset`,
    /// the 26-style network (Dumoulin et al. 2017).
    Magenta,
}

/// Arguments of `normstyle stylize`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle stylize photo.jpg --style painting.jpg -o out.png
  normstyle stylize a.jpg b.jpg --style s1.jpg --style s2.jpg -o outdir/     (4 outputs)
  normstyle stylize photo.jpg --style s1.jpg --style s2.jpg --style-weights 1,3
  normstyle stylize photo.jpg --preset 3:0.5,12:0.5
  normstyle stylize a.jpg b.jpg --style s.jpg --norm bn     (BN statistics over both photos)")]
pub struct Args {
    /// Content images (PNG, JPEG, WebP).
    #[arg(required = true, value_hint = clap::ValueHint::FilePath)]
    content: Vec<PathBuf>,
    /// Style image(s). Several without --style-weights: one output per content × style.
    #[arg(short, long, value_hint = clap::ValueHint::FilePath)]
    style: Vec<PathBuf>,
    /// Blend the styles into one: non-negative weights, one per --style, normalized to sum 1.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    style_weights: Option<Vec<f64>>,
    /// A built-in style of the 26-style network instead of --style: N (0–25), or a blend
    /// N:w,M:w (weights ≥ 0, normalized to sum 1).
    #[arg(long, conflicts_with_all = ["style", "style_weights"])]
    preset: Option<String>,
    /// Model family.
    #[arg(long, value_enum, default_value_t = Model::Magenta)]
    model: Model,
    /// Style strength in [0, 1]: interpolates the style vector with the content's own
    /// (v = α·v_style + (1 − α)·v_content).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    alpha: f64,
    /// Statistics of the conditional-IN layers: in, bn (pooled over all contents), ln, gn, gn:G.
    #[arg(long, default_value = "in")]
    norm: String,
    /// Cap on the content's longer side in pixels (Lanczos downscale); 0 keeps the size. The
    /// output has the size the content runs at.
    #[arg(long, default_value_t = 1024)]
    content_size: u32,
    /// Output file (one result; `-` writes PNG to stdout) or folder (several results). Default:
    /// `<content>_stylized_<style>.png` in the current folder.
    #[arg(short, long, value_hint = clap::ValueHint::AnyPath)]
    output: Option<PathBuf>,
    /// Overwrite existing outputs.
    #[arg(long)]
    force: bool,
    /// JPEG quality (1–100).
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Device: cpu, cuda or metal (never a silent fallback).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print one JSON object per output on stdout.
    #[arg(long)]
    json: bool,
    /// No progress messages on stderr.
    #[arg(short, long)]
    quiet: bool,
}

/// What one output is styled with.
enum StyleSpec {
    /// Style images and their blend weights (summing to 1).
    Images(Vec<(PathBuf, f64)>),
    /// 26-style network weights (summing to 1).
    Preset(Vec<f64>),
}

impl StyleSpec {
    fn label(&self) -> String {
        match self {
            StyleSpec::Images(v) => v.iter().map(|(p, _)| stem(p)).collect::<Vec<_>>().join("+"),
            StyleSpec::Preset(w) => {
                let ids: Vec<String> = (0..w.len())
                    .filter(|&i| w[i] > 0.0)
                    .map(|i| i.to_string())
                    .collect();
                format!("preset{}", ids.join("-"))
            }
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let norm: NormKind = args.norm.parse()?;
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha: {} is outside [0, 1]", args.alpha);
    }
    let specs = style_specs(&args)?;
    let jobs: Vec<(usize, usize)> = (0..specs.len())
        .flat_map(|s| (0..args.content.len()).map(move |c| (c, s)))
        .collect();
    let outputs = output_paths(&args, &specs)?;
    let device = crate::device::device(&args.device)?;
    let log = |msg: String| {
        if !args.quiet {
            eprintln!("{msg}");
        }
    };

    // Decode every input first: a broken file fails the call before any work or output.
    let contents: Vec<imaging::Rgb> = args
        .content
        .iter()
        .map(|p| imaging::load_rgb(p).map(|img| imaging::cap_long_side(img, args.content_size)))
        .collect::<Result<_, _>>()?;
    let content_tensors: Vec<Tensor> = contents
        .iter()
        .map(|i| imaging::to_tensor(i, &device))
        .collect::<Result<_, _>>()?;

    let needs_predictor = matches!(specs.first(), Some(StyleSpec::Images(_)));
    let predictor = if needs_predictor {
        Some(StylePredictor::embedded(&device)?)
    } else {
        None
    };
    let vector_of = |img: &imaging::Rgb| -> anyhow::Result<Vec<f32>> {
        let p = predictor.as_ref().context("style predictor not loaded")?;
        let t = imaging::to_tensor(&imaging::center_square(img, 256), &device)?;
        Ok(p.forward(&t)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let content_vectors: Vec<Vec<f32>> = if needs_predictor && args.alpha < 1.0 {
        contents
            .iter()
            .map(&vector_of)
            .collect::<anyhow::Result<_>>()?
    } else {
        Vec::new()
    };

    let transformer = if needs_predictor {
        Some(Transformer::embedded(&device)?)
    } else {
        None
    };
    let multistyle = if needs_predictor {
        None
    } else {
        Some(Multistyle::embedded(&device)?)
    };
    let mut stdout = std::io::stdout().lock();
    for (s, spec) in specs.iter().enumerate() {
        let t0 = Instant::now();
        let results = match spec {
            StyleSpec::Images(styles) => {
                let mut v = vec![0f32; crate::model::magenta::STYLE_DIM];
                for (path, w) in styles {
                    let img = imaging::load_rgb(path)?;
                    for (a, b) in v
                        .iter_mut()
                        .zip(vector_of(&img).with_context(|| format!("{}", path.display()))?)
                    {
                        *a += *w as f32 * b;
                    }
                }
                let vectors: Vec<Vec<f32>> = (0..contents.len())
                    .map(|c| match content_vectors.get(c) {
                        Some(vc) => v
                            .iter()
                            .zip(vc)
                            .map(|(s, c)| args.alpha as f32 * s + (1.0 - args.alpha as f32) * c)
                            .collect(),
                        None => v.clone(),
                    })
                    .collect();
                transformer
                    .as_ref()
                    .context("transformer not loaded")?
                    .forward(&content_tensors, &vectors, norm)?
            }
            StyleSpec::Preset(w) => multistyle
                .as_ref()
                .context("26-style network not loaded")?
                .forward(&content_tensors, w, norm)?,
        };
        let per_image = t0.elapsed().as_secs_f64() / contents.len() as f64;
        for (c, y) in results.iter().enumerate() {
            let job = jobs
                .iter()
                .position(|&j| j == (c, s))
                .context("job index")?;
            let out = &outputs[job];
            let rgb = imaging::to_rgb8(y)?;
            match out {
                None => {
                    let bytes = imaging::encode(&rgb, image::ImageFormat::Png, args.quality)?;
                    stdout.write_all(&bytes)?;
                }
                Some(path) => imaging::save(&rgb, path, args.quality)
                    .with_context(|| format!("writing {}", path.display()))?,
            }
            let shown = out
                .as_ref()
                .map_or("-".to_string(), |p| p.display().to_string());
            if args.json {
                let obj = serde_json::json!({
                    "content": args.content[c].display().to_string(),
                    "style": spec.label(),
                    "output": shown,
                    "width": rgb.width(),
                    "height": rgb.height(),
                    "model": "magenta",
                    "norm": norm.to_string(),
                    "alpha": args.alpha,
                    "seconds": per_image,
                });
                writeln!(stdout, "{obj}")?;
            } else {
                log(format!(
                    "{} × {} → {shown} ({}×{}, {per_image:.2} s)",
                    args.content[c].display(),
                    spec.label(),
                    rgb.width(),
                    rgb.height()
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The styles of the call: content × style pairs, one blend, or a preset.
fn style_specs(args: &Args) -> anyhow::Result<Vec<StyleSpec>> {
    if let Some(p) = &args.preset {
        return Ok(vec![StyleSpec::Preset(parse_preset(p)?)]);
    }
    if args.style.is_empty() {
        bail!("--style: give at least one style image (or --preset N for a built-in style)");
    }
    match &args.style_weights {
        Some(w) => {
            if w.len() != args.style.len() {
                bail!(
                    "--style-weights: {} weights for {} --style images",
                    w.len(),
                    args.style.len()
                );
            }
            let w = normalize_weights("--style-weights", w)?;
            Ok(vec![StyleSpec::Images(
                args.style.iter().cloned().zip(w).collect(),
            )])
        }
        None => Ok(args
            .style
            .iter()
            .map(|p| StyleSpec::Images(vec![(p.clone(), 1.0)]))
            .collect()),
    }
}

/// Weights ≥ 0 (finite) with a positive sum, divided by the sum.
fn normalize_weights(flag: &str, w: &[f64]) -> anyhow::Result<Vec<f64>> {
    if let Some(bad) = w.iter().find(|v| !v.is_finite() || **v < 0.0) {
        bail!("{flag}: weight {bad} is not a finite number ≥ 0");
    }
    let sum: f64 = w.iter().sum();
    if sum <= 0.0 {
        bail!("{flag}: the weights sum to 0");
    }
    Ok(w.iter().map(|v| v / sum).collect())
}

/// `N` or `N:w,M:w,…` → 26 weights summing to 1.
fn parse_preset(s: &str) -> anyhow::Result<Vec<f64>> {
    let mut w = vec![0.0; PRESET_COUNT];
    for part in s.split(',') {
        let (id, weight) = match part.split_once(':') {
            Some((i, v)) => (
                i,
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| anyhow::anyhow!("--preset: `{v}` is not a number"))?,
            ),
            None => (part, 1.0),
        };
        let id: usize = id
            .trim()
            .parse()
            .ok()
            .filter(|&i| i < PRESET_COUNT)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--preset: `{}` is not a style number 0–{}",
                    id.trim(),
                    PRESET_COUNT - 1
                )
            })?;
        w[id] += weight;
    }
    normalize_weights("--preset", &w)
}

/// The file stem used in output names.
fn stem(p: &Path) -> String {
    p.file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
}

/// One output path per (content, style) job in job order (`None` = stdout), checked up front:
/// no overwriting without --force, never an input file.
fn output_paths(args: &Args, specs: &[StyleSpec]) -> anyhow::Result<Vec<Option<PathBuf>>> {
    let n = specs.len() * args.content.len();
    let name = |c: usize, s: usize| {
        format!(
            "{}_stylized_{}.png",
            stem(&args.content[c]),
            specs[s].label()
        )
    };
    let jobs = (0..specs.len()).flat_map(|s| (0..args.content.len()).map(move |c| (c, s)));
    let paths: Vec<Option<PathBuf>> = match &args.output {
        Some(o) if o.as_os_str() == "-" => {
            if n != 1 {
                bail!("-o -: stdout takes one image, this call makes {n}");
            }
            vec![None]
        }
        Some(o) if n == 1 && !o.is_dir() => {
            imaging::format_for(o).with_context(|| format!("-o {}", o.display()))?;
            vec![Some(o.clone())]
        }
        Some(dir) => {
            if dir.exists() && !dir.is_dir() {
                bail!(
                    "-o {}: {n} outputs need a folder, and this is a file",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            jobs.map(|(c, s)| Some(dir.join(name(c, s)))).collect()
        }
        None => jobs.map(|(c, s)| Some(PathBuf::from(name(c, s)))).collect(),
    };
    let inputs: Vec<PathBuf> = args
        .content
        .iter()
        .chain(&args.style)
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    for p in paths.iter().flatten() {
        if p.canonicalize().is_ok_and(|c| inputs.contains(&c)) {
            bail!("{}: the output would overwrite an input", p.display());
        }
        if p.exists() && !args.force {
            bail!("{}: already exists (use --force to overwrite)", p.display());
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_normalize() {
        let w = parse_preset("3").unwrap();
        assert_eq!(w[3], 1.0);
        let w = parse_preset("3:0.5,12:1.5").unwrap();
        assert_eq!((w[3], w[12]), (0.25, 0.75));
        assert_eq!(
            parse_preset("26").unwrap_err().to_string(),
            "--preset: `26` is not a style number 0–25"
        );
        assert_eq!(
            parse_preset("3:-1").unwrap_err().to_string(),
            "--preset: weight -1 is not a finite number ≥ 0"
        );
        assert_eq!(
            parse_preset("3:0").unwrap_err().to_string(),
            "--preset: the weights sum to 0"
        );
        assert!(parse_preset("x").is_err());
    }
}
