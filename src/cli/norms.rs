//! `normstyle norms`: the normalization table, a demonstration on a random feature map, and
//! `norms experiment`, the batch-size claim measured by training ([`normstyle::experiment`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use candle::{Device, Tensor};

use normstyle::experiment::{self, ExperimentConfig};
use normstyle::norm::{adaptive_norm, NormKind};
use normstyle::weights::write_atomic;

use super::progress_bar;

/// Arguments of `normstyle norms`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
#[command(after_help = "Examples:
  normstyle norms
  normstyle norms --demo --norms in,ln,gn:8
  normstyle norms experiment -o experiment/
  normstyle norms experiment --norms bn,gn:8 --batch-sizes 2,32 --steps 100 -o quick/")]
pub struct Args {
    #[command(subcommand)]
    experiment: Option<Experiment>,
    /// Align a random (1, C, H, W) "content" map to a random "style" map with each kind and
    /// print the resulting per-channel statistics.
    #[arg(long)]
    demo: bool,
    /// Normalizations to list or run (in, bn, ln, gn, gn:G), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "in,bn,ln,gn")]
    norms: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Experiment {
    /// Train the same small CNN with each normalization at each batch size on procedural
    /// oriented gratings (8 classes, random brightness/contrast, noise; drawn from each seed)
    /// and measure the held-out test error: writes results.csv (one row per run),
    /// summary.csv (mean and std over the seeds) and plot.png to -o.
    Experiment {
        /// Normalizations (in, bn, ln, gn, gn:G, none), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "bn,gn:8,ln,in,none")]
        norms: Vec<String>,
        /// Batch sizes (≥ 2), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "2,4,8,32")]
        batch_sizes: Vec<usize>,
        /// Optimizer steps per run (default: one pass over the 4096 training images at every
        /// batch size, so every run sees the same images).
        #[arg(long)]
        steps: Option<usize>,
        /// The first seed of the data, the initial weights and the batch order.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Seeds: runs --seed … --seed+N−1 (one seed cannot tell BN's rise at small batches
        /// from noise).
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Device: cpu, cuda or metal.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Output folder (created): results.csv, plot.png.
        #[arg(short, long, value_hint = clap::ValueHint::DirPath)]
        output: PathBuf,
        /// Overwrite existing results.
        #[arg(long)]
        force: bool,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Huang & Belongie's Fig. 1 with LN, GN and no norm added: train the same single-style
    /// network with each norm on the original photos, on luminance-equalized photos and on
    /// photos pre-stylized to another style; writes losses.csv, curves.png, grid.png and
    /// models/ to -o.
    #[command(after_help = "Examples:
  normstyle norms train-experiment --style assets/styles/brushstrokes.jpg -o train-exp/
  normstyle norms train-experiment --style s.jpg --norms in,bn --inputs original --seeds 1 --steps 50 -o quick/
  normstyle norms train-experiment --style s.jpg --content-dir coco/ --size 256 --batch-size 8 --steps 5000 --loss-net vgg --vgg vgg_normalised.pth --device cuda -o paper/")]
    TrainExperiment(Box<TrainExperiment>),
}

/// Arguments of `norms train-experiment`.
#[derive(Debug, clap::Args)]
struct TrainExperiment {
    /// The style every network learns.
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    style: PathBuf,
    /// Content photos (default: the bundled assets/train).
    #[arg(long, value_hint = clap::ValueHint::DirPath)]
    content_dir: Option<PathBuf>,
    /// Norms (in, bn, ln, gn:G, none), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "in,bn,ln,gn:8,none")]
    norms: Vec<String>,
    /// Input kinds: original, equalized (luminance histogram equalization), prestylized (by
    /// the embedded Magenta network with --second-style), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "original,equalized,prestylized"
    )]
    inputs: Vec<String>,
    /// The style the prestylized inputs are painted in (default: the bundled
    /// en_campo_gris.jpg).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    second_style: Option<PathBuf>,
    /// Seeds per (norm, inputs): --seed … --seed+N−1.
    #[arg(long, default_value_t = 2)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Steps per network.
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// Crop side.
    #[arg(long, default_value_t = 128)]
    size: u32,
    /// Crops per step.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// small or johnson.
    #[arg(long, default_value = "small")]
    arch: String,
    /// predictor or vgg (with --vgg).
    #[arg(long, default_value = "predictor")]
    loss_net: String,
    /// With --loss-net vgg: vgg_normalised.pth.
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    vgg: Option<PathBuf>,
    /// Record the losses every N steps.
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Device: cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Output folder (created).
    #[arg(short, long, value_hint = clap::ValueHint::DirPath)]
    output: PathBuf,
    /// Overwrite existing results.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.experiment {
        Some(Experiment::TrainExperiment(e)) => train_experiment(*e),
        Some(e) => experiment(e),
        None => table(args),
    }
}

/// `norms train-experiment`: train every (seed, inputs, norm), then write the outputs.
fn train_experiment(a: TrainExperiment) -> anyhow::Result<ExitCode> {
    use normstyle::train::experiment::{self as texp, ExperimentConfig as TrainExp, InputKind};
    use normstyle::train::{ContentSet, LossNet, LossNetKind, StyleLoss, TrainConfig};
    let norms = a
        .norms
        .iter()
        .map(|s| normstyle::model::trained::parse_norm(s))
        .collect::<Result<Vec<_>, _>>()
        .context("--norms")?;
    let inputs = a
        .inputs
        .iter()
        .map(|s| s.parse::<InputKind>())
        .collect::<Result<Vec<_>, _>>()
        .context("--inputs")?;
    if a.seeds == 0 || a.steps == 0 || norms.is_empty() || inputs.is_empty() {
        bail!("--seeds/--steps/--norms/--inputs: nothing to train");
    }
    let arch = a.arch.parse().context("--arch")?;
    let cfg = TrainExp {
        norms,
        inputs,
        seeds: (a.seed..a.seed + a.seeds).collect(),
        steps: a.steps,
        base: TrainConfig {
            arch,
            size: a.size,
            batch_size: a.batch_size,
            ..TrainConfig::default()
        },
        log_every: a.log_every,
    };
    let out = &a.output;
    let files = [
        out.join("losses.csv"),
        out.join("curves.png"),
        out.join("grid.png"),
    ];
    for p in &files {
        if p.exists() && !a.force {
            bail!("{}: already exists (use --force to overwrite)", p.display());
        }
    }
    let device = normstyle::device::device(&a.device)?;
    let style_bytes =
        std::fs::read(&a.style).with_context(|| format!("--style {}", a.style.display()))?;
    let style = normstyle::imaging::decode_rgb(&style_bytes, &a.style.display().to_string())
        .with_context(|| format!("--style {}", a.style.display()))?;
    let asset = |p: &str| {
        let here = PathBuf::from("assets").join(p);
        if here.exists() {
            here
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("assets")
                .join(p)
        }
    };
    let second = a
        .second_style
        .clone()
        .unwrap_or_else(|| asset("styles/en_campo_gris.jpg"));
    let second_style = normstyle::imaging::load_rgb(&second)
        .with_context(|| format!("--second-style {}", second.display()))?;
    let dir = a.content_dir.clone().unwrap_or_else(|| asset("train"));
    let photos = ContentSet::open(&dir, a.size)
        .with_context(|| format!("--content-dir {}", dir.display()))?;
    let kind: LossNetKind = a.loss_net.parse().context("--loss-net")?;
    let loss = match kind {
        LossNetKind::Predictor => LossNet::predictor(&device, StyleLoss::Stats)?,
        LossNetKind::Vgg => {
            let Some(v) = &a.vgg else {
                bail!("--loss-net vgg: give --vgg vgg_normalised.pth");
            };
            let map = normstyle::weights::TensorMap::load(v, &device)?;
            LossNet::vgg(
                normstyle::model::adain::Encoder::load(&map)?,
                StyleLoss::Stats,
            )
        }
    };
    let prepared = texp::prepare_inputs(&photos, &cfg.inputs, &second_style, &device)?;
    let models_dir = out.join("models");
    std::fs::create_dir_all(&models_dir)
        .with_context(|| format!("creating {}", models_dir.display()))?;
    let runs = cfg.norms.len() * cfg.inputs.len() * cfg.seeds.len();
    let total = runs as u64 * cfg.steps;
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(st) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} steps ({eta} left)",
        ) {
            b.set_style(st.progress_chars("=> "));
        }
        b
    };
    let t0 = std::time::Instant::now();
    let sha = normstyle::weights::sha256_hex(&style_bytes);
    let done = std::cell::Cell::new(0u64);
    let mut grid_models = Vec::new();
    let first_seed = cfg.seeds[0];
    let inputs = texp::Inputs {
        style: &style,
        style_sha256: &sha,
        photos: &prepared,
        loss: &loss,
    };
    let points = texp::run(
        &cfg,
        inputs,
        &device,
        |p| {
            bar.set_message(format!(
                "{} {} seed {}",
                p.key.norm, p.key.inputs, p.key.seed
            ));
            bar.set_position(done.get() + p.losses.step);
        },
        |key, t| {
            done.set(done.get() + cfg.steps);
            bar.set_position(done.get());
            t.save_model(&models_dir.join(format!("{}.safetensors", key.stem())))?;
            if key.seed == first_seed && key.inputs == InputKind::Original {
                grid_models.push((key.norm.clone(), t.model()?));
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    write_atomic(&files[0], texp::curves_csv(&points).as_bytes())?;
    normstyle::imaging::save(&texp::plot_curves(&points)?, &files[1], 95)?;
    if !grid_models.is_empty() {
        let held_out = ["photos/chicago.jpg", "photos/golden_gate.jpg"]
            .iter()
            .map(|p| {
                let path = asset(p);
                Ok((p.to_string(), normstyle::imaging::load_rgb(&path)?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let title = format!(
            "trained with each norm ({} steps, {}², seed {first_seed}, original photos)",
            cfg.steps, cfg.base.size
        );
        let g = texp::grid(&grid_models, &held_out, 256, &title, &device)?;
        normstyle::imaging::save(&g, &files[2], 95)?;
    }
    eprintln!(
        "{runs} networks × {} steps in {secs:.0} s ({:.3} s/step): {}",
        cfg.steps,
        secs / total as f64,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `norms experiment`: train, then write results.csv and plot.png.
fn experiment(e: Experiment) -> anyhow::Result<ExitCode> {
    let Experiment::Experiment {
        norms,
        batch_sizes,
        steps,
        seed,
        seeds,
        device,
        output,
        force,
        quiet,
    } = e
    else {
        bail!("not the batch-size experiment");
    };
    let norms = norms
        .iter()
        .map(|s| normstyle::norm::parse_norm(s))
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = ExperimentConfig {
        norms,
        batch_sizes,
        steps,
        seed,
        seeds,
        ..ExperimentConfig::default()
    };
    if seeds == 0 {
        bail!("--seeds 0: run at least one seed");
    }
    let (csv_path, png_path) = (output.join("results.csv"), output.join("plot.png"));
    let summary_path = output.join("summary.csv");
    for p in [&csv_path, &png_path, &summary_path] {
        if p.exists() && !force {
            bail!("{}: already exists (use --force to overwrite)", p.display());
        }
    }
    let device = normstyle::device::device(&device)?;
    let bar = progress_bar(
        cfg.norms.len() * cfg.batch_sizes.len() * seeds as usize,
        quiet,
    );
    bar.set_message("training");
    let results = experiment::run(&cfg, &device, |r| {
        bar.inc(1);
        if quiet {
            return;
        }
        bar.suspend(|| {
            eprintln!(
                "{:>5} batch {:>3} seed {}: test error {:5.1} %, {:.1} s",
                r.norm,
                r.batch_size,
                r.seed,
                100.0 * r.test_error,
                r.seconds
            )
        });
    })?;
    bar.finish_and_clear();
    std::fs::create_dir_all(&output).with_context(|| format!("creating {}", output.display()))?;
    write_atomic(&csv_path, experiment::csv(&results).as_bytes())?;
    let summary = experiment::summary_csv(&experiment::summarize(&results));
    write_atomic(&summary_path, summary.as_bytes())?;
    let budget = steps.map_or("one epoch each".into(), |s| format!("{s} steps each"));
    let seeds_label = if seeds == 1 {
        format!("seed {seed}")
    } else {
        format!("mean of seeds {seed}–{}, band: min–max", seed + seeds - 1)
    };
    let title = format!("test error vs batch size ({budget}, {seeds_label})");
    normstyle::imaging::save(&experiment::plot(&results, &title)?, &png_path, 95)?;
    print!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// The table of what each kind normalizes over, and `--demo`.
fn table(args: Args) -> anyhow::Result<ExitCode> {
    let kinds = args
        .norms
        .iter()
        .map(|s| s.parse::<NormKind>())
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "{:<6} {:<34} batch-dependent",
        "norm", "statistics over (N, C, H, W)"
    );
    for k in &kinds {
        let over = match k {
            NormKind::In => "(H, W) per sample and channel".to_string(),
            NormKind::Bn => "(N, H, W) per channel".to_string(),
            NormKind::Ln => "(C, H, W) per sample".to_string(),
            NormKind::Gn(g) => format!("(C/gcd({g},C), H, W) per sample, group"),
        };
        println!(
            "{:<6} {:<34} {}",
            k.to_string(),
            over,
            if k.batch_dependent() { "yes" } else { "no" }
        );
    }
    if args.demo {
        let dev = Device::Cpu;
        // Seeded: the demo prints the same numbers on every run.
        let mut rng = normstyle::rng::Rng::new(8, 0);
        let content = rng.normal_tensor(0.0, 1.0, (1, 8, 16, 16), &dev)?;
        let ramp = Tensor::arange(0f32, 8.0, &dev)?.reshape((1, 8, 1, 1))?;
        let style = rng
            .normal_tensor(0.0, 1.0, (1, 8, 16, 16), &dev)?
            .broadcast_mul(&(&ramp + 1.0)?)?
            .broadcast_add(&ramp)?;
        println!("\nstyle channel means: {}", fmt_means(&style)?);
        for k in &kinds {
            let y = adaptive_norm(&content, &style, *k)
                .with_context(|| format!("aligning with {k}"))?;
            println!(
                "{:<6} output channel means: {}",
                k.to_string(),
                fmt_means(&y)?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt_means(x: &Tensor) -> anyhow::Result<String> {
    let m = x.mean_keepdim((2, 3))?.flatten_all()?.to_vec1::<f32>()?;
    Ok(m.iter()
        .map(|v| format!("{v:6.2}"))
        .collect::<Vec<_>>()
        .join(" "))
}
