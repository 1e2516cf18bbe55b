//! The bad-input corpus (issue 7): one table of unusual and broken inputs, each with the exit
//! code, the one-line message, and the guarantee that nothing is written on failure.

mod common;

use std::path::Path;
use std::process::Command;

use candle::Tensor;

fn write_image(path: &Path, w: u32, h: u32) {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 11 % 256) as u8, 128])
    })
    .save(path)
    .unwrap();
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// What a case must do: fail with a message (and write nothing), or succeed writing `out.png`
/// of the given size.
enum Expect {
    Fails(&'static str),
    Writes(u32, u32),
}

#[test]
fn every_bad_input_ends_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    for f in [
        "cmyk.jpg",
        "rgb16.png",
        "paletted.png",
        "gray_alpha.png",
        "bomb.png",
        "rotated.jpg",
    ] {
        std::fs::copy(fx.join(f), p.join(f)).unwrap();
    }
    write_image(&p.join("photo.png"), 32, 24);
    write_image(&p.join("art.png"), 40, 40);
    write_image(&p.join("art2.png"), 30, 20);
    write_image(&p.join("one.png"), 1, 1);
    write_image(&p.join("line.png"), 100_000, 1);
    image::RgbImage::from_pixel(32, 24, image::Rgb([9, 9, 9]))
        .save(p.join("photo.jpg"))
        .unwrap();
    let jpeg = std::fs::read(p.join("photo.jpg")).unwrap();
    std::fs::write(p.join("trunc.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let mut garbled = jpeg.clone();
    for b in garbled.iter_mut().skip(200).step_by(3) {
        *b ^= 0xa5;
    }
    std::fs::write(p.join("garbled.jpg"), &garbled).unwrap();
    let png = std::fs::read(p.join("photo.png")).unwrap();
    std::fs::write(p.join("trunc.png"), &png[..png.len() / 2]).unwrap();
    let mut gp = png.clone();
    for b in gp.iter_mut().skip(40) {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    std::fs::write(p.join("garbled.png"), &gp).unwrap();
    corrupt_files(p);
    std::fs::write(p.join("empty.png"), b"").unwrap();
    std::fs::write(p.join("notes.txt"), b"not an image").unwrap();
    std::fs::create_dir(p.join("folder.png")).unwrap();
    std::fs::create_dir(p.join("nostyles")).unwrap();
    std::fs::write(p.join("afile"), b"x").unwrap();
    // Masks: another size (resized), and a gray gradient (thresholded at 50 %).
    image::GrayImage::from_fn(7, 5, |x, _| image::Luma([if x < 3 { 255 } else { 0 }]))
        .save(p.join("small_mask.png"))
        .unwrap();
    image::GrayImage::from_fn(32, 24, |x, _| image::Luma([(x * 8) as u8]))
        .save(p.join("gray_mask.png"))
        .unwrap();
    // AdaIN checkpoints: the right ones, one with a wrong shape, one with NaN.
    let (vgg, dec) = common::adain_weight_files("bad_inputs");
    let mut map = normstyle::weights::TensorMap::load(&dec, &candle::Device::Cpu).unwrap();
    let w = map.get("28.weight", &[3, 64, 3, 3]).unwrap();
    map.insert(
        "28.weight",
        Tensor::zeros((3, 64, 1, 1), candle::DType::F32, &candle::Device::Cpu).unwrap(),
    );
    normstyle::weights::write_tensors(&p.join("shape.safetensors"), &map, Default::default())
        .unwrap();
    map.insert("28.weight", (w * f64::NAN).unwrap());
    normstyle::weights::write_tensors(&p.join("nan.safetensors"), &map, Default::default())
        .unwrap();
    let (vgg, dec) = (
        vgg.to_str().unwrap().to_string(),
        dec.to_str().unwrap().to_string(),
    );

    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let styl = |content: &str, extra: &[&str]| {
        let mut v = s(&["stylize", content, "--style", "art.png", "-o", "out.png"]);
        v.extend(s(extra));
        v
    };
    let adain = |v_: &str, d_: &str| {
        s(&[
            "stylize",
            "photo.png",
            "--style",
            "art.png",
            "-o",
            "out.png",
            "--model",
            "adain",
            "--content-size",
            "0",
            "--style-size",
            "0",
            "--vgg",
            v_,
            "--decoder",
            d_,
        ])
    };
    use Expect::*;
    let cases: Vec<(Vec<String>, Expect)> = vec![
        (styl("trunc.jpg", &[]), Fails("trunc.jpg: corrupt JPEG: the file is truncated")),
        // Strict decoding: truncation at several points, damaged markers, CRCs and sizes.
        (styl("cut33.jpg", &[]), Fails("cut33.jpg: corrupt JPEG: the file is truncated")),
        (styl("cut66.jpg", &[]), Fails("cut66.jpg: corrupt JPEG: the file is truncated")),
        (styl("cut99.jpg", &[]), Fails("cut99.jpg: corrupt JPEG: the file is truncated")),
        (styl("noeoi.jpg", &[]), Fails("noeoi.jpg: corrupt JPEG: the file is truncated")),
        (styl("soi.jpg", &[]), Fails("soi.jpg: corrupt JPEG: the file is truncated")),
        (styl("marker.jpg", &[]), Fails("marker.jpg: corrupt JPEG: bad marker 0xFF02")),
        (styl("zerow.jpg", &[]), Fails("zerow.jpg: corrupt JPEG: 0×474 pixels")),
        (styl("cut33.png", &[]), Fails("cut33.png: cannot decode")),
        (styl("cut90.png", &[]), Fails("cut90.png: cannot decode")),
        (styl("noiend.png", &[]), Fails("noiend.png: cannot decode")),
        (styl("crc_ihdr.png", &[]), Fails("crc_ihdr.png: cannot decode: Format error decoding Png: CRC error")),
        (styl("crc_idat.png", &[]), Fails("crc_idat.png: cannot decode: Format error decoding Png: CRC error")),
        (styl("zerow.png", &[]), Fails("zerow.png: cannot decode")),
        (styl("huge.png", &[]), Fails("huge.png: cannot decode: Memory limit exceeded")),
        (styl("cut33.webp", &[]), Fails("cut33.webp: cannot decode")),
        (styl("cut66.webp", &[]), Fails("cut66.webp: cannot decode")),
        (styl("riff.webp", &[]), Fails("riff.webp: ")),
        (styl("photo.png", &["--shard", "0/2"]), Fails("--shard/--manifest: these apply to batch runs")),
        (styl("photo.png", &["--manifest", "m.jsonl"]), Fails("--shard/--manifest: these apply to batch runs")),
        (s(&["stylize", "--content-dir", ".", "--style", "art.png", "--shard", "3/3"]), Fails("--shard: 3/3: need 0 ≤ K < N")),
        (s(&["stylize", "--content-dir", ".", "--style", "art.png", "--shard", "x"]), Fails("--shard: `x` is not K/N")),
        (s(&["stylize", "--content-dir", ".", "--style", "art.png", "--shard", "auto"]), Fails("--shard auto: neither a Slurm array task")),
        (s(&["manifest", "check", "nowhere.jsonl"]), Fails("nowhere.jsonl: No such file")),
        (styl("garbled.jpg", &[]), Fails("garbled.jpg: ")),
        (styl("trunc.png", &[]), Fails("trunc.png: cannot decode")),
        (styl("garbled.png", &[]), Fails("garbled.png: ")),
        (styl("empty.png", &[]), Fails("empty.png: empty file")),
        (styl("folder.png", &[]), Fails("folder.png: is a folder, not an image")),
        (styl("notes.txt", &[]), Fails("notes.txt: not a recognized image format")),
        (styl("missing.png", &[]), Fails("missing.png: No such file")),
        (styl("one.png", &[]), Fails("H, W ≥ 4")),
        (styl("line.png", &[]), Fails("H, W ≥ 4")),
        (styl("bomb.png", &[]), Fails("bomb.png: 100000×100000 exceeds the limit of 100000000 pixels (raise it with --max-pixels)")),
        (styl("bomb.png", &["--max-pixels", "20000000000"]), Fails("bomb.png: ")), // "needs 30.0 GB" or a decode error, by machine
        (styl("cmyk.jpg", &[]), Writes(32, 24)),
        (styl("rgb16.png", &[]), Writes(32, 24)),
        (styl("paletted.png", &[]), Writes(32, 24)),
        (styl("gray_alpha.png", &[]), Writes(32, 24)),
        (styl("rotated.jpg", &[]), Writes(24, 32)),
        (s(&["stylize", "photo.png", "--style", "art.png", "-o", "afile/out.png"]), Fails("afile/out.png")),
        (s(&["stylize", "photo.png", "--style", "art.png", "-o", "photo.png", "--force"]), Fails("photo.png: the output would overwrite an input")),
        (s(&["stylize", "photo.png", "--style", "art.png", "-o", "art2.png"]), Fails("art2.png: already exists (use --force to overwrite)")),
        (adain(&dec, &dec), Fails("missing tensor `0.weight`: this is not the normalised VGG-19 encoder")),
        (adain(&vgg, "shape.safetensors"), Fails("shape.safetensors: tensor `28.weight`: expected shape [3, 64, 3, 3], found [3, 64, 1, 1]")),
        (adain(&vgg, "nan.safetensors"), Fails("nan.safetensors: checkpoint: tensor `28.weight` contains NaN or infinite values")),
        (styl("photo.png", &["--alpha", "1.5"]), Fails("--alpha: 1.5 is outside [0, 1]")),
        (styl("photo.png", &["--style", "art2.png", "--style-weights", "0,0"]), Fails("--style-weights: the weights sum to 0")),
        (styl("photo.png", &["--norm", "gn:0"]), Fails("gn:0")),
        (styl("photo.png", &["--style", "art2.png", "--mask", "small_mask.png"]), Writes(32, 24)),
        (styl("photo.png", &["--style", "art2.png", "--mask", "gray_mask.png"]), Writes(32, 24)),
        (styl("photo.png", &["--mask", "gray_mask.png"]), Fails("--mask: spatial control needs exactly two --style images")),
        (styl("photo.png", &["--dtype", "f16"]), Fails("--dtype f16: half precision needs a GPU (--device cuda or metal)")),
        (s(&["serve", "--timeout", "0"]), Fails("--timeout: 0 is not a number of seconds > 0")),
        (s(&["serve", "--max-body-mb", "NaN"]), Fails("--max-body-mb: NaN is not a size > 0")),
        (styl("photo.png", &["--style", "art2.png", "--mask", "notes.txt"]), Fails("notes.txt: not a recognized image format")),
        (s(&["stylize", "photo.png", "--style", "missing_style.png", "-o", "out.png"]), Fails("missing_style.png: No such file")),
        (s(&["stylize", "photo.png", "--style", "art.png", "-o", "out.bmp"]), Fails("unsupported output extension")),
        (s(&["stylize", "photo.png", "--preset", "26", "-o", "out.png"]), Fails("--preset: `26` is not a style number 0–25")),
        (styl("photo.png", &["--device", "cuda"]), Fails("--device: cuda:")),
        (s(&["stylize", "photo.png", "--style", "art.png", "--style", "art2.png", "-o", "-"]), Fails("-o -: stdout takes one image, this call makes 2")),
        (s(&["stylize", "--content-dir", "nowhere", "--style", "art.png"]), Fails("--content-dir nowhere: not a folder")),
        (s(&["stylize", "photo.png", "--style-dir", "nostyles"]), Fails("--style-dir nostyles: no images")),
    ];
    assert!(cases.len() >= 50, "{} cases", cases.len());
    for (args, expect) in &cases {
        let before = files(p);
        let out = Command::new(env!("CARGO_BIN_EXE_normstyle"))
            .current_dir(p)
            .env_remove("RUST_BACKTRACE")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX")
            .env("NORMSTYLE_CACHE", p.join("no-store"))
            .env("HF_HUB_OFFLINE", "1")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        match expect {
            Fails(want) => {
                assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
                assert_eq!(
                    err.trim_end().lines().count(),
                    1,
                    "{args:?}: one line, got {err}"
                );
                assert!(
                    err.starts_with("error: ") && err.contains(want),
                    "{args:?}: `{want}` not in {err}"
                );
                assert_eq!(files(p), before, "{args:?} wrote something");
            }
            Writes(w, h) => {
                assert!(out.status.success(), "{args:?}: {err}");
                let img = image::open(p.join("out.png")).unwrap();
                assert_eq!((img.width(), img.height()), (*w, *h), "{args:?}");
                std::fs::remove_file(p.join("out.png")).unwrap();
            }
        }
    }
}

/// Broken JPEG, PNG and WebP files made from good ones: truncated at several points, damaged
/// markers and CRCs, zero and absurd dimensions.
fn corrupt_files(p: &Path) {
    let put = |name: &str, bytes: &[u8]| std::fs::write(p.join(name), bytes).unwrap();
    let cut = |b: &[u8], pct: usize| b[..b.len() * pct / 100].to_vec();
    // A real photo (712×474, baseline, one scan).
    let jpeg =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/photos/chicago.jpg"))
            .unwrap();
    put("cut33.jpg", &cut(&jpeg, 33));
    put("cut66.jpg", &cut(&jpeg, 66));
    put("cut99.jpg", &cut(&jpeg, 99));
    put("noeoi.jpg", &jpeg[..jpeg.len() - 2]);
    put("soi.jpg", &jpeg[..20]); // SOI and part of APP0
    let mut m = jpeg.clone();
    let mid = m.len() / 2;
    m[mid..mid + 2].copy_from_slice(&[0xFF, 0x02]);
    put("marker.jpg", &m);
    let mut z = jpeg.clone();
    let sof = z.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    z[sof + 7..sof + 9].copy_from_slice(&[0, 0]); // width
    put("zerow.jpg", &z);

    let png = std::fs::read(p.join("photo.png")).unwrap();
    put("cut33.png", &cut(&png, 33));
    put("cut90.png", &cut(&png, 90));
    put("noiend.png", &png[..png.len() - 12]);
    let mut c = png.clone();
    c[29] ^= 0xFF; // IHDR's CRC
    put("crc_ihdr.png", &c);
    let mut c = png.clone();
    let idat = c.windows(4).position(|w| w == b"IDAT").unwrap();
    let len = u32::from_be_bytes(c[idat - 4..idat].try_into().unwrap()) as usize;
    c[idat + 4 + len] ^= 0xFF; // IDAT's CRC, data intact
    put("crc_idat.png", &c);
    let ihdr = |w: u32, h: u32| {
        let mut c = png.clone();
        c[16..20].copy_from_slice(&w.to_be_bytes());
        c[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&c[12..29]);
        c[29..33].copy_from_slice(&crc.to_be_bytes());
        c
    };
    put("zerow.png", &ihdr(0, 24));
    put("huge.png", &ihdr(i32::MAX as u32, i32::MAX as u32));

    image::open(p.join("photo.png"))
        .unwrap()
        .save(p.join("photo.webp"))
        .unwrap();
    let webp = std::fs::read(p.join("photo.webp")).unwrap();
    std::fs::remove_file(p.join("photo.webp")).unwrap();
    put("cut33.webp", &cut(&webp, 33));
    put("cut66.webp", &cut(&webp, 66));
    let mut r = webp.clone();
    r[4..8].copy_from_slice(&u32::MAX.to_le_bytes()); // RIFF size beyond the file
    r.truncate(r.len() - 4);
    put("riff.webp", &r);
}

/// CRC-32 (ISO-HDLC), as PNG chunks use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}
