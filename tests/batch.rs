//! Batch runs over folders, and determinism across runs and thread counts (issue 7).

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, threads: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_normstyle"));
    c.current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .env("NORMSTYLE_CACHE", dir.join("no-store"))
        .env("HF_HUB_OFFLINE", "1");
    if let Some(t) = threads {
        c.env("RAYON_NUM_THREADS", t);
    }
    c.args(args).output().unwrap()
}

fn image(path: &Path, w: u32, h: u32, seed: u32) {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 9 + seed * 40) % 256) as u8,
            ((y * 13 + seed * 17) % 256) as u8,
            ((x + y) * 5 % 256) as u8,
        ])
    })
    .save(path)
    .unwrap();
}

#[test]
fn a_folder_batch_survives_broken_photos_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("photos/more")).unwrap();
    std::fs::create_dir_all(p.join("styles")).unwrap();
    for i in 0..17 {
        image(
            &p.join(format!("photos/p{i:02}.png")),
            24 + i % 5,
            20 + i % 3,
            i,
        );
    }
    std::fs::write(p.join("photos/broken.jpg"), b"\xff\xd8\xff not really").unwrap();
    std::fs::write(p.join("photos/empty.png"), b"").unwrap();
    std::fs::write(
        p.join("photos/more/cut.png"),
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
    )
    .unwrap();
    std::fs::write(p.join("photos/.hidden.png"), b"ignored").unwrap();
    std::fs::write(p.join("photos/readme.txt"), b"ignored").unwrap();
    image(&p.join("styles/a.png"), 32, 32, 50);
    image(&p.join("styles/b.jpg"), 30, 40, 60);
    let args = [
        "stylize",
        "--content-dir",
        "photos",
        "--style-dir",
        "styles",
        "--recursive",
        "-o",
        "out",
        "-q",
    ];

    // 20 photos (17 good, 3 broken) × 2 styles.
    let first = run(p, None, &args);
    let err = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(1), "{err}");
    assert!(err.contains("done 34, skipped 0, failed 6"), "{err}");
    for broken in ["broken.jpg", "empty.png", "cut.png"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("error: ") && l.contains(broken)),
            "{broken}: {err}"
        );
    }
    let outs: Vec<_> = std::fs::read_dir(p.join("out")).unwrap().collect();
    assert_eq!(outs.len(), 34);
    assert!(p.join("out/p03_stylized_a.png").exists() && p.join("out/p03_stylized_b.png").exists());
    // No temporary files left behind.
    assert!(std::fs::read_dir(p.join("out")).unwrap().all(|e| {
        let n = e.unwrap().file_name();
        n.to_string_lossy().ends_with(".png")
    }));

    // Second run: everything done is skipped; the broken photos fail again.
    let second = run(p, None, &args);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("done 0, skipped 34, failed 6"), "{err}");

    // --force redoes one style's outputs; a finished clean batch exits 0.
    std::fs::remove_file(p.join("photos/broken.jpg")).unwrap();
    std::fs::remove_file(p.join("photos/empty.png")).unwrap();
    std::fs::remove_file(p.join("photos/more/cut.png")).unwrap();
    let third = run(
        p,
        None,
        &[
            "stylize",
            "--content-dir",
            "photos",
            "--style",
            "styles/a.png",
            "-o",
            "out",
            "--force",
        ],
    );
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(third.status.success(), "{err}");
    assert!(err.contains("done 17, skipped 0, failed 0"), "{err}");
    // BN needs the photos in one batch: refused in folder mode.
    let bn = run(
        p,
        None,
        &[
            "stylize",
            "--content-dir",
            "photos",
            "--style",
            "styles/a.png",
            "--norm",
            "bn",
        ],
    );
    assert_eq!(bn.status.code(), Some(1));
}

#[test]
fn outputs_are_byte_identical_across_runs_and_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    image(&p.join("photo.png"), 260, 180, 1);
    image(&p.join("photo2.png"), 48, 64, 2);
    image(&p.join("art.png"), 64, 64, 3);
    let mut outputs = Vec::new();
    for (i, threads) in ["1", "2", "2", "1"].iter().enumerate() {
        let name = format!("o{i}");
        let out = run(
            p,
            Some(threads),
            &[
                "stylize",
                "photo.png",
                "photo2.png",
                "--style",
                "art.png",
                "--norm",
                "bn",
                "-o",
                &name,
                "-q",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let a = std::fs::read(p.join(&name).join("photo_stylized_art.png")).unwrap();
        let b = std::fs::read(p.join(&name).join("photo2_stylized_art.png")).unwrap();
        outputs.push((a, b));
    }
    for o in &outputs[1..] {
        assert!(
            o == &outputs[0],
            "outputs differ between runs / thread counts"
        );
    }
}
