//! The programs in `examples/` run as a user runs them: no arguments, in a folder that has the
//! bundled `assets/`, writing their pictures there. `cargo test` builds the examples before it
//! runs this test.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/examples/<name>`, next to this test's own `deps/` folder.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples");
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Runs an example in a fresh folder holding a link to the bundled assets; returns the folder
/// and stdout.
fn run(name: &str) -> (tempfile::TempDir, String) {
    let bin = example(name);
    if !bin.is_file() {
        // `cargo test` builds the examples first; `cargo test --test examples` does not.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "--profile", "test", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(ok.success() && bin.is_file(), "{} not built", bin.display());
    }
    let dir = tempfile::tempdir().unwrap();
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&assets, dir.path().join("assets")).unwrap();
    #[cfg(not(unix))]
    copy_dir(&assets, &dir.path().join("assets"));
    let out = Command::new(&bin).current_dir(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, stdout)
}

#[cfg(not(unix))]
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn size(p: &Path) -> (u32, u32) {
    image::image_dimensions(p).unwrap()
}

#[test]
fn quickstart_writes_both_pictures() {
    let (dir, stdout) = run("quickstart");
    // chicago.jpg is 712×474: under the 1024 default cap, so the output keeps its size.
    assert_eq!(size(&dir.path().join("quickstart_magenta.png")), (712, 474));
    assert_eq!(size(&dir.path().join("quickstart_ln.png")), (712, 474));
    assert!(stdout.contains("quickstart_magenta.png"));
}

#[test]
fn norm_row_writes_the_row() {
    let (dir, stdout) = run("norm_row");
    let (w, _) = size(&dir.path().join("norm_row.png"));
    assert_eq!(w, normstyle::grid::GAP + 4 * (256 + normstyle::grid::GAP));
    assert!(stdout.starts_with("norm_row.png"));
}

#[test]
fn compare_variants_prints_the_numbers() {
    let (dir, stdout) = run("compare_variants");
    assert!(dir.path().join("compare_variants.png").is_file());
    // Header, 4 variants × 2 photos, and the closing line.
    assert_eq!(stdout.lines().count(), 1 + 8 + 1, "{stdout}");
    assert!(stdout.lines().next().unwrap().starts_with("content"));
    assert!(stdout.contains("most structure kept:"));
}

#[test]
fn train_norm_trains_every_kind() {
    let (_, stdout) = run("train_norm");
    assert!(
        stdout.starts_with("gn:8 on [4, 32, 16, 16] → [4, 32, 16, 16]"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"["norm1.bias", "norm1.weight"]"#),
        "{stdout}"
    );
    for kind in ["in", "bn", "ln", "gn:4"] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{kind}:")))
            .unwrap();
        let v: Vec<f32> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(v[1] < v[0], "{line}");
    }
}

#[test]
fn pan_clip_measures_both_settings() {
    let (dir, stdout) = run("pan_clip");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("momentum"));
    assert!(
        lines[1].starts_with('0') && lines[2].starts_with("0.9"),
        "{stdout}"
    );
    let frames = dir.path().join("pan/frames");
    assert_eq!(std::fs::read_dir(&frames).unwrap().count(), 12);
    assert_eq!(size(&frames.join("0000.png")), (160, 96));
    let motion = std::fs::read_to_string(dir.path().join("pan/motion.json")).unwrap();
    let m: normstyle::video::metrics::Motion = serde_json::from_str(&motion).unwrap();
    assert_eq!(m.to_previous.len(), 11);
    assert_eq!(
        std::fs::read_dir(dir.path().join("pan/stylized_0.9"))
            .unwrap()
            .count(),
        12
    );
}

#[test]
fn train_style_trains_saves_and_paints() {
    let (dir, stdout) = run("train_style");
    assert_eq!(stdout.matches("step ").count(), 6, "{stdout}");
    assert!(dir.path().join("brush_gn4.safetensors").is_file());
    assert_eq!(size(&dir.path().join("golden_gate_brush_gn4.png")).0, 128);
}
