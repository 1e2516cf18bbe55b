//! The page of `normstyle serve` in headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from npm; `scripts/test.sh` installs both when they are missing): upload a
//! photo and a style, move α, switch the norm, check the picture changes each time and equals
//! the API's PNG, open the compare view, take a screenshot, switch to a trained network (style
//! controls disabled, a picture without a style), and measure the slider-to-picture latency (a
//! benchmark figure, printed; not asserted).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn the_page_follows_its_controls_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists() && browser_dir.join("node_modules/playwright-core").exists(),
        "Debian's chromium and playwright-core are needed: run scripts/test.sh, which installs \
         them (chromium at {chromium}, tests/browser/node_modules)"
    );
    // A trained network beside the embedded ones: the fast_neural_style fixture.
    let models = tempfile::tempdir().unwrap();
    std::fs::copy(
        root.join("tests/fixtures/fns/transformer_net_in.pth"),
        models.path().join("fns.pth"),
    )
    .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_normstyle"))
        .args(["serve", "--port", "0", "--models"])
        .arg(models.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve.png");
    let out = Command::new("node")
        .current_dir(&browser_dir)
        .env("CHROMIUM", &chromium)
        .arg("serve_page.mjs")
        .arg(url.trim())
        .arg(root.join("assets/photos/golden_gate.jpg"))
        .arg(root.join("assets/styles/en_campo_gris.jpg"))
        .arg(&shot)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    println!("{doc}");
    assert_eq!(doc["ok"], true);
    // in, bn, ln, gn at α 0.5 and 1, one photo.
    assert_eq!(doc["compare_rows"], 8);
    assert_eq!(doc["trained"], "trained:fns");
    assert_eq!(doc["trained_controls_disabled"], true);
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot"
    );
}
