//! Training photos: a folder of images, resized and randomly cropped, in an order and with crops
//! that depend on the seed and the step alone (so a resumed run sees the batches an
//! uninterrupted one would).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle::{Device, Tensor};
use image::imageops::FilterType;
use image::RgbImage;

use crate::imaging;
use crate::rng::Rng;
use crate::{Error, Result};

const WHAT: &str = "content folder";

/// Random streams of the crate's generator (see [`Rng::new`]).
const ORDER_STREAM: u64 = 0x6f72_6465_7200_0000;
const CROP_STREAM: u64 = 0x6372_6f70_0000_0000;

/// Decoded training photos, each resized so that its shorter side is the crop side.
#[derive(Clone)]
pub struct ContentSet {
    images: Vec<Arc<RgbImage>>,
    names: Vec<PathBuf>,
    skipped: Vec<PathBuf>,
    size: u32,
}

impl std::fmt::Debug for ContentSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentSet")
            .field("images", &self.images.len())
            .field("skipped", &self.skipped.len())
            .field("size", &self.size)
            .finish()
    }
}

impl ContentSet {
    /// Every image file in `dir` (not recursive, in name order), decoded and resized to a
    /// shorter side of `size`. Files that do not decode are skipped and counted
    /// ([`ContentSet::skipped`]); a folder with no readable image is an error.
    pub fn open(dir: &Path, size: u32) -> Result<Self> {
        if size < 16 {
            return Err(Error::config(
                "training",
                format!("crop size {size}: need at least 16 pixels"),
            ));
        }
        let files = crate::pipeline::list_images(dir, false)?;
        let mut images = Vec::new();
        let mut names = Vec::new();
        let mut skipped = Vec::new();
        for p in files {
            match imaging::load_rgb(&p) {
                Ok(img) => {
                    let img = image::DynamicImage::ImageRgb32F(img).to_rgb8();
                    images.push(Arc::new(resize_shorter(&img, size)));
                    names.push(p);
                }
                Err(_) => skipped.push(p),
            }
        }
        if images.is_empty() {
            return Err(Error::input(
                WHAT,
                format!(
                    "{}: no readable images (png, jpg, jpeg, webp; {} failed to decode)",
                    dir.display(),
                    skipped.len()
                ),
            ));
        }
        Ok(ContentSet {
            images,
            names,
            skipped,
            size,
        })
    }

    /// A set from images in memory (each resized to a shorter side of `size`).
    pub fn from_images(images: Vec<(PathBuf, RgbImage)>, size: u32) -> Result<Self> {
        if images.is_empty() {
            return Err(Error::input(WHAT, "no images given"));
        }
        let (names, images) = images
            .into_iter()
            .map(|(n, img)| (n, Arc::new(resize_shorter(&img, size))))
            .unzip();
        Ok(ContentSet {
            images,
            names,
            skipped: Vec::new(),
            size,
        })
    }

    /// The same photos, each passed through `f` (histogram equalization, pre-stylization).
    pub fn map(&self, f: impl Fn(&RgbImage) -> Result<RgbImage>) -> Result<Self> {
        let images = self
            .images
            .iter()
            .map(|img| f(img).map(Arc::new))
            .collect::<Result<_>>()?;
        Ok(ContentSet {
            images,
            ..self.clone()
        })
    }

    /// How many photos train.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether the set is empty (never, for a set that opened).
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The files that did not decode.
    pub fn skipped(&self) -> &[PathBuf] {
        &self.skipped
    }

    /// The photos' files, in set order.
    pub fn names(&self) -> &[PathBuf] {
        &self.names
    }

    /// The crop side.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The batch of `step`: `batch` crops as a (B, 3, size, size) f32 tensor in [0, 1].
    /// Photos come in a seeded shuffled order, epoch after epoch; each crop's position comes
    /// from (seed, position in that stream). A function of (seed, step, batch) alone.
    pub fn batch(&self, seed: u64, step: u64, batch: usize, device: &Device) -> Result<Tensor> {
        let n = self.images.len() as u64;
        let s = self.size as usize;
        let mut data = Vec::with_capacity(batch * 3 * s * s);
        let mut perm_epoch = u64::MAX;
        let mut perm = Vec::new();
        for j in 0..batch as u64 {
            let pos = step * batch as u64 + j;
            let epoch = pos / n;
            if epoch != perm_epoch {
                perm = permutation(seed, epoch, n as usize);
                perm_epoch = epoch;
            }
            let img = &self.images[perm[(pos % n) as usize]];
            let mut rng = Rng::new(seed, CROP_STREAM ^ pos);
            let x0 = rng.below(img.width() as usize - s + 1) as u32;
            let y0 = rng.below(img.height() as usize - s + 1) as u32;
            let crop = image::imageops::crop_imm(img.as_ref(), x0, y0, self.size, self.size);
            let crop = crop.to_image();
            // Planar CHW in [0, 1].
            for c in 0..3 {
                data.extend(crop.pixels().map(|p| f32::from(p.0[c]) / 255.0));
            }
        }
        Ok(Tensor::from_vec(data, (batch, 3, s, s), device)?)
    }
}

/// The shuffled order of epoch `epoch` (Fisher–Yates on the crate's generator).
fn permutation(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed, ORDER_STREAM ^ epoch);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

/// `img` resized (bilinear, antialiased when shrinking) so that its shorter side is `size`.
pub fn resize_shorter(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let short = w.min(h).max(1);
    if short == size {
        return img.clone();
    }
    let scale = f64::from(size) / f64::from(short);
    let (nw, nh) = if w <= h {
        (size, ((f64::from(h) * scale).round() as u32).max(size))
    } else {
        (((f64::from(w) * scale).round() as u32).max(size), size)
    };
    image::imageops::resize(img, nw, nh, FilterType::Triangle)
}

/// Histogram equalization of the luminance (BT.601 Y of YCbCr), chroma kept: the contrast
/// normalization of the AdaIN paper's Fig. 1(b).
pub fn equalize_luminance(img: &RgbImage) -> RgbImage {
    let ycc: Vec<[f64; 3]> = img
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(f64::from);
            let y = 0.299 * r + 0.587 * g + 0.114 * b;
            [y, b - y, r - y]
        })
        .collect();
    let mut hist = [0usize; 256];
    for p in &ycc {
        hist[p[0].round().clamp(0.0, 255.0) as usize] += 1;
    }
    // The classic mapping: cdf rescaled so the darkest occupied level goes to 0.
    let mut cdf = [0usize; 256];
    let mut acc = 0;
    for (c, h) in cdf.iter_mut().zip(hist) {
        acc += h;
        *c = acc;
    }
    let total = ycc.len();
    let cdf_min = cdf.iter().copied().find(|&c| c > 0).unwrap_or(0);
    let denom = (total - cdf_min).max(1) as f64;
    let map: Vec<f64> = cdf
        .iter()
        .map(|&c| (c.saturating_sub(cdf_min)) as f64 / denom * 255.0)
        .collect();
    let mut out = RgbImage::new(img.width(), img.height());
    for (o, [y, cb, cr]) in out.pixels_mut().zip(ycc) {
        let y2 = map[y.round().clamp(0.0, 255.0) as usize];
        let (r, b) = (cr + y2, cb + y2);
        let g = (y2 - 0.299 * r - 0.114 * b) / 0.587;
        o.0 = [r, g, b].map(|v| v.round().clamp(0.0, 255.0) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: u32) -> ContentSet {
        let imgs = (0..n)
            .map(|i| {
                let img = RgbImage::from_fn(40 + i, 30, |x, y| {
                    image::Rgb([(x * 5 + i) as u8, (y * 7) as u8, (i * 40) as u8])
                });
                (PathBuf::from(format!("{i}.png")), img)
            })
            .collect();
        ContentSet::from_images(imgs, 24).unwrap()
    }

    #[test]
    fn batches_depend_on_seed_and_step_alone() {
        let s = set(5);
        let d = Device::Cpu;
        let a = s.batch(7, 3, 4, &d).unwrap();
        let b = s.batch(7, 3, 4, &d).unwrap();
        let c = s.batch(8, 3, 4, &d).unwrap();
        let diff = |x: &Tensor, y: &Tensor| {
            (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(a.dims(), &[4, 3, 24, 24]);
        assert_eq!(diff(&a, &b), 0.0);
        assert!(diff(&a, &c) > 0.0);
    }

    #[test]
    fn every_photo_comes_once_per_epoch() {
        for n in [1, 4, 7] {
            let mut p = permutation(3, 2, n);
            p.sort();
            assert_eq!(p, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn equalization_spreads_a_narrow_histogram() {
        let img = RgbImage::from_fn(64, 64, |x, _| {
            let v = 100 + (x / 8) as u8;
            image::Rgb([v, v, v])
        });
        let eq = equalize_luminance(&img);
        let lo = eq.pixels().map(|p| p.0[1]).min().unwrap();
        let hi = eq.pixels().map(|p| p.0[1]).max().unwrap();
        assert!(lo < 5 && hi > 250, "{lo}..{hi}");
        // Gray stays gray.
        assert!(eq.pixels().all(|p| p.0[0].abs_diff(p.0[2]) <= 1));
    }
}
