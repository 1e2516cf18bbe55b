//! Shared by the AdaIN tests: the deterministic random weights and images that
//! `scripts/gen_adain_fixtures.py` also draws, and a max-difference helper.
#![allow(dead_code)] // each test binary uses a different part

use candle::{Device, Tensor};
use normstyle::weights::TensorMap;

const CPU: Device = Device::Cpu;

/// splitmix64 as a counter, exactly as the fixture script's `Stream`.
pub struct Stream(pub u64);

impl Stream {
    pub fn uniform(&mut self, n: usize) -> Vec<f64> {
        const G: u64 = 0x9E37_79B9_7F4A_7C15;
        let v = (1..=n as u64)
            .map(|i| {
                let mut z = self.0.wrapping_add(i.wrapping_mul(G));
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        self.0 = self.0.wrapping_add((n as u64).wrapping_mul(G));
        v
    }
}

const VGG_CONVS: [(usize, usize, usize, usize); 10] = [
    (0, 3, 3, 1),
    (2, 3, 64, 3),
    (5, 64, 64, 3),
    (9, 64, 128, 3),
    (12, 128, 128, 3),
    (16, 128, 256, 3),
    (19, 256, 256, 3),
    (22, 256, 256, 3),
    (25, 256, 256, 3),
    (29, 256, 512, 3),
];
const DEC_CONVS: [(usize, usize, usize); 9] = [
    (1, 512, 256),
    (5, 256, 256),
    (8, 256, 256),
    (11, 256, 256),
    (14, 256, 128),
    (18, 128, 128),
    (21, 128, 64),
    (25, 64, 64),
    (28, 64, 3),
];

pub fn random_weights(s: &mut Stream) -> (TensorMap, TensorMap) {
    let mut vgg = TensorMap::default();
    let mut dec = TensorMap::default();
    let convs = VGG_CONVS
        .iter()
        .map(|&(i, cin, cout, k)| (true, i, cin, cout, k))
        .chain(
            DEC_CONVS
                .iter()
                .map(|&(i, cin, cout)| (false, i, cin, cout, 3)),
        );
    for (is_vgg, i, cin, cout, k) in convs {
        let bound = (6.0 / (cin * k * k) as f64).sqrt();
        let w: Vec<f32> = s
            .uniform(cout * cin * k * k)
            .iter()
            .map(|u| ((2.0 * u - 1.0) * bound) as f32)
            .collect();
        let b: Vec<f32> = s
            .uniform(cout)
            .iter()
            .map(|u| ((2.0 * u - 1.0) * 0.05) as f32)
            .collect();
        let map = if is_vgg { &mut vgg } else { &mut dec };
        map.insert(
            format!("{i}.weight"),
            Tensor::from_vec(w, (cout, cin, k, k), &CPU).unwrap(),
        );
        map.insert(
            format!("{i}.bias"),
            Tensor::from_vec(b, cout, &CPU).unwrap(),
        );
    }
    (vgg, dec)
}

pub fn random_image(s: &mut Stream, h: usize, w: usize) -> Tensor {
    let shared = s.uniform(h * w);
    let own = s.uniform(3 * h * w);
    let v: Vec<f32> = (0..3 * h * w)
        .map(|i| (0.6 * shared[i % (h * w)] + 0.4 * own[i]) as f32)
        .collect();
    Tensor::from_vec(v, (1, 3, h, w), &CPU).unwrap()
}

pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// (vgg, decoder) safetensors files of random AdaIN weights with the released key names, made
/// once per test binary in Cargo's test temp folder.
pub fn adain_weight_files(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("adain_weights_{tag}"));
    let (v, d) = (dir.join("vgg.safetensors"), dir.join("decoder.safetensors"));
    if !(v.is_file() && d.is_file()) {
        std::fs::create_dir_all(&dir).unwrap();
        let (vgg, dec) = random_weights(&mut Stream(7));
        normstyle::weights::write_tensors(&v, &vgg, Default::default()).unwrap();
        normstyle::weights::write_tensors(&d, &dec, Default::default()).unwrap();
    }
    (v, d)
}
