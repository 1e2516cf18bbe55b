//! `normstyle train`: train a feed-forward single-style network with a chosen normalization
//! ([`normstyle::train`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use normstyle::model::adain::Encoder;
use normstyle::model::trained::{parse_norm, Arch};
use normstyle::train::{
    checkpoint_path, ContentSet, LossNet, LossNetKind, StepLosses, StyleLoss, TrainConfig, Trainer,
};
use normstyle::weights::{sha256_hex, TensorMap};

/// Arguments of `normstyle train`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle train --style assets/styles/brushstrokes.jpg --norm in --size 128 --steps 300 -o brush_in.safetensors
  normstyle train --style s.jpg --content-dir coco/ --arch johnson --loss-net vgg --vgg vgg_normalised.pth --device cuda -o s.safetensors
  normstyle train --style s.jpg --norm bn --steps 600 --resume brush_bn.safetensors.ckpt -o brush_bn.safetensors
  normstyle stylize photo.jpg --model brush_in.safetensors")]
pub struct Args {
    /// The style image to train on.
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub style: PathBuf,
    /// Folder of content photos (png, jpg, webp). Default: the bundled training set,
    /// assets/train (16 scenes; the held-out chicago.jpg and golden_gate.jpg are not in it).
    #[arg(long, value_hint = clap::ValueHint::DirPath)]
    pub content_dir: Option<PathBuf>,
    /// The norm in every norm slot: in, bn, ln, gn:G (gn = gn:32) or none.
    #[arg(long, default_value = "in")]
    pub norm: String,
    /// small (8/16/32 channels, trains on a CPU) or johnson (PyTorch fast_neural_style's
    /// TransformerNet, 32/64/128).
    #[arg(long, default_value = "small")]
    pub arch: String,
    /// Crop side in pixels (photos are resized to this shorter side, then randomly cropped).
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Crops per step.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Train until this step (counted from the start of the run, also when resuming).
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Weight of the content loss.
    #[arg(long, default_value_t = 1.0)]
    pub content_weight: f64,
    /// Weight of the style loss.
    #[arg(long, default_value_t = 1.0)]
    pub style_weight: f64,
    /// Weight of the total-variation loss.
    #[arg(long, default_value_t = 0.0)]
    pub tv_weight: f64,
    /// The network the losses are measured in: predictor (the embedded MobileNetV2, offline) or
    /// vgg (AdaIN's vgg_normalised to relu4_1: --vgg, or the weight store).
    #[arg(long, default_value = "predictor")]
    pub loss_net: String,
    /// With --loss-net vgg: vgg_normalised.pth (legacy or zip .pth, or safetensors).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub vgg: Option<PathBuf>,
    /// Style comparison: stats (per-channel mean and std, the AdaIN paper's) or gram.
    #[arg(long, default_value = "stats")]
    pub style_loss: String,
    /// Seed of the initial weights, the batch order and the crops.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Append one CSV row per logged step: step,content_loss,style_loss,tv_loss,total_loss,seconds.
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub log: Option<PathBuf>,
    /// Log every N steps (and the last).
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Write OUTPUT.ckpt every N steps (and at the end, and on Ctrl-C); 0: only then.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
    /// Continue from a checkpoint (OUTPUT.ckpt of an earlier run with the same settings).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    pub resume: Option<PathBuf>,
    /// The trained model (.safetensors); its checkpoint goes beside it as OUTPUT.ckpt.
    #[arg(short, long, value_hint = clap::ValueHint::FilePath)]
    pub output: PathBuf,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// The bundled training photos, found beside the executable's source tree or the current
/// folder.
pub fn default_content_dir() -> PathBuf {
    let here = PathBuf::from("assets/train");
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/train")
}

impl Args {
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let norm = parse_norm(&self.norm).context("--norm")?;
        let arch: Arch = self.arch.parse().context("--arch")?;
        if self.steps == 0 {
            bail!("--steps 0: nothing to train (give the step to train until, ≥ 1)");
        }
        if self.size < 16 {
            bail!("--size {}: crops need at least 16 pixels", self.size);
        }
        if self.batch_size == 0 {
            bail!("--batch-size 0: need at least 1 crop per step");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr {}: need a finite number > 0", self.lr);
        }
        for (flag, w) in [
            ("--content-weight", self.content_weight),
            ("--style-weight", self.style_weight),
            ("--tv-weight", self.tv_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                bail!("{flag} {w}: need a finite number ≥ 0");
            }
        }
        if self.log_every == 0 {
            bail!("--log-every 0: need at least 1");
        }
        Ok(TrainConfig {
            arch,
            norm,
            size: self.size,
            batch_size: self.batch_size,
            lr: self.lr,
            content_weight: self.content_weight,
            style_weight: self.style_weight,
            tv_weight: self.tv_weight,
            seed: self.seed,
        })
    }

    fn loss_net(&self, device: &candle::Device) -> anyhow::Result<LossNet> {
        let kind: LossNetKind = self.loss_net.parse().context("--loss-net")?;
        let style_loss: StyleLoss = self.style_loss.parse().context("--style-loss")?;
        match kind {
            LossNetKind::Predictor => {
                if self.vgg.is_some() {
                    bail!("--vgg: the VGG weights are for --loss-net vgg");
                }
                Ok(LossNet::predictor(device, style_loss)?)
            }
            LossNetKind::Vgg => {
                let encoder = match &self.vgg {
                    Some(p) => Encoder::load(&TensorMap::load(p, device)?)
                        .with_context(|| format!("--vgg {}", p.display()))?,
                    None => vgg_from_store(device)?,
                };
                Ok(LossNet::vgg(encoder, style_loss))
            }
        }
    }
}

/// The AdaIN encoder from the weight store (as `stylize --model adain` finds it).
#[cfg(feature = "hub")]
fn vgg_from_store(device: &candle::Device) -> anyhow::Result<Encoder> {
    let hub = normstyle::weights::hub::HubConfig::from_env();
    let warn = |m: String| eprintln!("warning: {m}");
    let st = normstyle::Stylizer::adain_from_store(None, &hub, &warn, device)
        .context("--loss-net vgg: no --vgg given and no AdaIN weights in the store")?;
    st.adain_net()
        .map(|n| n.encoder.clone())
        .context("--loss-net vgg: the store's model is not AdaIN")
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    let device = normstyle::device::device(&args.device)?;
    if args.output.extension().is_none_or(|e| e != "safetensors") {
        bail!(
            "-o {}: the trained model is a .safetensors file",
            args.output.display()
        );
    }
    let ckpt = checkpoint_path(&args.output);
    if args.output.exists() && !args.force && args.resume.is_none() {
        bail!(
            "{}: already exists (use --force to overwrite, or --resume {} to continue)",
            args.output.display(),
            ckpt.display()
        );
    }
    let style_bytes =
        std::fs::read(&args.style).with_context(|| format!("--style {}", args.style.display()))?;
    let style = normstyle::imaging::decode_rgb(&style_bytes, &args.style.display().to_string())
        .with_context(|| format!("--style {}", args.style.display()))?;
    let dir = args.content_dir.clone().unwrap_or_else(default_content_dir);
    let data = ContentSet::open(&dir, cfg.size)
        .with_context(|| format!("--content-dir {}", dir.display()))?;
    if !data.skipped().is_empty() && !args.quiet {
        eprintln!(
            "skipped {} unreadable photo(s) in {} (first: {})",
            data.skipped().len(),
            dir.display(),
            data.skipped()[0].display()
        );
    }
    let loss = args.loss_net(&device)?;
    let sha = sha256_hex(&style_bytes);
    let mut trainer = Trainer::new(cfg.clone(), &style, sha, data, loss, &device)?;
    if let Some(r) = &args.resume {
        trainer = trainer.resume(r).context("--resume")?;
    }
    if trainer.step() >= args.steps {
        bail!(
            "--steps {}: the checkpoint is already at step {}; give a later step",
            args.steps,
            trainer.step()
        );
    }
    let mut log = match &args.log {
        Some(p) => Some(open_log(p, args.resume.is_some())?),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let bar = train_bar(trainer.step(), args.steps, args.quiet);
    let t0 = Instant::now();
    let first = trainer.step();
    if !args.quiet {
        eprintln!(
            "training {} with {} on {} photos at {}² (batch {}), steps {}..{}",
            cfg.arch,
            normstyle::model::trained::norm_name(cfg.norm),
            trainer.data().len(),
            cfg.size,
            cfg.batch_size,
            first + 1,
            args.steps
        );
    }
    while trainer.step() < args.steps {
        let l = match trainer.train_step() {
            Ok(l) => l,
            Err(e @ normstyle::Error::Diverged { .. }) => {
                bar.abandon();
                trainer.save_checkpoint(&ckpt)?;
                bail!(
                    "{e}; stopped, the last good state (step {}) is in {}",
                    trainer.step(),
                    ckpt.display()
                );
            }
            Err(e) => return Err(e.into()),
        };
        let secs = t0.elapsed().as_secs_f64();
        bar.set_position(l.step);
        bar.set_message(format!(
            "loss {:.4} · {:.2} steps/s",
            l.total,
            (l.step - first) as f64 / secs.max(1e-9)
        ));
        if let Some(w) = &mut log {
            if l.step % args.log_every == 0 || l.step == args.steps {
                write_row(w, &l, secs)?;
            }
        }
        if args.checkpoint_every > 0 && l.step % args.checkpoint_every == 0 {
            trainer.save_checkpoint(&ckpt)?;
        }
        if stop.load(Ordering::SeqCst) {
            trainer.save_checkpoint(&ckpt)?;
            bar.abandon();
            eprintln!(
                "interrupted at step {}: checkpoint {} (continue with --resume {})",
                l.step,
                ckpt.display(),
                ckpt.display()
            );
            return Ok(ExitCode::from(130));
        }
    }
    bar.finish_and_clear();
    trainer.save_checkpoint(&ckpt)?;
    trainer.save_model(&args.output)?;
    let secs = t0.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!(
            "trained to step {} in {:.1} s ({:.3} s/step): {}",
            trainer.step(),
            secs,
            secs / (trainer.step() - first) as f64,
            args.output.display()
        );
    }
    println!("{}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

fn train_bar(from: u64, to: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(to), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("step {pos}/{len} [{bar:30}] {msg} ({eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(from);
    bar
}

const LOG_HEADER: &str = "step,content_loss,style_loss,tv_loss,total_loss,seconds";

/// The log file: appended on resume (the header only when it is new).
fn open_log(path: &Path, resume: bool) -> anyhow::Result<std::fs::File> {
    let fresh = !resume || !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!fresh)
        .truncate(fresh)
        .open(path)
        .with_context(|| format!("--log {}", path.display()))?;
    if fresh {
        writeln!(f, "{LOG_HEADER}").with_context(|| format!("--log {}", path.display()))?;
    }
    Ok(f)
}

fn write_row(f: &mut std::fs::File, l: &StepLosses, secs: f64) -> anyhow::Result<()> {
    writeln!(
        f,
        "{},{},{},{},{},{:.3}",
        l.step, l.content, l.style, l.tv, l.total, secs
    )
    .context("writing the --log file")
}
