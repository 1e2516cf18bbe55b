//! Swap the normalization of a model in a loop and save the row: the same two photos stylized
//! with IN, BN, LN and GN(8) statistics in the Magenta transformer's conditional-norm layers.
//! The two photos form one batch, so BN pools its statistics over both (the note's "BN depends
//! on the batch", made visible); the others normalize each photo alone.
//!
//! `cargo run --release --example norm_row` writes `norm_row.png` here.

use candle::Device;
use normstyle::grid::{self, Cell};
use normstyle::pipeline::Styling;
use normstyle::{NormKind, Stylizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const TILE: u32 = 256;
    let st = Stylizer::magenta(&Device::Cpu)?.with_content_size(Some(TILE));
    let photos = ["assets/photos/chicago.jpg", "assets/photos/golden_gate.jpg"];
    let mut contents = Vec::new();
    for p in photos {
        contents.push(st.content(&image::open(p)?)?);
    }
    let style = st.style(&image::open("assets/styles/en_campo_gris.jpg")?)?;

    let norms = [NormKind::In, NormKind::Bn, NormKind::Ln, NormKind::Gn(8)];
    let mut rows: Vec<Vec<Cell>> = vec![Vec::new(); contents.len()];
    for norm in norms {
        // Cloning a stylizer shares its weights; only the option changes.
        let outs = st
            .clone()
            .with_norm(norm)
            .render(&contents, &Styling::single(&style))?;
        for (row, out) in rows.iter_mut().zip(outs) {
            row.push(Cell {
                image: Some(out),
                lines: vec![format!("--norm {norm}")],
            });
        }
    }
    let sheet = grid::render(&rows, TILE, Some("one model, four normalizations"))?;
    sheet.save("norm_row.png")?;
    println!("norm_row.png ({}×{})", sheet.width(), sheet.height());
    Ok(())
}
