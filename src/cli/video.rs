//! `normstyle stylize` on a clip: a video file (ffmpeg), an animated GIF, or a folder of frames
//! (--frames). One style (or blend, mask or preset), one output, frame by frame.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use normstyle::imaging;
use normstyle::pipeline::{output_name, stem, FrameStylizer, TemporalOptions};
use normstyle::video::{
    self, ClipKind, EncodeOptions, Fps, VideoReader, VideoWriter, WriteOptions,
};

use super::{check_output, StylizeArgs};

/// The rate of a video written from frames that carry none (a folder of frames).
const DEFAULT_FPS: Fps = Fps { num: 24, den: 1 };

pub fn run(args: StylizeArgs) -> anyhow::Result<ExitCode> {
    let specs = args.specs()?;
    if specs.len() != 1 {
        bail!(
            "--style: a clip gets one output; blend the {} styles with --style-weights",
            specs.len()
        );
    }
    let spec = &specs[0];
    let (input, in_kind) = input(&args)?;
    let (output, out_kind) = output(&args, &input, in_kind, &spec.label())?;

    // Open the clip first: a broken or missing one fails before the model loads.
    let reader = VideoReader::open(&input)?;
    let info = reader.info().clone();
    let style_images = args.style_images()?;
    let mask = args.load_mask()?;

    // A clip keeps its frame size unless --content-size says otherwise.
    let st = args
        .stylizer()?
        .with_content_size(Some(args.content_size.unwrap_or(0)));
    let (w, h) = st.content_dimensions((info.width, info.height));
    super::memory::fit_to(st.family(), Some(u64::from(w) * u64::from(h)));
    let styles = super::prepare_styles(&st, style_images)?;
    let styling = spec.styling(&styles, mask.as_ref())?;
    let mut frames = FrameStylizer::new(
        &st,
        styling,
        TemporalOptions {
            momentum: args.temporal,
            scene_threshold: args.scene_threshold,
        },
    )?;

    let mut encode = EncodeOptions::new(info.fps.unwrap_or(DEFAULT_FPS));
    if let Some(c) = &args.codec {
        encode.codec = c.clone();
    }
    if let Some(crf) = args.crf {
        encode.crf = crf;
    }
    if in_kind == ClipKind::Video && out_kind == ClipKind::Video && info.has_audio {
        encode.audio_from = Some(input.clone());
    }
    if out_kind != ClipKind::Frames {
        // Temporary files of runs that were killed (kill -9 leaves them behind).
        let dir = output.parent().filter(|p| !p.as_os_str().is_empty());
        let _ = normstyle::weights::remove_stale_temps(
            dir.unwrap_or(Path::new(".")),
            std::time::Duration::from_secs(24 * 3600),
        );
    }
    let writer = VideoWriter::create(
        &output,
        out_kind,
        WriteOptions {
            encode,
            overwrite: args.force,
        },
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let bar = frame_bar(info.frames, args.quiet);
    bar.set_message(format!("{} {}", st.family().name(), stem(&input)));
    let summary = video::stylize_clip(
        reader,
        writer,
        &mut frames,
        &mut |n| bar.set_position(n),
        &stop,
    );
    bar.finish_and_clear();
    let summary = match summary {
        Err(_) if stop.load(Ordering::SeqCst) => {
            bail!("interrupted: {} was not written", output.display())
        }
        // Errors name their file already, or are the network's: name the clip then.
        r => r.map_err(|e| e.in_file(&input))?,
    };

    let fps = summary.frames as f64 / summary.seconds.max(1e-9);
    let (w, h) = summary.size;
    if args.json {
        let obj = serde_json::json!({
            "content": input.display().to_string(), "style": spec.label(),
            "output": output.display().to_string(), "frames": summary.frames,
            "width": w, "height": h, "fps": fps, "seconds": summary.seconds,
            "scene_cuts": summary.scene_cuts, "temporal": args.temporal,
            "model": st.family().name(), "norm": st.norm().to_string(), "alpha": st.alpha(),
        });
        println!("{obj}");
    } else if !args.quiet {
        let cuts = match summary.scene_cuts {
            0 => String::new(),
            n => format!(", {n} scene cut{}", if n == 1 { "" } else { "s" }),
        };
        eprintln!(
            "{} × {} → {} ({} frames, {w}×{h}, {fps:.2} frames/s, {:.1} s{cuts})",
            input.display(),
            spec.label(),
            output.display(),
            summary.frames,
            summary.seconds
        );
    }
    if args.profile {
        eprint!("{}", normstyle::profile::report());
    }
    Ok(ExitCode::SUCCESS)
}

/// The clip to read and its kind.
fn input(args: &StylizeArgs) -> anyhow::Result<(PathBuf, ClipKind)> {
    if let Some(dir) = &args.frames {
        if !dir.is_dir() {
            bail!("--frames {}: not a folder", dir.display());
        }
        return Ok((dir.clone(), ClipKind::Frames));
    }
    if args.content.len() != 1 {
        bail!("a clip is stylized on its own: give one video or GIF per call");
    }
    let p = &args.content[0];
    if args.shard.is_some() || args.manifest.is_some() {
        bail!("--shard/--manifest: apply to photo batches (--content-dir), not clips");
    }
    match ClipKind::of(p) {
        Some(k @ (ClipKind::Video | ClipKind::Gif)) => Ok((p.clone(), k)),
        _ => bail!("{}: not a video or GIF", p.display()),
    }
}

/// Where the clip goes and as what: -o, or `<input>_stylized_<style>` beside the current folder
/// in the input's own form.
fn output(
    args: &StylizeArgs,
    input: &Path,
    in_kind: ClipKind,
    label: &str,
) -> anyhow::Result<(PathBuf, ClipKind)> {
    let path = match &args.output {
        Some(o) if o.as_os_str() == "-" => bail!("-o -: a clip cannot go to stdout"),
        Some(o) => o.clone(),
        None if in_kind == ClipKind::Frames => {
            PathBuf::from(format!("{}_stylized_{label}", stem(input)))
        }
        None => {
            let ext = input
                .extension()
                .map_or("mp4".into(), |e| e.to_string_lossy().into_owned());
            PathBuf::from(output_name(&stem(input), label, &ext))
        }
    };
    let kind = if in_kind == ClipKind::Frames {
        if path.exists() && !path.is_dir() {
            bail!(
                "-o {}: --frames writes a folder of PNGs, and this is a file",
                path.display()
            );
        }
        if imaging::format_for(&path).is_ok()
            || ClipKind::of(&path).is_some_and(|k| k != ClipKind::Frames)
        {
            bail!(
                "-o {}: --frames writes a folder of PNGs; give a folder name",
                path.display()
            );
        }
        if path.canonicalize().ok() == input.canonicalize().ok() {
            bail!(
                "-o {}: the output folder would overwrite the input frames",
                path.display()
            );
        }
        ClipKind::Frames
    } else {
        match ClipKind::of(&path) {
            Some(k @ (ClipKind::Video | ClipKind::Gif)) if !path.is_dir() => k,
            _ => bail!(
                "-o {}: a clip is written as a video ({}) or a .gif",
                path.display(),
                video::VIDEO_EXTENSIONS.join(", ")
            ),
        }
    };
    if kind != ClipKind::Frames {
        let m = &args.model;
        let inputs: Vec<PathBuf> = std::iter::once(input.to_path_buf())
            .chain(args.style.iter().cloned())
            .chain(args.mask.iter().chain(&m.vgg).chain(&m.decoder).cloned())
            .collect();
        check_output(&path, &inputs, args.force)?;
    } else if !args.force && path.is_dir() {
        // Frames keep their input names: refuse to replace any before the first one is done.
        for f in video::frame_files(input)? {
            let out = path.join(Path::new(f.file_name().unwrap_or_default()).with_extension("png"));
            if out.exists() {
                bail!(
                    "{}: already exists (use --force to overwrite)",
                    out.display()
                );
            }
        }
    }
    Ok((path, kind))
}

/// A bar over the clip's frames with frames/s and time left (a spinner when the count is not
/// known), hidden with -q.
fn frame_bar(frames: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let target = ProgressDrawTarget::stderr();
    let (bar, template) = match frames {
        Some(n) => (
            ProgressBar::with_draw_target(Some(n), target),
            "{msg} [{bar:30}] {pos}/{len} frames ({per_sec}, {eta} left)",
        ),
        None => (
            ProgressBar::with_draw_target(None, target),
            "{msg} {spinner} {pos} frames ({per_sec})",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
