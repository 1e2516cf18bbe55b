//! `normstyle norms`: the normalization table, and a demonstration on a random feature map.

use std::process::ExitCode;

use anyhow::Context;
use candle::{Device, Tensor};

use normstyle::norm::{adaptive_norm, NormKind};

/// Arguments of `normstyle norms`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle norms
  normstyle norms --demo --norms in,ln,gn:8")]
pub struct Args {
    /// Align a random (1, C, H, W) "content" map to a random "style" map with each kind and
    /// print the resulting per-channel statistics.
    #[arg(long)]
    demo: bool,
    /// Normalizations to list or run (in, bn, ln, gn, gn:G), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "in,bn,ln,gn")]
    norms: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
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
        let content = Tensor::randn(0f32, 1.0, (1, 8, 16, 16), &dev)?;
        let ramp = Tensor::arange(0f32, 8.0, &dev)?.reshape((1, 8, 1, 1))?;
        let style = Tensor::randn(0f32, 1.0, (1, 8, 16, 16), &dev)?
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
