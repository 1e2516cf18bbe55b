//! `normstyle stylize --content-dir/--style-dir`: safe batch runs over folders.
//!
//! Photos are processed one at a time (each is its own batch, so `--norm bn` is refused here).
//! An output that already exists is skipped unless `--force`, so an interrupted run resumes; a
//! photo that fails is reported and the run goes on; Ctrl-C stops after the current photo
//! (outputs are written to a temporary file and renamed, so nothing half-written remains);
//! style features are computed once per style image. The run ends with a summary and exit
//! code 1 if anything failed (130 when interrupted).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use candle::Tensor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::engine::{Common, Engine};
use super::stylize::{
    check_adain_size, check_model_flags, stem, style_specs, Args, Model, StyleSpec,
};
use crate::color::{keep_luminance, PreserveColor};
use crate::imaging::{self, Rgb};
use crate::norm::NormKind;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let norm: NormKind = args.norm.parse()?;
    if norm == NormKind::Bn {
        bail!("--norm bn: a batch run stylizes one photo at a time, so BN statistics would equal IN; give the photos as arguments to pool them");
    }
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha: {} is outside [0, 1]", args.alpha);
    }
    let preserve: Option<PreserveColor> =
        args.preserve_color.as_deref().map(str::parse).transpose()?;
    check_model_flags(&args)?;
    if args.content.is_empty() {
        bail!("--content-dir: no images (PNG, JPEG, WebP) found");
    }
    let specs = style_specs(&args)?;
    let out_dir = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    if out_dir.as_os_str() == "-" || (out_dir.exists() && !out_dir.is_dir()) {
        bail!("-o {}: a batch run writes into a folder", out_dir.display());
    }
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let ext = args.format.ext();
    let base_of = |p: &Path, root: Option<&PathBuf>| -> String {
        // Inside a scanned folder, the relative path keeps names from different subfolders apart.
        match root.and_then(|r| p.strip_prefix(r).ok()) {
            Some(rel) => rel
                .with_extension("")
                .to_string_lossy()
                .replace(['/', '\\'], "_"),
            None => stem(p),
        }
    };
    let content_names: Vec<String> = args
        .content
        .iter()
        .map(|p| base_of(p, args.content_dir.as_ref()))
        .collect();
    let style_label = |s: &StyleSpec| match s {
        StyleSpec::Images(v) if v.len() == 1 => base_of(&v[0].0, args.style_dir.as_ref()),
        other => other.label(),
    };
    let output = |c: usize, s: usize| {
        out_dir.join(format!(
            "{}_stylized_{}.{ext}",
            content_names[c],
            style_label(&specs[s])
        ))
    };

    let device = crate::device::device(&args.device)?;
    let adain = args.model == Model::Adain;
    let mask = args.load_mask()?;
    let common = Common {
        device: device.clone(),
        alpha: args.alpha,
        norm,
        preserve,
        mask,
    };

    let total = args.content.len() * specs.len();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta} left)")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b
    };
    let report = |msg: String| bar.suspend(|| eprintln!("{msg}"));

    // Styles: decoded once; a broken one fails its pairs, not the run.
    let mut styles: HashMap<PathBuf, Rgb> = HashMap::new();
    let mut broken_styles: Vec<PathBuf> = Vec::new();
    for p in &args.style {
        if styles.contains_key(p) || broken_styles.contains(p) {
            continue;
        }
        match imaging::load_rgb(p) {
            Ok(img) => {
                let img = if adain {
                    args.fit(img, args.style_size)
                } else {
                    img
                };
                styles.insert(p.clone(), img);
            }
            Err(e) => {
                report(format!("error: {e:#}"));
                broken_styles.push(p.clone());
            }
        }
    }
    let spec_ok = |s: &StyleSpec| match s {
        StyleSpec::Images(v) => v.iter().all(|(p, _)| styles.contains_key(p)),
        StyleSpec::Masked([a, b]) => styles.contains_key(a) && styles.contains_key(b),
        StyleSpec::Preset(_) => true,
    };

    let mut engine = match args.model {
        Model::Adain => {
            let (vgg, dec) = super::stylize::adain_weights(
                args.vgg.as_ref(),
                args.decoder.as_ref(),
                &args.repo,
                args.quiet,
            )?;
            Engine::adain(&vgg, &dec, &[], &common)?
        }
        Model::Magenta => Engine::magenta(
            matches!(specs.first(), Some(StyleSpec::Preset(_))),
            &[],
            &common,
        )?,
    };
    bar.set_message(engine.name());

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second handler cannot be installed in the same process; a failure only loses the
        // graceful stop.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }

    let (mut done, mut skipped, mut failed) = (0usize, 0usize, 0usize);
    let mut interrupted = false;
    let mut stdout = std::io::stdout().lock();
    for (c, path) in args.content.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let pending: Vec<usize> = (0..specs.len())
            .filter(|&s| {
                let exists = output(c, s).exists() && !args.force;
                if exists {
                    skipped += 1;
                    bar.inc(1);
                } else if !spec_ok(&specs[s]) {
                    failed += 1;
                    bar.inc(1);
                    return false;
                }
                !exists
            })
            .collect();
        if pending.is_empty() {
            continue;
        }
        let prepared = (|| -> anyhow::Result<(Rgb, Tensor)> {
            let img = args.fit(imaging::load_rgb(path)?, args.content_size);
            if adain {
                check_adain_size(path, &img)?;
            }
            let t = imaging::to_tensor(&img, &device)?;
            Ok((img, t))
        })();
        let (img, tensor) = match prepared {
            Ok(v) => v,
            Err(e) => {
                report(format!("error: {e:#}"));
                failed += pending.len();
                bar.inc(pending.len() as u64);
                continue;
            }
        };
        let images = [img];
        let tensors = [tensor];
        if let Err(e) = engine.set_contents(&tensors, &images, &common) {
            report(format!("error: {}: {e:#}", path.display()));
            failed += pending.len();
            bar.inc(pending.len() as u64);
            continue;
        }
        for s in pending {
            let out = output(c, s);
            let t0 = Instant::now();
            let result = (|| -> anyhow::Result<(u32, u32)> {
                let mut y = engine
                    .render(&specs[s], &tensors, &images, &styles, &common)?
                    .remove(0);
                if preserve == Some(PreserveColor::Luminance) {
                    y = keep_luminance(&y, &tensors[0])?;
                }
                let rgb = imaging::to_rgb8(&y)?;
                imaging::save(&rgb, &out, args.quality)?;
                Ok(rgb.dimensions())
            })();
            bar.inc(1);
            match result {
                Ok((w, h)) => {
                    done += 1;
                    let secs = t0.elapsed().as_secs_f64();
                    if args.json {
                        let obj = serde_json::json!({
                            "content": path.display().to_string(), "style": specs[s].label(),
                            "output": out.display().to_string(), "width": w, "height": h,
                            "model": engine.name(), "norm": norm.to_string(), "alpha": args.alpha,
                            "seconds": secs,
                        });
                        bar.suspend(|| writeln!(stdout, "{obj}"))?;
                    }
                }
                Err(e) => {
                    failed += 1;
                    report(format!("error: {}: {e:#}", path.display()));
                }
            }
        }
    }
    bar.finish_and_clear();
    if args.profile {
        eprint!("{}", crate::profile::report());
    }
    let left = total - done - skipped - failed;
    let mut summary = format!("done {done}, skipped {skipped}, failed {failed}");
    if interrupted {
        summary += &format!(", not started {left} (interrupted)");
    }
    if !args.quiet || failed > 0 || interrupted {
        eprintln!("{summary}");
    }
    Ok(if interrupted {
        ExitCode::from(130)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
