//! Test error against batch size, one line per normalization, as the GN paper's Figure 1 draws
//! it: log₂ batch-size axis, labelled axes, a legend; the mean over seeds with a band from the
//! lowest to the highest seed.

use image::RgbImage;
use plotters::prelude::*;

use super::{summarize, RunResult};
use crate::{Error, Result};

const SIZE: (u32, u32) = (900, 600);

/// The results as a chart, 900×600 RGB.
pub fn plot(results: &[RunResult], title: &str) -> Result<RgbImage> {
    register_font()?;
    let err = |e: &dyn std::fmt::Display| Error::config("plot", e.to_string());
    let log2 = |b: usize| (b as f64).log2();
    let xs: Vec<f64> = results.iter().map(|r| log2(r.batch_size)).collect();
    let (x0, x1) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    if results.is_empty() {
        return Err(Error::config("plot", "no results to plot"));
    }
    let (x0, x1) = if x1 > x0 {
        (x0 - 0.25, x1 + 0.25)
    } else {
        (x0 - 1.0, x1 + 1.0)
    };
    let summary = summarize(results);
    let y1 = results
        .iter()
        .map(|r| 100.0 * r.test_error)
        .fold(0.0, f64::max);
    let y1 = (y1 * 1.15).max(5.0);

    let mut buf = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0.0..y1)
            .map_err(|e| err(&e))?;
        let ticks: Vec<f64> = {
            let mut t: Vec<f64> = xs.clone();
            t.sort_by(f64::total_cmp);
            t.dedup();
            t
        };
        chart
            .configure_mesh()
            .x_desc("batch size (images per step, log₂ scale)")
            .y_desc("test error (%)")
            .x_labels(ticks.len().max(2) * 4)
            .x_label_formatter(&|v| {
                // Label the measured batch sizes only.
                match ticks.iter().find(|t| (*t - v).abs() < 1e-9) {
                    Some(t) => format!("{}", t.exp2().round() as u64),
                    None => String::new(),
                }
            })
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE)
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(|e| err(&e))?;
        let mut names: Vec<&str> = Vec::new();
        for r in results {
            if !names.contains(&r.norm.as_str()) {
                names.push(&r.norm);
            }
        }
        for (i, name) in names.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let mut rows: Vec<&super::Summary> =
                summary.iter().filter(|s| s.norm == *name).collect();
            rows.sort_by_key(|s| s.batch_size);
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .map(|s| (log2(s.batch_size), 100.0 * s.test_error_mean))
                .collect();
            if rows.iter().any(|s| s.seeds > 1) {
                let band: Vec<(f64, f64)> = rows
                    .iter()
                    .map(|s| (log2(s.batch_size), 100.0 * s.test_error_range.0))
                    .chain(
                        rows.iter()
                            .rev()
                            .map(|s| (log2(s.batch_size), 100.0 * s.test_error_range.1)),
                    )
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        band,
                        color.mix(0.15).filled(),
                    )))
                    .map_err(|e| err(&e))?;
            }
            let style = ShapeStyle::from(color).stroke_width(3);
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(|e| err(&e))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 5, color.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 18))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    RgbImage::from_raw(SIZE.0, SIZE.1, buf).ok_or_else(|| Error::config("plot", "buffer size"))
}

/// plotters draws text with ab_glyph from registered fonts: the bundled DejaVu Sans.
pub(crate) fn register_font() -> Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, crate::grid::FONT_BYTES)
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::config("plot", "the bundled font did not load"))
    }
}
