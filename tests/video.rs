//! Clips end to end through the binary, with Debian's `ffmpeg` (which `.ci/run` installs):
//! videos with audio, folders of frames, GIFs, temporal statistics against a pan whose motion is
//! known, kill -9, and bad inputs. Frames are small (≤ 128×96) so the whole file runs in seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use normstyle::imaging::Rgb;
use normstyle::video::synth::{pan_zoom, PanZoom};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_normstyle"));
    c.env_remove("RUST_BACKTRACE")
        .env_remove("NORMSTYLE_ADAIN_REPO")
        .env("HF_HUB_OFFLINE", "1");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    bin().current_dir(dir).args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ffmpeg with the arguments, in `dir`; the tests need it (no silent skip).
fn ffmpeg(dir: &Path, args: &[&str]) {
    let out = Command::new("ffmpeg")
        .current_dir(dir)
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("the video tests need ffmpeg on PATH (.ci/run installs Debian's package)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ffprobe's view of a clip: (width, height, frame rate, frames, audio streams).
fn probe(path: &Path) -> (u32, u32, String, u64, usize) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-print_format",
            "json",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = doc["streams"].as_array().unwrap();
    let v = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    let audio = streams
        .iter()
        .filter(|s| s["codec_type"] == "audio")
        .count();
    (
        v["width"].as_u64().unwrap() as u32,
        v["height"].as_u64().unwrap() as u32,
        v["r_frame_rate"].as_str().unwrap().to_string(),
        v["nb_read_frames"].as_str().unwrap().parse().unwrap(),
        audio,
    )
}

fn style(dir: &Path) -> PathBuf {
    let p = dir.join("art.png");
    image::RgbImage::from_fn(48, 48, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    })
    .save(&p)
    .unwrap();
    p
}

/// A 24-frame clip of `w`×`h` at 24 fps with a 440 Hz audio track.
fn clip_with_audio(dir: &Path, name: &str, w: u32, h: u32) {
    ffmpeg(
        dir,
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={w}x{h}:rate=24"),
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-frames:v",
            "24",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            name,
        ],
    );
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
fn a_video_keeps_its_frames_size_rate_and_audio() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    style(p);
    clip_with_audio(p, "clip.mp4", 64, 48);
    let out = run(
        p,
        &[
            "stylize", "clip.mp4", "--style", "art.png", "-o", "out.mp4", "--json",
        ],
    );
    let line = ok(&out);
    let rec: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(rec["frames"], 24);
    assert_eq!(probe(&p.join("out.mp4")), (64, 48, "24/1".into(), 24, 1));
    // An odd size loses one pixel in yuv420p; --content-size is honored; no audio, no stream.
    ffmpeg(
        p,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=66x50:rate=12,format=rgb24,crop=66:49:0:0",
            "-frames:v",
            "5",
            "-c:v",
            "ffv1",
            "-pix_fmt",
            "bgr0",
            "odd.mkv",
        ],
    );
    ok(&run(
        p,
        &[
            "stylize", "odd.mkv", "--style", "art.png", "-o", "odd.mp4", "-q",
        ],
    ));
    assert_eq!(probe(&p.join("odd.mp4")), (66, 48, "12/1".into(), 5, 0));
    ok(&run(
        p,
        &[
            "stylize",
            "odd.mkv",
            "--style",
            "art.png",
            "-o",
            "small.mkv",
            "--codec",
            "ffv1",
            "--content-size",
            "33",
            "-q",
        ],
    ));
    assert_eq!(probe(&p.join("small.mkv")), (33, 25, "12/1".into(), 5, 0));
    // The output exists now: refused without --force, and nothing else was left behind.
    let again = run(
        p,
        &["stylize", "clip.mp4", "--style", "art.png", "-o", "out.mp4"],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert!(
        files(p).iter().all(|f| !f.starts_with(".normstyle")),
        "{:?}",
        files(p)
    );
}

/// Writes `frames` as PNGs `dir/NNN.png` (8-bit, as a file holds them).
fn write_frames(dir: &Path, frames: &[Rgb]) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let t = normstyle::imaging::to_tensor(f, &candle::Device::Cpu).unwrap();
        normstyle::imaging::to_rgb8(&t)
            .unwrap()
            .save(dir.join(format!("{i}.png")))
            .unwrap();
    }
}

/// A photo-like picture with structure at several scales.
fn photo(w: u32, h: u32) -> Rgb {
    Rgb::from_fn(w, h, |x, y| {
        let (x, y) = (x as f32, y as f32);
        image::Rgb([
            0.5 + 0.3 * (x * 0.05).sin() * (y * 0.03).cos() + 0.15 * ((x + 2.0 * y) * 0.21).sin(),
            0.5 + 0.35 * (y * 0.04 + x * 0.01).sin(),
            0.5 + 0.25 * ((x - y) * 0.02).cos() + 0.15 * (x * 0.33).sin() * (y * 0.27).sin(),
        ])
    })
}

#[test]
fn frames_with_no_smoothing_equal_stylize_on_each_frame() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    style(p);
    let (frames, _) = pan_zoom(&photo(200, 120), &PanZoom::pan(40, 32, 11, 3.0)).unwrap();
    write_frames(&p.join("in"), &frames);
    ok(&run(
        p,
        &[
            "stylize",
            "--frames",
            "in",
            "--style",
            "art.png",
            "-o",
            "out",
            "-q",
            "--temporal",
            "0",
        ],
    ));
    // Natural order, input names, PNG.
    let names = files(&p.join("out"));
    assert_eq!(names.len(), 11);
    for i in 0..11 {
        let name = format!("{i}.png");
        let single = format!("single{i}.png");
        ok(&run(
            p,
            &[
                "stylize",
                &format!("in/{name}"),
                "--style",
                "art.png",
                "-o",
                &single,
                "-q",
            ],
        ));
        let a = image::open(p.join("out").join(&name)).unwrap().to_rgb8();
        let b = image::open(p.join(&single)).unwrap().to_rgb8();
        assert!(a == b, "frame {name} differs from stylize on it");
    }
    // An existing frame is not replaced without --force; with it the folder round-trips again.
    let again = run(
        p,
        &[
            "stylize", "--frames", "in", "--style", "art.png", "-o", "out",
        ],
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    ok(&run(
        p,
        &[
            "stylize",
            "--frames",
            "in",
            "--style",
            "art.png",
            "-o",
            "out",
            "-q",
            "--force",
            "--temporal",
            "0.5",
        ],
    ));
    assert_eq!(files(&p.join("out")), names);
}

#[test]
fn temporal_statistics_lower_the_warping_error_of_a_pan() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    style(p);
    // 4 pixels a frame keeps the phase of Magenta's two stride-2 layers, so the network's output
    // moves with the picture and what changes between frames is the statistics' doing (and the
    // borders'). Sub-pixel pans add texture aliasing that no statistic removes (see README).
    let m = PanZoom {
        step: (4.0, 0.0),
        ..PanZoom::pan(128, 96, 16, 4.0)
    };
    let golden_gate = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/photos/golden_gate.jpg");
    let golden_gate = normstyle::imaging::load_rgb(&golden_gate).unwrap();
    let (frames, motion) = pan_zoom(&golden_gate, &m).unwrap();
    write_frames(&p.join("pan"), &frames);
    std::fs::write(
        p.join("motion.json"),
        serde_json::to_string(&motion).unwrap(),
    )
    .unwrap();
    let mut errors = Vec::new();
    for t in ["0", "0.9"] {
        let out = format!("pan_{t}");
        ok(&run(
            p,
            &[
                "stylize",
                "--frames",
                "pan",
                "--style",
                "art.png",
                "-o",
                &out,
                "-q",
                "--temporal",
                t,
            ],
        ));
        let json = ok(&run(
            p,
            &["video-metrics", "pan", &out, "--motion", "motion.json"],
        ));
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["frames"], 16);
        errors.push(v["warping_error"].as_f64().unwrap());
        assert!(v["frame_diff_in"].as_f64().unwrap() > 0.01, "{v}");
    }
    eprintln!("warping error at --temporal 0 and 0.9: {errors:?}");
    assert!(errors[1] < errors[0] * 0.97, "warping error {errors:?}");
    // A cut (frames of another picture) restarts the average: still one output per frame.
    let (cut, _) = pan_zoom(&Rgb::from_pixel(300, 200, image::Rgb([0.9, 0.1, 0.2])), &m).unwrap();
    write_frames(&p.join("cut"), &[&frames[..8], &cut[..8]].concat());
    let json = ok(&run(
        p,
        &[
            "stylize",
            "--frames",
            "cut",
            "--style",
            "art.png",
            "-o",
            "cut_out",
            "--temporal",
            "0.9",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(
        (v["frames"].as_u64(), v["scene_cuts"].as_u64()),
        (Some(16), Some(1)),
        "{v}"
    );
}

#[test]
fn gifs_and_frame_folders_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    style(p);
    ffmpeg(
        p,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=48x40:rate=10",
            "-frames:v",
            "6",
            "anim.gif",
        ],
    );
    ok(&run(
        p,
        &[
            "stylize",
            "anim.gif",
            "--style",
            "art.png",
            "-o",
            "out.gif",
            "--temporal",
            "0.8",
            "-q",
        ],
    ));
    let frames = normstyle::video::VideoReader::open(&p.join("out.gif")).unwrap();
    let frames: Vec<_> = frames.map(Result::unwrap).collect();
    assert_eq!(frames.len(), 6);
    assert_eq!(frames[0].image.dimensions(), (48, 40));
    assert_eq!(frames[0].delay, Some(std::time::Duration::from_millis(100)));
    // A GIF to a video and a video to a folder of frames.
    ok(&run(
        p,
        &[
            "stylize", "anim.gif", "--preset", "3", "-o", "anim.mp4", "-q",
        ],
    ));
    assert_eq!(probe(&p.join("anim.mp4")).3, 6);
    std::fs::create_dir(p.join("frames")).unwrap();
    ffmpeg(p, &["-i", "anim.gif", "frames/f%d.png"]);
    ok(&run(
        p,
        &[
            "stylize", "--frames", "frames", "--preset", "3", "-o", "styled", "-q",
        ],
    ));
    let names = files(&p.join("styled"));
    assert_eq!(names, files(&p.join("frames")));
}

#[test]
fn kill_9_mid_video_leaves_no_output() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    style(p);
    ffmpeg(
        p,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=128x96:rate=24",
            "-frames:v",
            "720",
            "-c:v",
            "libx264",
            "long.mp4",
        ],
    );
    let mut child = bin()
        .current_dir(p)
        .args([
            "stylize", "long.mp4", "--style", "art.png", "-o", "out.mp4", "-q",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it writes (the temporary file exists), then kill it hard.
    let t0 = std::time::Instant::now();
    while !files(p).iter().any(|f| f.starts_with(".normstyle-tmp.")) {
        assert!(t0.elapsed().as_secs() < 60, "no temporary file appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "finished before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!p.join("out.mp4").exists());
    // The next run removes what the killed one left and writes the output.
    ffmpeg(p, &["-i", "long.mp4", "-frames:v", "3", "short.mp4"]);
    ok(&run(
        p,
        &[
            "stylize",
            "short.mp4",
            "--style",
            "art.png",
            "-o",
            "out.mp4",
            "-q",
        ],
    ));
    assert!(
        files(p).iter().all(|f| !f.starts_with(".normstyle")),
        "{:?}",
        files(p)
    );
    assert_eq!(probe(&p.join("out.mp4")).3, 3);
}

#[test]
fn bad_clips_get_one_line_and_no_output() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    style(p);
    clip_with_audio(p, "clip.mp4", 64, 48);
    let bytes = std::fs::read(p.join("clip.mp4")).unwrap();
    std::fs::write(p.join("truncated.mp4"), &bytes[..bytes.len() / 2]).unwrap();
    // moov first (faststart), then cut: the frames stop early.
    ffmpeg(
        p,
        &[
            "-i",
            "clip.mp4",
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            "fast.mp4",
        ],
    );
    let fast = std::fs::read(p.join("fast.mp4")).unwrap();
    std::fs::write(p.join("cut.mp4"), &fast[..fast.len() * 2 / 3]).unwrap();
    std::fs::write(p.join("text.mp4"), "this is not a video\n").unwrap();
    ffmpeg(
        p,
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            "0.5",
            "-c:a",
            "aac",
            "sound.mp4",
        ],
    );
    ffmpeg(
        p,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x48:rate=24",
            "-frames:v",
            "0",
            "-c:v",
            "libx264",
            "empty.mp4",
        ],
    );
    std::fs::create_dir(p.join("noframes")).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "stylize",
                "truncated.mp4",
                "--style",
                "art.png",
                "-o",
                "o.mp4",
            ],
            "truncated.mp4: not a readable video (moov atom not found",
        ),
        (
            &["stylize", "cut.mp4", "--style", "art.png", "-o", "o.mp4"],
            "cut.mp4: truncated or corrupt",
        ),
        (
            &["stylize", "text.mp4", "--style", "art.png", "-o", "o.mp4"],
            "text.mp4: not a readable video",
        ),
        (
            &["stylize", "sound.mp4", "--style", "art.png", "-o", "o.mp4"],
            "sound.mp4: has no video stream (audio only)",
        ),
        (
            &["stylize", "empty.mp4", "--style", "art.png", "-o", "o.mp4"],
            "empty.mp4: holds no streams (an empty clip?)",
        ),
        (
            &[
                "stylize",
                "clip.mp4",
                "--style",
                "art.png",
                "-o",
                "o.mp4",
                "--temporal",
                "1.5",
            ],
            "--temporal: 1.5 is outside [0, 1)",
        ),
        (
            &["stylize", "clip.mp4", "--style", "art.png", "-o", "o.png"],
            "-o o.png: a clip is written as a video",
        ),
        (
            &[
                "stylize", "clip.mp4", "--style", "art.png", "-o", "o.mp4", "--codec", "nonesuch",
            ],
            "o.mp4: ffmpeg could not encode it",
        ),
        (
            &[
                "stylize",
                "art.png",
                "--style",
                "art.png",
                "-o",
                "o.png",
                "--temporal",
                "0.5",
            ],
            "--temporal: applies to clips",
        ),
        (
            &[
                "stylize", "--frames", "noframes", "--style", "art.png", "-o", "o",
            ],
            "noframes: holds no frames",
        ),
        (
            &[
                "stylize",
                "--frames",
                "noframes",
                "--content-dir",
                "x",
                "--style",
                "art.png",
            ],
            "cannot be used with",
        ),
        (
            &[
                "video-metrics",
                "clip.mp4",
                "clip.mp4",
                "--motion",
                "art.png",
            ],
            "art.png: not a motion file",
        ),
    ];
    for (args, expect) in cases {
        let before = files(p);
        let out = run(p, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(expect), "{args:?}: {err}");
        if !expect.contains("cannot be used") {
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        }
        assert_eq!(files(p), before, "{args:?} left files");
    }
    // No ffmpeg: one line that says how to get it.
    let out = bin()
        .current_dir(p)
        .env("NORMSTYLE_FFMPEG", p.join("no-such-dir/ffmpeg"))
        .args(["stylize", "clip.mp4", "--style", "art.png", "-o", "o.mp4"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ffprobe: not found; video needs the ffmpeg program"),
        "{err}"
    );
    assert!(!p.join("o.mp4").exists());
}

mod common;

/// Frames of a short pan of the bundled photo, as 8-bit files hold them.
fn pan_frames(w: u32, h: u32, n: usize) -> Vec<Rgb> {
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/photos/golden_gate.jpg");
    let photo = normstyle::imaging::load_rgb(&photo).unwrap();
    let (frames, _) = pan_zoom(&photo, &PanZoom::pan(w, h, n, 4.0)).unwrap();
    frames
        .iter()
        .map(|f| {
            let t = normstyle::imaging::to_tensor(f, &candle::Device::Cpu).unwrap();
            image::DynamicImage::ImageRgb8(normstyle::imaging::to_rgb8(&t).unwrap()).to_rgb32f()
        })
        .collect()
}

#[test]
fn frame_stylizer_keeps_statistics_for_both_families() {
    use normstyle::pipeline::{FrameStylizer, Styling, TemporalOptions};
    use normstyle::{NormKind, Stylizer};
    let cpu = candle::Device::Cpu;
    let frames = pan_frames(48, 40, 4);
    let (vgg, dec) = common::random_weights(&mut common::Stream(3));
    let adain = Stylizer::from_adain(
        normstyle::model::adain::AdaIn::from_maps(&vgg, &dec).unwrap(),
        &cpu,
    )
    .with_content_size(Some(0))
    .with_style_size(Some(0));
    let magenta = Stylizer::magenta(&cpu).unwrap();
    let art = Rgb::from_fn(40, 40, |x, y| {
        image::Rgb([x as f32 / 40.0, y as f32 / 40.0, 0.3])
    });
    for st in [adain, magenta] {
        let style = st.style_from_rgb(art.clone()).unwrap();
        let run = |st: &Stylizer, momentum: f64| -> Vec<image::RgbImage> {
            let mut clip = FrameStylizer::new(
                st,
                Styling::single(&style),
                TemporalOptions::with_momentum(momentum),
            )
            .unwrap();
            frames
                .iter()
                .map(|f| clip.next_frame(f.clone()).unwrap())
                .collect()
        };
        let family = st.family().name();
        let plain = run(&st, 0.0);
        // Momentum 0 is the photo path, frame by frame.
        for (f, y) in frames.iter().zip(&plain) {
            let c = st.content_from_rgb(f.clone()).unwrap();
            let single = st
                .render(std::slice::from_ref(&c), &Styling::single(&style))
                .unwrap();
            assert!(single[0] == *y, "{family}: momentum 0 differs from render");
        }
        // bn pools one frame at a time: it equals in.
        assert!(
            run(&st.clone().with_norm(NormKind::Bn), 0.0) == plain,
            "{family}: bn ≠ in"
        );
        // Smoothing leaves the first frame alone and changes the later ones.
        let smooth = run(&st, 0.9);
        assert!(smooth[0] == plain[0], "{family}: first frame");
        assert!(
            smooth[1..] != plain[1..],
            "{family}: smoothing had no effect"
        );
    }
    // Momentum outside [0, 1) and a negative threshold are refused.
    let st = Stylizer::magenta(&cpu).unwrap();
    let style = st.style_from_rgb(art).unwrap();
    for opts in [
        TemporalOptions::with_momentum(1.0),
        TemporalOptions {
            momentum: 0.5,
            scene_threshold: -1.0,
        },
    ] {
        assert!(
            FrameStylizer::new(&st, Styling::single(&style), opts).is_err(),
            "{opts:?}"
        );
    }
}

#[test]
fn an_adain_clip_runs_from_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    style(p);
    let (vgg, dec) = common::adain_weight_files("video");
    ffmpeg(
        p,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=40x32:rate=8",
            "-frames:v",
            "4",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "c.mp4",
        ],
    );
    let (vgg, dec) = (vgg.to_str().unwrap(), dec.to_str().unwrap());
    let args = [
        "stylize",
        "c.mp4",
        "--style",
        "art.png",
        "-o",
        "o.mp4",
        "-q",
        "--model",
        "adain",
        "--vgg",
        vgg,
        "--decoder",
        dec,
        "--temporal",
        "0.8",
        "--alpha",
        "0.7",
    ];
    ok(&run(p, &args));
    assert_eq!(probe(&p.join("o.mp4")), (40, 32, "8/1".into(), 4, 0));
}
