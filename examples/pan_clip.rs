//! Makes a clip whose motion is known — a camera panning and zooming over a bundled photo — and
//! stylizes it twice with the embedded Magenta model: frame by frame, and with the statistics
//! kept over time. Prints the flicker of both.
//!
//! `cargo run --release --example pan_clip [-- OUT_DIR [WIDTH HEIGHT FRAMES [DX DY ZOOM]]]`
//! writes `OUT_DIR/frames/NNNN.png` (the input clip), `OUT_DIR/motion.json` (for
//! `normstyle video-metrics`) and the two stylized frame folders (default `pan/`, 160×96, 12
//! frames panning 2 and 0.5 photo pixels a frame and zooming in 0.5 % a frame).
//! `scripts/flicker_table.sh` builds the README's table with it.

use candle::Device;
use normstyle::imaging;
use normstyle::pipeline::{FrameStylizer, Styling, TemporalOptions};
use normstyle::video::metrics::FlickerMeter;
use normstyle::video::synth::{pan_zoom, PanZoom};
use normstyle::Stylizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = std::path::PathBuf::from(args.first().map_or("pan", String::as_str));
    let num = |i: usize, default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(args.get(i).map_or(Ok(default), |s| s.parse())?)
    };
    let (w, h, n) = (num(1, 160)?, num(2, 96)?, num(3, 12)?);
    let real = |i: usize, default: f64| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(args.get(i).map_or(Ok(default), |s| s.parse())?)
    };
    let (dx, dy, zoom) = (real(4, 2.0)?, real(5, 0.5)?, real(6, 1.005)?);

    let photo = imaging::load_rgb("assets/photos/golden_gate.jpg".as_ref())?;
    let spec = PanZoom {
        step: (dx, dy),
        zoom,
        ..PanZoom::pan(w as u32, h as u32, n, dx)
    };
    let (frames, motion) = pan_zoom(&photo, &spec)?;
    let dir = out.join("frames");
    std::fs::create_dir_all(&dir)?;
    for (i, f) in frames.iter().enumerate() {
        let v = imaging::to_tensor(f, &Device::Cpu)?;
        imaging::save(&imaging::to_rgb8(&v)?, &dir.join(format!("{i:04}.png")), 95)?;
    }
    std::fs::write(out.join("motion.json"), serde_json::to_string(&motion)?)?;

    let st = Stylizer::magenta(&Device::Cpu)?.with_content_size(Some(0));
    let style = st.style_from_rgb(imaging::load_rgb(
        "assets/styles/brushstrokes.jpg".as_ref(),
    )?)?;
    println!("momentum  warping_error  frame_diff_out  frame_diff_in");
    for momentum in [0.0, 0.9] {
        let mut clip = FrameStylizer::new(
            &st,
            Styling::single(&style),
            TemporalOptions::with_momentum(momentum),
        )?;
        let mut meter = FlickerMeter::new(&motion);
        let styled = out.join(format!("stylized_{momentum}"));
        std::fs::create_dir_all(&styled)?;
        for (i, f) in frames.iter().enumerate() {
            // Measure what a file holds: the 8-bit frames, as `video-metrics` reads them.
            let input = image::DynamicImage::ImageRgb8(imaging::to_rgb8(&imaging::to_tensor(
                f,
                &Device::Cpu,
            )?)?)
            .to_rgb32f();
            let y = clip.next_frame(input.clone())?;
            imaging::save(&y, &styled.join(format!("{i:04}.png")), 95)?;
            meter.push(input, image::DynamicImage::ImageRgb8(y).to_rgb32f())?;
        }
        let r = meter.finish();
        println!(
            "{momentum:<8}  {:<13.5}  {:<14.5}  {:.5}",
            r.warping_error, r.frame_diff_out, r.frame_diff_in
        );
    }
    Ok(())
}
