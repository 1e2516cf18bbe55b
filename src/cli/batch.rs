//! `normstyle stylize --content-dir/--style-dir`: a folder batch through
//! [`normstyle::pipeline::Batch`] — resumable, a broken photo is reported and the run goes on,
//! Ctrl-C stops after the current photo; a summary ends the run (exit 1 if anything failed,
//! 130 when interrupted).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use normstyle::pipeline::{list_images, Batch, Event};
use normstyle::NormKind;

use super::{progress_bar, StylizeArgs};

pub fn run(mut args: StylizeArgs) -> anyhow::Result<ExitCode> {
    for (flag, dir) in [
        ("--content-dir", &args.content_dir),
        ("--style-dir", &args.style_dir),
    ] {
        if let Some(d) = dir.as_ref().filter(|d| !d.is_dir()) {
            bail!("{flag} {}: not a folder", d.display());
        }
    }
    if let Some(d) = &args.content_dir {
        args.content.extend(list_images(d, args.recursive)?);
    }
    if let Some(d) = &args.style_dir {
        let found = list_images(d, args.recursive)?;
        if found.is_empty() {
            bail!(
                "--style-dir {}: no images (PNG, JPEG, WebP) in it",
                d.display()
            );
        }
        args.style.extend(found);
    }
    if args.norm_kind()? == Some(NormKind::Bn) {
        bail!("--norm bn: a batch run stylizes one photo at a time, so BN statistics would equal IN; give the photos as arguments to pool them");
    }
    let specs = args.specs()?;
    let shard = args.shard()?;
    if let (Some((k, from)), false) = (&shard, args.quiet) {
        eprintln!("shard {k} (from {from})");
    }
    if args.content.is_empty() {
        bail!("--content-dir: no images (PNG, JPEG, WebP) found");
    }
    let out_dir = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    if out_dir.as_os_str() == "-" || (out_dir.exists() && !out_dir.is_dir()) {
        bail!("-o {}: a batch run writes into a folder", out_dir.display());
    }
    let batch = Batch::new(args.content.clone(), specs, out_dir)
        .with_content_root(args.content_dir.clone())
        .with_style_root(args.style_dir.clone())
        .with_mask(args.load_mask()?)
        .with_extension(args.format.ext())
        .with_quality(args.quality)
        .with_force(args.force)
        .with_shard(shard.as_ref().map(|(k, _)| *k))
        .with_manifest(args.manifest.clone());
    let st = args.stylizer()?;
    // Photos are decoded one at a time inside the run; their working size is bounded only by
    // --content-size (AdaIN sizes the shorter side: allow a 2:1 aspect).
    super::memory::fit_to(
        st.family(),
        match args.content_size {
            Some(0) => None,
            Some(n) => Some(2 * u64::from(n).pow(2)),
            None => Some(2 * 1024 * 1024),
        },
    );

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A second handler cannot be installed in one process; that only loses the graceful stop.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let bar = progress_bar(batch.len(), args.quiet);
    bar.set_message(st.family().name());
    let mut stdout = std::io::stdout().lock();
    let mut write_err = None;
    let summary = batch.run(&st, &stop, |event| match event {
        Event::Done {
            content,
            style,
            output,
            width,
            height,
            seconds,
        } => {
            bar.inc(1);
            if args.json {
                let obj = serde_json::json!({
                    "content": content.display().to_string(), "style": style,
                    "output": output.display().to_string(), "width": width, "height": height,
                    "model": st.family().name(), "norm": st.norm().to_string(), "alpha": st.alpha(),
                    "seconds": seconds,
                });
                if let Err(e) = bar.suspend(|| writeln!(stdout, "{obj}")) {
                    write_err.get_or_insert(e);
                }
            }
        }
        Event::Skipped { .. } => bar.inc(1),
        Event::Failed { error, outputs, .. } => {
            bar.inc(outputs as u64);
            bar.suspend(|| eprintln!("error: {}", super::chain(error)));
        }
    })?;
    bar.finish_and_clear();
    if let Some(e) = write_err {
        return Err(e).context("writing to stdout");
    }
    if args.profile {
        eprint!("{}", normstyle::profile::report());
    }
    if summary.stale_removed > 0 && !args.quiet {
        let n = summary.stale_removed;
        eprintln!("removed {n} temporary file(s) left by an interrupted run");
    }
    if !args.quiet || summary.failed > 0 || summary.not_started > 0 {
        eprintln!("{summary}");
    }
    Ok(if summary.not_started > 0 {
        ExitCode::from(130)
    } else if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
