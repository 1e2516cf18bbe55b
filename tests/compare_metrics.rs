//! The compare metrics against independent references: SSIM against scikit-image's
//! `structural_similarity` and the color-statistic distance against numpy
//! (`tests/fixtures/metrics.json`, from `scripts/gen_metric_fixtures.py`). Tolerance 1e-6 (the
//! images are rebuilt here in f32; the reference used their f64 blend).

use candle::{Device, Tensor};
use normstyle::compare::{color_distance, ssim};

/// The fixture script's `image(h, w, seed)`.
fn image(h: usize, w: usize, seed: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(3 * h * w);
    for k in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (x, y, k, s) = (x as f64, y as f64, k as f64, seed as f64);
                let val = 0.5
                    + 0.5
                        * (0.37 * x * (k + 1.0) + 0.23 * y * (s + 1.0) + k + s).sin()
                        * (0.11 * y - 0.05 * x * k).cos();
                v.push(val as f32);
            }
        }
    }
    v
}

#[test]
fn ssim_and_color_distance_match_the_references() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics.json"
    ))
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    for case in doc["cases"].as_array().unwrap() {
        let n = |k: &str| case[k].as_u64().unwrap() as usize;
        let (h, w) = (n("h"), n("w"));
        let a = image(h, w, n("seed_a"));
        let b: Vec<f32> = image(h, w, n("seed_b"))
            .iter()
            .zip(&a)
            .map(|(b, a)| 0.7 * b + 0.3 * a)
            .collect();
        let ta = Tensor::from_vec(a, (1, 3, h, w), &Device::Cpu).unwrap();
        let tb = Tensor::from_vec(b, (1, 3, h, w), &Device::Cpu).unwrap();
        let s = ssim(&ta, &tb).unwrap();
        let want = case["ssim"].as_f64().unwrap();
        assert!((s - want).abs() < 1e-6, "{h}×{w}: ssim {s} vs {want}");
        let d = color_distance(&tb, &ta).unwrap();
        let want = case["color_distance"].as_f64().unwrap();
        assert!(
            (d - want).abs() < 1e-6,
            "{h}×{w}: color distance {d} vs {want}"
        );
    }
}
