//! `normstyle stylize`: paint content photos in a style.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use candle::Tensor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::engine::{Common, Engine};
use crate::color::{keep_luminance, PreserveColor};
use crate::imaging::{self, Rgb};
use crate::model::adain::{Mask, MIN_SIDE};
use crate::model::magenta::PRESET_COUNT;
use crate::norm::NormKind;

/// The model families `--model` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Model {
    /// Magenta arbitrary-style network (Ghiasi et al. 2017), embedded weights; with `--preset`,
    /// the 26-style network (Dumoulin et al. 2017).
    Magenta,
    /// AdaIN (Huang & Belongie 2017) with the released weights (`--vgg`, `--decoder`).
    Adain,
}

/// Output formats for generated file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Png,
    Jpg,
    Webp,
}

impl Format {
    /// The file extension of generated output names.
    pub(super) fn ext(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpg => "jpg",
            Format::Webp => "webp",
        }
    }
}

/// Arguments of `normstyle stylize`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle stylize photo.jpg --style painting.jpg -o out.png
  normstyle stylize a.jpg b.jpg --style s1.jpg --style s2.jpg -o outdir/     (4 outputs)
  normstyle stylize photo.jpg --style s1.jpg --style s2.jpg --style-weights 1,3
  normstyle stylize photo.jpg --preset 3:0.5,12:0.5
  normstyle stylize photo.jpg --style s.jpg --model adain --vgg vgg_normalised.pth --decoder decoder.pth
  normstyle stylize photo.jpg --style fg.jpg --style bg.jpg --mask mask.png
  normstyle stylize a.jpg b.jpg --style s.jpg --norm bn     (BN statistics over both photos)")]
pub struct Args {
    /// Content images (PNG, JPEG, WebP).
    #[arg(required_unless_present = "content_dir", value_hint = clap::ValueHint::FilePath)]
    pub(super) content: Vec<PathBuf>,
    /// Batch mode: every image in this folder is a content (sorted; hidden files skipped).
    /// Existing outputs are skipped unless --force, a broken photo is reported and the run goes
    /// on, Ctrl-C stops after the current photo; a summary ends the run.
    #[arg(long, value_hint = clap::ValueHint::DirPath)]
    pub(super) content_dir: Option<PathBuf>,
    /// Batch mode: every image in this folder is a style (one output per content × style).
    #[arg(long, value_hint = clap::ValueHint::DirPath)]
    pub(super) style_dir: Option<PathBuf>,
    /// With --content-dir/--style-dir: include subfolders (output names join the relative path
    /// with `_`).
    #[arg(long)]
    pub(super) recursive: bool,
    /// Style image(s). Several without --style-weights: one output per content × style.
    #[arg(short, long, value_hint = clap::ValueHint::FilePath)]
    pub(super) style: Vec<PathBuf>,
    /// Blend the styles into one: non-negative weights, one per --style, normalized to sum 1.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub(super) style_weights: Option<Vec<f64>>,
    /// A built-in style of the 26-style network instead of --style: N (0–25), or a blend
    /// N:w,M:w (weights ≥ 0, normalized to sum 1).
    #[arg(long, conflicts_with_all = ["style", "style_weights"])]
    pub(super) preset: Option<String>,
    /// Model family.
    #[arg(long, value_enum, default_value_t = Model::Magenta)]
    pub(super) model: Model,
    /// AdaIN encoder weights: the released vgg_normalised.pth (legacy or zip .pth, or safetensors).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub(super) vgg: Option<PathBuf>,
    /// AdaIN decoder weights: the released decoder.pth (legacy or zip .pth, or safetensors).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub(super) decoder: Option<PathBuf>,
    /// Without --vgg/--decoder: fetch the AdaIN weights from this hub repository (cached).
    #[command(flatten)]
    pub(super) repo: super::weights::RepoArgs,
    /// Style strength in [0, 1]. AdaIN: decoder(α·t + (1 − α)·f(content)); Magenta: the style
    /// vector interpolated with the content's own.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub(super) alpha: f64,
    /// Statistics of the normalization: in, bn (pooled over all contents of the call), ln, gn,
    /// gn:G (G groups, gcd with the channels).
    #[arg(long, default_value = "in")]
    pub(super) norm: String,
    /// Keep the content's colors: coral (recolor the style to the content's color statistics
    /// first) or luminance (keep the stylized luminance with the content's chroma).
    #[arg(long, value_name = "coral|luminance")]
    pub(super) preserve_color: Option<String>,
    /// Spatial control with exactly two --style images: white pixels of this mask take the first
    /// style, black ones the second (gray values are thresholded at 50 %; resized to fit).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub(super) mask: Option<PathBuf>,
    /// Content size in pixels; 0 keeps the size. AdaIN: the shorter side is resized to N
    /// (default 512, like the reference). Magenta: the longer side is capped at N (default 1024).
    /// The output has the size the content runs at.
    #[arg(long)]
    pub(super) content_size: Option<u32>,
    /// AdaIN only: the style's shorter side is resized to N (default 512); 0 keeps the size.
    #[arg(long)]
    pub(super) style_size: Option<u32>,
    /// Center-crop the content (and, for AdaIN, the style) to a square after resizing.
    #[arg(long)]
    pub(super) crop: bool,
    /// Output file (one result; `-` writes PNG to stdout) or folder (several results). Default:
    /// `<content>_stylized_<style>.<format>` in the current folder.
    #[arg(short, long, value_hint = clap::ValueHint::AnyPath)]
    pub(super) output: Option<PathBuf>,
    /// Format of generated output names (a file given with -o takes its extension's format).
    #[arg(long, value_enum, default_value_t = Format::Png)]
    pub(super) format: Format,
    /// Overwrite existing outputs.
    #[arg(long)]
    pub(super) force: bool,
    /// JPEG quality (1–100).
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub(super) quality: u8,
    /// Device: cpu, cuda or metal (never a silent fallback).
    #[arg(long, default_value = "cpu")]
    pub(super) device: String,
    /// Print the time of each stage (decode, encode content/style, transfer, decode, encode
    /// output) on stderr at the end.
    #[arg(long)]
    pub(super) profile: bool,
    /// Refuse images with more pixels than this (a guard against decompression bombs).
    #[arg(long, default_value_t = crate::imaging::MAX_PIXELS)]
    pub(super) max_pixels: u64,
    /// Print one JSON object per output on stdout.
    #[arg(long)]
    pub(super) json: bool,
    /// No progress messages on stderr.
    #[arg(short, long)]
    pub(super) quiet: bool,
}

impl Args {
    /// An image resized as the model runs it — AdaIN: shorter side → `size` (default 512);
    /// Magenta: longer side capped at `size` (default 1024) — then center-cropped with --crop.
    pub(super) fn fit(&self, img: Rgb, size: Option<u32>) -> Rgb {
        let img = if self.model == Model::Adain {
            imaging::resize_short_side(img, size.unwrap_or(512))
        } else {
            imaging::cap_long_side(img, size.unwrap_or(1024))
        };
        if self.crop {
            imaging::crop_center_square(img)
        } else {
            img
        }
    }

    /// The --mask image, if given.
    pub(super) fn load_mask(&self) -> anyhow::Result<Option<Mask>> {
        let Some(p) = &self.mask else {
            return Ok(None);
        };
        let (w, h, gray) = imaging::load_gray(p)?;
        Ok(Some(
            Mask::from_gray(w as usize, h as usize, &gray)
                .with_context(|| format!("--mask {}", p.display()))?,
        ))
    }
}

/// AdaIN's encoder needs each side ≥ [`MIN_SIDE`] pixels.
pub(super) fn check_adain_size(p: &Path, img: &Rgb) -> anyhow::Result<()> {
    let (w, h) = img.dimensions();
    if (w.min(h) as usize) < MIN_SIDE {
        bail!(
            "{}: {w}×{h} is too small for AdaIN (each side ≥ {MIN_SIDE} pixels after resizing)",
            p.display()
        );
    }
    Ok(())
}

/// What one output is styled with.
pub enum StyleSpec {
    /// Style images and their blend weights (summing to 1).
    Images(Vec<(PathBuf, f64)>),
    /// Two style images split by `--mask` (white → first, black → second).
    Masked([PathBuf; 2]),
    /// 26-style network weights (summing to 1).
    Preset(Vec<f64>),
}

impl StyleSpec {
    pub(super) fn label(&self) -> String {
        match self {
            StyleSpec::Images(v) => v.iter().map(|(p, _)| stem(p)).collect::<Vec<_>>().join("+"),
            StyleSpec::Masked([a, b]) => format!("{}+{}", stem(a), stem(b)),
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

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    imaging::set_pixel_limit(args.max_pixels);
    if args.profile {
        crate::profile::enable();
    }
    let batch = args.content_dir.is_some() || args.style_dir.is_some();
    if let Some(d) = &args.content_dir {
        let found = list_images(d, args.recursive)
            .with_context(|| format!("--content-dir {}", d.display()))?;
        args.content.extend(found);
    }
    if let Some(d) = &args.style_dir {
        let found = list_images(d, args.recursive)
            .with_context(|| format!("--style-dir {}", d.display()))?;
        if found.is_empty() {
            bail!(
                "--style-dir {}: no images (PNG, JPEG, WebP) in it",
                d.display()
            );
        }
        args.style.extend(found);
    }
    if batch {
        return super::batch::run(args);
    }
    let norm: NormKind = args.norm.parse()?;
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha: {} is outside [0, 1]", args.alpha);
    }
    let preserve: Option<PreserveColor> =
        args.preserve_color.as_deref().map(str::parse).transpose()?;
    check_model_flags(&args)?;
    let specs = style_specs(&args)?;
    let jobs: Vec<(usize, usize)> = (0..specs.len())
        .flat_map(|s| (0..args.content.len()).map(move |c| (c, s)))
        .collect();
    let outputs = output_paths(&args, &specs)?;
    let device = crate::device::device(&args.device)?;
    let bar = progress_bar(jobs.len(), args.quiet);
    let log = |msg: String| {
        if !args.quiet {
            bar.suspend(|| eprintln!("{msg}"));
        }
    };

    // Decode every input first: a broken file fails the call before any work or output.
    let adain = args.model == Model::Adain;
    let contents: Vec<Rgb> = args
        .content
        .iter()
        .map(|p| imaging::load_rgb(p).map(|img| args.fit(img, args.content_size)))
        .collect::<Result<_, _>>()?;
    let mut styles: HashMap<PathBuf, Rgb> = HashMap::new();
    for p in &args.style {
        if !styles.contains_key(p) {
            let img = imaging::load_rgb(p)?;
            // The Magenta predictor takes its own 256² center square of the full image.
            let img = if adain {
                args.fit(img, args.style_size)
            } else {
                img
            };
            styles.insert(p.clone(), img);
        }
    }
    if adain {
        for (p, img) in args.content.iter().zip(&contents).chain(&styles) {
            check_adain_size(p, img)?;
        }
    }
    let mask = args.load_mask()?;
    let content_tensors: Vec<Tensor> = contents
        .iter()
        .map(|i| imaging::to_tensor(i, &device))
        .collect::<Result<_, _>>()?;

    let common = Common {
        device: device.clone(),
        alpha: args.alpha,
        norm,
        preserve,
        mask,
    };
    let t_load = Instant::now();
    let mut engine = match args.model {
        Model::Adain => {
            let (vgg, dec) = adain_weights(
                args.vgg.as_ref(),
                args.decoder.as_ref(),
                &args.repo,
                args.quiet,
            )?;
            Engine::adain(&vgg, &dec, &content_tensors, &common)?
        }
        Model::Magenta => Engine::magenta(
            matches!(specs.first(), Some(StyleSpec::Preset(_))),
            &contents,
            &common,
        )?,
    };
    let setup = t_load.elapsed().as_secs_f64() / contents.len() as f64;
    bar.set_message(engine.name());

    let mut stdout = std::io::stdout().lock();
    for (s, spec) in specs.iter().enumerate() {
        let t0 = Instant::now();
        let mut results = engine.render(spec, &content_tensors, &contents, &styles, &common)?;
        if preserve == Some(PreserveColor::Luminance) {
            results = results
                .iter()
                .zip(&content_tensors)
                .map(|(y, c)| keep_luminance(y, c))
                .collect::<Result<_, _>>()?;
        }
        // Per-image time: this style's work, plus the content encoding shared by all styles.
        let per_image =
            t0.elapsed().as_secs_f64() / contents.len() as f64 + setup / specs.len() as f64;
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
                Some(path) => imaging::save(&rgb, path, args.quality)?,
            }
            bar.inc(1);
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
                    "model": engine.name(),
                    "norm": norm.to_string(),
                    "alpha": args.alpha,
                    "seconds": per_image,
                });
                bar.suspend(|| writeln!(stdout, "{obj}"))?;
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
    bar.finish_and_clear();
    if args.profile {
        eprint!("{}", crate::profile::report());
    }
    Ok(ExitCode::SUCCESS)
}

/// The image files (png, jpg, jpeg, webp, any case) in `dir`, sorted, hidden entries skipped;
/// subfolders too with `recursive`.
pub(super) fn list_images(dir: &Path, recursive: bool) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("not a folder");
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                if recursive {
                    stack.push(p);
                }
            } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                ["png", "jpg", "jpeg", "webp"].contains(&e.to_ascii_lowercase().as_str())
            }) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The AdaIN checkpoints: explicit files, else the store (locally added, or downloaded from
/// --hf-repo / NORMSTYLE_ADAIN_REPO, fetching it now unless HF_HUB_OFFLINE is set).
pub(super) fn adain_weights(
    vgg: Option<&PathBuf>,
    decoder: Option<&PathBuf>,
    repo: &super::weights::RepoArgs,
    quiet: bool,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(v), Some(d)) = (vgg, decoder) {
        return Ok((v.clone(), d.clone()));
    }
    let mut hub = crate::weights::hub::HubConfig::from_env();
    hub.progress = !quiet;
    let spec = repo.spec()?;
    let p =
        crate::weights::store::resolve_adain(spec.as_ref(), &hub, &|m| eprintln!("warning: {m}"))?;
    Ok((p.vgg, p.decoder))
}

/// A bar over the outputs of the call on stderr; hidden with -q or when stderr is not a
/// terminal (indicatif's default), and for a single output.
pub(super) fn progress_bar(n: usize, quiet: bool) -> ProgressBar {
    if quiet || n < 2 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta} left)") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Flags that belong to one model family, and the ones a family needs.
pub(super) fn check_model_flags(args: &Args) -> anyhow::Result<()> {
    match args.model {
        Model::Adain => {
            if args.preset.is_some() {
                bail!("--preset: the 26 presets belong to --model magenta");
            }
            if args.vgg.is_some() != args.decoder.is_some() {
                bail!("--vgg and --decoder go together (the encoder and the decoder of one model)");
            }
            if args.vgg.is_some() && args.repo.hf_repo.is_some() {
                bail!("--hf-repo: give either local files (--vgg/--decoder) or a hub repository");
            }
        }
        Model::Magenta => {
            if args.vgg.is_some() || args.decoder.is_some() || args.repo.hf_repo.is_some() {
                bail!("--vgg/--decoder/--hf-repo: these are AdaIN weights; add --model adain");
            }
            if args.style_size.is_some() {
                bail!("--style-size: applies to --model adain (the Magenta predictor always sees a 256×256 center square)");
            }
        }
    }
    if args.mask.is_some() {
        if args.style.len() != 2 {
            bail!("--mask: spatial control needs exactly two --style images (white → first, black → second), got {}", args.style.len());
        }
        if args.style_weights.is_some() {
            bail!("--mask: the mask decides where each style goes; drop --style-weights");
        }
    }
    Ok(())
}

/// The styles of the call: content × style pairs, one blend, or a preset.
pub(super) fn style_specs(args: &Args) -> anyhow::Result<Vec<StyleSpec>> {
    if let Some(p) = &args.preset {
        return Ok(vec![StyleSpec::Preset(parse_preset(p)?)]);
    }
    if args.style.is_empty() {
        bail!("--style: give at least one style image (or --preset N for a built-in style)");
    }
    if args.mask.is_some() {
        return Ok(vec![StyleSpec::Masked([
            args.style[0].clone(),
            args.style[1].clone(),
        ])]);
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
pub(super) fn stem(p: &Path) -> String {
    p.file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
}

/// One output path per (content, style) job in job order (`None` = stdout), checked up front:
/// no overwriting without --force, never an input file.
fn output_paths(args: &Args, specs: &[StyleSpec]) -> anyhow::Result<Vec<Option<PathBuf>>> {
    let n = specs.len() * args.content.len();
    let ext = args.format.ext();
    let name = |c: usize, s: usize| {
        format!(
            "{}_stylized_{}.{ext}",
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
            if !dir.is_dir() && imaging::format_for(dir).is_ok() {
                bail!(
                    "-o {}: this call makes {n} outputs, so -o must be a folder (not an image file name)",
                    dir.display()
                );
            }
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
        .chain(&args.mask)
        .chain(&args.vgg)
        .chain(&args.decoder)
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
