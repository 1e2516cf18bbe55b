//! Command-line interface: clap definitions, one module per subcommand. Subcommand files only
//! parse, show progress, read and write files and print; the work is the library's
//! (`normstyle::pipeline`). They share the flag groups defined here and import nothing from
//! each other.

mod batch;
mod bench;
mod compare;
mod convert;
mod import_magenta;
mod manifest;
pub mod memory;
mod norms;
mod presets;
mod serve;
mod stylize;
mod train;
mod video;
mod video_metrics;
mod weights;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use normstyle::color::PreserveColor;
use normstyle::imaging::Rgb;
use normstyle::model::adain::Mask;
use normstyle::pipeline::{mask_from_rgb, parse_preset, Shard, Style, StyleSpec};
use normstyle::video::ClipKind;
use normstyle::weights::hub::{HubConfig, RepoSpec};
use normstyle::{NormKind, Stylizer};

/// Neural style transfer with swappable normalization (IN, BN, LN, GN).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Paint content photos in the style of a painting (or a built-in preset).
    Stylize(Box<StylizeArgs>),
    /// Stylize photos with each normalization variant side by side: a labeled grid and numbers.
    Compare(Box<compare::Args>),
    /// Render the 26 built-in styles on one photo as a labeled contact sheet.
    Presets(presets::Args),
    /// Time a model on random inputs (for the side-by-side benchmark scripts).
    Bench(bench::Args),
    /// Show what each normalization normalizes over, or run one on a random tensor.
    Norms(norms::Args),
    /// Download, import, list, verify and locate model weights.
    Weights(weights::Args),
    /// Check the outputs that batch manifests (--manifest) record: present and unchanged.
    Manifest(manifest::Args),
    /// Convert a checkpoint (PyTorch legacy or zip .pth, safetensors) to safetensors.
    Convert(convert::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(after_help = "Examples:
  normstyle completions bash > ~/.local/share/bash-completion/completions/normstyle
  normstyle completions zsh > ~/.zfunc/_normstyle
  normstyle completions fish > ~/.config/fish/completions/normstyle.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Convert the Magenta ONNX files (int8 dequantized) to float32 safetensors.
    ImportMagenta(import_magenta::Args),
    /// Measure the flicker of a stylized clip whose motion is known (JSON on stdout).
    VideoMetrics(video_metrics::Args),
    /// Compare the norms live in the browser: a local web app and its JSON/HTTP API.
    Serve(serve::Args),
    /// Train a feed-forward style network for one style with a chosen normalization.
    Train(Box<train::Args>),
}

/// Runs a parsed command line. Errors carry their context chain; `main` prints them.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Stylize(args) if args.is_clip() => video::run(*args),
        Command::Stylize(args) if args.is_batch() => batch::run(*args),
        Command::Stylize(args) => stylize::run(*args),
        Command::Convert(args) => convert::run(args),
        Command::Manifest(args) => manifest::run(args),
        Command::Weights(args) => weights::run(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "normstyle", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Norms(args) => norms::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Presets(args) => presets::run(args),
        Command::Compare(args) => compare::run(*args),
        Command::ImportMagenta(args) => import_magenta::run(args),
        Command::VideoMetrics(args) => video_metrics::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Train(args) => train::run(*args),
    }
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
    pub fn ext(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpg => "jpg",
            Format::Webp => "webp",
        }
    }
}

/// Arguments of `normstyle stylize` (single calls in stylize.rs, folder batches in batch.rs).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle stylize photo.jpg --style painting.jpg -o out.png
  normstyle stylize a.jpg b.jpg --style s1.jpg --style s2.jpg -o outdir/     (4 outputs)
  normstyle stylize photo.jpg --style s1.jpg --style s2.jpg --style-weights 1,3
  normstyle stylize photo.jpg --preset 3:0.5,12:0.5
  normstyle stylize photo.jpg --style s.jpg --model adain --vgg vgg_normalised.pth --decoder decoder.pth
  normstyle stylize photo.jpg --style fg.jpg --style bg.jpg --mask mask.png
  normstyle stylize a.jpg b.jpg --style s.jpg --norm bn     (BN statistics over both photos)
  normstyle stylize --content-dir photos/ --style-dir styles/ -o out/      (batch, resumable)
  normstyle stylize clip.mp4 --style s.jpg -o out.mp4 --temporal 0.9     (video, less flicker)
  normstyle stylize anim.gif --preset 7 -o out.gif
  normstyle stylize --frames frames/ --style s.jpg -o styled_frames/     (a folder as one clip)")]
pub struct StylizeArgs {
    /// Content images (PNG, JPEG, WebP); `-` reads one from standard input. A video (.mp4,
    /// .mov, .mkv, .webm, …, through ffmpeg) or an animated .gif is stylized frame by frame.
    #[arg(required_unless_present_any = ["content_dir", "frames"], value_hint = clap::ValueHint::FilePath)]
    pub content: Vec<PathBuf>,
    /// A folder of frames (natural sort order) stylized as one clip: PNGs under the input names
    /// go to the -o folder.
    #[arg(long, value_hint = clap::ValueHint::DirPath, conflicts_with_all = ["content", "content_dir", "style_dir", "shard"])]
    pub frames: Option<PathBuf>,
    /// Clips: keep normalization statistics over time, μₜ = M·μₜ₋₁ + (1 − M)·μ(frameₜ) (and σ),
    /// for M in [0, 1); 0 stylizes every frame on its own, 0.9 removes most flicker.
    #[arg(
        long,
        value_name = "M",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    pub temporal: f64,
    /// Clips with --temporal: a mean frame difference above this (RGB in [0, 1]) is a scene cut,
    /// where the statistics start over.
    #[arg(long, value_name = "T", default_value_t = normstyle::pipeline::DEFAULT_SCENE_THRESHOLD)]
    pub scene_threshold: f64,
    /// Video output: ffmpeg's encoder (default libx264: H.264 in yuv420p, which players play;
    /// an odd width or height loses one pixel).
    #[arg(long)]
    pub codec: Option<String>,
    /// Video output: constant rate factor, 0–51 (lower is better quality and a larger file;
    /// default 18; H.264 is encoded at x264's superfast preset, so the network keeps the cores).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=51))]
    pub crf: Option<u8>,
    /// Batch mode: every image in this folder is a content (sorted; hidden files skipped).
    /// Existing outputs are skipped unless --force, a broken photo is reported and the run goes
    /// on, Ctrl-C stops after the current photo; a summary ends the run.
    #[arg(long, value_hint = clap::ValueHint::DirPath)]
    pub content_dir: Option<PathBuf>,
    /// Batch mode: every image in this folder is a style (one output per content × style).
    #[arg(long, value_hint = clap::ValueHint::DirPath)]
    pub style_dir: Option<PathBuf>,
    /// With --content-dir/--style-dir: include subfolders (output names join the relative path
    /// with `_`).
    #[arg(long)]
    pub recursive: bool,
    /// Batch mode: run only part K of N (0 ≤ K < N) of the (content, style) pairs, so N workers
    /// share a batch with nothing in common but the output folder; `auto` takes K and N from a
    /// Slurm array job or a Kubernetes Indexed Job (with --shards N).
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<String>,
    /// With --shard auto under a Kubernetes Indexed Job: the number of shards (the Job's
    /// completions; default NORMSTYLE_SHARDS).
    #[arg(long, value_name = "N", requires = "shard")]
    pub shards: Option<usize>,
    /// Batch mode: append one JSON line per finished output (inputs and output with sha256,
    /// settings, seconds); check it later with `normstyle manifest check`.
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub manifest: Option<PathBuf>,
    /// Style image(s). Several without --style-weights: one output per content × style.
    #[arg(short, long, value_hint = clap::ValueHint::FilePath)]
    pub style: Vec<PathBuf>,
    /// Blend the styles into one: non-negative weights, one per --style, normalized to sum 1.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub style_weights: Option<Vec<f64>>,
    /// A built-in style of the 26-style network instead of --style: N (0–25), or a blend
    /// N:w,M:w (weights ≥ 0, normalized to sum 1).
    #[arg(long, conflicts_with_all = ["style", "style_weights"])]
    pub preset: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Style strength in [0, 1]. AdaIN: decoder(α·t + (1 − α)·f(content)); Magenta: the style
    /// vector interpolated with the content's own.
    /// [default: 1]
    #[arg(long, allow_hyphen_values = true)]
    pub alpha: Option<f64>,
    /// Statistics of the normalization: in, bn (pooled over all contents of the call), ln, gn,
    /// gn:G (G groups, gcd with the channels). [default: in; a trained model: its own norm]
    #[arg(long)]
    pub norm: Option<String>,
    /// Keep the content's colors: coral (recolor the style to the content's color statistics
    /// first) or luminance (keep the stylized luminance with the content's chroma).
    #[arg(long, value_name = "coral|luminance")]
    pub preserve_color: Option<String>,
    /// Spatial control with exactly two --style images: white pixels of this mask take the first
    /// style, black ones the second (gray values are thresholded at 50 %; resized to fit).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub mask: Option<PathBuf>,
    /// Content size in pixels; 0 keeps the size. AdaIN: the shorter side is resized to N
    /// (default 512, like the reference). Magenta: the longer side is capped at N (default 1024).
    /// The output has the size the content runs at.
    #[arg(long)]
    pub content_size: Option<u32>,
    /// AdaIN only: the style's shorter side is resized to N (default 512); 0 keeps the size.
    #[arg(long)]
    pub style_size: Option<u32>,
    /// Center-crop the content (and, for AdaIN, the style) to a square after resizing.
    #[arg(long)]
    pub crop: bool,
    /// Output file (one result; `-` writes PNG to stdout) or folder (several results). Default:
    /// `<content>_stylized_<style>.<format>` in the current folder.
    #[arg(short, long, value_hint = clap::ValueHint::AnyPath)]
    pub output: Option<PathBuf>,
    /// Format of generated output names (a file given with -o takes its extension's format).
    #[arg(long, value_enum, default_value_t = Format::Png)]
    pub format: Format,
    /// Overwrite existing outputs.
    #[arg(long)]
    pub force: bool,
    /// JPEG quality (1–100).
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Print the time of each stage (decode, encode content/style, transfer, decode, encode
    /// output) on stderr at the end.
    #[arg(long)]
    pub profile: bool,
    /// Refuse images with more pixels than this (a guard against decompression bombs).
    #[arg(long, default_value_t = normstyle::imaging::MAX_PIXELS)]
    pub max_pixels: u64,
    /// Print one JSON object per output on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress messages on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

impl StylizeArgs {
    /// --alpha, 1 when not given.
    pub fn alpha(&self) -> f64 {
        self.alpha.unwrap_or(1.0)
    }

    /// --norm as given, `None` when not given.
    pub fn norm_kind(&self) -> anyhow::Result<Option<NormKind>> {
        Ok(self.norm.as_deref().map(str::parse).transpose()?)
    }

    /// A folder batch (--content-dir or --style-dir).
    pub fn is_batch(&self) -> bool {
        self.content_dir.is_some() || self.style_dir.is_some()
    }

    /// A clip: --frames, or a video or GIF content.
    pub fn is_clip(&self) -> bool {
        self.frames.is_some()
            || self
                .content
                .iter()
                .any(|p| matches!(ClipKind::of(p), Some(ClipKind::Video | ClipKind::Gif)))
    }

    /// The --shard of a batch, and where `auto` found it.
    pub fn shard(&self) -> anyhow::Result<Option<(Shard, String)>> {
        Ok(match self.shard.as_deref() {
            None => None,
            Some("auto") => Some(Shard::from_env(|k| std::env::var(k).ok(), self.shards)?),
            Some(s) => Some((Shard::parse(s)?, "--shard".into())),
        })
    }

    /// Checks the flags, sets the process-wide ones (pixel limit, profiling) and returns the
    /// styles of the call.
    pub fn specs(&self) -> anyhow::Result<Vec<StyleSpec>> {
        normstyle::imaging::set_pixel_limit(self.max_pixels);
        if self.profile {
            normstyle::profile::enable();
        }
        self.norm_kind()?;
        if !(0.0..=1.0).contains(&self.alpha()) {
            bail!("--alpha: {} is outside [0, 1]", self.alpha());
        }
        if !(0.0..1.0).contains(&self.temporal) {
            bail!("--temporal: {} is outside [0, 1)", self.temporal);
        }
        // NaN fails this test too.
        if self.scene_threshold.is_nan() || self.scene_threshold < 0.0 {
            bail!(
                "--scene-threshold: {} is not a number ≥ 0",
                self.scene_threshold
            );
        }
        if !self.is_clip() {
            let clip_only = [
                ("--temporal", self.temporal != 0.0),
                ("--codec", self.codec.is_some()),
                ("--crf", self.crf.is_some()),
            ];
            if let Some((flag, _)) = clip_only.iter().find(|(_, set)| *set) {
                bail!("{flag}: applies to clips (a video, a .gif or --frames)");
            }
        }
        self.preserve()?;
        self.model.check()?;
        if !self.is_batch() && (self.shard.is_some() || self.manifest.is_some()) {
            bail!("--shard/--manifest: these apply to batch runs (--content-dir/--style-dir)");
        }
        if let Model::Trained(path) = &self.model.model {
            let refused = [
                (
                    "--style",
                    !self.style.is_empty() || self.style_dir.is_some(),
                ),
                ("--preset", self.preset.is_some()),
                ("--style-weights", self.style_weights.is_some()),
                ("--mask", self.mask.is_some()),
                ("--alpha", self.alpha.is_some()),
                ("--style-size", self.style_size.is_some()),
                ("--temporal", self.temporal != 0.0),
            ];
            if let Some((flag, _)) = refused.iter().find(|(_, set)| *set) {
                bail!(
                    "{flag}: {} is a trained network with its style built in; it takes no {flag}",
                    path.display()
                );
            }
            let label = path
                .file_stem()
                .map_or_else(|| "trained".into(), |s| s.to_string_lossy().into_owned());
            return Ok(vec![StyleSpec::Trained(label)]);
        }
        match self.model.model {
            Model::Adain if self.preset.is_some() => {
                bail!("--preset: the 26 presets belong to --model magenta")
            }
            Model::Magenta if self.style_size.is_some() => {
                bail!("--style-size: applies to --model adain (the Magenta predictor always sees a 256×256 center square)")
            }
            _ => {}
        }
        if let Some(p) = &self.preset {
            return Ok(vec![StyleSpec::Preset(parse_preset(p)?)]);
        }
        Ok(StyleSpec::from_styles(
            &self.style,
            self.style_weights.as_deref(),
            self.mask.is_some(),
        )?)
    }

    fn preserve(&self) -> anyhow::Result<Option<PreserveColor>> {
        Ok(self.preserve_color.as_deref().map(str::parse).transpose()?)
    }

    /// The model with this call's options.
    pub fn stylizer(&self) -> anyhow::Result<Stylizer> {
        let st = self.model.stylizer(self.quiet)?.with_alpha(self.alpha());
        let st = match self.norm_kind()? {
            Some(k) => st.with_norm(k),
            None => st,
        };
        Ok(st
            .with_preserve_color(self.preserve()?)
            .with_content_size(self.content_size)
            .with_style_size(self.style_size)
            .with_crop(self.crop))
    }

    /// Decodes every --style image once (a path given twice is read once).
    pub fn style_images(&self) -> anyhow::Result<HashMap<PathBuf, Rgb>> {
        let mut images = HashMap::new();
        for p in &self.style {
            if !images.contains_key(p) {
                images.insert(p.clone(), normstyle::imaging::load_rgb(p)?);
            }
        }
        Ok(images)
    }

    /// The --mask image, if given.
    pub fn load_mask(&self) -> anyhow::Result<Option<Mask>> {
        let Some(p) = &self.mask else {
            return Ok(None);
        };
        let rgb = normstyle::imaging::load_rgb(p)?;
        Ok(Some(
            mask_from_rgb(&rgb).with_context(|| format!("--mask {}", p.display()))?,
        ))
    }
}

/// The models `--model` selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Model {
    /// Magenta arbitrary-style network (Ghiasi et al. 2017), embedded weights; with `--preset`,
    /// the 26-style network (Dumoulin et al. 2017).
    Magenta,
    /// AdaIN (Huang & Belongie 2017) with the released weights (`--vgg`, `--decoder`).
    Adain,
    /// A trained feed-forward network: a `.safetensors` from `normstyle train` or a
    /// fast_neural_style `.pth` state_dict.
    Trained(PathBuf),
}

/// `--model`: `magenta`, `adain`, or the path of a trained model.
pub fn parse_model(s: &str) -> Result<Model, String> {
    match s.to_ascii_lowercase().as_str() {
        "magenta" => return Ok(Model::Magenta),
        "adain" => return Ok(Model::Adain),
        _ => {}
    }
    let p = PathBuf::from(s);
    let ext = p
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    if !matches!(ext.as_deref(), Some("safetensors" | "pth" | "pt")) {
        return Err(format!(
            "`{s}`: expected magenta, adain, or the path of a trained model (.safetensors from \
             `normstyle train`, or a fast_neural_style .pth)"
        ));
    }
    if !p.is_file() {
        return Err(format!("{s}: no such model file"));
    }
    Ok(Model::Trained(p))
}

/// Which model runs where: shared by `stylize` and `compare`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// The model: magenta, adain, or the path of a trained model (.safetensors from
    /// `normstyle train`, or a fast_neural_style .pth).
    #[arg(long, value_parser = parse_model, default_value = "magenta")]
    pub model: Model,
    /// AdaIN encoder weights: the released vgg_normalised.pth (legacy or zip .pth, or safetensors).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub vgg: Option<PathBuf>,
    /// AdaIN decoder weights: the released decoder.pth (legacy or zip .pth, or safetensors).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub decoder: Option<PathBuf>,
    /// Without --vgg/--decoder: fetch the AdaIN weights from this hub repository (cached).
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Device: cpu, cuda or metal (never a silent fallback).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weight precision: f32, or f16/bf16 on a GPU (half the memory; statistics stay f32).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
}

/// The weight precisions `--dtype` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// 32-bit floats (the CPU kernels' precision).
    F32,
    /// IEEE half precision (GPU).
    F16,
    /// bfloat16 (GPU).
    Bf16,
}

impl Precision {
    fn dtype(self) -> candle::DType {
        match self {
            Precision::F32 => candle::DType::F32,
            Precision::F16 => candle::DType::F16,
            Precision::Bf16 => candle::DType::BF16,
        }
    }
}

impl ModelArgs {
    /// Flags that belong to the other family, or that go together.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.model {
            Model::Adain if self.vgg.is_some() != self.decoder.is_some() => {
                bail!("--vgg and --decoder go together (the encoder and the decoder of one model)")
            }
            Model::Adain if self.vgg.is_some() && self.repo.hf_repo.is_some() => {
                bail!("--hf-repo: give either local files (--vgg/--decoder) or a hub repository")
            }
            Model::Magenta | Model::Trained(_)
                if self.vgg.is_some() || self.decoder.is_some() || self.repo.hf_repo.is_some() =>
            {
                bail!("--vgg/--decoder/--hf-repo: these are AdaIN weights; add --model adain")
            }
            _ => Ok(()),
        }
    }

    /// Loads the model on the device: the embedded Magenta networks, or AdaIN from explicit
    /// files, else the store (locally added, or downloaded from --hf-repo /
    /// NORMSTYLE_ADAIN_REPO, fetched now unless HF_HUB_OFFLINE is set).
    pub fn stylizer(&self, quiet: bool) -> anyhow::Result<Stylizer> {
        let device = normstyle::device::device(&self.device)?;
        let dtype = self.dtype.dtype();
        if device.is_cpu() && dtype != candle::DType::F32 {
            bail!(
                "--dtype {}: half precision needs a GPU (--device cuda or metal); the CPU \
                 kernels run in f32",
                format!("{:?}", self.dtype).to_lowercase()
            );
        }
        if self.model == Model::Magenta {
            return Ok(Stylizer::magenta_dtype(&device, dtype)?);
        }
        if let Model::Trained(p) = &self.model {
            if dtype != candle::DType::F32 {
                bail!("--dtype: trained models run in f32");
            }
            return Ok(Stylizer::trained(p, &device)?);
        }
        if let (Some(v), Some(d)) = (&self.vgg, &self.decoder) {
            return Ok(Stylizer::adain_dtype(v, d, &device, dtype)?);
        }
        if dtype != candle::DType::F32 {
            bail!("--dtype: weights from the store load in f32; pass --vgg and --decoder");
        }
        let mut hub = HubConfig::from_env();
        hub.progress = !quiet;
        let warn = |m| eprintln!("warning: {m}");
        Ok(Stylizer::adain_from_store(
            self.repo.spec()?.as_ref(),
            &hub,
            &warn,
            &device,
        )?)
    }
}

/// Where AdaIN weights come from on the hub.
#[derive(Debug, Clone, clap::Args)]
pub struct RepoArgs {
    /// Hub repository with vgg_normalised.pth and decoder.pth (OWNER/NAME, or spaces/OWNER/NAME);
    /// default: NORMSTYLE_ADAIN_REPO.
    #[arg(long, value_name = "OWNER/NAME")]
    pub hf_repo: Option<String>,
    /// Branch, tag or commit of --hf-repo.
    #[arg(long, requires = "hf_repo")]
    pub revision: Option<String>,
}

impl RepoArgs {
    /// The repository from the flags or `NORMSTYLE_ADAIN_REPO`, if any.
    pub fn spec(&self) -> anyhow::Result<Option<RepoSpec>> {
        let id = self.hf_repo.clone().or_else(|| {
            std::env::var("NORMSTYLE_ADAIN_REPO")
                .ok()
                .filter(|v| !v.is_empty())
        });
        Ok(match id {
            Some(id) => Some(RepoSpec::parse(&id, self.revision.as_deref())?),
            None => None,
        })
    }
}

/// Prepares decoded style images for `st` (errors name the file).
pub fn prepare_styles(
    st: &Stylizer,
    images: HashMap<PathBuf, Rgb>,
) -> anyhow::Result<HashMap<PathBuf, Style>> {
    images
        .into_iter()
        .map(|(p, img)| {
            let style = st.style_from_rgb(img).map_err(|e| e.in_file(&p))?;
            Ok((p, style))
        })
        .collect()
}

/// An error and its sources as one line, `a: b: c`, in the command line's words (see
/// [`describe`]).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![describe(e)];
    let mut cur = e.source();
    while let Some(c) = cur {
        parts.push(describe(c));
        cur = c.source();
    }
    parts.join(": ")
}

/// [`chain`] of an anyhow error (context layers included): what the binary prints.
pub fn report(e: &anyhow::Error) -> String {
    e.chain().map(describe).collect::<Vec<_>>().join(": ")
}

/// One error of a chain in the command line's words: the library names its parameters
/// (`style weights`, `shard`), the CLI names the flags that set them (`--style-weights`,
/// `--shard`), and adds the flag that fixes a refusal (`--force`, `--max-pixels`).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::AlreadyExists && io.to_string() == "already exists" {
            return "already exists (use --force to overwrite)".into();
        }
    }
    let Some(e) = e.downcast_ref::<normstyle::Error>() else {
        return e.to_string();
    };
    match e {
        normstyle::Error::Parse { what, msg } => {
            let flag = match what.as_str() {
                "normalization" => "--norm",
                "styles" => "--style",
                "style weights" => "--style-weights",
                "mask" => "--mask",
                "preset" => "--preset",
                "shard" => "--shard",
                "shard from the environment" => "--shard auto",
                "preserve color" => "--preserve-color",
                "variants" => "--norms",
                "alpha" => "--alpha",
                "alpha sweep" => "--alpha-sweep",
                "device" => "--device",
                "hub repository" => "--hf-repo",
                "revision" => "--revision",
                "AdaIN weights" => {
                    return "--model adain: no AdaIN weights: pass --vgg PATH --decoder PATH (the \
                            released vgg_normalised.pth and decoder.pth), or --hf-repo OWNER/NAME \
                            (or NORMSTYLE_ADAIN_REPO) to download them, or import local copies \
                            once with `normstyle weights add vgg_normalised.pth decoder.pth`"
                        .into()
                }
                other => other,
            };
            let msg = msg
                .replace("style images", "--style images")
                .replace("give no style weights", "drop --style-weights")
                .replace("(or a preset for", "(or --preset N for")
                .replace(
                    "give the number of shards (the Job's completions), or set",
                    "give the number of shards with --shards N or",
                )
                .replace("give the shard as K/N", "give --shard K/N");
            format!("{flag}: {msg}")
        }
        normstyle::Error::InFile { path, inner } => {
            format!("{}: {}", path.display(), describe(inner.as_ref()))
        }
        normstyle::Error::ImageTooLarge { .. } => format!("{e} (raise it with --max-pixels)"),
        _ => e.to_string(),
    }
}

/// A bar over `n` steps on stderr, hidden with -q or for a single step (and by indicatif when
/// stderr is not a terminal).
pub fn progress_bar(n: usize, quiet: bool) -> ProgressBar {
    if quiet || n < 2 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta} left)") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Fails when `path` exists (unless `force`) or is one of `inputs`.
pub fn check_output(path: &std::path::Path, inputs: &[PathBuf], force: bool) -> anyhow::Result<()> {
    if path.canonicalize().is_ok_and(|c| {
        inputs
            .iter()
            .any(|i| i.canonicalize().is_ok_and(|i| i == c))
    }) {
        bail!("{}: the output would overwrite an input", path.display());
    }
    if path.exists() && !force {
        bail!(
            "{}: already exists (use --force to overwrite)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
