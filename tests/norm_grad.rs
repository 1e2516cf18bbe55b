//! The layers train: autograd through the statistics matches PyTorch, a float64
//! finite-difference check, agreement with candle-nn's own layers, and short AdamW trainings
//! whose loss falls.
//!
//! Fixtures: `tests/fixtures/norm_grad.safetensors` from `scripts/gen_grad_fixtures.py`
//! (PyTorch's gradients in float64 on float32 values). Tolerance: max |Δ| ≤ 1e-4 × max |ref|
//! (relative, f32) for every gradient and the output; running statistics ≤ 1e-5 absolute.

use std::collections::HashMap;

use candle::{DType, Device, Module, ModuleT, Tensor, Var};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use normstyle::norm::{
    batch_norm2d, group_norm, layer_norm, BatchNorm2dConfig, GroupNormConfig, LayerNormConfig, Norm,
};
use normstyle::NormKind;

const CPU: Device = Device::Cpu;

fn fixture() -> (HashMap<String, Tensor>, Vec<serde_json::Value>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/norm_grad.safetensors"
    );
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["fixture"]).unwrap();
    let tensors = candle::safetensors::load_buffer(&bytes, &CPU).unwrap();
    (tensors, meta["cases"].as_array().unwrap().clone())
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// max |a − b| / max(max |b|, 1e-6).
fn rel(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let d = (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap();
    max_abs(&d) / max_abs(b).max(1e-6)
}

#[test]
fn gradients_match_pytorch_in_training_mode() {
    let (t, cases) = fixture();
    let get = |case: &str, what: &str| t[&format!("{case}.{what}")].clone();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let x = Var::from_tensor(&get(name, "x")).unwrap();
        let (_, c, h, w) = x.dims4().unwrap();
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &CPU);
        let layer: Box<dyn ModuleT> = match case["layer"].as_str().unwrap() {
            "BatchNorm2d" => Box::new(Norm::new(NormKind::Bn, c, vb.pp(name)).unwrap()),
            "InstanceNorm2d" => Box::new(Norm::new(NormKind::In, c, vb.pp(name)).unwrap()),
            "GroupNorm" => {
                let g = case["groups"].as_u64().unwrap() as usize;
                let kind = if g == 1 {
                    NormKind::Ln
                } else {
                    NormKind::Gn(g)
                };
                Box::new(Norm::new(kind, c, vb.pp(name)).unwrap())
            }
            "layernorm" => {
                let ln = layer_norm(&[c, h, w], LayerNormConfig::default(), vb.pp(name)).unwrap();
                Box::new(move |x: &Tensor| Module::forward(&ln, x))
            }
            other => panic!("{other}"),
        };
        let mut vm = vm;
        vm.set_one(format!("{name}.weight"), get(name, "weight"))
            .unwrap();
        vm.set_one(format!("{name}.bias"), get(name, "bias"))
            .unwrap();

        let y = layer.forward_t(&x, true).unwrap();
        let loss = (&y * get(name, "g")).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let data = vm.data().lock().unwrap();
        let grad = |v: &Tensor| grads.get(v).unwrap().clone();
        let checks = [
            ("y", y.clone(), get(name, "y")),
            ("dx", grad(&x), get(name, "dx")),
            (
                "dweight",
                grad(&data[&format!("{name}.weight")]),
                get(name, "dweight"),
            ),
            (
                "dbias",
                grad(&data[&format!("{name}.bias")]),
                get(name, "dbias"),
            ),
        ];
        for (what, ours, theirs) in checks {
            let r = rel(&ours, &theirs);
            assert!(r <= 1e-4, "{name}.{what}: relative error {r:e}");
        }
        if name.starts_with("bn") {
            for stat in ["running_mean", "running_var"] {
                let ours = data[&format!("{name}.{stat}")].as_tensor().clone();
                let d = max_abs(&(ours - get(name, stat)).unwrap());
                assert!(d <= 1e-5, "{name}.{stat}: max |Δ| {d:e}");
            }
        }
    }
}

/// L = Σ y·g for a layer built in `vm` (f64); central differences against autograd for a few
/// entries of x, γ and β.
#[test]
fn gradients_pass_a_float64_finite_difference_check() {
    let mut seeded = normstyle::rng::Rng::new(1, 0);
    for kind in [NormKind::Bn, NormKind::In, NormKind::Ln, NormKind::Gn(2)] {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &CPU);
        let norm = Norm::new(kind, 4, vb.pp("n")).unwrap();
        // Non-trivial γ, β.
        let gamma = Tensor::new(&[0.7f64, 1.3, -0.4, 2.0], &CPU).unwrap();
        let beta = Tensor::new(&[0.1f64, -0.2, 0.3, 0.0], &CPU).unwrap();
        let mut vm = vm;
        vm.set_one("n.weight", &gamma).unwrap();
        vm.set_one("n.bias", &beta).unwrap();
        let x0 = seeded
            .normal_tensor(0.5, 1.5, (3, 4, 3, 2), &CPU)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let g = seeded
            .normal_tensor(0.0, 1.0, (3, 4, 3, 2), &CPU)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let x = Var::from_tensor(&x0).unwrap();
        // BN's running statistics change with every forward but do not enter the training
        // output, so repeated evaluations see the same function.
        let loss = |x: &Tensor| -> f64 {
            let y = norm.forward_t(x, true).unwrap();
            (y * &g).unwrap().sum_all().unwrap().to_scalar().unwrap()
        };
        let grads = {
            let y = norm.forward_t(&x, true).unwrap();
            (y * &g).unwrap().sum_all().unwrap().backward().unwrap()
        };
        let data = vm.data().lock().unwrap().clone();
        let h = 1e-6;
        let probe = |var: &Var, analytic: &Tensor, indices: &[usize], what: &str| {
            let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let an: Vec<f64> = analytic.flatten_all().unwrap().to_vec1().unwrap();
            for &i in indices {
                let at = |d: f64| {
                    let mut v = base.clone();
                    v[i] += d;
                    var.set(&Tensor::from_vec(v, var.shape(), &CPU).unwrap())
                        .unwrap();
                    loss(&x)
                };
                let numeric = (at(h) - at(-h)) / (2.0 * h);
                var.set(&Tensor::from_vec(base.clone(), var.shape(), &CPU).unwrap())
                    .unwrap();
                let err = (numeric - an[i]).abs();
                assert!(
                    err <= 1e-6 * an[i].abs().max(1.0),
                    "{kind} {what}[{i}]: numeric {numeric}, autograd {}",
                    an[i]
                );
            }
        };
        probe(&x, grads.get(&x).unwrap(), &[0, 7, 23, 40, 71], "x");
        let w = &data["n.weight"];
        probe(w, grads.get(w).unwrap(), &[0, 1, 2, 3], "weight");
        let b = &data["n.bias"];
        probe(b, grads.get(b).unwrap(), &[0, 3], "bias");
    }
}

#[test]
fn layers_agree_with_candle_nn_where_the_semantics_coincide() {
    let mut seeded = normstyle::rng::Rng::new(2, 0);
    let x = seeded.normal_tensor(0.3, 1.7, (4, 8, 5, 6), &CPU).unwrap();
    // L = Σ y·r with a fixed random r (Σ y² would have a zero gradient after normalizing).
    let r = seeded.normal_tensor(0.0, 1.0, (4, 8, 5, 6), &CPU).unwrap();
    let grad_of = |y: &Tensor, x: &Var| {
        let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        g.get(x).unwrap().clone()
    };
    let close = |a: &Tensor, b: &Tensor, what: &str| {
        let r = rel(a, b);
        assert!(r <= 1e-5, "{what}: relative difference {r:e}");
    };
    // GroupNorm(4, 8).
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &CPU);
    let ours = group_norm(4, 8, GroupNormConfig::default(), vb.pp("ours")).unwrap();
    let theirs = candle_nn::group_norm(4, 8, 1e-5, vb.pp("theirs")).unwrap();
    let xv = Var::from_tensor(&x).unwrap();
    let (a, b) = (ours.forward(&xv).unwrap(), theirs.forward(&xv).unwrap());
    close(&a, &b, "GroupNorm output");
    close(&grad_of(&a, &xv), &grad_of(&b, &xv), "GroupNorm dx");
    // LayerNorm over the last dimension.
    let ours = layer_norm(&[6], LayerNormConfig::default(), vb.pp("ln_ours")).unwrap();
    let theirs =
        candle_nn::layer_norm(6, candle_nn::LayerNormConfig::default(), vb.pp("ln_theirs"))
            .unwrap();
    let (a, b) = (ours.forward(&xv).unwrap(), theirs.forward(&xv).unwrap());
    close(&a, &b, "LayerNorm output");
    // (candle-nn's LayerNorm runs a fused op without a backward on contiguous input, so only
    // its output is compared; our gradients are checked against PyTorch above.)
    // BatchNorm2d: training output, gradients, running statistics after three steps; eval.
    let ours = batch_norm2d(8, BatchNorm2dConfig::default(), vb.pp("bn_ours")).unwrap();
    let cfg = candle_nn::BatchNormConfig {
        eps: 1e-5,
        remove_mean: true,
        affine: true,
        momentum: 0.1,
    };
    let theirs = candle_nn::batch_norm(8, cfg, vb.pp("bn_theirs")).unwrap();
    for step in 0..3 {
        let xs = (xv.as_tensor() * (1.0 + step as f64)).unwrap();
        let (a, b) = (
            ours.forward_t(&xs, true).unwrap(),
            theirs.forward_t(&xs, true).unwrap(),
        );
        close(&a, &b, "BatchNorm train output");
        close(&grad_of(&a, &xv), &grad_of(&b, &xv), "BatchNorm dx");
    }
    close(
        ours.running_mean().unwrap(),
        theirs.running_mean(),
        "running_mean",
    );
    close(
        ours.running_var().unwrap(),
        theirs.running_var(),
        "running_var",
    );
    let (a, b) = (
        ours.forward_t(&x, false).unwrap(),
        theirs.forward_t(&x, false).unwrap(),
    );
    close(&a, &b, "BatchNorm eval output");
}

#[test]
fn running_statistics_land_in_the_varmap() {
    let mut seeded = normstyle::rng::Rng::new(3, 0);
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &CPU);
    let norm = Norm::new(NormKind::Bn, 3, vb.pp("norm1")).unwrap();
    let mut names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "norm1.bias",
            "norm1.running_mean",
            "norm1.running_var",
            "norm1.weight"
        ]
    );
    let x = (seeded.normal_tensor(0.0, 1.0, (5, 3, 4, 4), &CPU).unwrap() + 2.0).unwrap();
    norm.forward_t(&x, true).unwrap();
    let mean: Vec<f32> = vm.data().lock().unwrap()["norm1.running_mean"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let batch: Vec<f32> = x
        .mean_keepdim(0)
        .unwrap()
        .mean_keepdim(2)
        .unwrap()
        .mean_keepdim(3)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (m, b) in mean.iter().zip(&batch) {
        assert!((m - 0.1 * b).abs() < 1e-5, "{m} vs 0.1 × {b}");
    }
    let dir = tempfile::tempdir().unwrap();
    vm.save(dir.path().join("bn.safetensors")).unwrap();
    let saved = candle::safetensors::load(dir.path().join("bn.safetensors"), &CPU).unwrap();
    assert_eq!(saved["norm1.running_mean"].to_vec1::<f32>().unwrap(), mean);
    // In and the group kinds hold only γ and β.
    for (kind, prefix) in [
        (NormKind::In, "a"),
        (NormKind::Ln, "b"),
        (NormKind::Gn(8), "c"),
    ] {
        let vm = VarMap::new();
        Norm::new(
            kind,
            32,
            VarBuilder::from_varmap(&vm, DType::F32, &CPU).pp(prefix),
        )
        .unwrap();
        assert_eq!(vm.all_vars().len(), 2, "{kind}");
    }
}

/// Conv2d → Norm → ReLU → Conv2d, trained with AdamW to map random images to a fixed
/// per-channel linear recoloring; the loss must fall for every kind.
#[test]
fn a_small_conv_net_trains_with_each_norm() {
    let mut seeded = normstyle::rng::Rng::new(4, 0);
    for kind in [NormKind::Bn, NormKind::In, NormKind::Ln, NormKind::Gn(4)] {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &CPU);
        let cfg = candle_nn::Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv1 = candle_nn::conv2d(3, 16, 3, cfg, vb.pp("conv1")).unwrap();
        let norm = Norm::new(kind, 16, vb.pp("norm1")).unwrap();
        let conv2 = candle_nn::conv2d(16, 3, 3, cfg, vb.pp("conv2")).unwrap();
        let mut opt = candle_nn::AdamW::new_lr(vm.all_vars(), 3e-3).unwrap();
        let mix = Tensor::new(
            &[[0.2f32, 0.7, 0.1], [0.5, -0.3, 0.8], [0.9, 0.1, -0.4]],
            &CPU,
        )
        .unwrap();
        let losses: Vec<f32> = (0..60)
            .map(|step| {
                let x = seeded
                    .uniform_tensor(0.0, 1.0, (8, 3, 12, 12), &CPU)
                    .unwrap();
                let target = mix
                    .matmul(&x.permute((1, 0, 2, 3)).unwrap().reshape((3, ())).unwrap())
                    .unwrap()
                    .reshape((3, 8, 12, 12))
                    .unwrap()
                    .permute((1, 0, 2, 3))
                    .unwrap();
                let h = conv1.forward(&x).unwrap();
                let h = norm.forward_t(&h, true).unwrap().relu().unwrap();
                let y = conv2.forward(&h).unwrap();
                let loss = (y - target).unwrap().sqr().unwrap().mean_all().unwrap();
                opt.backward_step(&loss).unwrap();
                let l = loss.to_scalar::<f32>().unwrap();
                assert!(l.is_finite(), "{kind} step {step}");
                l
            })
            .collect();
        let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
        let last: f32 = losses[55..].iter().sum::<f32>() / 5.0;
        assert!(last < 0.5 * first, "{kind}: loss {first} → {last}");
    }
}

/// A small AdaIN-style decoder (reflection-padded 3×3 convolutions with ReLU, nearest ×2
/// upsampling, the crate's fast convolution) learns to imitate a fixed random "teacher" decoder:
/// training runs through the custom op's backward.
#[test]
fn a_decoder_trains_through_the_fast_convolution() {
    let mut seeded = normstyle::rng::Rng::new(5, 0);
    use normstyle::ops::{conv2d_fused, upsample_nearest2x, Activation, ConvSpec, Padding};
    let spec = |act| ConvSpec {
        padding: Padding::Reflect(1),
        act,
        ..ConvSpec::default()
    };
    let decode = |x: &Tensor, w: [&Tensor; 4]| -> Tensor {
        let h = conv2d_fused(x, w[0], Some(w[1]), spec(Activation::Relu)).unwrap();
        let h = upsample_nearest2x(&h).unwrap();
        conv2d_fused(&h, w[2], Some(w[3]), spec(Activation::None)).unwrap()
    };
    let teacher = [
        seeded.normal_tensor(0.0, 0.3, (8, 16, 3, 3), &CPU).unwrap(),
        seeded.normal_tensor(0.0, 0.1, 8, &CPU).unwrap(),
        seeded.normal_tensor(0.0, 0.3, (3, 8, 3, 3), &CPU).unwrap(),
        seeded.normal_tensor(0.0, 0.1, 3, &CPU).unwrap(),
    ];
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &CPU);
    let init = candle_nn::init::DEFAULT_KAIMING_NORMAL;
    let student = [
        vb.get_with_hints((8, 16, 3, 3), "dec.1.weight", init)
            .unwrap(),
        vb.get_with_hints(8, "dec.1.bias", candle_nn::Init::Const(0.))
            .unwrap(),
        vb.get_with_hints((3, 8, 3, 3), "dec.4.weight", init)
            .unwrap(),
        vb.get_with_hints(3, "dec.4.bias", candle_nn::Init::Const(0.))
            .unwrap(),
    ];
    let mut opt = candle_nn::AdamW::new_lr(vm.all_vars(), 1e-2).unwrap();
    let mut losses = Vec::new();
    for _ in 0..60 {
        let feats = seeded.normal_tensor(0.0, 1.0, (4, 16, 6, 6), &CPU).unwrap();
        let target = decode(&feats, [&teacher[0], &teacher[1], &teacher[2], &teacher[3]]);
        let y = decode(&feats, [&student[0], &student[1], &student[2], &student[3]]);
        let loss = (y - target).unwrap().sqr().unwrap().mean_all().unwrap();
        opt.backward_step(&loss).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
    }
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[55..].iter().sum::<f32>() / 5.0;
    assert!(last < 0.6 * first, "loss {first} → {last}");
}

/// `normstyle norms experiment` at a tiny size with two seeds: results.csv has a row per
/// (seed, norm, batch size) with the documented columns, summary.csv one per (norm, batch
/// size) with the mean and spread over the seeds, the plot is a PNG, and the same seeds give
/// the same numbers.
#[test]
fn the_experiment_writes_its_csv_and_plot_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_normstyle"))
            .current_dir(dir.path())
            .args([
                "norms",
                "experiment",
                "--norms",
                "bn,gn:4,none",
                "--batch-sizes",
                "2,8",
                "--steps",
                "6",
                "--seed",
                "7",
                "--seeds",
                "2",
                "-q",
                "-o",
                out,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            o.stderr.is_empty(),
            "-q prints nothing: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let csv = std::fs::read_to_string(dir.path().join(out).join("results.csv")).unwrap();
        // Everything but the timing column.
        csv.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect::<Vec<_>>()
    };
    let a = run("a");
    assert_eq!(a[0], "norm,batch_size,seed,steps,train_loss,test_error");
    assert_eq!(a.len(), 1 + 12);
    assert!(
        a[1].starts_with("bn,2,7,6,") && a[12].starts_with("none,8,8,6,"),
        "{a:?}"
    );
    let summary = std::fs::read_to_string(dir.path().join("a/summary.csv")).unwrap();
    let rows: Vec<&str> = summary.lines().collect();
    assert_eq!(
        rows[0],
        "norm,batch_size,seeds,test_error_mean,test_error_std"
    );
    assert_eq!(rows.len(), 1 + 6);
    // bn at batch 2: the mean of its two seeds' rows.
    let err = |line: &str| -> f64 { line.split(',').nth(5).unwrap().parse().unwrap() };
    let mean: f64 = rows[1].split(',').nth(3).unwrap().parse().unwrap();
    let want = (err(&a[1]) + err(&a[7])) / 2.0;
    assert!(
        rows[1].starts_with("bn,2,2,") && (mean - want).abs() < 1e-4,
        "{rows:?} {want}"
    );
    let plot = image::open(dir.path().join("a/plot.png")).unwrap();
    assert_eq!((plot.width(), plot.height()), (900, 600));
    assert_eq!(run("b"), a, "same seed, same results");
}

/// The loss flows back through the embedded style predictor (MobileNetV2: depthwise layers on
/// the crate's own backward): the input gradient matches central differences.
#[test]
fn gradients_flow_back_through_the_style_predictor() {
    let mut seeded = normstyle::rng::Rng::new(21, 0);
    let p = normstyle::model::magenta::StylePredictor::embedded(&CPU).unwrap();
    let x0 = seeded
        .uniform_tensor(0.2, 0.8, (1, 3, 48, 48), &CPU)
        .unwrap();
    let r = seeded.normal_tensor(0.0, 1.0, (1, 100), &CPU).unwrap();
    let loss = |x: &Tensor| -> Tensor { (p.forward(x).unwrap() * &r).unwrap().sum_all().unwrap() };
    let x = Var::from_tensor(&x0).unwrap();
    let grads = loss(x.as_tensor()).backward().unwrap();
    let g: Vec<f32> = grads
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0));
    let base: Vec<f32> = x0.flatten_all().unwrap().to_vec1().unwrap();
    let eps = 1e-2f32;
    for i in [5, 1000, 2 * 48 * 48 + 777] {
        let at = |d: f32| {
            let mut v = base.clone();
            v[i] += d;
            let t = Tensor::from_vec(v, (1, 3, 48, 48), &CPU).unwrap();
            f64::from(loss(&t).to_scalar::<f32>().unwrap())
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * f64::from(eps));
        let ad = f64::from(g[i]);
        assert!(
            (fd - ad).abs() <= 0.05 * ad.abs().max(fd.abs()) + 1e-3,
            "pixel {i}: autograd {ad}, finite differences {fd}"
        );
    }
}
