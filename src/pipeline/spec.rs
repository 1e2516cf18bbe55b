//! Styles named by file: what one output of a run is styled with, before the images are loaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::DynamicImage;

use super::stylizer::{Style, Styling};
use crate::imaging;
use crate::model::adain::Mask;
use crate::model::magenta::PRESET_COUNT;
use crate::{Error, Result};

/// What one output is styled with, by file path (see [`Styling`] for loaded styles).
#[derive(Clone, Debug, PartialEq)]
pub enum StyleSpec {
    /// Style images and their blend weights (summing to 1).
    Images(Vec<(PathBuf, f64)>),
    /// Two style images split by a mask (white → first, black → second).
    Masked([PathBuf; 2]),
    /// 26-style network weights (summing to 1).
    Preset(Vec<f64>),
    /// The style a trained network has built in, labeled (in output names) by the model's
    /// file stem.
    Trained(String),
}

impl StyleSpec {
    /// The specs of one call, as `normstyle stylize` reads its flags: one per style image, or a
    /// single blend when `weights` are given (normalized here), or the two styles of a mask.
    pub fn from_styles(
        styles: &[PathBuf],
        weights: Option<&[f64]>,
        masked: bool,
    ) -> Result<Vec<Self>> {
        if styles.is_empty() {
            return Err(parse_err(
                "styles",
                "give at least one style image (or a preset for a built-in style)",
            ));
        }
        if masked {
            if styles.len() != 2 {
                return Err(parse_err("mask", format!("spatial control needs exactly two style images (white → first, black → second), got {}", styles.len())));
            }
            if weights.is_some() {
                return Err(parse_err(
                    "mask",
                    "the mask decides where each style goes; give no style weights",
                ));
            }
            return Ok(vec![StyleSpec::Masked([
                styles[0].clone(),
                styles[1].clone(),
            ])]);
        }
        match weights {
            Some(w) if w.len() != styles.len() => Err(parse_err(
                "style weights",
                format!("{} weights for {} style images", w.len(), styles.len()),
            )),
            Some(w) => {
                let w = normalize_weights("style weights", w)?;
                Ok(vec![StyleSpec::Images(
                    styles.iter().cloned().zip(w).collect(),
                )])
            }
            None => Ok(styles
                .iter()
                .map(|p| StyleSpec::Images(vec![(p.clone(), 1.0)]))
                .collect()),
        }
    }

    /// The style files this spec reads.
    pub fn paths(&self) -> Vec<&PathBuf> {
        match self {
            StyleSpec::Images(v) => v.iter().map(|(p, _)| p).collect(),
            StyleSpec::Masked([a, b]) => vec![a, b],
            StyleSpec::Preset(_) | StyleSpec::Trained(_) => Vec::new(),
        }
    }

    /// The label used in output names and logs: `mondrian`, `a+b`, `preset3-12`.
    pub fn label(&self) -> String {
        match self {
            StyleSpec::Images(v) => v.iter().map(|(p, _)| stem(p)).collect::<Vec<_>>().join("+"),
            StyleSpec::Masked([a, b]) => format!("{}+{}", stem(a), stem(b)),
            StyleSpec::Preset(w) => {
                let ids: Vec<String> = (0..w.len())
                    .filter(|&i| w[i] > 0.0)
                    .map(|i| i.to_string())
                    .collect();
                format!("preset{}", ids.join("-"))
            }
            StyleSpec::Trained(label) => label.clone(),
        }
    }

    /// The loaded form of this spec. `styles` holds the prepared style of every path; a masked
    /// spec needs `mask`.
    pub fn styling<'a>(
        &self,
        styles: &'a HashMap<PathBuf, Style>,
        mask: Option<&'a Mask>,
    ) -> Result<Styling<'a>> {
        self.styling_with(|p| styles.get(p), mask)
    }

    /// [`StyleSpec::styling`] with the prepared styles looked up by `get`.
    pub fn styling_with<'a>(
        &self,
        get: impl Fn(&PathBuf) -> Option<&'a Style>,
        mask: Option<&'a Mask>,
    ) -> Result<Styling<'a>> {
        let get = |p: &PathBuf| {
            get(p).ok_or_else(|| parse_err(&p.display().to_string(), "style image not loaded"))
        };
        Ok(match self {
            StyleSpec::Images(v) => Styling::Blend(
                v.iter()
                    .map(|(p, w)| Ok((get(p)?, *w)))
                    .collect::<Result<_>>()?,
            ),
            StyleSpec::Masked([a, b]) => Styling::Masked {
                white: get(a)?,
                black: get(b)?,
                mask: mask.ok_or_else(|| parse_err("mask", "a masked style needs a mask"))?,
            },
            StyleSpec::Preset(w) => Styling::Preset(w.clone()),
            StyleSpec::Trained(_) => Styling::Trained,
        })
    }
}

/// Weights ≥ 0 (finite) with a positive sum, divided by the sum. `what` names them in errors.
pub fn normalize_weights(what: &str, w: &[f64]) -> Result<Vec<f64>> {
    if let Some(bad) = w.iter().find(|v| !v.is_finite() || **v < 0.0) {
        return Err(parse_err(
            what,
            format!("weight {bad} is not a finite number ≥ 0"),
        ));
    }
    let sum: f64 = w.iter().sum();
    if sum <= 0.0 {
        return Err(parse_err(what, "the weights sum to 0"));
    }
    Ok(w.iter().map(|v| v / sum).collect())
}

/// A preset blend, `N` or `N:w,M:w,…` (N in 0–25, weights ≥ 0) → 26 weights summing to 1.
pub fn parse_preset(s: &str) -> Result<Vec<f64>> {
    let mut w = vec![0.0; PRESET_COUNT];
    for part in s.split(',') {
        let (id, weight) = match part.split_once(':') {
            Some((i, v)) => (
                i,
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| parse_err("preset", format!("`{v}` is not a number")))?,
            ),
            None => (part, 1.0),
        };
        let id: usize = id
            .trim()
            .parse()
            .ok()
            .filter(|&i| i < PRESET_COUNT)
            .ok_or_else(|| {
                parse_err(
                    "preset",
                    format!(
                        "`{}` is not a style number 0–{}",
                        id.trim(),
                        PRESET_COUNT - 1
                    ),
                )
            })?;
        w[id] += weight;
    }
    normalize_weights("preset", &w)
}

/// A spatial-control mask from an image: luma (BT.601, alpha on white) thresholded at 50 %.
pub fn mask_from_image(image: &DynamicImage) -> Result<Mask> {
    mask_from_rgb(&imaging::to_rgb(image))
}

/// [`mask_from_image`] for an image already decoded to RGB f32.
pub fn mask_from_rgb(rgb: &imaging::Rgb) -> Result<Mask> {
    let (w, h) = rgb.dimensions();
    Mask::from_gray(w as usize, h as usize, &imaging::luma(rgb))
}

/// The image files (png, jpg, jpeg, webp, any case) in `dir`, sorted, hidden entries skipped;
/// subfolders too with `recursive`.
pub fn list_images(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(parse_err(&dir.display().to_string(), "not a folder"));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |err| Error::Io { path, err }
    };
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let p = e.map_err(io(&d))?.path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                if recursive {
                    stack.push(p);
                }
            } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                ["png", "jpg", "jpeg", "webp"].contains(&e.to_ascii_lowercase().as_str())
            }) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The name of an output: `<content>_stylized_<style>.<ext>`.
pub fn output_name(content: &str, style: &str, ext: &str) -> String {
    format!("{content}_stylized_{style}.{ext}")
}

/// The file stem used in output names (`image` when there is none).
pub fn stem(p: &Path) -> String {
    p.file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
}

fn parse_err(what: &str, msg: impl Into<String>) -> Error {
    Error::Parse {
        what: what.into(),
        msg: msg.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_normalize() {
        let w = parse_preset("3").unwrap();
        assert_eq!(w[3], 1.0);
        let w = parse_preset("3:0.5,12:1.5").unwrap();
        assert_eq!((w[3], w[12]), (0.25, 0.75));
        assert_eq!(
            parse_preset("26").unwrap_err().to_string(),
            "preset: `26` is not a style number 0–25"
        );
        assert_eq!(
            parse_preset("3:-1").unwrap_err().to_string(),
            "preset: weight -1 is not a finite number ≥ 0"
        );
        assert_eq!(
            parse_preset("3:0").unwrap_err().to_string(),
            "preset: the weights sum to 0"
        );
        assert!(parse_preset("x").is_err());
    }

    #[test]
    fn specs_follow_the_flags() {
        let p = |s: &str| PathBuf::from(s);
        let two = [p("a.jpg"), p("b.jpg")];
        assert_eq!(StyleSpec::from_styles(&two, None, false).unwrap().len(), 2);
        let blend = StyleSpec::from_styles(&two, Some(&[1.0, 3.0]), false).unwrap();
        assert_eq!(
            blend,
            [StyleSpec::Images(vec![
                (p("a.jpg"), 0.25),
                (p("b.jpg"), 0.75)
            ])]
        );
        assert_eq!(blend[0].label(), "a+b");
        assert!(StyleSpec::from_styles(&two[..1], None, true).is_err());
        assert!(StyleSpec::from_styles(&[], None, false).is_err());
    }
}
