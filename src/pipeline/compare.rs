//! Comparisons of normalization variants: the same photos stylized with each variant (and
//! strength), as one labeled grid and a table of numbers per tile.

use std::fmt::Write as _;
use std::path::Path;

use candle::Tensor;
use image::RgbImage;

use super::stylizer::{Content, Family, Styling, Stylizer};
use crate::compare::{adain_losses, color_distance, ssim, vector_distance};
use crate::grid::{self, Cell};
use crate::imaging::{self, Rgb};
use crate::model::adain::{StyleInput, TransferOptions, FEATURE_CHANNELS};
use crate::model::magenta::{NORM_CHANNELS, PRESET_COUNT};
use crate::norm::NormKind;
use crate::{Error, Result};

/// What to compare.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// The variants (columns).
    pub norms: Vec<NormKind>,
    /// Style strengths: every variant at each (one value without a sweep).
    pub alphas: Vec<f64>,
    /// Label tiles with α too (a sweep).
    pub sweep: bool,
    /// Tile size: the longer side of each picture; the model runs at this size (32–2048).
    pub tile: u32,
    /// A title line on top of the grid (default: what was compared).
    pub title: Option<String>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            norms: vec![NormKind::In, NormKind::Bn, NormKind::Ln, NormKind::Gn(32)],
            alphas: vec![1.0],
            sweep: false,
            tile: 384,
            title: None,
        }
    }
}

/// A labeled image: what is compared.
#[derive(Clone, Debug)]
pub struct Labeled {
    /// The name in the numbers and errors (e.g. the path); the grid shows its file name.
    pub label: String,
    /// The image, RGB f32 in [0, 1] ([`imaging::load_rgb`] or [`imaging::to_rgb`]).
    pub image: Rgb,
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
    /// AdaIN: relu4_1 MSE to the (IN) AdaIN target. Trained networks ([`compare_trained`]):
    /// the content loss under the loss network, against the photo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_loss: Option<f64>,
    /// AdaIN: the paper's style loss over relu1_1 … relu4_1. Trained networks: the style loss
    /// under the loss network, against the style.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style_loss: Option<f64>,
}

/// The result of [`compare`]: the grid and its numbers, serializable (the grid is skipped).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Comparison {
    /// The model family (`magenta`, `adain`).
    pub model: &'static str,
    /// The style's label.
    pub style: String,
    /// The tile size.
    pub tile: u32,
    /// Images in the `bn` batch (rows plus extra batch members).
    pub batch: usize,
    /// The title written on the grid.
    pub title: String,
    /// One entry per tile, variant by variant, row by row.
    pub tiles: Vec<TileNumbers>,
    /// The grid: a header row (style, variant names), then a row per content.
    #[serde(skip)]
    pub grid: RgbImage,
}

/// Stylizes `contents` with `style` in every variant of `opts` and measures each tile.
/// `batch_of` join the `bn` batch without a row of their own. `progress` is called once per
/// variant. The stylizer's own norm, α and color options are replaced by each variant's.
pub fn compare(
    st: &Stylizer,
    contents: &[Labeled],
    batch_of: &[Labeled],
    style: &Labeled,
    opts: &CompareOptions,
    mut progress: impl FnMut(),
) -> Result<Comparison> {
    check_options(st.family(), opts)?;
    // Contents run at the tile size; AdaIN styles at a shorter side of min(tile, 512).
    let st = st
        .clone()
        .with_content_size(Some(0))
        .with_style_size(Some(opts.tile.min(512)))
        .with_crop(false)
        .with_preserve_color(None);
    let prepared: Vec<Content> = contents
        .iter()
        .chain(batch_of)
        .map(|c| {
            st.content_from_rgb(imaging::cap_long_side(c.image.clone(), opts.tile))
                .map_err(|e| e.in_file(Path::new(&c.label)))
        })
        .collect::<Result<_>>()?;
    let rows = contents.len();
    let style_prepared = st
        .style_from_rgb(style.image.clone())
        .map_err(|e| e.in_file(Path::new(&style.label)))?;
    let style_t = imaging::to_tensor(style_prepared.image(), st.device())?;
    let style_vector = match st.family() {
        Family::Magenta => Some(st.style_vector(style_prepared.image())?),
        Family::Adain | Family::Trained => None,
    };
    // AdaIN: the style's four taps, once.
    let style_taps = match st.adain_net() {
        Some(net) => Some(net.encoder.taps(&style_t)?),
        None => None,
    };
    let variants: Vec<(NormKind, f64)> = opts
        .alphas
        .iter()
        .flat_map(|&a| opts.norms.iter().map(move |&k| (k, a)))
        .collect();
    let label = |k: NormKind, a: f64| {
        if opts.sweep {
            format!("{k} α={a}")
        } else {
            k.to_string()
        }
    };
    let mut outputs: Vec<Vec<Tensor>> = Vec::new(); // [variant][row]
    let mut tiles = Vec::new();
    for &(norm, alpha) in &variants {
        let v = st.clone().with_norm(norm).with_alpha(alpha);
        let t0 = std::time::Instant::now();
        let ys = v.render_tensors(&prepared, &Styling::single(&style_prepared))?;
        let seconds = t0.elapsed().as_secs_f64() / prepared.len() as f64;
        // The AdaIN losses are measured against the IN target at this α, for every variant.
        let targets = match (st.adain_net(), &style_taps) {
            (Some(net), Some(taps)) => {
                let feats: Vec<Tensor> = prepared
                    .iter()
                    .filter_map(|c| c.adain_features().cloned())
                    .collect();
                let s = StyleInput {
                    features: taps[3].clone(),
                    weight: 1.0,
                };
                let o = TransferOptions {
                    alpha,
                    ..TransferOptions::default()
                };
                Some(net.transfer(&feats, &[s], &o)?)
            }
            _ => None,
        };
        for (i, y) in ys.iter().take(rows).enumerate() {
            let (mut vdist, mut closs, mut sloss) = (None, None, None);
            if let Some(sv) = &style_vector {
                vdist = Some(vector_distance(&st.style_vector(&rgb_of(y)?)?, sv));
            }
            if let (Some(net), Some(t), Some(taps)) = (st.adain_net(), &targets, &style_taps) {
                let (lc, ls) = adain_losses(&net.encoder, y, taps, &t[i])?;
                closs = Some(lc);
                sloss = Some(ls);
            }
            tiles.push(TileNumbers {
                content: contents[i].label.clone(),
                variant: label(norm, alpha),
                norm: norm.to_string(),
                alpha,
                seconds,
                ssim: ssim(y, prepared[i].tensor())?,
                color_distance: color_distance(y, &style_t)?,
                style_vector_distance: vdist,
                content_loss: closs,
                style_loss: sloss,
            });
        }
        outputs.push(ys.into_iter().take(rows).collect());
        progress();
    }
    let batch = prepared.len();
    let title = opts.title.clone().unwrap_or_else(|| {
        format!(
            "normstyle compare: {rows} × {} ({} model{})",
            file_name(&style.label),
            st.family().name(),
            if batch > 1 {
                format!(", bn batch of {batch}")
            } else {
                String::new()
            }
        )
    });
    let header: Vec<(String, &str)> = variants
        .iter()
        .map(|&(k, a)| (label(k, a), describe(k)))
        .collect();
    let grid = draw(
        &header,
        &prepared[..rows],
        contents,
        &style_t,
        style,
        &outputs,
        &tiles,
        opts.tile,
        batch,
        &title,
    )?;
    Ok(Comparison {
        model: st.family().name(),
        style: style.label.clone(),
        tile: opts.tile,
        batch,
        title,
        tiles,
        grid,
    })
}

/// Trained networks side by side, one column each (`models`: label and a stylizer from
/// [`Stylizer::trained`], each on its recorded norm), on the same photos at the tile size:
/// [`compare`]'s numbers plus the content and style losses under `loss` (the network they
/// trained with; the embedded predictor by default) against `style`, the training style.
/// `progress` is called once per model.
pub fn compare_trained(
    models: &[(String, Stylizer)],
    contents: &[Labeled],
    style: &Labeled,
    loss: &crate::train::LossNet,
    tile: u32,
    title: Option<String>,
    mut progress: impl FnMut(),
) -> Result<Comparison> {
    if models.is_empty() || contents.is_empty() {
        return Err(Error::Parse {
            what: "models".into(),
            msg: "give at least one model and one photo".into(),
        });
    }
    if let Some((label, _)) = models.iter().find(|(_, st)| st.family() != Family::Trained) {
        return Err(Error::Parse {
            what: "models".into(),
            msg: format!("{label}: not a trained network"),
        });
    }
    let first = models[0].1.clone().with_content_size(Some(0));
    let prepared: Vec<Content> = contents
        .iter()
        .map(|c| {
            first
                .content_from_rgb(imaging::cap_long_side(c.image.clone(), tile))
                .map_err(|e| e.in_file(Path::new(&c.label)))
        })
        .collect::<Result<_>>()?;
    let device = first.device().clone();
    let style_t = imaging::to_tensor(&imaging::cap_long_side(style.image.clone(), tile), &device)?;
    let targets = loss.style_targets(&style_t)?;
    let content_feats: Vec<Tensor> = prepared
        .iter()
        .map(|c| Ok(loss.features(c.tensor())?.content))
        .collect::<Result<_>>()?;
    let rows = prepared.len();
    let mut outputs = Vec::new();
    let mut tiles = Vec::new();
    let mut header = Vec::new();
    for (label, st) in models {
        let st = st.clone().with_content_size(Some(0));
        let norm = st.trained_model().map_or_else(String::new, |m| {
            crate::model::trained::norm_name(m.info().norm)
        });
        let t0 = std::time::Instant::now();
        let ys = st.render_tensors(&prepared, &Styling::Trained)?;
        let seconds = t0.elapsed().as_secs_f64() / rows as f64;
        for (i, y) in ys.iter().enumerate() {
            let f = loss.features(y)?;
            let lc = crate::train::loss::mse(&f.content, &content_feats[i])?;
            let ls = loss.style_loss_of(&f.style, &targets)?;
            tiles.push(TileNumbers {
                content: contents[i].label.clone(),
                variant: label.clone(),
                norm: norm.clone(),
                alpha: 1.0,
                seconds,
                ssim: ssim(y, prepared[i].tensor())?,
                color_distance: color_distance(y, &style_t)?,
                style_vector_distance: None,
                content_loss: Some(f64::from(lc.to_scalar::<f32>()?)),
                style_loss: Some(f64::from(ls.to_scalar::<f32>()?)),
            });
        }
        header.push((label.clone(), format!("trained with {norm}")));
        outputs.push(ys);
        progress();
    }
    let title = title.unwrap_or_else(|| {
        format!(
            "normstyle compare: {rows} × {} trained networks ({}; losses under the {} network)",
            models.len(),
            file_name(&style.label),
            loss.kind()
        )
    });
    let header_refs: Vec<(String, &str)> = header
        .iter()
        .map(|(l, d)| (l.clone(), d.as_str()))
        .collect();
    let grid = draw(
        &header_refs,
        &prepared,
        contents,
        &style_t,
        style,
        &outputs,
        &tiles,
        tile,
        1,
        &title,
    )?;
    Ok(Comparison {
        model: Family::Trained.name(),
        style: style.label.clone(),
        tile,
        batch: rows,
        title,
        tiles,
        grid,
    })
}

/// The 26 presets of the 26-style network on one photo as a labeled contact sheet (the photo
/// first, 9 columns), with the stylizer's norm; the photo runs at the stylizer's content size.
/// `progress` is called once per preset.
pub fn presets_sheet(
    st: &Stylizer,
    photo: Rgb,
    tile: u32,
    mut progress: impl FnMut(),
) -> Result<RgbImage> {
    let content = st.content_from_rgb(photo)?;
    let contents = std::slice::from_ref(&content);
    let mut cells = vec![Cell {
        image: Some(imaging::to_rgb8(content.tensor())?),
        lines: vec!["photo".into()],
    }];
    for i in 0..PRESET_COUNT {
        let mut w = vec![0.0; PRESET_COUNT];
        w[i] = 1.0;
        let y = st.render(contents, &Styling::Preset(w))?;
        cells.push(Cell {
            image: y.into_iter().next(),
            lines: vec![format!("--preset {i}")],
        });
        progress();
    }
    let rows: Vec<Vec<Cell>> = cells.chunks(9).map(<[Cell]>::to_vec).collect();
    let title = format!("normstyle: the 26 presets (--norm {})", st.norm());
    grid::render(&rows, tile, Some(&title))
}

/// Variants that cannot run: none, α outside [0, 1], a GN group count that is plain LN here.
fn check_options(family: Family, opts: &CompareOptions) -> Result<()> {
    let bad = |what: &str, msg: String| Error::Parse {
        what: what.into(),
        msg,
    };
    if opts.norms.is_empty() {
        return Err(bad("variants", "give at least one variant".into()));
    }
    if opts.alphas.is_empty() {
        return Err(bad("alpha sweep", "give at least one value".into()));
    }
    if let Some(a) = opts.alphas.iter().find(|a| !(0.0..=1.0).contains(*a)) {
        return Err(bad("alpha", format!("{a} is outside [0, 1]")));
    }
    let channels: &[usize] = match family {
        Family::Adain => &[FEATURE_CHANNELS],
        Family::Magenta => &NORM_CHANNELS,
        Family::Trained => {
            return Err(bad(
                "variants",
                "a trained network is compared with other trained networks (models), not by \
                 norm variants"
                    .into(),
            ))
        }
    };
    for k in &opts.norms {
        if let NormKind::Gn(g) = k {
            if *g > 1 && channels.iter().all(|&c| k.groups(c) == 1) {
                return Err(bad("variants", format!("gn:{g} divides none of the layers' channel counts {channels:?} (it would be plain ln)")));
            }
        }
    }
    Ok(())
}

/// The grid: a header row (style, variant names), then a row per content with its tiles.
#[allow(clippy::too_many_arguments)] // one private call site; the pieces are all distinct
fn draw(
    header: &[(String, &str)],
    rows: &[Content],
    contents: &[Labeled],
    style_t: &Tensor,
    style: &Labeled,
    outputs: &[Vec<Tensor>],
    tiles: &[TileNumbers],
    tile: u32,
    batch: usize,
    title: &str,
) -> Result<RgbImage> {
    let thumb =
        |t: &Tensor| -> Result<RgbImage> { Ok(grid::fit_tile(&imaging::to_rgb8(t)?, tile)) };
    let mut head = vec![Cell {
        image: Some(thumb(style_t)?),
        lines: vec![format!("style: {}", file_name(&style.label))],
    }];
    head.extend(header.iter().map(|(name, what)| Cell {
        image: None,
        lines: vec![name.clone(), what.to_string()],
    }));
    let mut cells = vec![head];
    for (i, content) in rows.iter().enumerate() {
        let mut row = vec![Cell {
            image: Some(thumb(content.tensor())?),
            lines: vec![file_name(&contents[i].label)],
        }];
        for (v, ys) in outputs.iter().enumerate() {
            let n = &tiles[v * rows.len() + i];
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
            if n.norm == "bn" && batch == 1 {
                lines.push("bn = in for a batch of 1".into());
            }
            lines.push(format!("{:.2} s", n.seconds));
            row.push(Cell {
                image: Some(thumb(&ys[i])?),
                lines,
            });
        }
        cells.push(row);
    }
    grid::render(&cells, tile, Some(title))
}

/// The last component of a label that is a path.
fn file_name(label: &str) -> String {
    Path::new(label)
        .file_name()
        .map_or_else(|| label.to_string(), |n| n.to_string_lossy().into_owned())
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

/// A (1, 3, H, W) output as an RGB f32 image, clamped to [0, 1].
fn rgb_of(y: &Tensor) -> Result<Rgb> {
    let (_, _, h, w) = y.dims4()?;
    let v: Vec<f32> = y
        .clamp(0f32, 1f32)?
        .squeeze(0)?
        .permute((1, 2, 0))?
        .flatten_all()?
        .to_vec1()?;
    Rgb::from_raw(w as u32, h as u32, v).ok_or_else(|| Error::input("compare", "image buffer"))
}

impl Comparison {
    /// The numbers as an aligned text table (empty columns left out).
    pub fn table(&self) -> String {
        table(&self.tiles)
    }

    /// The numbers as CSV with a header line.
    pub fn csv(&self) -> String {
        csv(&self.tiles)
    }

    /// One self-contained HTML page: the grid (given encoded as PNG) and a sortable table.
    pub fn html(&self, grid_png: &[u8]) -> String {
        html(&self.title, grid_png, &self.tiles)
    }
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
pub(crate) fn base64(bytes: &[u8]) -> String {
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
