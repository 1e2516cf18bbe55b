//! `normstyle bench`: times one model end to end on random inputs, for the side-by-side scripts
//! in `scripts/` (`bench_magenta.py`, `bench_vs_reference.sh`) that run the reference
//! implementation alternately on the same machine. Prints one JSON object per timed run.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;
use candle::Tensor;
use normstyle::model::adain::{AdaIn, TransferOptions};
use normstyle::model::magenta::{StylePredictor, Transformer};
use normstyle::NormKind;

/// What to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Magenta: the predictor on a 256² style, then the transformer on a size² content.
    Magenta,
    /// AdaIN: encode a size² content and a size² style, AdaIN, decode (random weights unless
    /// --vgg/--decoder are given).
    Adain,
    /// Each distinct convolution of AdaIN at size² alone (reflection pad 1, bias, ReLU; weights
    /// prepared as the model prepares them): one JSON line per layer with the median seconds
    /// of the runs and GFLOP/s counted as for direct convolution.
    AdainLayers,
    /// One training step of `normstyle train` (--arch, --loss-net, --batch-size, --norm) on
    /// random size² crops: the transform network and the loss network forward and backward,
    /// then Adam. `--loss-net vgg` uses random weights of the released vgg_normalised shapes
    /// and Gram style losses (as scripts/bench_train_vs_pytorch.py's PyTorch side).
    Train,
}

/// Arguments of `normstyle bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  RAYON_NUM_THREADS=2 normstyle bench magenta --size 1024 --runs 5
  RAYON_NUM_THREADS=1 normstyle bench magenta --size 1024 --runs 10 --profile
  normstyle bench adain --size 512 --warmup 1 --runs 5
  RAYON_NUM_THREADS=2 normstyle bench train --arch small --size 128 --loss-net vgg --runs 5")]
pub struct Args {
    /// The model to time.
    #[arg(value_enum)]
    which: Which,
    /// Content side in pixels (square).
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// AdaIN encoder weights (default: random weights of the right shapes).
    #[arg(long)]
    vgg: Option<std::path::PathBuf>,
    /// AdaIN decoder weights.
    #[arg(long)]
    decoder: Option<std::path::PathBuf>,
    /// Device: cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also print where the time of the timed runs went, per stage, on stderr.
    #[arg(long)]
    profile: bool,
    /// train: small or johnson.
    #[arg(long, default_value = "small")]
    arch: String,
    /// train: predictor or vgg (random weights).
    #[arg(long, default_value = "vgg")]
    loss_net: String,
    /// train: crops per step.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// train: the norm (in, bn, ln, gn:G, none).
    #[arg(long, default_value = "in")]
    norm: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.size < 16 || args.runs == 0 {
        bail!("--size must be ≥ 16 and --runs ≥ 1");
    }
    let device = normstyle::device::device(&args.device)?;
    if args.which == Which::AdainLayers {
        return layers(&args, &device);
    }
    if args.which == Which::Train {
        return train_step(&args, &device);
    }
    let content = Tensor::rand(0f32, 1.0, (1, 3, args.size, args.size), &device)?;
    let mut step: Box<dyn FnMut() -> anyhow::Result<()>> = match args.which {
        Which::Magenta => {
            let predictor = StylePredictor::embedded(&device)?;
            let transformer = Transformer::embedded(&device)?;
            let style = Tensor::rand(0f32, 1.0, (1, 3, 256, 256), &device)?;
            Box::new(move || {
                let v = predictor.forward(&style)?.flatten_all()?.to_vec1::<f32>()?;
                let y = transformer.forward(std::slice::from_ref(&content), &[v], NormKind::In)?;
                device.synchronize()?;
                drop(y);
                Ok(())
            })
        }
        Which::AdainLayers | Which::Train => unreachable!("handled above"),
        Which::Adain => {
            let net = match (&args.vgg, &args.decoder) {
                (Some(v), Some(d)) => AdaIn::load(v, d, &device)?,
                (None, None) => AdaIn::random(&device)?,
                _ => bail!("give both --vgg and --decoder, or neither (random weights)"),
            };
            let style = Tensor::rand(0f32, 1.0, (1, 3, args.size, args.size), &device)?;
            Box::new(move || {
                let y = net.stylize(
                    std::slice::from_ref(&content),
                    &[(style.clone(), 1.0)],
                    &TransferOptions::default(),
                )?;
                device.synchronize()?;
                drop(y);
                Ok(())
            })
        }
    };
    for _ in 0..args.warmup {
        step()?;
    }
    if args.profile {
        normstyle::profile::enable();
    }
    for i in 0..args.runs {
        let t0 = Instant::now();
        step()?;
        let s = t0.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({"impl": "normstyle", "model": format!("{:?}", args.which).to_lowercase(),
                               "size": args.size, "run": i, "seconds": s,
                               "threads": candle::utils::get_num_threads(),
                               "kernels": normstyle::ops::kernel_path()})
        );
    }
    if args.profile {
        eprint!("{}", normstyle::profile::report());
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench train`: one JSON line per timed optimizer step.
fn train_step(args: &Args, device: &candle::Device) -> anyhow::Result<ExitCode> {
    use normstyle::train::{ContentSet, LossNet, LossNetKind, StyleLoss, TrainConfig, Trainer};
    let size = u32::try_from(args.size)?;
    let mut rng = normstyle::rng::Rng::new(11, 0);
    let mut image = || {
        image::RgbImage::from_fn(size + size / 4, size, |_, _| {
            image::Rgb([0, 1, 2].map(|_| rng.below(256) as u8))
        })
    };
    let photos: Vec<(std::path::PathBuf, image::RgbImage)> = (0..args.batch_size.max(4))
        .map(|i| (format!("random{i}.png").into(), image()))
        .collect();
    let style = image::DynamicImage::ImageRgb8(image()).to_rgb32f();
    let kind: LossNetKind = args.loss_net.parse()?;
    let loss = match kind {
        LossNetKind::Vgg => LossNet::vgg(AdaIn::random(device)?.encoder, StyleLoss::Gram),
        LossNetKind::Predictor => LossNet::predictor(device, StyleLoss::Stats)?,
    };
    let cfg = TrainConfig {
        arch: args.arch.parse()?,
        norm: normstyle::model::trained::parse_norm(&args.norm)?,
        size,
        batch_size: args.batch_size,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(
        cfg,
        &style,
        "bench".into(),
        ContentSet::from_images(photos, size)?,
        loss,
        device,
    )?;
    for _ in 0..args.warmup {
        t.train_step()?;
    }
    if args.profile {
        normstyle::profile::enable();
    }
    for i in 0..args.runs {
        let t0 = Instant::now();
        t.train_step()?;
        device.synchronize()?;
        println!(
            "{}",
            serde_json::json!({"impl": "normstyle", "model": "train", "arch": args.arch,
                               "loss_net": args.loss_net, "norm": args.norm,
                               "batch_size": args.batch_size, "size": args.size, "run": i,
                               "seconds": t0.elapsed().as_secs_f64(),
                               "threads": candle::utils::get_num_threads()})
        );
    }
    if args.profile {
        eprint!("{}", normstyle::profile::report());
    }
    Ok(ExitCode::SUCCESS)
}

/// The 3×3 convolutions of AdaIN at `size`²: (Cin, Cout, side, how many per stylization; the
/// encoder runs on content and style).
fn adain_layers(size: usize) -> Vec<(usize, usize, usize, usize)> {
    let (s1, s2, s4, s8) = (size, size.div_ceil(2), size.div_ceil(4), size.div_ceil(8));
    vec![
        (3, 64, s1, 2),
        (64, 64, s1, 3),
        (64, 128, s2, 2),
        (128, 128, s2, 3),
        (128, 256, s4, 2),
        (256, 256, s4, 9),
        (256, 512, s8, 2),
        (512, 256, s8, 1),
        (256, 128, s4, 1),
        (128, 64, s2, 1),
        (64, 3, s1, 1),
    ]
}

fn layers(args: &Args, device: &candle::Device) -> anyhow::Result<ExitCode> {
    use normstyle::ops::{conv2d_prepared, Activation, ConvSpec, Padding, WinogradWeights};
    let spec = ConvSpec {
        padding: Padding::Reflect(1),
        act: Activation::Relu,
        ..ConvSpec::default()
    };
    for (cin, cout, side, count) in adain_layers(args.size) {
        let x = Tensor::rand(0f32, 1.0, (1, cin, side, side), device)?;
        let bound = (6.0 / (cin * 9) as f64).sqrt();
        let w =
            Tensor::rand(-bound, bound, (cout, cin, 3, 3), device)?.to_dtype(candle::DType::F32)?;
        let b = Tensor::rand(-0.1f32, 0.1, cout, device)?;
        let prepared = WinogradWeights::new(&w)?;
        let once = || -> anyhow::Result<f64> {
            let t0 = Instant::now();
            let y = conv2d_prepared(&x, &w, Some(&b), spec, prepared.as_ref())?;
            device.synchronize()?;
            drop(y);
            Ok(t0.elapsed().as_secs_f64())
        };
        for _ in 0..args.warmup {
            once()?;
        }
        let mut times = (0..args.runs)
            .map(|_| once())
            .collect::<anyhow::Result<Vec<_>>>()?;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let gflop = 2.0 * (cin * cout * 9 * side * side) as f64 / 1e9;
        println!(
            "{}",
            serde_json::json!({"impl": "normstyle", "layer": format!("{cin}->{cout} {side}x{side}"),
                               "per_stylization": count, "seconds": median,
                               "gflops": gflop / median, "threads": candle::utils::get_num_threads(),
                               "kernels": normstyle::ops::kernel_path()})
        );
    }
    Ok(ExitCode::SUCCESS)
}
