//! The `Stylizer` in a few lines: the embedded Magenta model with its defaults (what
//! `normstyle stylize` does), then with layer-norm statistics at 80 % strength, then AdaIN when
//! its released weights are in the current folder.
//!
//! Run from the repository root: `cargo run --release --example quickstart`. Writes
//! `quickstart_magenta.png`, `quickstart_ln.png` (and `quickstart_adain.png`) here.

use std::path::Path;

use candle::Device;
use normstyle::{NormKind, Stylizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let content = image::open("assets/photos/chicago.jpg")?;
    let style = image::open("assets/styles/brushstrokes.jpg")?;
    let st = Stylizer::magenta(&Device::Cpu)?; // embedded weights, offline
    let out: image::RgbImage = st.stylize(&content, &style)?; // = `normstyle stylize` with its defaults
    let ln: image::RgbImage = Stylizer::magenta(&Device::Cpu)?
        .with_norm(NormKind::Ln)
        .with_alpha(0.8)
        .stylize(&content, &style)?;
    out.save("quickstart_magenta.png")?;
    ln.save("quickstart_ln.png")?;
    println!(
        "quickstart_magenta.png, quickstart_ln.png ({}×{})",
        out.width(),
        out.height()
    );

    // AdaIN needs the authors' released files (legacy/zip .pth or safetensors).
    if Path::new("vgg_normalised.pth").exists() && Path::new("decoder.pth").exists() {
        let adain = Stylizer::adain("vgg_normalised.pth", "decoder.pth", &Device::Cpu)?;
        adain
            .stylize(&content, &style)?
            .save("quickstart_adain.png")?;
        println!("quickstart_adain.png");
    } else {
        eprintln!("AdaIN skipped: put vgg_normalised.pth and decoder.pth in the current folder");
    }
    Ok(())
}
