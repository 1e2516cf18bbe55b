//! Labeled picture grids (the `presets` contact sheet, the `compare` grid): a layout of cells,
//! each an optional image with text lines under it, drawn with the bundled DejaVu Sans
//! (`assets/fonts/`, Bitstream Vera license).
//!
//! The layout is computed first ([`Layout`]) so that tests can check positions without pixels.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

use crate::{Error, Result};

/// The bundled font.
pub(crate) static FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Space around and between cells, in pixels.
pub const GAP: u32 = 12;
/// Text size of labels, in pixels.
pub const LABEL_PX: f32 = 16.0;
/// Text size of the title.
pub const TITLE_PX: f32 = 24.0;

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);

fn font() -> Result<FontRef<'static>> {
    FontRef::try_from_slice(FONT_BYTES).map_err(|e| Error::config("font", e.to_string()))
}

/// Height of one text line at `px`.
pub fn line_height(px: f32) -> u32 {
    (px * 1.3).ceil() as u32
}

/// Width of `text` at `px`, in pixels.
pub fn text_width(text: &str, px: f32) -> Result<u32> {
    let font = font()?;
    let f = font.as_scaled(PxScale::from(px));
    let w: f32 = text.chars().map(|c| f.h_advance(f.glyph_id(c))).sum();
    Ok(w.ceil() as u32)
}

/// Draws `text` with its top-left corner at (x, y), alpha-blended, clipped to the image.
pub fn draw_text(
    img: &mut RgbImage,
    x: i32,
    y: i32,
    px: f32,
    text: &str,
    color: Rgb<u8>,
) -> Result<()> {
    let font = font()?;
    let scale = PxScale::from(px);
    let f = font.as_scaled(scale);
    let mut pen = x as f32;
    let baseline = y as f32 + f.ascent();
    for c in text.chars() {
        let id = f.glyph_id(c);
        let glyph = id.with_scale_and_position(scale, ab_glyph::point(pen, baseline));
        pen += f.h_advance(id);
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|gx, gy, cov| {
                let (px_, py_) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
                if px_ < 0 || py_ < 0 || px_ >= img.width() as i32 || py_ >= img.height() as i32 {
                    return;
                }
                let p = img.get_pixel_mut(px_ as u32, py_ as u32);
                for k in 0..3 {
                    let v = p.0[k] as f32 * (1.0 - cov) + color.0[k] as f32 * cov;
                    p.0[k] = v.round().clamp(0.0, 255.0) as u8;
                }
            });
        }
    }
    Ok(())
}

/// Shortens `text` with an ellipsis until it fits in `width` pixels at `px`.
pub fn fit_text(text: &str, px: f32, width: u32) -> Result<String> {
    if text_width(text, px)? <= width {
        return Ok(text.to_string());
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let s: String = chars.iter().collect::<String>() + "…";
        if text_width(&s, px)? <= width {
            return Ok(s);
        }
    }
    Ok(String::new())
}

/// One cell: an image (already fitted to the tile) and the text lines under it.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    /// The picture, at most tile×tile.
    pub image: Option<RgbImage>,
    /// Label lines, drawn centered under the picture (or alone, for a header cell).
    pub lines: Vec<String>,
}

/// Where everything goes, in pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The whole sheet.
    pub width: u32,
    /// The whole sheet.
    pub height: u32,
    /// Top of the first row (below the title, if any).
    pub top: u32,
    /// Left edge of each column.
    pub column_x: Vec<u32>,
    /// Top edge of each row.
    pub row_y: Vec<u32>,
    /// Height of each row's picture area.
    pub picture_h: Vec<u32>,
    /// Width of a column (the tile size).
    pub tile: u32,
}

impl Layout {
    /// Lays out `rows` of cells in columns of width `tile`, every row as tall as its tallest
    /// picture plus its most lines of text; a title line on top when given.
    pub fn new(rows: &[Vec<Cell>], tile: u32, title: bool) -> Self {
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
        let lh = line_height(LABEL_PX);
        let top = GAP
            + if title {
                line_height(TITLE_PX) + GAP
            } else {
                0
            };
        let column_x = (0..cols).map(|c| GAP + c * (tile + GAP)).collect();
        let mut row_y = Vec::with_capacity(rows.len());
        let mut picture_h = Vec::with_capacity(rows.len());
        let mut y = top;
        for row in rows {
            let pic = row
                .iter()
                .filter_map(|c| c.image.as_ref())
                .map(RgbImage::height)
                .max()
                .unwrap_or(0);
            let lines = row.iter().map(|c| c.lines.len()).max().unwrap_or(0) as u32;
            row_y.push(y);
            picture_h.push(pic);
            let gap_under = if pic > 0 && lines > 0 { 4 } else { 0 };
            y += pic + gap_under + lines * lh + GAP;
        }
        Layout {
            width: GAP + cols * (tile + GAP),
            height: y.max(top),
            top,
            column_x,
            row_y,
            picture_h,
            tile,
        }
    }

    /// Top-left corner of the picture of cell (row, col) of size `w`×`h`: centered in its
    /// column, bottom-aligned in the row's picture area.
    pub fn picture_at(&self, row: usize, col: usize, (w, h): (u32, u32)) -> (u32, u32) {
        (
            self.column_x[col] + (self.tile.saturating_sub(w)) / 2,
            self.row_y[row] + self.picture_h[row].saturating_sub(h),
        )
    }
}

/// Renders the cells into one sheet with an optional title.
pub fn render(rows: &[Vec<Cell>], tile: u32, title: Option<&str>) -> Result<RgbImage> {
    let layout = Layout::new(rows, tile, title.is_some());
    let mut img = RgbImage::from_pixel(layout.width, layout.height, BACKGROUND);
    if let Some(t) = title {
        let t = fit_text(t, TITLE_PX, layout.width.saturating_sub(2 * GAP))?;
        draw_text(&mut img, GAP as i32, GAP as i32, TITLE_PX, &t, INK)?;
    }
    let lh = line_height(LABEL_PX);
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            if let Some(pic) = &cell.image {
                let (x, y) = layout.picture_at(r, c, pic.dimensions());
                image::imageops::replace(&mut img, pic, x as i64, y as i64);
            }
            let gap_under = if layout.picture_h[r] > 0 { 4 } else { 0 };
            let mut y = layout.row_y[r] + layout.picture_h[r] + gap_under;
            for line in &cell.lines {
                let line = fit_text(line, LABEL_PX, tile)?;
                let w = text_width(&line, LABEL_PX)?;
                let x = layout.column_x[c] + tile.saturating_sub(w) / 2;
                draw_text(&mut img, x as i32, y as i32, LABEL_PX, &line, INK)?;
                y += lh;
            }
        }
    }
    Ok(img)
}

/// Resizes (Lanczos3) to fit in `tile`×`tile`, aspect kept; never upscales beyond the tile.
pub fn fit_tile(img: &RgbImage, tile: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let s = tile as f64 / w.max(h) as f64;
    let (nw, nh) = (
        ((w as f64 * s).round() as u32).clamp(1, tile),
        ((h as f64 * s).round() as u32).clamp(1, tile),
    );
    if (nw, nh) == (w, h) {
        return img.clone();
    }
    image::imageops::resize(img, nw, nh, image::imageops::FilterType::Lanczos3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(w: u32, h: u32, lines: usize) -> Cell {
        Cell {
            image: Some(RgbImage::new(w, h)),
            lines: (0..lines).map(|i| format!("line {i}")).collect(),
        }
    }

    #[test]
    fn layout_places_columns_and_rows() {
        let rows = vec![
            vec![cell(100, 50, 1), cell(80, 100, 2)],
            vec![cell(100, 60, 0)],
        ];
        let l = Layout::new(&rows, 100, true);
        assert_eq!(l.column_x, vec![GAP, GAP + 100 + GAP]);
        assert_eq!(l.width, GAP + 2 * (100 + GAP));
        assert_eq!(l.top, GAP + line_height(TITLE_PX) + GAP);
        assert_eq!(l.picture_h, vec![100, 60]);
        assert_eq!(
            l.row_y[1],
            l.top + 100 + 4 + 2 * line_height(LABEL_PX) + GAP
        );
        // A narrower picture is centered; a shorter one sits on the row's baseline.
        assert_eq!(l.picture_at(0, 1, (80, 100)), (l.column_x[1] + 10, l.top));
        assert_eq!(l.picture_at(0, 0, (100, 50)), (GAP, l.top + 50));
        let img = render(&rows, 100, Some("title")).unwrap();
        assert_eq!(img.dimensions(), (l.width, l.height));
    }

    #[test]
    fn text_is_drawn_and_fitted() {
        let mut img = RgbImage::from_pixel(120, 30, BACKGROUND);
        draw_text(&mut img, 2, 2, LABEL_PX, "AdaIN", INK).unwrap();
        assert!(img.pixels().any(|p| p.0[0] < 128), "no ink");
        let long = "a very long label that does not fit";
        let s = fit_text(long, LABEL_PX, 80).unwrap();
        assert!(s.ends_with('…') && text_width(&s, LABEL_PX).unwrap() <= 80);
        assert_eq!(
            fit_tile(&RgbImage::new(400, 200), 100).dimensions(),
            (100, 50)
        );
    }
}
