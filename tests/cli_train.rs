//! `normstyle train` end to end on tiny crops: the model, its checkpoint and the log; resume;
//! `stylize --model` with the result; every bad input is one line, a non-zero exit and no
//! output file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_normstyle"));
    c.env_remove("RUST_BACKTRACE")
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

fn asset(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(p)
        .display()
        .to_string()
}

/// A folder with four bundled photos (and, when `junk`, a file that does not decode).
fn photos(dir: &Path, junk: bool) -> String {
    let d = dir.join("photos");
    std::fs::create_dir_all(&d).unwrap();
    for n in ["astronaut", "coffee", "rocket", "chelsea"] {
        std::fs::copy(asset(&format!("train/{n}.jpg")), d.join(format!("{n}.jpg"))).unwrap();
    }
    if junk {
        std::fs::write(d.join("broken.jpg"), b"not a jpeg").unwrap();
    }
    d.display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn train(dir: &Path, extra: &[&str]) -> Output {
    let style = asset("styles/brushstrokes.jpg");
    let content = photos(dir, false);
    let mut args = vec![
        "train",
        "--style",
        &style,
        "--content-dir",
        &content,
        "--size",
        "32",
        "-q",
    ];
    args.extend_from_slice(extra);
    run(dir, &args)
}

#[test]
fn train_writes_model_checkpoint_and_log_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let style = asset("styles/brushstrokes.jpg");
    let content = photos(p, true);
    let base = [
        "train",
        "--style",
        &style,
        "--content-dir",
        &content,
        "--size",
        "32",
        "--norm",
        "bn",
        "--log-every",
        "2",
    ];
    // The unreadable photo is skipped with a count.
    let o = run(
        p,
        &[
            &base[..],
            &["--steps", "4", "--log", "a.csv", "-o", "a.safetensors"],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("skipped 1 unreadable photo"),
        "{}",
        stderr(&o)
    );
    assert!(p.join("a.safetensors").exists() && p.join("a.safetensors.ckpt").exists());
    let o = run(
        p,
        &[
            &base[..],
            &[
                "--steps",
                "8",
                "--log",
                "a.csv",
                "--resume",
                "a.safetensors.ckpt",
                "-o",
                "a.safetensors",
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        p,
        &[
            &base[..],
            &["--steps", "8", "--log", "b.csv", "-o", "b.safetensors"],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let a = std::fs::read_to_string(p.join("a.csv")).unwrap();
    let b = std::fs::read_to_string(p.join("b.csv")).unwrap();
    let losses = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(
        a.lines().next(),
        Some("step,content_loss,style_loss,tv_loss,total_loss,seconds")
    );
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(a.lines().count(), 5);
    assert_eq!(
        std::fs::read(p.join("a.safetensors")).unwrap(),
        std::fs::read(p.join("b.safetensors")).unwrap()
    );
    // The model paints with stylize --model, as the library does.
    let photo = asset("photos/golden_gate.jpg");
    let o = run(
        p,
        &[
            "stylize",
            &photo,
            "--model",
            "a.safetensors",
            "--content-size",
            "64",
            "-o",
            "out.png",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let st = normstyle::Stylizer::trained(p.join("a.safetensors"), &candle::Device::Cpu)
        .unwrap()
        .with_content_size(Some(64));
    let img = image::open(&photo).unwrap();
    let c = st.content(&img).unwrap();
    let want = st
        .render(
            std::slice::from_ref(&c),
            &normstyle::pipeline::Styling::Trained,
        )
        .unwrap();
    assert_eq!(image::open(p.join("out.png")).unwrap().to_rgb8(), want[0]);
    // compare --models: one column per network, with the losses under the loss network.
    let o = run(
        p,
        &[
            "compare",
            &photo,
            "--style",
            &style,
            "--models",
            "a.safetensors,b.safetensors",
            "--tile",
            "64",
            "-o",
            "cmp.png",
            "--json",
            "cmp.json",
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("cmp.json")).unwrap()).unwrap();
    let tiles = doc["tiles"].as_array().unwrap();
    assert_eq!(tiles.len(), 2);
    assert_eq!(doc["model"], "trained");
    for t in tiles {
        assert_eq!(t["norm"], "bn");
        assert!(
            t["content_loss"].as_f64().unwrap() > 0.0 && t["style_loss"].as_f64().unwrap() > 0.0
        );
    }
    // a and b are the same network: the same numbers.
    assert_eq!(tiles[0]["style_loss"], tiles[1]["style_loss"]);
    let o = run(
        p,
        &[
            "compare",
            &photo,
            "--style",
            &style,
            "--models",
            "a.safetensors",
            "--norms",
            "in",
        ],
    );
    assert!(!o.status.success() && stderr(&o).contains("--norms"));
    // Style flags are refused with a trained model.
    for flags in [
        vec!["--style", photo.as_str()],
        vec!["--preset", "3"],
        vec!["--alpha", "0.5"],
        vec!["--vgg", "x.pth", "--decoder", "y.pth"],
    ] {
        let o = run(
            p,
            &[
                &["stylize", &photo, "--model", "a.safetensors", "-o", "x.png"][..],
                &flags,
            ]
            .concat(),
        );
        assert!(!o.status.success());
        let e = stderr(&o);
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(e.contains(flags[0]), "{e}");
        assert!(!p.join("x.png").exists());
    }
}

#[test]
fn bad_inputs_are_one_line_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let empty = p.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let junk = p.join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("a.jpg"), b"nope").unwrap();
    let style = asset("styles/brushstrokes.jpg");
    // A checkpoint of the `small` architecture with IN.
    let o = train(p, &["--steps", "1", "-o", "in.safetensors"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "train".into(),
                "--style".into(),
                "missing.jpg".into(),
                "-o".into(),
                "m.safetensors".into(),
            ],
            "--style missing.jpg",
        ),
        (
            vec![
                "train".into(),
                "--style".into(),
                style.clone(),
                "--content-dir".into(),
                empty.display().to_string(),
                "-o".into(),
                "m.safetensors".into(),
            ],
            "no readable images",
        ),
        (
            vec![
                "train".into(),
                "--style".into(),
                style.clone(),
                "--content-dir".into(),
                junk.display().to_string(),
                "-o".into(),
                "m.safetensors".into(),
            ],
            "1 failed to decode",
        ),
        (
            vec![
                "train".into(),
                "--style".into(),
                style.clone(),
                "--steps".into(),
                "0".into(),
                "-o".into(),
                "m.safetensors".into(),
            ],
            "--steps 0",
        ),
    ];
    for (args, want) in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(p, &refs);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(e.trim().lines().count(), 1, "{args:?}: {e}");
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(!p.join("m.safetensors").exists());
        assert!(!p.join("m.safetensors.ckpt").exists());
    }
    for (extra, want) in [
        (vec!["--norm", "bn"], "norm `in`"),
        (vec!["--arch", "johnson"], "arch `small`"),
    ] {
        let o = train(
            p,
            &[
                &extra[..],
                &[
                    "--steps",
                    "3",
                    "--resume",
                    "in.safetensors.ckpt",
                    "-o",
                    "m.safetensors",
                ],
            ]
            .concat(),
        );
        let e = stderr(&o);
        assert!(!o.status.success());
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(e.contains(want), "{e}");
        assert!(!p.join("m.safetensors").exists());
    }
    // A loss that overflows stops the run: the last good state is kept as the checkpoint, no
    // model is written.
    let o = train(
        p,
        &[
            "--norm",
            "none",
            "--lr",
            "1e38",
            "--steps",
            "5",
            "-o",
            "m.safetensors",
        ],
    );
    let e = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("not finite") && e.contains("m.safetensors.ckpt"),
        "{e}"
    );
    assert!(!p.join("m.safetensors").exists());
    let ck =
        normstyle::weights::TensorMap::load(&p.join("m.safetensors.ckpt"), &candle::Device::Cpu)
            .unwrap();
    let w = ck.get_raw("conv1.conv2d.weight").unwrap();
    let finite = w
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite());
    assert!(finite);
}

/// Ctrl-C (SIGINT) mid-run writes a checkpoint of the steps done, exits 130 and leaves no
/// model; `--resume` continues from it.
#[test]
fn ctrl_c_writes_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let style = asset("styles/brushstrokes.jpg");
    let content = photos(p, false);
    let child = bin()
        .current_dir(p)
        .args([
            "train",
            "--style",
            &style,
            "--content-dir",
            &content,
            "--size",
            "32",
            "--steps",
            "100000",
            "--log",
            "l.csv",
            "--log-every",
            "1",
            "-o",
            "m.safetensors",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a few steps are logged, then interrupt.
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(p.join("l.csv")).map_or(0, |s| s.lines().count()) < 4 {
        assert!(t0.elapsed().as_secs() < 120, "no steps logged");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{e}");
    assert!(e.contains("interrupted at step"), "{e}");
    assert!(p.join("m.safetensors.ckpt").exists());
    assert!(!p.join("m.safetensors").exists());
    let o = train(
        p,
        &[
            "--steps",
            "1",
            "--resume",
            "m.safetensors.ckpt",
            "-o",
            "m.safetensors",
        ],
    );
    // The checkpoint is past step 1: a later --steps is needed, and the message says so.
    assert!(
        !o.status.success() && stderr(&o).contains("already at step"),
        "{}",
        stderr(&o)
    );
}
