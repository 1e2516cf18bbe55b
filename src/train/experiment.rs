//! Huang & Belongie's Fig. 1 (the AdaIN paper, Section 4) with LN, GN and no norm added: the
//! same single-style network trained with each norm on (a) the original photos, (b) photos
//! whose luminance is histogram-equalized, (c) photos first stylized to one other style; the
//! style loss against the step (`normstyle norms train-experiment`).
//!
//! For a given seed every run starts from the same initial weights and sees the same crops in
//! the same order ([`Trainer`]'s generator depends on the seed and the step only), so the runs
//! of one seed differ only in the norm and the inputs.

use std::fmt;
use std::str::FromStr;

use candle::Device;
#[cfg(feature = "grid")]
use image::RgbImage;

use super::{equalize_luminance, ContentSet, LossNet, StepLosses, TrainConfig, Trainer};
#[cfg(feature = "grid")]
use crate::imaging;
use crate::imaging::Rgb;
use crate::model::trained::{norm_name, Arch};
use crate::norm::NormKind;
use crate::{Error, Result};

/// How the training photos are prepared: the paper's three panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// (a) The photos as they are.
    Original,
    /// (b) Luminance histogram-equalized, chroma kept: one contrast for all.
    Equalized,
    /// (c) First stylized by the embedded Magenta network with a fixed second style.
    Prestylized,
}

impl InputKind {
    /// The three kinds in the paper's order.
    pub const ALL: [InputKind; 3] = [
        InputKind::Original,
        InputKind::Equalized,
        InputKind::Prestylized,
    ];

    /// The name `--inputs` and the CSV use.
    pub fn name(self) -> &'static str {
        match self {
            InputKind::Original => "original",
            InputKind::Equalized => "equalized",
            InputKind::Prestylized => "prestylized",
        }
    }
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InputKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        InputKind::ALL
            .into_iter()
            .find(|k| k.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::Parse {
                what: "inputs".into(),
                msg: format!(
                    "unknown input kind `{s}` (expected original, equalized or prestylized)"
                ),
            })
    }
}

/// What to train, with `norms train-experiment`'s defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentConfig {
    /// The norms (`None`: no norm layers).
    pub norms: Vec<Option<NormKind>>,
    /// The input kinds.
    pub inputs: Vec<InputKind>,
    /// The seeds; each gives every (norm, inputs) run the same start and the same batches.
    pub seeds: Vec<u64>,
    /// Steps per run.
    pub steps: u64,
    /// Every run's settings but the norm and the seed.
    pub base: TrainConfig,
    /// Record the losses every this many steps (and at the last).
    pub log_every: u64,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        ExperimentConfig {
            norms: vec![
                Some(NormKind::In),
                Some(NormKind::Bn),
                Some(NormKind::Ln),
                Some(NormKind::Gn(8)),
                None,
            ],
            inputs: InputKind::ALL.to_vec(),
            seeds: vec![0, 1],
            steps: 300,
            base: TrainConfig {
                arch: Arch::Small,
                size: 128,
                batch_size: 4,
                ..TrainConfig::default()
            },
            log_every: 10,
        }
    }
}

/// One run of the experiment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunKey {
    /// The norm's name (`in`, `bn`, `ln`, `gn:8`, `none`).
    pub norm: String,
    /// The input kind.
    pub inputs: InputKind,
    /// The seed.
    pub seed: u64,
}

impl RunKey {
    /// A file-name stem: `in_original_seed0`, `gn8_equalized_seed1`.
    pub fn stem(&self) -> String {
        format!(
            "{}_{}_seed{}",
            self.norm.replace(':', ""),
            self.inputs,
            self.seed
        )
    }
}

/// One logged step of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct CurvePoint {
    /// Which run.
    pub key: RunKey,
    /// The step's losses.
    pub losses: StepLosses,
}

/// The photos of each input kind, prepared once: `photos` as they are, equalized, and
/// stylized by the embedded Magenta network with `second_style` (each at its own size).
pub fn prepare_inputs(
    photos: &ContentSet,
    kinds: &[InputKind],
    second_style: &Rgb,
    device: &Device,
) -> Result<Vec<(InputKind, ContentSet)>> {
    kinds
        .iter()
        .map(|&k| {
            let set = match k {
                InputKind::Original => photos.clone(),
                InputKind::Equalized => photos.map(|img| Ok(equalize_luminance(img)))?,
                InputKind::Prestylized => {
                    let st = crate::Stylizer::magenta(device)?.with_content_size(Some(0));
                    let style = st.style_from_rgb(second_style.clone())?;
                    photos.map(|img| {
                        let rgb = image::DynamicImage::ImageRgb8(img.clone()).to_rgb32f();
                        let c = st.content_from_rgb(rgb)?;
                        let out = st.render(
                            std::slice::from_ref(&c),
                            &crate::pipeline::Styling::single(&style),
                        )?;
                        out.into_iter()
                            .next()
                            .ok_or_else(|| Error::input("experiment", "no stylized photo"))
                    })?
                }
            };
            Ok((k, set))
        })
        .collect()
}

/// What every run of the experiment trains on.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The style image.
    pub style: &'a Rgb,
    /// Its file's sha256 (recorded in the models).
    pub style_sha256: &'a str,
    /// The photos of each input kind ([`prepare_inputs`]).
    pub photos: &'a [(InputKind, ContentSet)],
    /// The loss network.
    pub loss: &'a LossNet,
}

/// Trains every (seed, inputs, norm) run in that order. `on_step` sees every logged step,
/// `on_done` every finished run (e.g. to save its model).
pub fn run(
    cfg: &ExperimentConfig,
    inputs: Inputs,
    device: &Device,
    mut on_step: impl FnMut(&CurvePoint),
    mut on_done: impl FnMut(&RunKey, &Trainer) -> Result<()>,
) -> Result<Vec<CurvePoint>> {
    if cfg.norms.is_empty() || cfg.inputs.is_empty() || cfg.seeds.is_empty() || cfg.steps == 0 {
        return Err(Error::config("experiment", "nothing to train"));
    }
    if cfg.log_every == 0 {
        return Err(Error::config("experiment", "log every 0 steps"));
    }
    let mut points = Vec::new();
    for &seed in &cfg.seeds {
        for &kind in &cfg.inputs {
            let photos = inputs
                .photos
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, s)| s.clone())
                .ok_or_else(|| Error::config("experiment", format!("no {kind} photos")))?;
            for &norm in &cfg.norms {
                let key = RunKey {
                    norm: norm_name(norm),
                    inputs: kind,
                    seed,
                };
                let run_cfg = TrainConfig {
                    norm,
                    seed,
                    ..cfg.base.clone()
                };
                let mut t = Trainer::new(
                    run_cfg,
                    inputs.style,
                    inputs.style_sha256.into(),
                    photos.clone(),
                    inputs.loss.clone(),
                    device,
                )?;
                while t.step() < cfg.steps {
                    let l = t.train_step()?;
                    if l.step % cfg.log_every == 0 || l.step == cfg.steps || l.step == 1 {
                        let p = CurvePoint {
                            key: key.clone(),
                            losses: l,
                        };
                        on_step(&p);
                        points.push(p);
                    }
                }
                on_done(&key, &t)?;
            }
        }
    }
    Ok(points)
}

/// `norm,inputs,seed,step,style_loss,content_loss`, one row per point.
pub fn curves_csv(points: &[CurvePoint]) -> String {
    let mut s = String::from("norm,inputs,seed,step,style_loss,content_loss\n");
    for p in points {
        s.push_str(&format!(
            "{},{},{},{},{},{}\n",
            p.key.norm, p.key.inputs, p.key.seed, p.losses.step, p.losses.style, p.losses.content
        ));
    }
    s
}

/// Each network's painting of each held-out photo: one row per photo, one column per model
/// (`models`: label and model), labels on top. Photos are (label, RGB in [0, 1]).
#[cfg(feature = "grid")]
pub fn grid(
    models: &[(String, crate::model::trained::TrainedModel)],
    photos: &[(String, Rgb)],
    tile: u32,
    title: &str,
    device: &Device,
) -> Result<RgbImage> {
    use crate::grid::{fit_tile, render, Cell};
    use crate::model::trained::NormMode;
    let mut rows = vec![models
        .iter()
        .map(|(label, _)| Cell {
            image: None,
            lines: vec![label.clone()],
        })
        .collect::<Vec<_>>()];
    for (_, photo) in photos {
        let img = imaging::cap_long_side(photo.clone(), tile);
        let x = imaging::to_tensor(&img, device)?;
        let mut row = Vec::new();
        for (_, m) in models {
            let y = m.net().paint(std::slice::from_ref(&x), NormMode::Eval)?;
            let rgb = imaging::to_rgb8(&y[0])?;
            row.push(Cell {
                image: Some(fit_tile(&rgb, tile)),
                lines: Vec::new(),
            });
        }
        rows.push(row);
    }
    render(&rows, tile, Some(title))
}

/// The style loss against the step: one panel per input kind, one line per norm (the mean
/// over seeds) with a band from the lowest to the highest seed. 1500×520 RGB for three panels.
#[cfg(feature = "plot")]
pub fn plot_curves(points: &[CurvePoint]) -> Result<RgbImage> {
    use plotters::prelude::*;
    crate::experiment::register_font()?;
    let err = |e: &dyn fmt::Display| Error::config("plot", e.to_string());
    if points.is_empty() {
        return Err(Error::config("plot", "no points to plot"));
    }
    let mut kinds: Vec<InputKind> = Vec::new();
    let mut norms: Vec<String> = Vec::new();
    for p in points {
        if !kinds.contains(&p.key.inputs) {
            kinds.push(p.key.inputs);
        }
        if !norms.contains(&p.key.norm) {
            norms.push(p.key.norm.clone());
        }
    }
    let (w, h) = (500 * kinds.len() as u32, 520u32);
    let x1 = points.iter().map(|p| p.losses.step).max().unwrap_or(1) as f64;
    let y1 = points.iter().map(|p| p.losses.style).fold(0.0, f64::max) * 1.05;
    let y0 = points
        .iter()
        .map(|p| p.losses.style)
        .fold(f64::MAX, f64::min)
        .min(y1)
        * 0.95;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let panels = root.split_evenly((1, kinds.len()));
        for (panel, kind) in panels.iter().zip(&kinds) {
            let title = match kind {
                InputKind::Original => "(a) original photos",
                InputKind::Equalized => "(b) luminance equalized",
                InputKind::Prestylized => "(c) pre-stylized",
            };
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(
                    0.0..x1,
                    // Powers of 2: ticks at ×2 steps (base 10 labels one tick over a loss
                    // range of a decade).
                    (y0.max(1e-9)..y1.max(1e-8)).log_scale().base(2.0),
                )
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .x_desc("step")
                .y_desc("style loss (log scale)")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_labels(8)
                .y_label_formatter(&|v| {
                    if *v >= 1.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.3}")
                    }
                })
                .light_line_style(WHITE)
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 16))
                .draw()
                .map_err(|e| err(&e))?;
            for (i, norm) in norms.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                // step → the seeds' values.
                let mut by_step: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
                for p in points
                    .iter()
                    .filter(|p| p.key.inputs == *kind && p.key.norm == *norm)
                {
                    by_step
                        .entry(p.losses.step)
                        .or_default()
                        .push(p.losses.style);
                }
                if by_step.is_empty() {
                    continue;
                }
                let stat = |f: &dyn Fn(&[f64]) -> f64| -> Vec<(f64, f64)> {
                    by_step.iter().map(|(s, v)| (*s as f64, f(v))).collect()
                };
                let mean = stat(&|v| v.iter().sum::<f64>() / v.len() as f64);
                let lo = stat(&|v| v.iter().copied().fold(f64::MAX, f64::min));
                let hi = stat(&|v| v.iter().copied().fold(f64::MIN, f64::max));
                let band: Vec<(f64, f64)> = lo.iter().chain(hi.iter().rev()).copied().collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        band,
                        color.mix(0.18).filled(),
                    )))
                    .map_err(|e| err(&e))?;
                let style = ShapeStyle::from(color).stroke_width(2);
                chart
                    .draw_series(LineSeries::new(mean, style))
                    .map_err(|e| err(&e))?
                    .label(norm.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    RgbImage::from_raw(w, h, buf).ok_or_else(|| Error::config("plot", "buffer size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_kinds_parse_and_print() {
        for k in InputKind::ALL {
            assert_eq!(k.name().parse::<InputKind>().unwrap(), k);
        }
        assert!("contrast".parse::<InputKind>().is_err());
        let key = RunKey {
            norm: "gn:8".into(),
            inputs: InputKind::Equalized,
            seed: 1,
        };
        assert_eq!(key.stem(), "gn8_equalized_seed1");
    }
}
