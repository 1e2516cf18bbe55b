//! End-to-end tests of `normstyle stylize --model adain` and `normstyle convert`: full-size
//! random weights (written once per run to Cargo's test temp folder), tiny images.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use candle::Tensor;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_normstyle"));
    // No weights store, hub or network of the machine running the tests.
    c.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("NORMSTYLE_ADAIN_REPO")
        .env(
            "NORMSTYLE_CACHE",
            std::env::temp_dir().join("normstyle-tests-no-store"),
        )
        .env("HF_HUB_OFFLINE", "1");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    bin().current_dir(dir).args(args).output().unwrap()
}

/// (vgg, decoder) safetensors files with the released key names, shared by every test.
fn weights() -> &'static (PathBuf, PathBuf) {
    static W: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    W.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("adain_cli_weights");
        std::fs::create_dir_all(&dir).unwrap();
        let (vgg, dec) = common::random_weights(&mut common::Stream(7));
        let save = |map: &normstyle::weights::TensorMap, name: &str| {
            let path = dir.join(name);
            normstyle::weights::write_tensors(&path, map, Default::default()).unwrap();
            path
        };
        (
            save(&vgg, "vgg.safetensors"),
            save(&dec, "decoder.safetensors"),
        )
    })
}

fn write_image(path: &Path, w: u32, h: u32, seed: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = |k: u32| (((x * (3 + k + seed) + y * (5 + 2 * k)) * 7 + seed * 31) % 256) as u8;
        image::Rgb([v(0), v(1), v(2)])
    });
    img.save(path).unwrap();
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    write_image(&p.join("photo.png"), 20, 12, 1);
    write_image(&p.join("photo2.png"), 18, 26, 2);
    write_image(&p.join("art.png"), 24, 24, 3);
    write_image(&p.join("art2.png"), 16, 20, 4);
    let mask =
        image::GrayImage::from_fn(40, 24, |x, _| image::Luma([if x < 20 { 255 } else { 0 }]));
    mask.save(p.join("mask.png")).unwrap();
    (dir, p)
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `stylize --model adain` with the shared weights and `extra` arguments.
fn adain(dir: &Path, extra: &[&str]) -> Output {
    let (vgg, dec) = weights();
    let mut args = vec!["stylize"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "--model",
        "adain",
        "--vgg",
        vgg.to_str().unwrap(),
        "--decoder",
        dec.to_str().unwrap(),
    ]);
    run(dir, &args)
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap();
    (img.width(), img.height())
}

#[test]
fn output_has_the_content_size_after_resizing() {
    let (_d, p) = setup();
    // --content-size 0 keeps 20×12 (not a multiple of 8: the raw output is cropped).
    ok(&adain(
        &p,
        &[
            "photo.png",
            "--style",
            "art.png",
            "--content-size",
            "0",
            "--style-size",
            "0",
            "-o",
            "a.png",
        ],
    ));
    assert_eq!(size(&p.join("a.png")), (20, 12));
    // The shorter side is resized to N (up or down), the aspect kept.
    ok(&adain(
        &p,
        &[
            "photo.png",
            "--style",
            "art.png",
            "--content-size",
            "16",
            "--style-size",
            "16",
            "-o",
            "b.jpg",
        ],
    ));
    assert_eq!(size(&p.join("b.jpg")), (27, 16));
    ok(&adain(
        &p,
        &[
            "photo.png",
            "--style",
            "art.png",
            "--content-size",
            "16",
            "--crop",
            "-o",
            "c.webp",
        ],
    ));
    assert_eq!(size(&p.join("c.webp")), (16, 16));
}

#[test]
fn options_run_end_to_end_with_json() {
    let (_d, p) = setup();
    let out = adain(
        &p,
        &[
            "photo.png",
            "photo2.png",
            "--style",
            "art.png",
            "--style",
            "art2.png",
            "--content-size",
            "0",
            "--style-size",
            "0",
            "--norm",
            "bn",
            "--alpha",
            "0.7",
            "--preserve-color",
            "coral",
            "--json",
            "-o",
            "out",
            "--format",
            "jpg",
        ],
    );
    ok(&out);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(lines
        .iter()
        .all(|l| l["model"] == "adain" && l["norm"] == "bn"));
    assert_eq!(
        files(&p.join("out")),
        [
            "photo2_stylized_art.jpg",
            "photo2_stylized_art2.jpg",
            "photo_stylized_art.jpg",
            "photo_stylized_art2.jpg"
        ]
    );
    // A mask splits two styles; luminance keeps the content's chroma.
    ok(&adain(
        &p,
        &[
            "photo.png",
            "--style",
            "art.png",
            "--style",
            "art2.png",
            "--mask",
            "mask.png",
            "--content-size",
            "0",
            "--style-size",
            "0",
            "--preserve-color",
            "luminance",
            "-o",
            "m.png",
        ],
    ));
    assert_eq!(size(&p.join("m.png")), (20, 12));
    // Interpolation: one output for two weighted styles.
    ok(&adain(
        &p,
        &[
            "photo.png",
            "--style",
            "art.png",
            "--style",
            "art2.png",
            "--style-weights",
            "1,3",
            "--content-size",
            "0",
            "-o",
            "i.png",
        ],
    ));
    assert!(p.join("i.png").exists());
}

#[test]
fn the_same_call_gives_identical_bytes() {
    let (_d, p) = setup();
    for name in ["x.png", "y.png"] {
        ok(&adain(
            &p,
            &[
                "photo.png",
                "--style",
                "art.png",
                "--content-size",
                "0",
                "-o",
                name,
            ],
        ));
    }
    assert_eq!(
        std::fs::read(p.join("x.png")).unwrap(),
        std::fs::read(p.join("y.png")).unwrap()
    );
}

#[test]
fn convert_keeps_names_and_records_the_source_hash() {
    let (_d, p) = setup();
    let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth/legacy.pth");
    let out = run(&p, &["convert", legacy.to_str().unwrap(), "w.safetensors"]);
    ok(&out);
    let bytes = std::fs::read(p.join("w.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let want = normstyle::weights::sha256_hex(&std::fs::read(&legacy).unwrap());
    assert_eq!(meta["source_sha256"], want);
    let t = candle::safetensors::load(p.join("w.safetensors"), &candle::Device::Cpu).unwrap();
    let expected = candle::safetensors::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth/expected.safetensors"),
        &candle::Device::Cpu,
    )
    .unwrap();
    for (k, v) in &expected {
        assert_eq!(t[k].dtype(), v.dtype(), "{k}");
        let d = (t[k].to_dtype(candle::DType::F64).unwrap()
            - v.to_dtype(candle::DType::F64).unwrap())
        .unwrap();
        assert_eq!(
            d.abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            0.0
        );
    }
    let again = run(&p, &["convert", legacy.to_str().unwrap(), "w.safetensors"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn bad_inputs_fail_cleanly_without_writing() {
    let (_d, p) = setup();
    let (vgg, dec) = weights();
    let (vgg, dec) = (vgg.to_str().unwrap(), dec.to_str().unwrap());
    std::fs::write(p.join("empty.pth"), b"").unwrap();
    std::fs::write(p.join("text.pth"), b"not a checkpoint at all").unwrap();
    std::fs::create_dir(p.join("dir.pth")).unwrap();
    write_image(&p.join("tiny.png"), 6, 5, 9);
    std::fs::write(p.join("broken.jpg"), b"\xff\xd8\xff\xe0 garbage").unwrap();
    let legacy =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth/legacy.pth"))
            .unwrap();
    std::fs::write(p.join("truncated.pth"), &legacy[..legacy.len() / 2]).unwrap();
    // One tensor of the wrong shape, and NaN weights, in otherwise valid decoders.
    let mut map =
        normstyle::weights::TensorMap::load(Path::new(dec), &candle::Device::Cpu).unwrap();
    let good = map.get("28.weight", &[3, 64, 3, 3]).unwrap();
    map.insert(
        "28.weight",
        Tensor::zeros((3, 64, 1, 1), candle::DType::F32, &candle::Device::Cpu).unwrap(),
    );
    normstyle::weights::write_tensors(&p.join("wrong_shape.safetensors"), &map, Default::default())
        .unwrap();
    map.insert("28.weight", (good * f64::NAN).unwrap());
    normstyle::weights::write_tensors(&p.join("nan.safetensors"), &map, Default::default())
        .unwrap();

    let base = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "stylize",
            "photo.png",
            "--style",
            "art.png",
            "--model",
            "adain",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(["-o".to_string(), "o.png".to_string()]);
        v
    };
    let with = |vgg_arg: &str, dec_arg: &str, extra: &[&'static str]| -> Vec<String> {
        let mut v = base(extra);
        v.extend([
            "--vgg".into(),
            vgg_arg.to_string(),
            "--decoder".into(),
            dec_arg.to_string(),
        ]);
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (base(&[]), "--model adain: no AdaIN weights: pass --vgg PATH --decoder PATH"),
        (with("missing.pth", dec, &[]), "missing.pth: No such file"),
        (with("dir.pth", dec, &[]), "dir.pth: is a folder, not a weights file"),
        (with("empty.pth", dec, &[]), "empty.pth: not a PyTorch checkpoint"),
        (with("text.pth", dec, &[]), "text.pth: not a PyTorch checkpoint"),
        (with("truncated.pth", dec, &[]), "truncated.pth: "),
        (with(dec, dec, &[]), "missing tensor `0.weight`: this is not the normalised VGG-19 encoder"),
        (with(vgg, vgg, &[]), "missing tensor `1.weight`: this is not an AdaIN decoder"),
        (with(vgg, "wrong_shape.safetensors", &[]), "wrong_shape.safetensors: tensor `28.weight`: expected shape [3, 64, 3, 3], found [3, 64, 1, 1]"),
        (with(vgg, "nan.safetensors", &[]), "nan.safetensors: checkpoint: tensor `28.weight` contains NaN or infinite values"),
        (with(vgg, dec, &["--alpha", "1.5"]), "--alpha: 1.5 is outside [0, 1]"),
        (with(vgg, dec, &["--norm", "gn:0"]), "gn:0"),
        (with(vgg, dec, &["--norm", "xn"]), "xn"),
        (with(vgg, dec, &["--preserve-color", "sepia"]), "--preserve-color: `sepia` is not one of coral, luminance"),
        (with(vgg, dec, &["--mask", "mask.png"]), "--mask: spatial control needs exactly two --style images"),
        (with(vgg, dec, &["--preset", "3"]), "cannot be used with"),
        (with(vgg, dec, &["--style-weights", "0"]), "--style-weights: the weights sum to 0"),
        (with(vgg, dec, &["--style-weights", "1,2"]), "--style-weights: 2 weights for 1 --style images"),
        (
            with(vgg, dec, &["--content-size", "0", "--style-size", "0", "--style-weights", "1,1", "--style", "tiny.png"]),
            "tiny.png: 6×5 is too small for AdaIN",
        ),
        (with(vgg, dec, &["--style", "art2.png"]), "-o o.png: this call makes 2 outputs"),
        (with(vgg, dec, &["--style", "broken.jpg", "--style-weights", "1,1"]), "broken.jpg: "),
        (with(vgg, dec, &["--device", "cuda"]), "--device: cuda:"),
    ];
    let mut magenta_only: Vec<(Vec<String>, &str)> = vec![
        (
            [
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--vgg",
                vgg,
                "-o",
                "o.png",
            ]
            .map(String::from)
            .to_vec(),
            "--vgg/--decoder/--hf-repo: these are AdaIN weights; add --model adain",
        ),
        (
            [
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--style-size",
                "64",
                "-o",
                "o.png",
            ]
            .map(String::from)
            .to_vec(),
            "--style-size: applies to --model adain",
        ),
        (
            ["convert", "photo.png", "x.safetensors"]
                .map(String::from)
                .to_vec(),
            "photo.png: not a PyTorch checkpoint",
        ),
        (
            ["convert", vgg, "x.pth"].map(String::from).to_vec(),
            "x.pth: the output must be a .safetensors file",
        ),
    ];
    let mut all = cases;
    all.append(&mut magenta_only);
    assert!(all.len() >= 15);
    let before = files(&p);
    for (args, want) in &all {
        let out = bin().current_dir(&p).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(if want == &"cannot be used with" { 2 } else { 1 }),
            "{args:?}: {err}"
        );
        if want != &"cannot be used with" {
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "{args:?}: one line, got {err}"
            );
        }
        assert!(err.contains(want), "{args:?}: `{want}` not in {err}");
        assert_eq!(files(&p), before, "{args:?} wrote something");
    }
}
