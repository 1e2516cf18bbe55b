//! Compare normalization variants and print the numbers: `normstyle compare` as a library call.
//! The result is a grid image plus a serializable table (SSIM to the content, color distance to
//! the style, style-vector distance) that a program can sort, filter or plot itself.
//!
//! `cargo run --release --example compare_variants` writes `compare_variants.png` here and prints
//! the table, then the variant that kept the most structure.

use candle::Device;
use normstyle::imaging;
use normstyle::pipeline::{compare, CompareOptions, Labeled};
use normstyle::{NormKind, Stylizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let open = |path: &str| -> Result<Labeled, Box<dyn std::error::Error>> {
        Ok(Labeled {
            label: path.to_string(),
            image: imaging::to_rgb(&image::open(path)?),
        })
    };
    let contents = [
        open("assets/photos/chicago.jpg")?,
        open("assets/photos/golden_gate.jpg")?,
    ];
    let style = open("assets/styles/brushstrokes.jpg")?;
    let opts = CompareOptions {
        norms: vec![NormKind::In, NormKind::Bn, NormKind::Ln, NormKind::Gn(4)],
        tile: 192,
        ..CompareOptions::default()
    };
    let st = Stylizer::magenta(&Device::Cpu)?;
    let cmp = compare(&st, &contents, &[], &style, &opts, || {})?;
    cmp.grid.save("compare_variants.png")?;
    print!("{}", cmp.table());

    let best = cmp
        .tiles
        .iter()
        .max_by(|a, b| a.ssim.total_cmp(&b.ssim))
        .ok_or("no tiles")?;
    println!(
        "most structure kept: {} on {} (SSIM {:.3})",
        best.variant, best.content, best.ssim
    );
    Ok(())
}
