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
    /// oriented gratings (8 classes, random brightness/contrast, noise; drawn from --seed) and
    /// measure the held-out test error: writes results.csv and plot.png to -o.
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
        /// Seed of the data, the initial weights and the batch order.
        #[arg(long, default_value_t = 0)]
        seed: u64,
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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.experiment {
        Some(e) => experiment(e),
        None => table(args),
    }
}

/// `norms experiment`: train, then write results.csv and plot.png.
fn experiment(e: Experiment) -> anyhow::Result<ExitCode> {
    let Experiment::Experiment {
        norms,
        batch_sizes,
        steps,
        seed,
        device,
        output,
        force,
        quiet,
    } = e;
    let norms = norms
        .iter()
        .map(|s| match s.trim() {
            "none" => Ok(None),
            k => k.parse::<NormKind>().map(Some),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = ExperimentConfig {
        norms,
        batch_sizes,
        steps,
        seed,
        ..ExperimentConfig::default()
    };
    let (csv_path, png_path) = (output.join("results.csv"), output.join("plot.png"));
    for p in [&csv_path, &png_path] {
        if p.exists() && !force {
            bail!("{}: already exists (use --force to overwrite)", p.display());
        }
    }
    let device = normstyle::device::device(&device)?;
    let bar = progress_bar(cfg.norms.len() * cfg.batch_sizes.len(), quiet);
    bar.set_message("training");
    let results = experiment::run(&cfg, &device, |r| {
        bar.inc(1);
        if quiet {
            return;
        }
        bar.suspend(|| {
            eprintln!(
                "{:>5} batch {:>3}: test error {:5.1} %, {:.1} s",
                r.norm,
                r.batch_size,
                100.0 * r.test_error,
                r.seconds
            )
        });
    })?;
    bar.finish_and_clear();
    std::fs::create_dir_all(&output).with_context(|| format!("creating {}", output.display()))?;
    write_atomic(&csv_path, experiment::csv(&results).as_bytes())?;
    let budget = steps.map_or("one epoch each".into(), |s| format!("{s} steps each"));
    let title = format!("test error vs batch size ({budget}, seed {seed})");
    normstyle::imaging::save(&experiment::plot(&results, &title)?, &png_path, 95)?;
    print!("{}", experiment::csv(&results));
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
