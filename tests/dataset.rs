//! Data-set scale batch runs: shards that run at the same time into one folder, shards chosen
//! by the scheduler's environment, stable assignment, `kill -9` and resume, provenance
//! manifests, and broken photos in a batch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use normstyle::pipeline::{Batch, Shard, StyleSpec};

fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_normstyle"));
    c.current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("NORMSTYLE_SHARDS")
        .env("NORMSTYLE_CACHE", dir.join("no-store"))
        .env("HF_HUB_OFFLINE", "1")
        .env("RAYON_NUM_THREADS", "1");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir).args(args).output().unwrap()
}

fn image(path: &Path, w: u32, h: u32, seed: u32) {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 9 + seed * 40) % 256) as u8,
            ((y * 13 + seed * 17) % 256) as u8,
            ((x * y + seed) % 256) as u8,
        ])
    })
    .save(path)
    .unwrap();
}

/// `photos/` with `n` photos (in two subfolders) and `styles/` with two styles.
fn data(n: u32, size: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for sub in ["photos/a", "photos/b", "styles"] {
        std::fs::create_dir_all(p.join(sub)).unwrap();
    }
    for i in 0..n {
        let sub = if i % 2 == 0 { "a" } else { "b" };
        image(
            &p.join(format!("photos/{sub}/p{i:02}.png")),
            size + i % 4,
            size,
            i,
        );
    }
    image(&p.join("styles/s1.png"), 40, 40, 90);
    image(&p.join("styles/s2.png"), 36, 44, 91);
    dir
}

const BATCH: [&str; 6] = [
    "stylize",
    "--content-dir",
    "photos",
    "--style-dir",
    "styles",
    "--recursive",
];

/// Every file in `dir` with its bytes (`.`-files included, so leftovers show).
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn images(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    contents(dir)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".png"))
        .collect()
}

#[test]
fn three_shards_at_once_equal_one_run_and_the_manifest_matches() {
    let d = data(20, 24);
    let p = d.path();
    let whole = run(p, &[&BATCH[..], &["-o", "whole", "-q"]].concat());
    assert!(
        whole.status.success(),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );
    let reference = images(&p.join("whole"));
    assert_eq!(reference.len(), 40);

    let children: Vec<_> = (0..3)
        .map(|k| {
            let shard = format!("{k}/3");
            cmd(p)
                .args(BATCH)
                .args([
                    "-o",
                    "out",
                    "-q",
                    "--shard",
                    &shard,
                    "--manifest",
                    "out/manifest.jsonl",
                ])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let all = contents(&p.join("out"));
    let sharded = images(&p.join("out"));
    assert_eq!(
        sharded, reference,
        "sharded outputs differ from the unsharded run"
    );
    assert_eq!(
        all.len(),
        41,
        "only the outputs and the manifest: {:?}",
        all.keys()
    );

    // One manifest line per output, each output once, hashes and shards as written.
    let text = String::from_utf8(all["manifest.jsonl"].clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 40);
    let outputs: BTreeSet<String> = lines
        .iter()
        .map(|l| l["output"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = reference.keys().cloned().collect();
    assert_eq!(outputs, expected, "manifest outputs ≠ files");
    let shards: BTreeSet<&str> = lines.iter().map(|l| l["shard"].as_str().unwrap()).collect();
    assert_eq!(shards, BTreeSet::from(["0/3", "1/3", "2/3"]));
    for l in &lines {
        let out = l["output"].as_str().unwrap();
        assert_eq!(
            l["output_sha256"],
            normstyle::weights::sha256_hex(&reference[out])
        );
        assert_eq!(l["settings"]["model"], "magenta");
        assert!(
            l["content"].as_str().unwrap().starts_with(['a', 'b']),
            "{l}"
        );
        assert_eq!(l["content_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(l["styles"][0]["sha256"].as_str().unwrap().len(), 64);
    }

    // `manifest check` is clean, then catches a deleted and a modified output.
    let check = |p: &Path| run(p, &["manifest", "check", "out/manifest.jsonl"]);
    let ok = check(p);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let names: Vec<&String> = reference.keys().collect();
    std::fs::remove_file(p.join("out").join(names[0])).unwrap();
    let mut bytes = reference[names[1]].clone();
    bytes.push(0);
    std::fs::write(p.join("out").join(names[1]), bytes).unwrap();
    let bad = check(p);
    assert_eq!(bad.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(
        stdout.contains(&format!("missing\tout/{}", names[0])),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("modified\tout/{}", names[1])),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("38 ok, 1 missing, 1 modified"));
}

#[test]
fn shard_auto_follows_slurm_and_kubernetes() {
    let d = data(8, 20);
    let p = d.path();
    let files = |out: &str, env: &[(&str, &str)], extra: &[&str]| {
        let mut c = cmd(p);
        c.args(BATCH).args(["-o", out]).args(extra);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            images(&p.join(out)),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    for k in 0..3 {
        let shard = format!("{k}/3");
        let (explicit, _) = files(&format!("x{k}"), &[], &["--shard", &shard]);
        let id = (10 + 2 * k).to_string();
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", id.as_str()),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        let (s, log) = files(&format!("s{k}"), &slurm, &["--shard", "auto"]);
        assert_eq!(s, explicit, "slurm shard {k}");
        assert!(
            log.contains(&format!("shard {k}/3 (from Slurm array task {id}")),
            "{log}"
        );
        let index = k.to_string();
        let (j, log) = files(
            &format!("k{k}"),
            &[("JOB_COMPLETION_INDEX", &index)],
            &["--shard", "auto", "--shards", "3"],
        );
        assert_eq!(j, explicit, "kubernetes shard {k}");
        assert!(
            log.contains(&format!("JOB_COMPLETION_INDEX={k}, shards=3")),
            "{log}"
        );
        let (e, _) = files(
            &format!("e{k}"),
            &[("JOB_COMPLETION_INDEX", &index), ("NORMSTYLE_SHARDS", "3")],
            &["--shard", "auto"],
        );
        assert_eq!(e, explicit, "NORMSTYLE_SHARDS shard {k}");
    }
}

#[test]
fn adding_photos_moves_no_pair_to_another_shard() {
    let batch = |n: usize, k: usize| {
        let contents = (0..n)
            .map(|i| PathBuf::from(format!("photos/sub{}/p{i}.jpg", i % 3)))
            .collect();
        let specs = ["s1.png", "s2.png"]
            .map(|s| StyleSpec::Images(vec![(PathBuf::from("styles").join(s), 1.0)]))
            .to_vec();
        Batch::new(contents, specs, "out")
            .with_content_root(Some("photos".into()))
            .with_style_root(Some("styles".into()))
            .with_shard(Some(Shard::new(k, 4).unwrap()))
    };
    let mut owners = BTreeMap::new();
    for k in 0..4 {
        for pair in batch(20, k).pairs() {
            assert!(owners.insert(pair, k).is_none(), "{pair:?} in two shards");
        }
    }
    assert_eq!(owners.len(), 40, "every pair in exactly one shard");
    for k in 0..4 {
        let after: BTreeSet<(usize, usize)> = batch(25, k)
            .pairs()
            .into_iter()
            .filter(|p| p.0 < 20)
            .collect();
        let before: BTreeSet<(usize, usize)> = owners
            .iter()
            .filter(|(_, o)| **o == k)
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(after, before, "shard {k} changed");
    }
}

#[test]
fn kill_9_then_rerun_leaves_exactly_the_expected_files() {
    let d = data(20, 160);
    let p = d.path();
    let whole = run(p, &[&BATCH[..], &["-o", "whole", "-q"]].concat());
    assert!(whole.status.success());
    let reference = images(&p.join("whole"));

    std::fs::create_dir_all(p.join("out")).unwrap();
    let mut child = cmd(p)
        .args(BATCH)
        .args(["-o", "out", "-q"])
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while images(&p.join("out")).len() < 5 && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = images(&p.join("out"));
    assert!(
        partial.len() < reference.len(),
        "the run finished before the kill"
    );
    for (name, bytes) in &partial {
        assert_eq!(
            Some(bytes),
            reference.get(name),
            "{name}: a partial or wrong file"
        );
    }

    // Besides whatever the killed run left, a leftover of another process that is gone.
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let stale = format!("{}abc123.tmp", normstyle::weights::temp_prefix(pid));
    std::fs::write(p.join("out").join(&stale), b"half an image").unwrap();

    let again = run(p, &[&BATCH[..], &["-o", "out"]].concat());
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(log.contains(&format!("skipped {}", partial.len())), "{log}");
    assert!(
        log.contains("temporary file(s) left by an interrupted run"),
        "{log}"
    );
    assert_eq!(
        contents(&p.join("out")),
        reference,
        "exactly the outputs, nothing else"
    );
}

#[test]
fn a_truncated_photo_fails_in_a_batch_and_writes_nothing() {
    let d = data(3, 20);
    let p = d.path();
    let jpeg =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/photos/chicago.jpg"))
            .unwrap();
    std::fs::write(p.join("photos/a/cut.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    let out = run(p, &[&BATCH[..], &["-o", "out"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("cut.jpg: corrupt JPEG: the file is truncated"),
        "{log}"
    );
    assert!(log.contains("done 6, skipped 0, failed 2"), "{log}");
    assert!(!images(&p.join("out"))
        .keys()
        .any(|n| n.starts_with("a_cut")));
}

#[test]
fn a_photo_from_standard_input_to_standard_output() {
    let d = data(1, 24);
    let p = d.path();
    let photo = std::fs::read(p.join("photos/a/p00.png")).unwrap();
    let mut child = cmd(p)
        .args(["stylize", "-", "--style", "styles/s1.png", "-o", "-", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &photo).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let from_pipe = image::load_from_memory(&out.stdout).unwrap().to_rgb8();
    let file = run(
        p,
        &[
            "stylize",
            "photos/a/p00.png",
            "--style",
            "styles/s1.png",
            "-o",
            "f.png",
            "-q",
        ],
    );
    assert!(file.status.success());
    assert_eq!(from_pipe, image::open(p.join("f.png")).unwrap().to_rgb8());
}
