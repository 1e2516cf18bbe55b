//! Train a style network with a chosen norm through the library, as `normstyle train` does,
//! save it, load it back and paint a held-out photo — a few steps at a tiny size, so it runs in
//! seconds (real runs: `normstyle train --steps 2000`, see the README).
//!
//! `cargo run --release --example train_style`

use normstyle::candle::Device;
use normstyle::model::trained::NormMode;
use normstyle::train::{ContentSet, LossNet, StyleLoss, TrainConfig, Trainer};
use normstyle::NormKind;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::Cpu;
    let cfg = TrainConfig {
        norm: Some(NormKind::Gn(4)), // or In, Bn, Ln; None trains without norm layers
        size: 48,
        batch_size: 2,
        seed: 7,
        ..TrainConfig::default()
    };
    let style = normstyle::imaging::load_rgb("assets/styles/brushstrokes.jpg".as_ref())?;
    let photos = ContentSet::open("assets/train".as_ref(), cfg.size)?;
    let loss = LossNet::predictor(&device, StyleLoss::Stats)?;
    let mut trainer = Trainer::new(cfg, &style, "example".into(), photos, loss, &device)?;
    while trainer.step() < 6 {
        let l = trainer.train_step()?;
        println!(
            "step {} content {:.3} style {:.3} total {:.3}",
            l.step, l.content, l.style, l.total
        );
    }
    trainer.save_model("brush_gn4.safetensors".as_ref())?;

    // The file is what `normstyle stylize photo.jpg --model brush_gn4.safetensors` runs.
    let st = normstyle::Stylizer::trained("brush_gn4.safetensors", &device)?
        .with_content_size(Some(128));
    let photo = normstyle::image::open("assets/photos/golden_gate.jpg")?;
    let content = st.content(&photo)?;
    let out = st.render(
        std::slice::from_ref(&content),
        &normstyle::pipeline::Styling::Trained,
    )?;
    out[0].save("golden_gate_brush_gn4.png")?;
    // The same network with LN statistics swapped in (γ, β and convolutions learned for GN).
    let model = st.trained_model().ok_or("not a trained model")?;
    let x = content.tensor().clone();
    let swapped = model.net().paint(&[x], NormMode::Swap(NormKind::Ln))?;
    println!(
        "wrote golden_gate_brush_gn4.png ({}×{}); swapped to ln: {:?}",
        out[0].width(),
        out[0].height(),
        swapped[0].dims()
    );
    Ok(())
}
