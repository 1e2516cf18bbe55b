//! `normstyle stylize` (files as arguments): every content × style (or one blend, mask or
//! preset) in one call; the contents form one batch, so `--norm bn` pools over them.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use normstyle::imaging::{self, Rgb};
use normstyle::pipeline::{output_name, stem, Content, StyleSpec};

use super::{check_output, progress_bar, StylizeArgs};

pub fn run(args: StylizeArgs) -> anyhow::Result<ExitCode> {
    let specs = args.specs()?;
    let outputs = output_paths(&args, &specs)?;
    // Decode every input first: a broken file fails the call before any work or output.
    let contents: Vec<Rgb> = args
        .content
        .iter()
        .map(|p| load(p))
        .collect::<Result<_, _>>()?;
    let style_images = args.style_images()?;
    let mask = args.load_mask()?;

    let t_load = Instant::now();
    let st = args.stylizer()?;
    super::memory::fit_to(
        st.family(),
        contents
            .iter()
            .map(|c| {
                let (w, h) = st.content_dimensions(c.dimensions());
                u64::from(w) * u64::from(h)
            })
            .max(),
    );
    let contents: Vec<Content> = contents
        .into_iter()
        .zip(&args.content)
        .map(|(img, p)| st.content_from_rgb(img).map_err(|e| e.in_file(p)))
        .collect::<Result<_, _>>()?;
    let styles = super::prepare_styles(&st, style_images)?;
    let n = contents.len();
    let setup = t_load.elapsed().as_secs_f64() / n as f64;

    let bar = progress_bar(outputs.len(), args.quiet);
    bar.set_message(st.family().name());
    let mut stdout = std::io::stdout().lock();
    for (s, spec) in specs.iter().enumerate() {
        let t0 = Instant::now();
        let results = st.render(&contents, &spec.styling(&styles, mask.as_ref())?)?;
        // Per-image time: this style's work, plus the loading shared by all styles.
        let per_image = t0.elapsed().as_secs_f64() / n as f64 + setup / specs.len() as f64;
        for (c, rgb) in results.iter().enumerate() {
            let out = &outputs[s * n + c];
            match out {
                None => stdout.write_all(&imaging::encode(rgb, image::ImageFormat::Png, 95)?)?,
                Some(path) => imaging::save(rgb, path, args.quality)?,
            }
            bar.inc(1);
            let shown = out.as_ref().map_or("-".into(), |p| p.display().to_string());
            if args.json {
                let obj = serde_json::json!({
                    "content": args.content[c].display().to_string(),
                    "style": spec.label(), "output": shown,
                    "width": rgb.width(), "height": rgb.height(),
                    "model": st.family().name(), "norm": st.norm().to_string(),
                    "alpha": st.alpha(), "seconds": per_image,
                });
                bar.suspend(|| writeln!(stdout, "{obj}"))?;
            } else if !args.quiet {
                let (w, h) = rgb.dimensions();
                let (content, label) = (args.content[c].display(), spec.label());
                bar.suspend(|| {
                    eprintln!("{content} × {label} → {shown} ({w}×{h}, {per_image:.2} s)")
                });
            }
        }
    }
    bar.finish_and_clear();
    if args.profile {
        eprint!("{}", normstyle::profile::report());
    }
    Ok(ExitCode::SUCCESS)
}

/// Decodes a content file, or standard input for `-`.
fn load(p: &std::path::Path) -> anyhow::Result<Rgb> {
    if p.as_os_str() != "-" {
        return Ok(imaging::load_rgb(p)?);
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .context("reading standard input")?;
    Ok(imaging::decode_rgb(&bytes, "<stdin>")?)
}

/// One output path per (style, content) job, style-major (`None` = stdout), checked up front:
/// no overwriting without --force, never an input file.
fn output_paths(args: &StylizeArgs, specs: &[StyleSpec]) -> anyhow::Result<Vec<Option<PathBuf>>> {
    let n = specs.len() * args.content.len();
    if args.content.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        bail!("-: standard input holds one image; give `-` once");
    }
    let name = |c: usize, s: usize| {
        let content = match &args.content[c] {
            p if p.as_os_str() == "-" => "stdin".to_string(),
            p => stem(p),
        };
        output_name(&content, &specs[s].label(), args.format.ext())
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
                bail!("-o {}: this call makes {n} outputs, so -o must be a folder (not an image file name)", dir.display());
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
    let m = &args.model;
    let inputs: Vec<PathBuf> = (args.content.iter().chain(&args.style))
        .chain(args.mask.iter().chain(&m.vgg).chain(&m.decoder))
        .cloned()
        .collect();
    for p in paths.iter().flatten() {
        check_output(p, &inputs, args.force)?;
    }
    Ok(paths)
}
