//! `normstyle::train`: the loss goes down for every norm, the network's gradient is right (f64
//! central differences, and the f32 kernels against f64), resumed runs repeat uninterrupted ones
//! bit for bit, a saved model paints as the library does.

use std::path::{Path, PathBuf};

use candle::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use normstyle::model::trained::{parse_norm, Arch, TrainedModel, TransformNet};
use normstyle::rng::Rng;
use normstyle::train::{checkpoint_path, ContentSet, LossNet, StyleLoss, TrainConfig, Trainer};

const CPU: Device = Device::Cpu;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Four bundled training photos at `size`.
fn photos(size: u32) -> ContentSet {
    let imgs = ["astronaut", "coffee", "rocket", "chelsea"]
        .iter()
        .map(|n| {
            let p = root().join(format!("assets/train/{n}.jpg"));
            let img = normstyle::imaging::load_rgb(&p).unwrap();
            (p, image::DynamicImage::ImageRgb32F(img).to_rgb8())
        })
        .collect();
    ContentSet::from_images(imgs, size).unwrap()
}

fn style() -> normstyle::imaging::Rgb {
    normstyle::imaging::load_rgb(&root().join("assets/styles/brushstrokes.jpg")).unwrap()
}

fn trainer(norm: &str, size: u32, seed: u64) -> Trainer {
    let cfg = TrainConfig {
        norm: parse_norm(norm).unwrap(),
        size,
        seed,
        ..TrainConfig::default()
    };
    let loss = LossNet::predictor(&CPU, StyleLoss::Stats).unwrap();
    Trainer::new(cfg, &style(), "test".into(), photos(size), loss, &CPU).unwrap()
}

/// 30 steps at 64² on 4 photos: the mean total loss of the last 5 steps is below that of the
/// first 5 by at least 10 %, for each norm.
#[test]
fn thirty_steps_lower_the_loss_for_every_norm() {
    for norm in ["in", "bn", "ln", "gn:4", "none"] {
        let mut t = trainer(norm, 64, 1);
        let losses: Vec<f64> = (0..30).map(|_| t.train_step().unwrap().total).collect();
        let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
        let last: f64 = losses[25..].iter().sum::<f64>() / 5.0;
        println!("{norm}: {first:.3} → {last:.3}");
        assert!(last < 0.9 * first, "{norm}: {first} → {last}");
    }
}

/// L(θ) = mean(y ⊙ r) of the network's output on a fixed batch, r fixed.
fn loss(net: &TransformNet, x: &Tensor, r: &Tensor) -> Tensor {
    let y = net.forward_t(x, true).unwrap();
    (y * r).unwrap().mean_all().unwrap()
}

/// The small network's gradient for each norm: f64 autograd equals f64 central differences on
/// a few parameters (relative 1e-4), and the f32 path — the crate's kernels with their own
/// backward — equals the f64 gradient to 1e-3 relative (to each tensor's largest entry).
#[test]
fn gradient_matches_central_differences_and_f32_matches_f64() {
    let mut rng = Rng::new(5, 0);
    let x32 = rng
        .uniform_tensor(0.0, 255.0, (2, 3, 32, 32), &CPU)
        .unwrap();
    let r32 = rng.normal_tensor(0.0, 1.0, (2, 3, 32, 32), &CPU).unwrap();
    let (x64, r64) = (
        x32.to_dtype(DType::F64).unwrap(),
        r32.to_dtype(DType::F64).unwrap(),
    );
    let probes = [
        ("conv1.conv2d.weight", 17usize),
        ("conv3.conv2d.bias", 3),
        ("res2.conv1.conv2d.weight", 1000),
        ("deconv1.conv2d.weight", 77),
        ("deconv3.conv2d.bias", 1),
        ("in2.weight", 5),
        ("res4.in2.bias", 9),
    ];
    for norm in ["in", "bn", "ln", "gn:4", "none"] {
        let kind = parse_norm(norm).unwrap();
        let build = |dtype: DType| {
            let vm = VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, dtype, &CPU);
            let net = TransformNet::trainable(&vb, Arch::Small, kind).unwrap();
            (vm, net)
        };
        let (vm32, net32) = build(DType::F32);
        let (vm64, net64) = build(DType::F64);
        // The same random values in both, in name order.
        let mut names: Vec<String> = vm32.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        let vars32 = vm32.data().lock().unwrap().clone();
        let vars64 = vm64.data().lock().unwrap().clone();
        let mut wrng = Rng::new(6, 0);
        for n in &names {
            let v = &vars32[n];
            let (lo, hi) = if n.ends_with("running_var") || n.contains(".in") || n.starts_with("in")
            {
                (0.5, 1.5)
            } else {
                let fan: usize = v.dims().iter().skip(1).product::<usize>().max(1);
                let b = 1.0 / (fan as f64).sqrt();
                (-b, b)
            };
            let t = wrng
                .uniform_tensor(lo, hi, v.shape().clone(), &CPU)
                .unwrap();
            v.set(&t).unwrap();
            vars64[n].set(&t.to_dtype(DType::F64).unwrap()).unwrap();
        }
        let g64 = loss(&net64, &x64, &r64).backward().unwrap();
        let g32 = loss(&net32, &x32, &r32).backward().unwrap();
        // Each tensor's gradient against its own largest entry; a gradient that is zero by
        // design (a bias right before a norm that removes it) against 1e-3 of the largest of all.
        let grads: Vec<(&String, Tensor, Tensor)> = names
            .iter()
            .filter(|n| !n.contains("running"))
            .map(|n| {
                let a = g32.get(vars32[n].as_tensor()).unwrap();
                let b = g64.get(vars64[n].as_tensor()).unwrap();
                (n, a.to_dtype(DType::F64).unwrap(), b.clone())
            })
            .collect();
        let max_abs = |t: &Tensor| {
            t.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let global = grads.iter().map(|(_, _, b)| max_abs(b)).fold(0.0, f64::max);
        for (n, a, b) in &grads {
            let scale = max_abs(b).max(1e-3 * global);
            let diff = max_abs(&(a - b).unwrap());
            assert!(
                diff <= 1e-3 * scale,
                "{norm} {n}: f32 vs f64 gradient {diff:e} of {scale:e}"
            );
        }
        for (name, i) in probes {
            let Some(var) = vars64.get(name) else {
                assert_eq!(norm, "none", "{name} missing");
                continue;
            };
            let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let i = i % base.len();
            let at = |delta: f64| -> f64 {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), &CPU).unwrap())
                    .unwrap();
                loss(&net64, &x64, &r64).to_scalar::<f64>().unwrap()
            };
            // Small steps: a larger one moves some ReLU inputs across zero (measured: at
            // 1e-4·|θ| an IN γ's difference quotient is 0.3 % off, at 1e-6 it agrees to 1e-8).
            let h = 1e-6 * base[i].abs().max(0.1);
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &CPU).unwrap())
                .unwrap();
            let analytic: f64 = g64
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()[i];
            // Floor 1e-5 (the difference quotient's own rounding is ~1e-9): some gradients are tiny
            // or vanish by design (a bias before a norm).
            let err = (numeric - analytic).abs() / analytic.abs().max(1e-5);
            assert!(
                err < 1e-4,
                "{norm} {name}[{i}]: numeric {numeric:e} analytic {analytic:e}"
            );
        }
    }
}

/// 3 steps, a checkpoint, then 3 more after a resume: the same losses and weights as 6 steps
/// in one run (BN's running statistics and Adam's moments included).
#[test]
fn resume_repeats_the_uninterrupted_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let ckpt = checkpoint_path(&model);
    let mut whole = trainer("bn", 48, 3);
    let a: Vec<f64> = (0..6).map(|_| whole.train_step().unwrap().total).collect();
    let mut first = trainer("bn", 48, 3);
    let mut b: Vec<f64> = (0..3).map(|_| first.train_step().unwrap().total).collect();
    first.save_checkpoint(&ckpt).unwrap();
    drop(first);
    let cfg = whole.config().clone();
    let loss = LossNet::predictor(&CPU, StyleLoss::Stats).unwrap();
    let mut resumed = Trainer::new(cfg, &style(), "test".into(), photos(48), loss, &CPU)
        .unwrap()
        .resume(&ckpt)
        .unwrap();
    assert_eq!(resumed.step(), 3);
    b.extend((0..3).map(|_| resumed.train_step().unwrap().total));
    assert_eq!(a, b);
    let m1 = dir.path().join("a.safetensors");
    let m2 = dir.path().join("b.safetensors");
    whole.save_model(&m1).unwrap();
    resumed.save_model(&m2).unwrap();
    assert_eq!(std::fs::read(&m1).unwrap(), std::fs::read(&m2).unwrap());
}

/// A checkpoint of another norm or architecture is refused with a line naming the setting.
#[test]
fn resume_refuses_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors.ckpt");
    let mut t = trainer("in", 32, 0);
    t.train_step().unwrap();
    t.save_checkpoint(&ckpt).unwrap();
    for (norm, arch, what) in [
        ("bn", Arch::Small, "norm `in`"),
        ("in", Arch::Johnson, "arch `small`"),
    ] {
        let cfg = TrainConfig {
            norm: parse_norm(norm).unwrap(),
            arch,
            size: 32,
            ..TrainConfig::default()
        };
        let loss = LossNet::predictor(&CPU, StyleLoss::Stats).unwrap();
        let e = Trainer::new(cfg, &style(), "test".into(), photos(32), loss, &CPU)
            .unwrap()
            .resume(&ckpt)
            .unwrap_err()
            .to_string();
        assert!(e.contains(what) && !e.contains('\n'), "{e}");
    }
}

/// A model saved after training loads from its file and paints exactly as the network in
/// memory; its metadata records what `train` promises.
#[test]
fn saved_model_paints_as_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut t = trainer("gn:4", 32, 2);
    for _ in 0..2 {
        t.train_step().unwrap();
    }
    t.save_model(&path).unwrap();
    let loaded = TrainedModel::load(&path, &CPU).unwrap();
    let meta = &loaded.info().metadata;
    for (k, v) in [
        ("normstyle.arch", "small"),
        ("normstyle.norm", "gn:4"),
        ("normstyle.loss_net", "predictor"),
        ("normstyle.steps", "2"),
        ("normstyle.size", "32"),
        ("normstyle.style_sha256", "test"),
    ] {
        assert_eq!(meta.get(k).map(String::as_str), Some(v), "{k}");
    }
    let img = normstyle::imaging::load_rgb(&root().join("assets/photos/golden_gate.jpg")).unwrap();
    let img = normstyle::imaging::resize_to(img, 64, 40);
    let x = normstyle::imaging::to_tensor(&img, &CPU).unwrap();
    let mode = normstyle::model::trained::NormMode::Eval;
    let a = t
        .model()
        .unwrap()
        .net()
        .paint(std::slice::from_ref(&x), mode)
        .unwrap();
    let b = loaded.net().paint(&[x], mode).unwrap();
    let d = (&a[0] - &b[0]).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
    // And the Stylizer, as `stylize --model` runs it.
    let st = normstyle::Stylizer::trained(&path, &CPU).unwrap();
    let c = st.content_from_rgb(img).unwrap();
    let out = st
        .render(
            std::slice::from_ref(&c),
            &normstyle::pipeline::Styling::Trained,
        )
        .unwrap();
    assert_eq!(out[0], normstyle::imaging::to_rgb8(&a[0]).unwrap());
    assert!(Path::new(&path).exists());
}
