//! `normstyle compare`: the same photos stylized with each normalization variant, side by side,
//! as one labeled grid, with the numbers of every tile (table on stdout, JSON, CSV, HTML).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use candle::Tensor;

use super::engine::{Common, Engine};
use super::stylize::{Model, StyleSpec};
use crate::compare::{adain_losses, color_distance, ssim, vector_distance};
use crate::grid::{self, Cell};
use crate::imaging::{self, Rgb};
use crate::model::adain::{StyleInput, TransferOptions, FEATURE_CHANNELS, MIN_SIDE};
use crate::model::magenta::NORM_CHANNELS;
use crate::norm::NormKind;
use crate::weights::write_atomic;

/// Arguments of `normstyle compare`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle compare photo.jpg --style painting.jpg -o grid.png
  normstyle compare a.jpg b.jpg c.jpg --style s.jpg --norms in,bn,ln,gn:8 --json numbers.json
  normstyle compare a.jpg --style s.jpg --alpha-sweep 0,0.5,1 --html report.html
  normstyle compare a.jpg --style s.jpg --norms in,bn --batch-of b.jpg c.jpg   (BN over 3 photos)")]
pub struct Args {
    /// Content images: one grid row each.
    #[arg(required = true, value_hint = clap::ValueHint::FilePath)]
    content: Vec<PathBuf>,
    /// The style image.
    #[arg(short, long, required = true, value_hint = clap::ValueHint::FilePath)]
    style: PathBuf,
    /// Model family.
    #[arg(long, value_enum, default_value_t = Model::Magenta)]
    model: Model,
    /// AdaIN encoder weights (with --model adain).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    vgg: Option<PathBuf>,
    /// AdaIN decoder weights (with --model adain).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    decoder: Option<PathBuf>,
    /// Without --vgg/--decoder: fetch the AdaIN weights from this hub repository (cached).
    #[command(flatten)]
    repo: super::weights::RepoArgs,
    /// Variants (columns), comma-separated: in, bn, ln, gn, gn:G.
    #[arg(long, value_delimiter = ',', default_value = "in,bn,ln,gn")]
    norms: Vec<String>,
    /// Style strength in [0, 1].
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    alpha: f64,
    /// Several strengths as an extra axis: every variant at each α (columns).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    alpha_sweep: Option<Vec<f64>>,
    /// Extra photos that join the batch for `bn` statistics without getting a row of their own.
    #[arg(long, num_args = 1.., value_hint = clap::ValueHint::FilePath)]
    batch_of: Vec<PathBuf>,
    /// Tile size: the longer side of each picture, in pixels (the model runs at this size).
    #[arg(long, default_value_t = 384, value_parser = clap::value_parser!(u32).range(32..=2048))]
    tile: u32,
    /// A title line on top of the grid.
    #[arg(long)]
    title: Option<String>,
    /// The grid image (PNG, JPEG or WebP by extension).
    #[arg(short, long, default_value = "compare.png", value_hint = clap::ValueHint::FilePath)]
    output: PathBuf,
    /// Also write the numbers as JSON.
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    json: Option<PathBuf>,
    /// Also write the numbers as CSV.
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    csv: Option<PathBuf>,
    /// Also write one self-contained HTML page (grid embedded, sortable table).
    #[arg(long, value_hint = clap::ValueHint::FilePath)]
    html: Option<PathBuf>,
    /// JPEG quality of the grid (1–100).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Overwrite existing outputs.
    #[arg(long)]
    force: bool,
    /// Device: cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress messages on stderr.
    #[arg(short, long)]
    quiet: bool,
}

/// The numbers of one tile.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TileNumbers {
    /// The content image.
    pub content: String,
    /// The variant as written on the tile (`gn:32`, or `bn α=0.5` in a sweep).
    pub variant: String,
    /// The normalization.
    pub norm: String,
    /// Style strength.
    pub alpha: f64,
    /// Seconds of model time per image.
    pub seconds: f64,
    /// SSIM of the output's luminance to the content's (1 = same structure).
    pub ssim: f64,
    /// RMS distance of the per-channel color mean/std to the style's.
    pub color_distance: f64,
    /// Magenta: distance between the predictor's vectors of the output and of the style.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style_vector_distance: Option<f64>,
    /// AdaIN: relu4_1 MSE to the (IN) AdaIN target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_loss: Option<f64>,
    /// AdaIN: the paper's style loss over relu1_1 … relu4_1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style_loss: Option<f64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let norms: Vec<NormKind> = args
        .norms
        .iter()
        .map(|s| s.parse::<NormKind>())
        .collect::<Result<_, _>>()?;
    if norms.is_empty() {
        bail!("--norms: give at least one variant");
    }
    let channels: &[usize] = match args.model {
        Model::Adain => &[FEATURE_CHANNELS],
        Model::Magenta => &NORM_CHANNELS,
    };
    for k in &norms {
        if let NormKind::Gn(g) = k {
            if *g > 1 && channels.iter().all(|&c| k.groups(c) == 1) {
                bail!(
                    "--norms: gn:{g} divides none of the layers' channel counts {channels:?} (it would be plain ln)"
                );
            }
        }
    }
    let alphas = args.alpha_sweep.clone().unwrap_or_else(|| vec![args.alpha]);
    if alphas.is_empty() {
        bail!("--alpha-sweep: give at least one value");
    }
    if let Some(a) = alphas.iter().find(|a| !(0.0..=1.0).contains(*a)) {
        bail!("--alpha: {a} is outside [0, 1]");
    }
    match args.model {
        Model::Adain if args.vgg.is_some() != args.decoder.is_some() => {
            bail!("--vgg and --decoder go together (the encoder and the decoder of one model)")
        }
        Model::Magenta if args.vgg.is_some() || args.decoder.is_some() => {
            bail!("--vgg/--decoder: these are AdaIN weights; add --model adain")
        }
        _ => {}
    }
    let written: Vec<&PathBuf> = std::iter::once(&args.output)
        .chain(&args.json)
        .chain(&args.csv)
        .chain(&args.html)
        .collect();
    imaging::format_for(&args.output).with_context(|| format!("-o {}", args.output.display()))?;
    let inputs: Vec<PathBuf> = args
        .content
        .iter()
        .chain(std::iter::once(&args.style))
        .chain(&args.batch_of)
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    for p in &written {
        if p.canonicalize().is_ok_and(|c| inputs.contains(&c)) {
            bail!("{}: the output would overwrite an input", p.display());
        }
        if p.exists() && !args.force {
            bail!("{}: already exists (use --force to overwrite)", p.display());
        }
    }

    let device = crate::device::device(&args.device)?;
    let adain = args.model == Model::Adain;
    let load = |p: &PathBuf| -> anyhow::Result<Rgb> {
        let img = imaging::cap_long_side(imaging::load_rgb(p)?, args.tile);
        let (w, h) = img.dimensions();
        if adain && (w.min(h) as usize) < MIN_SIDE {
            bail!(
                "{}: {w}×{h} is too small for AdaIN (each side ≥ {MIN_SIDE} pixels)",
                p.display()
            );
        }
        Ok(img)
    };
    let rows = args.content.len();
    let images: Vec<Rgb> = args
        .content
        .iter()
        .chain(&args.batch_of)
        .map(load)
        .collect::<Result<_, _>>()?;
    let style_img = {
        let img = imaging::load_rgb(&args.style)?;
        if adain {
            imaging::resize_short_side(img, args.tile.min(512))
        } else {
            img
        }
    };
    let tensors: Vec<Tensor> = images
        .iter()
        .map(|i| imaging::to_tensor(i, &device))
        .collect::<Result<_, _>>()?;
    let style_t = imaging::to_tensor(&style_img, &device)?;
    let mut styles = HashMap::new();
    styles.insert(args.style.clone(), style_img.clone());
    let spec = StyleSpec::Images(vec![(args.style.clone(), 1.0)]);
    let common = |norm, alpha| Common {
        device: device.clone(),
        alpha,
        norm,
        preserve: None,
        mask: None,
    };
    let min_alpha = alphas.iter().cloned().fold(1.0, f64::min);
    let mut engine = match args.model {
        Model::Adain => {
            let (vgg, dec) = super::stylize::adain_weights(
                args.vgg.as_ref(),
                args.decoder.as_ref(),
                &args.repo,
                args.quiet,
            )?;
            Engine::adain(&vgg, &dec, &tensors, &common(NormKind::In, min_alpha))?
        }
        Model::Magenta => Engine::magenta(false, &images, &common(NormKind::In, min_alpha))?,
    };
    let style_vector = match &engine {
        Engine::Magenta { .. } => Some(engine.vector_of_tensor(&imaging::to_tensor(
            &imaging::center_square(&style_img, 256),
            &device,
        )?)?),
        Engine::Adain { .. } => None,
    };

    // AdaIN: the style's four taps, once (relu4_1 is also the transfer's style input).
    let style_taps = match engine.adain_parts() {
        Some((net, _)) => Some(net.encoder.taps(&style_t)?),
        None => None,
    };

    let variants: Vec<(NormKind, f64)> = alphas
        .iter()
        .flat_map(|&a| norms.iter().map(move |&k| (k, a)))
        .collect();
    let label = |k: NormKind, a: f64| {
        if args.alpha_sweep.is_some() {
            format!("{k} α={a}")
        } else {
            k.to_string()
        }
    };
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(variants.len() as u64)
    };
    let mut outputs: Vec<Vec<Tensor>> = Vec::new(); // [variant][row]
    let mut numbers: Vec<TileNumbers> = Vec::new();
    for &(norm, alpha) in &variants {
        let c = common(norm, alpha);
        let t0 = Instant::now();
        let ys = engine.render(&spec, &tensors, &images, &styles, &c)?;
        let seconds = t0.elapsed().as_secs_f64() / tensors.len() as f64;
        // The AdaIN losses are measured against the IN target at this α, for every variant.
        let targets = match (engine.adain_parts(), &style_taps) {
            (Some((net, feats)), Some(st)) => {
                let s = StyleInput {
                    features: st[3].clone(),
                    weight: 1.0,
                };
                let opts = TransferOptions {
                    alpha,
                    ..TransferOptions::default()
                };
                Some(net.transfer(feats, &[s], &opts)?)
            }
            _ => None,
        };
        for (i, y) in ys.iter().take(rows).enumerate() {
            let content_t = &tensors[i];
            let (mut vdist, mut closs, mut sloss) = (None, None, None);
            if let Some(v) = &style_vector {
                vdist = Some(vector_distance(
                    &engine
                        .vector_of_tensor(&imaging::to_tensor(&center_square_of(y)?, &device)?)?,
                    v,
                ));
            }
            if let (Some((net, _)), Some(t), Some(st)) =
                (engine.adain_parts(), &targets, &style_taps)
            {
                // Ceil-mode pooling: the H×W output's relu4_1 map has the target's ⌈H/8⌉×⌈W/8⌉.
                let (lc, ls) = adain_losses(&net.encoder, y, st, &t[i])?;
                closs = Some(lc);
                sloss = Some(ls);
            }
            numbers.push(TileNumbers {
                content: args.content[i].display().to_string(),
                variant: label(norm, alpha),
                norm: norm.to_string(),
                alpha,
                seconds,
                ssim: ssim(y, content_t)?,
                color_distance: color_distance(y, &style_t)?,
                style_vector_distance: vdist,
                content_loss: closs,
                style_loss: sloss,
            });
        }
        outputs.push(ys.into_iter().take(rows).collect());
        bar.inc(1);
    }
    bar.finish_and_clear();

    // The grid: a header row (style, variant names), then a row per content.
    let tile = args.tile;
    let thumb = |t: &Tensor| -> anyhow::Result<image::RgbImage> {
        Ok(grid::fit_tile(&imaging::to_rgb8(t)?, tile))
    };
    let batch = rows + args.batch_of.len();
    let mut cells = vec![{
        let mut row = vec![Cell {
            image: Some(thumb(&style_t)?),
            lines: vec![format!("style: {}", file_name(&args.style))],
        }];
        row.extend(variants.iter().map(|&(k, a)| Cell {
            image: None,
            lines: vec![label(k, a), describe(k).to_string()],
        }));
        row
    }];
    for i in 0..rows {
        let mut row = vec![Cell {
            image: Some(thumb(&tensors[i])?),
            lines: vec![file_name(&args.content[i])],
        }];
        for (v, &(k, _)) in variants.iter().enumerate() {
            let n = &numbers[v * rows + i];
            let mut lines = vec![
                n.variant.clone(),
                format!("SSIM {:.3} · color Δ {:.3}", n.ssim, n.color_distance),
            ];
            if let Some(d) = n.style_vector_distance {
                lines.push(format!("style-vector Δ {d:.2}"));
            }
            if let (Some(c), Some(s)) = (n.content_loss, n.style_loss) {
                lines.push(format!("Lc {c:.3} · Ls {s:.3}"));
            }
            if k == NormKind::Bn && batch == 1 {
                lines.push("bn = in for a batch of 1".into());
            }
            lines.push(format!("{:.2} s", n.seconds));
            row.push(Cell {
                image: Some(thumb(&outputs[v][i])?),
                lines,
            });
        }
        cells.push(row);
    }
    let title = args.title.clone().or_else(|| {
        Some(format!(
            "normstyle compare: {} × {} ({} model{})",
            args.content.len(),
            file_name(&args.style),
            engine.name(),
            if batch > 1 {
                format!(", bn batch of {batch}")
            } else {
                String::new()
            }
        ))
    });
    let sheet = grid::render(&cells, tile, title.as_deref())?;
    imaging::save(&sheet, &args.output, args.quality)?;

    print!("{}", table(&numbers));
    if let Some(p) = &args.json {
        let doc = serde_json::json!({
            "model": engine.name(),
            "style": args.style.display().to_string(),
            "tile": tile,
            "batch": batch,
            "grid": args.output.display().to_string(),
            "tiles": numbers,
        });
        write_atomic(p, (serde_json::to_string_pretty(&doc)? + "\n").as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.csv {
        write_atomic(p, csv(&numbers).as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.html {
        let png = imaging::encode(&sheet, image::ImageFormat::Png, 95)?;
        write_atomic(
            p,
            html(
                title.as_deref().unwrap_or("normstyle compare"),
                &png,
                &numbers,
            )
            .as_bytes(),
        )
        .with_context(|| format!("writing {}", p.display()))?;
    }
    if !args.quiet {
        eprintln!(
            "{} ({}×{})",
            args.output.display(),
            sheet.width(),
            sheet.height()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What a variant's statistics pool over, for the header.
fn describe(k: NormKind) -> &'static str {
    match k {
        NormKind::In => "per image, per channel",
        NormKind::Bn => "per channel, whole batch",
        NormKind::Ln => "per image, all channels",
        NormKind::Gn(_) => "per image, channel groups",
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The output's center square at 256² (what the predictor sees).
fn center_square_of(y: &Tensor) -> anyhow::Result<Rgb> {
    let (_, _, h, w) = y.dims4()?;
    let v: Vec<f32> = y
        .clamp(0f32, 1f32)?
        .squeeze(0)?
        .permute((1, 2, 0))?
        .flatten_all()?
        .to_vec1()?;
    let img = Rgb::from_raw(w as u32, h as u32, v).context("image buffer")?;
    Ok(imaging::center_square(&img, 256))
}

const COLUMNS: [&str; 10] = [
    "content",
    "variant",
    "norm",
    "alpha",
    "seconds",
    "ssim",
    "color_distance",
    "style_vector_distance",
    "content_loss",
    "style_loss",
];

fn cells(n: &TileNumbers) -> [String; 10] {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
    [
        n.content.clone(),
        n.variant.clone(),
        n.norm.clone(),
        format!("{}", n.alpha),
        format!("{:.3}", n.seconds),
        format!("{:.4}", n.ssim),
        format!("{:.4}", n.color_distance),
        opt(n.style_vector_distance),
        opt(n.content_loss),
        opt(n.style_loss),
    ]
}

/// The numbers as an aligned text table (empty columns left out).
fn table(numbers: &[TileNumbers]) -> String {
    let rows: Vec<[String; 10]> = numbers.iter().map(cells).collect();
    let used: Vec<usize> = (0..COLUMNS.len())
        .filter(|&c| rows.iter().any(|r| !r[c].is_empty()))
        .collect();
    let width = |c: usize| {
        rows.iter()
            .map(|r| r[c].chars().count())
            .chain([COLUMNS[c].len()])
            .max()
            .unwrap_or(0)
    };
    let mut out = String::new();
    for (i, &c) in used.iter().enumerate() {
        let _ = write!(
            out,
            "{}{:<w$}",
            if i > 0 { "  " } else { "" },
            COLUMNS[c],
            w = width(c)
        );
    }
    out.push('\n');
    for r in &rows {
        for (i, &c) in used.iter().enumerate() {
            let _ = write!(
                out,
                "{}{:<w$}",
                if i > 0 { "  " } else { "" },
                r[c],
                w = width(c)
            );
        }
        out.push('\n');
    }
    out
}

fn csv(numbers: &[TileNumbers]) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = COLUMNS.join(",") + "\n";
    for n in numbers {
        out += &cells(n)
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
    }
    out
}

/// One self-contained page: the grid as a data URI and a table sortable by clicking a header.
fn html(title: &str, png: &[u8], numbers: &[TileNumbers]) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut rows = String::new();
    for n in numbers {
        rows += "<tr>";
        for c in cells(n) {
            let _ = write!(rows, "<td>{}</td>", esc(&c));
        }
        rows += "</tr>\n";
    }
    let head: String = COLUMNS.iter().map(|c| format!("<th>{c}</th>")).collect();
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{t}</title>
<style>body{{font-family:sans-serif;margin:2em}}img{{max-width:100%}}table{{border-collapse:collapse;margin-top:1em}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{cursor:pointer;background:#f4f4f4}}</style></head>
<body><h1>{t}</h1><img alt="comparison grid" src="data:image/png;base64,{img}">
<table id="n"><thead><tr>{head}</tr></thead><tbody>
{rows}</tbody></table>
<script>
document.querySelectorAll('#n th').forEach((th, i) => th.onclick = () => {{
  const body = document.querySelector('#n tbody');
  const rows = [...body.rows];
  const dir = th.dataset.dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
  const key = r => {{ const v = r.cells[i].textContent; const f = parseFloat(v); return isNaN(f) ? v : f; }};
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (dir === 'asc' ? 1 : -1));
  rows.forEach(r => body.appendChild(r));
}});
</script></body></html>
"#,
        t = esc(title),
        img = base64(png),
    )
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
