//! Images in and out: decode (any color type, EXIF orientation applied, alpha composited on
//! white) → (1, 3, H, W) f32 RGB tensors in [0, 1]; resizing; atomic saving.

use std::io::Cursor;
use std::path::Path;

use candle::{DType, Device, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Rgb32FImage};

/// An RGB image with f32 channels in [0, 1].
pub type Rgb = Rgb32FImage;

use crate::{Error, Result};

/// The default largest image normstyle decodes, in pixels (a guard against decompression bombs:
/// 100 megapixels, e.g. 12 000 × 8 000). `--max-pixels` changes it ([`set_pixel_limit`]).
pub const MAX_PIXELS: u64 = 100_000_000;

static PIXEL_LIMIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(MAX_PIXELS);

/// Sets the largest image (in pixels) that decoding accepts, for the whole process.
pub fn set_pixel_limit(pixels: u64) {
    PIXEL_LIMIT.store(pixels, std::sync::atomic::Ordering::Relaxed);
}

/// The largest image (in pixels) that decoding accepts now ([`set_pixel_limit`]).
pub fn pixel_limit() -> u64 {
    PIXEL_LIMIT.load(std::sync::atomic::Ordering::Relaxed)
}

fn img_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Parse {
        what: path.display().to_string(),
        msg: msg.to_string(),
    }
}

/// Decodes an image file: EXIF orientation applied, any color type converted to RGB f32 in
/// [0, 1] (alpha composited on white, 16-bit kept at full precision).
pub fn load_rgb(path: &Path) -> Result<Rgb32FImage> {
    let _t = crate::profile::scope("decode image");
    if path.is_dir() {
        return Err(img_err(path, "is a folder, not an image"));
    }
    let bytes = std::fs::read(path).map_err(|err| Error::Io {
        path: path.to_path_buf(),
        err,
    })?;
    decode_rgb(&bytes, &path.display().to_string())
}

/// Decodes image bytes like [`load_rgb`]; `what` names them in errors (e.g. the file name).
pub fn decode_rgb(bytes: &[u8], what: &str) -> Result<Rgb32FImage> {
    let path = Path::new(what);
    if bytes.is_empty() {
        return Err(img_err(path, "empty file"));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| img_err(path, e))?;
    if reader.format().is_none() {
        return Err(img_err(
            path,
            "not a recognized image format (PNG, JPEG or WebP)",
        ));
    }
    if reader.format() == Some(ImageFormat::Jpeg) {
        // The JPEG decoder fills a truncated or corrupt scan with gray and succeeds; the
        // structure check makes that an error, as PIL does ("image file is truncated").
        check_jpeg(bytes).map_err(|msg| img_err(path, format!("corrupt JPEG: {msg}")))?;
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| img_err(path, format!("cannot decode: {e}")))?;
    let (w, h) = decoder.dimensions();
    let limit = PIXEL_LIMIT.load(std::sync::atomic::Ordering::Relaxed);
    if u64::from(w) * u64::from(h) > limit {
        return Err(Error::ImageTooLarge {
            what: path.display().to_string(),
            width: w,
            height: h,
            limit,
        });
    }
    // The decoder allocates its whole buffer at once and aborts the process if that fails:
    // ask the allocator first, so an image too large for this machine is an error.
    let need = decoder.total_bytes();
    let mut probe: Vec<u8> = Vec::new();
    if usize::try_from(need).map_or(true, |n| probe.try_reserve_exact(n).is_err()) {
        return Err(img_err(
            path,
            format!(
                "{w}×{h} needs {:.1} GB to decode, more than this machine can allocate",
                need as f64 / 1e9
            ),
        ));
    }
    drop(probe);
    let orientation = decoder.orientation().map_err(|e| img_err(path, e))?;
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| img_err(path, format!("cannot decode: {e}")))?;
    img.apply_orientation(orientation);
    Ok(to_rgb(&img))
}

/// Checks a JPEG's marker structure: SOI first; every segment's length within the file; known
/// markers only, in a possible order; non-zero dimensions; entropy-coded data that ends in a
/// marker; and an end-of-image marker (data after it is ignored). This catches truncation at
/// any point and damaged markers, not damage inside the entropy-coded data.
pub fn check_jpeg(b: &[u8]) -> std::result::Result<(), String> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err("no start-of-image marker".into());
    }
    let truncated = || "the file is truncated (it ends before the end-of-image marker)".to_string();
    let (mut pos, mut frame, mut scans) = (2usize, false, 0usize);
    loop {
        if pos >= b.len() {
            return Err(truncated());
        }
        if b[pos] != 0xFF {
            return Err(format!(
                "bad data at byte {pos} (0x{:02X} where a marker should start)",
                b[pos]
            ));
        }
        while pos + 1 < b.len() && b[pos + 1] == 0xFF {
            pos += 1; // fill bytes
        }
        let Some(&m) = b.get(pos + 1) else {
            return Err(truncated());
        };
        match m {
            0xD9 if scans > 0 => return Ok(()),
            0xD9 => return Err("end-of-image marker before any image data".into()),
            0xD0..=0xD7 | 0x01 => {
                pos += 2;
                continue;
            }
            // Frames (SOFn: C0–CF but DHT C4, JPG C8, DAC CC), tables, scans, APPn, COM.
            0xC0..=0xC7 | 0xC9..=0xCF | 0xDA..=0xDF | 0xE0..=0xEF | 0xFE => {}
            _ => return Err(format!("bad marker 0xFF{m:02X} at byte {pos}")),
        }
        let sof = (0xC0..=0xCF).contains(&m) && !matches!(m, 0xC4 | 0xCC);
        if sof && (frame || scans > 0) {
            return Err(format!("unexpected frame marker 0xFF{m:02X} at byte {pos}"));
        }
        let Some(len) = b
            .get(pos + 2..pos + 4)
            .map(|l| usize::from(l[0]) << 8 | usize::from(l[1]))
        else {
            return Err(truncated());
        };
        let end = pos + 2 + len;
        if len < 2 || end > b.len() {
            return Err(truncated());
        }
        if sof {
            frame = true;
            let seg = &b[pos + 4..end];
            let (h, w) = match seg {
                [_, h0, h1, w0, w1, ..] => (
                    u16::from_be_bytes([*h0, *h1]),
                    u16::from_be_bytes([*w0, *w1]),
                ),
                _ => return Err("frame header too short".into()),
            };
            if h == 0 || w == 0 {
                return Err(format!(
                    "{w}×{h} pixels: an image needs a width and height ≥ 1"
                ));
            }
        }
        pos = end;
        if m == 0xDA {
            if !frame {
                return Err("scan before the frame header".into());
            }
            scans += 1;
            // Entropy-coded data: runs until a marker other than stuffing (FF00) or RSTn.
            loop {
                let Some(off) = b[pos..].iter().position(|&x| x == 0xFF) else {
                    return Err(truncated());
                };
                pos += off;
                match b.get(pos + 1) {
                    None => return Err(truncated()),
                    Some(0x00 | 0xD0..=0xD7 | 0xFF) => pos += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

/// Any decoded image → RGB f32 in [0, 1], alpha composited on white (16-bit kept at full
/// precision), as [`load_rgb`] converts files.
pub fn to_rgb(img: &DynamicImage) -> Rgb32FImage {
    if !img.color().has_alpha() {
        return img.to_rgb32f();
    }
    let rgba = img.to_rgba32f();
    let (w, h) = rgba.dimensions();
    Rgb32FImage::from_fn(w, h, |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3];
        image::Rgb([
            p[0] * a + (1.0 - a),
            p[1] * a + (1.0 - a),
            p[2] * a + (1.0 - a),
        ])
    })
}

/// Resizes (Lanczos3) to `width`×`height`; an image of that size is returned as is.
pub fn resize_to(img: Rgb32FImage, width: u32, height: u32) -> Rgb32FImage {
    if img.dimensions() == (width, height) {
        return img;
    }
    image::imageops::resize(&img, width, height, FilterType::Lanczos3)
}

/// Resizes (Lanczos3) so the longer side is at most `max_side` (0 keeps the size).
pub fn cap_long_side(img: Rgb32FImage, max_side: u32) -> Rgb32FImage {
    let (w, h) = capped_dims(img.dimensions(), max_side);
    resize_to(img, w, h)
}

/// The size [`cap_long_side`] gives an image of `(w, h)`.
pub fn capped_dims((w, h): (u32, u32), max_side: u32) -> (u32, u32) {
    let long = w.max(h);
    if max_side == 0 || long <= max_side {
        return (w, h);
    }
    let s = max_side as f64 / long as f64;
    (
        ((w as f64 * s).round() as u32).max(1),
        ((h as f64 * s).round() as u32).max(1),
    )
}

/// Resizes (Lanczos3) so the shorter side is exactly `side` (up or down, aspect kept, like
/// torchvision's `Resize(side)` in the AdaIN reference); 0 keeps the size.
pub fn resize_short_side(img: Rgb32FImage, side: u32) -> Rgb32FImage {
    let (w, h) = short_side_dims(img.dimensions(), side);
    resize_to(img, w, h)
}

/// The size [`resize_short_side`] gives an image of `(w, h)`.
pub fn short_side_dims((w, h): (u32, u32), side: u32) -> (u32, u32) {
    let short = w.min(h);
    if side == 0 || short == side {
        return (w, h);
    }
    let s = side as f64 / short as f64;
    let scaled = |n: u32, short_axis: bool| {
        if short_axis {
            side
        } else {
            ((n as f64 * s).round() as u32).max(1)
        }
    };
    (scaled(w, w <= h), scaled(h, h < w))
}

/// The centered square of side min(W, H).
pub fn crop_center_square(img: Rgb32FImage) -> Rgb32FImage {
    let (w, h) = img.dimensions();
    if w == h {
        return img;
    }
    let s = w.min(h);
    image::imageops::crop_imm(&img, (w - s) / 2, (h - s) / 2, s, s).to_image()
}

/// BT.601 luma of every pixel, row-major, in [0, 1].
pub fn luma(rgb: &Rgb32FImage) -> Vec<f32> {
    rgb.pixels()
        .map(|p| 0.299 * p.0[0] + 0.587 * p.0[1] + 0.114 * p.0[2])
        .collect()
}

/// Center-crops to a square and resizes it to `side`×`side` (Lanczos3); an image that already
/// is `side`×`side` is used as is.
pub fn center_square(img: &Rgb32FImage, side: u32) -> Rgb32FImage {
    let (w, h) = img.dimensions();
    if w == side && h == side {
        return img.clone();
    }
    let s = w.min(h);
    let crop = image::imageops::crop_imm(img, (w - s) / 2, (h - s) / 2, s, s).to_image();
    image::imageops::resize(&crop, side, side, FilterType::Lanczos3)
}

/// An RGB f32 image → (1, 3, H, W) f32 on `device`.
pub fn to_tensor(img: &Rgb32FImage, device: &Device) -> Result<Tensor> {
    let (w, h) = img.dimensions();
    let plane = w as usize * h as usize;
    // Interleaved → planar in one pass (a strided copy through Candle took ~7 ms at 1280×720,
    // on the critical path of every video frame).
    let mut planar = vec![0f32; 3 * plane];
    let (r, gb) = planar.split_at_mut(plane);
    let (g, b) = gb.split_at_mut(plane);
    for (((p, r), g), b) in img.as_raw().chunks_exact(3).zip(r).zip(g).zip(b) {
        *r = p[0];
        *g = p[1];
        *b = p[2];
    }
    let t = Tensor::from_vec(planar, (1, 3, h as usize, w as usize), &Device::Cpu)?;
    Ok(t.to_device(device)?)
}

/// (1, 3, H, W) (any float dtype, any device) → 8-bit RGB as torchvision's `save_image`
/// quantizes: ⌊clamp(x·255 + 0.5, 0, 255)⌋.
pub fn to_rgb8(x: &Tensor) -> Result<image::RgbImage> {
    let (n, c, h, w) = x.dims4()?;
    if n != 1 || c != 3 {
        return Err(Error::input(
            "image output",
            format!("expected one 3-channel image, found shape {:?}", x.dims()),
        ));
    }
    // The data is read in place and interleaved in one pass: through Candle (`to_vec1`, a
    // permuted copy) this took ~12–19 ms at 1280×720, on the critical path of video frames.
    let x = x
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .contiguous()?;
    let plane = h * w;
    let v = crate::norm::stats::with_cpu_slice(&x, |planar| {
        let (r, gb) = planar.split_at(plane);
        let (g, b) = gb.split_at(plane);
        let q = |v: f32| (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
        let mut v = vec![0u8; 3 * plane];
        for (((px, r), g), b) in v.chunks_exact_mut(3).zip(r).zip(g).zip(b) {
            px[0] = q(*r);
            px[1] = q(*g);
            px[2] = q(*b);
        }
        Ok(v)
    })?;
    image::RgbImage::from_raw(w as u32, h as u32, v)
        .ok_or_else(|| Error::input("image output", "buffer size mismatch"))
}

/// The output format for `path`'s extension (png, jpg/jpeg, webp).
pub fn format_for(path: &Path) -> Result<ImageFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => Ok(ImageFormat::Png),
        Some("jpg" | "jpeg") => Ok(ImageFormat::Jpeg),
        Some("webp") => Ok(ImageFormat::WebP),
        _ => Err(img_err(
            path,
            "unsupported output extension (use .png, .jpg or .webp)",
        )),
    }
}

/// Encodes an image in `format` (JPEG at `quality`, 1–100).
pub fn encode(img: &image::RgbImage, format: ImageFormat, quality: u8) -> Result<Vec<u8>> {
    let mut buf = Cursor::new(Vec::new());
    let res = match format {
        ImageFormat::Jpeg => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality.clamp(1, 100))
                .encode_image(img)
        }
        f => img.write_to(&mut buf, f),
    };
    res.map_err(|e| Error::input("image output", format!("cannot encode: {e}")))?;
    Ok(buf.into_inner())
}

/// Saves atomically (temporary file + rename) in the format of the extension.
pub fn save(img: &image::RgbImage, path: &Path, quality: u8) -> Result<()> {
    let _t = crate::profile::scope("encode output");
    let bytes = encode(img, format_for(path)?, quality)?;
    crate::weights::write_atomic(path, &bytes)
}
