//! Identities between the normalization layers (property tests), reduced-precision input, and
//! every invalid construction or input giving an error with a clear message.

use std::collections::HashMap;

use candle::{DType, Device, Tensor};
use normstyle::norm::{
    adain, adaptive_norm, BatchNorm2d, BatchNorm2dConfig, GroupNorm, GroupNormConfig,
    InstanceNorm2d, InstanceNorm2dConfig, LayerNorm, LayerNormConfig,
};
use normstyle::weights::TensorMap;
use normstyle::NormKind;
use proptest::prelude::*;

const CPU: Device = Device::Cpu;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap();
    d.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A tensor from proptest values with a per-channel offset and scale (so channels differ).
fn tensor(vals: &[f32], (n, c, h, w): (usize, usize, usize, usize)) -> Tensor {
    let v: Vec<f32> = (0..n * c * h * w)
        .map(|i| {
            let ch = (i / (h * w)) % c;
            vals[i % vals.len()] * (1.0 + ch as f32 * 0.3) + ch as f32 - 2.0
        })
        .collect();
    Tensor::from_vec(v, (n, c, h, w), &CPU).unwrap()
}

fn shapes() -> impl Strategy<Value = (usize, usize, usize, usize)> {
    (1usize..4, 1usize..13, 1usize..7, 2usize..7)
}

fn values() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-3.0f32..3.0, 5..40)
}

/// Identities hold to float32 precision: 1e-4 absolute on outputs of magnitude ≲ 10.
const ID_TOL: f32 = 1e-4;

proptest! {
    // A fixed seed: the same 48 cases on every run and machine (PROPTEST_RNG_SEED overrides it
    // for exploring), so a failure reproduces.
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6e6f726d),
        ..ProptestConfig::default()
    })]

    #[test]
    fn group_norm_with_one_channel_per_group_is_instance_norm(shape in shapes(), vals in values()) {
        let x = tensor(&vals, shape);
        let c = shape.1;
        let gn = GroupNorm::new(c, c, GroupNormConfig { affine: false, ..Default::default() }, &CPU).unwrap();
        let inn = InstanceNorm2d::new(c, InstanceNorm2dConfig::default(), &CPU).unwrap();
        prop_assert!(max_diff(&gn.forward(&x).unwrap(), &inn.forward_eval(&x).unwrap()) <= ID_TOL);
    }

    #[test]
    fn group_norm_with_one_group_is_layer_norm(shape in shapes(), vals in values()) {
        let x = tensor(&vals, shape);
        let (_, c, h, w) = shape;
        let gn = GroupNorm::new(1, c, GroupNormConfig { affine: false, ..Default::default() }, &CPU).unwrap();
        let ln = LayerNorm::new(&[c, h, w], LayerNormConfig { elementwise_affine: false, ..Default::default() }, &CPU).unwrap();
        prop_assert!(max_diff(&gn.forward(&x).unwrap(), &ln.forward(&x).unwrap()) <= ID_TOL);
    }

    #[test]
    fn batch_norm_of_one_sample_in_training_is_instance_norm(shape in shapes(), vals in values()) {
        let x = tensor(&vals, (1, shape.1, shape.2, shape.3));
        let c = shape.1;
        let bn = BatchNorm2d::new(c, BatchNorm2dConfig { affine: false, ..Default::default() }, &CPU).unwrap();
        let inn = InstanceNorm2d::new(c, InstanceNorm2dConfig::default(), &CPU).unwrap();
        prop_assert!(max_diff(&bn.forward_train(&x).unwrap(), &inn.forward_eval(&x).unwrap()) <= ID_TOL);
    }

    #[test]
    fn adain_of_a_map_with_itself_is_the_map(shape in shapes(), vals in values()) {
        let x = tensor(&vals, shape);
        let y = adain(&x, &x.narrow(0, 0, 1).unwrap().repeat((shape.0, 1, 1, 1)).unwrap()).unwrap();
        let first = x.narrow(0, 0, 1).unwrap();
        prop_assert!(max_diff(&y.narrow(0, 0, 1).unwrap(), &first) <= ID_TOL);
    }

    #[test]
    fn adaptive_norm_ignores_an_affine_transform_of_the_content(
        shape in shapes(), vals in values(), svals in values(), a in 0.2f32..5.0, b in -4.0f32..4.0,
    ) {
        prop_assert!(affine_invariance_error(&vals, &svals, shape, a, b) <= 1e-3);
    }
}

/// |AdaIN(a·x + b_c, s) − AdaIN(x, s)| for IN and BN statistics, with ε scaled by a² on the
/// transformed side. The identity is exact only then: with a fixed ε, a plane whose variance is
/// within a few orders of ε (a near-constant plane) legitimately changes by up to ε/(2·a²·var)
/// relative — CI once found such a plane (see the regression test below).
fn affine_invariance_error(
    vals: &[f32],
    svals: &[f32],
    shape: (usize, usize, usize, usize),
    a: f32,
    b: f32,
) -> f32 {
    use normstyle::norm::{align, style_stats, FeatureStats, Variance};
    let content = tensor(vals, shape);
    let style = tensor(svals, (1, shape.1, shape.3, shape.2));
    let c = shape.1;
    let shift = Tensor::from_vec(
        (0..c).map(|k| b - k as f32).collect::<Vec<_>>(),
        (1, c, 1, 1),
        &CPU,
    )
    .unwrap();
    let moved = (content.clone() * a as f64)
        .unwrap()
        .broadcast_add(&shift)
        .unwrap();
    let eps = normstyle::norm::DEFAULT_EPS;
    let mut worst = 0f32;
    // Per-channel transforms are absorbed by per-channel statistics: IN, and BN (shared per channel).
    for kind in [NormKind::In, NormKind::Bn] {
        let to = style_stats(&style, kind).unwrap();
        let from0 = FeatureStats::of_batch(&[&content], kind, Variance::Unbiased, eps).unwrap();
        let from1 = FeatureStats::of_batch(
            &[&moved],
            kind,
            Variance::Unbiased,
            eps * (a as f64).powi(2),
        )
        .unwrap();
        let y0 = align(&content, &from0, &to).unwrap();
        let y1 = align(&moved, &from1, &to).unwrap();
        worst = worst.max(max_diff(&y0, &y1));
        // The public entry point is the explicit one with the default ε.
        worst = worst.max(max_diff(
            &adaptive_norm(&content, &style, kind).unwrap(),
            &y0,
        ));
    }
    worst
}

/// The input CI's random search found (a near-constant 1×2 plane, a = 0.2): exact with scaled ε.
#[test]
fn adaptive_norm_affine_invariance_on_a_near_constant_plane() {
    let mut vals = vec![0.0f32; 27];
    vals[0] = 2.662916;
    vals[26] = 2.6233559;
    let mut svals = vec![0.0f32; 8];
    svals[7] = 2.2832713;
    for a in [0.2, 1.0, 4.5] {
        let err = affine_invariance_error(&vals, &svals, (3, 5, 1, 2), a, 0.0);
        assert!(err <= 1e-3, "a = {a}: {err}");
    }
}

/// f16 and bf16 input: statistics are computed in f32, so the result equals the f32 result on
/// the same (rounded) input up to rounding the output: |Δ| ≤ 2⁻¹⁰·max(1, |y|) for f16 and
/// 2⁻⁷·max(1, |y|) for bf16.
#[test]
fn half_precision_inputs_match_the_f32_result() {
    let vals: Vec<f32> = (0..97)
        .map(|i| ((i * 37 % 97) as f32 / 97.0 - 0.5) * 6.0)
        .collect();
    let x32 = tensor(&vals, (2, 8, 6, 5));
    let c = 8;
    let bn = BatchNorm2d::new(c, BatchNorm2dConfig::default(), &CPU).unwrap();
    let inn = InstanceNorm2d::new(
        c,
        InstanceNorm2dConfig {
            affine: true,
            ..Default::default()
        },
        &CPU,
    )
    .unwrap();
    let gn = GroupNorm::new(4, c, GroupNormConfig::default(), &CPU).unwrap();
    let ln = LayerNorm::new(&[c, 6, 5], LayerNormConfig::default(), &CPU).unwrap();
    for (dtype, rel) in [(DType::F16, 1.0 / 1024.0), (DType::BF16, 1.0 / 128.0)] {
        let xh = x32.to_dtype(dtype).unwrap();
        let xr = xh.to_dtype(DType::F32).unwrap(); // the same values in f32
        type Run<'a> = (&'a str, Box<dyn Fn(&Tensor) -> Tensor + 'a>);
        let runs: Vec<Run> = vec![
            ("bn", Box::new(|x| bn.clone().forward_train(x).unwrap())),
            ("in", Box::new(|x| inn.forward_eval(x).unwrap())),
            ("gn", Box::new(|x| gn.forward(x).unwrap())),
            ("ln", Box::new(|x| ln.forward(x).unwrap())),
            (
                "adain",
                Box::new(|x| adain(x, &x.narrow(0, 1, 1).unwrap()).unwrap()),
            ),
        ];
        for (name, f) in runs {
            let yh = f(&xh);
            assert_eq!(yh.dtype(), dtype, "{name} keeps the dtype");
            let y = f(&xr).flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let yh = yh
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for (a, b) in y.iter().zip(&yh) {
                assert!(
                    (a - b).abs() <= rel * a.abs().max(1.0),
                    "{name} {dtype:?}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn running_statistics_update_with_momentum_and_eval_uses_them() {
    let x = tensor(&[1.0, -2.0, 0.5, 3.0, -1.0], (2, 3, 2, 2));
    let bn = BatchNorm2d::new(3, BatchNorm2dConfig::default(), &CPU).unwrap();
    let y_train = bn.forward_train(&x).unwrap();
    assert_eq!(bn.num_batches_tracked(), 1);
    // After one batch with momentum 0.1: 0.9·0 + 0.1·mean, 0.9·1 + 0.1·unbiased var.
    let v = x.permute((1, 0, 2, 3)).unwrap().reshape((3, 8)).unwrap();
    let mean = v.mean_keepdim(1).unwrap().flatten_all().unwrap();
    let var = v.var_keepdim(1).unwrap().flatten_all().unwrap();
    assert!(max_diff(bn.running_mean().unwrap(), &(mean * 0.1).unwrap()) < 1e-6);
    assert!(
        max_diff(
            bn.running_var().unwrap(),
            &((var * 0.1).unwrap() + 0.9).unwrap()
        ) < 1e-6
    );
    // Eval uses the running statistics, which differ from the batch's.
    assert!(max_diff(&bn.forward_eval(&x).unwrap(), &y_train) > 0.1);
}

fn err<T: std::fmt::Debug>(r: normstyle::Result<T>) -> String {
    r.expect_err("an error").to_string()
}

#[test]
fn invalid_constructions_are_errors_naming_the_problem() {
    let t = |n: usize| Some(Tensor::ones(n, DType::F32, &CPU).unwrap());
    let bn_cfg = BatchNorm2dConfig::default();
    let cases: Vec<(String, &str)> = vec![
        (
            err(BatchNorm2d::new(0, bn_cfg, &CPU)),
            "BatchNorm2d: num_features must be at least 1",
        ),
        (
            err(BatchNorm2d::new(
                4,
                BatchNorm2dConfig { eps: 0.0, ..bn_cfg },
                &CPU,
            )),
            "BatchNorm2d: eps must be a finite number > 0, got 0",
        ),
        (
            err(BatchNorm2d::new(
                4,
                BatchNorm2dConfig {
                    eps: f64::NAN,
                    ..bn_cfg
                },
                &CPU,
            )),
            "BatchNorm2d: eps must be a finite number > 0, got NaN",
        ),
        (
            err(BatchNorm2d::new(
                4,
                BatchNorm2dConfig {
                    momentum: Some(1.5),
                    ..bn_cfg
                },
                &CPU,
            )),
            "BatchNorm2d: momentum must be in [0, 1] or None, got 1.5",
        ),
        (
            err(BatchNorm2d::from_tensors(4, t(4), None, t(4), t(4), bn_cfg)),
            "BatchNorm2d: weight and bias (affine) are required with this configuration",
        ),
        (
            err(BatchNorm2d::from_tensors(4, t(4), t(4), None, None, bn_cfg)),
            "BatchNorm2d: running_mean and running_var are required with this configuration",
        ),
        (
            err(BatchNorm2d::from_tensors(
                4,
                t(4),
                t(4),
                t(4),
                t(4),
                BatchNorm2dConfig {
                    track_running_stats: false,
                    ..bn_cfg
                },
            )),
            "BatchNorm2d: running_mean and running_var are not allowed with this configuration",
        ),
        (
            err(BatchNorm2d::from_tensors(4, t(5), t(4), t(4), t(4), bn_cfg)),
            "BatchNorm2d: weight must have shape [4], found [5]",
        ),
        (
            err(BatchNorm2d::from_tensors(4, t(4), t(4), t(4), t(3), bn_cfg)),
            "BatchNorm2d: running_var must have shape [4], found [3]",
        ),
        (
            err(InstanceNorm2d::new(
                0,
                InstanceNorm2dConfig::default(),
                &CPU,
            )),
            "InstanceNorm2d: num_features must be at least 1",
        ),
        (
            err(InstanceNorm2d::new(
                3,
                InstanceNorm2dConfig {
                    eps: -1.0,
                    ..Default::default()
                },
                &CPU,
            )),
            "InstanceNorm2d: eps must be a finite number > 0, got -1",
        ),
        (
            err(InstanceNorm2d::new(
                3,
                InstanceNorm2dConfig {
                    momentum: -0.1,
                    ..Default::default()
                },
                &CPU,
            )),
            "InstanceNorm2d: momentum must be in [0, 1], got -0.1",
        ),
        (
            err(InstanceNorm2d::from_tensors(
                3,
                t(3),
                t(3),
                None,
                None,
                InstanceNorm2dConfig::default(),
            )),
            "InstanceNorm2d: weight and bias (affine) are not allowed with this configuration",
        ),
        (
            err(GroupNorm::new(0, 8, GroupNormConfig::default(), &CPU)),
            "GroupNorm: num_groups and num_channels must be at least 1, got 0 and 8",
        ),
        (
            err(GroupNorm::new(3, 8, GroupNormConfig::default(), &CPU)),
            "GroupNorm: num_channels (8) must be divisible by num_groups (3)",
        ),
        (
            err(GroupNorm::from_tensors(
                2,
                8,
                t(4),
                t(8),
                GroupNormConfig::default(),
            )),
            "GroupNorm: weight must have shape [8], found [4]",
        ),
        (
            err(LayerNorm::new(&[], LayerNormConfig::default(), &CPU)),
            "LayerNorm: normalized_shape must be non-empty with every size ≥ 1, got []",
        ),
        (
            err(LayerNorm::new(&[3, 0], LayerNormConfig::default(), &CPU)),
            "LayerNorm: normalized_shape must be non-empty with every size ≥ 1, got [3, 0]",
        ),
        (
            err(LayerNorm::from_tensors(
                &[3, 4],
                t(3),
                t(3),
                LayerNormConfig::default(),
            )),
            "LayerNorm: weight must have shape [3, 4], found [3]",
        ),
        (
            err(LayerNorm::new(
                &[3],
                LayerNormConfig {
                    eps: f64::INFINITY,
                    ..Default::default()
                },
                &CPU,
            )),
            "LayerNorm: eps must be a finite number > 0, got inf",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

#[test]
fn invalid_inputs_are_errors_naming_the_problem() {
    let x = |dims: &[usize]| Tensor::ones(dims, DType::F32, &CPU).unwrap();
    let bn = BatchNorm2d::new(4, BatchNorm2dConfig::default(), &CPU).unwrap();
    let inn = InstanceNorm2d::new(4, InstanceNorm2dConfig::default(), &CPU).unwrap();
    let gn = GroupNorm::new(2, 4, GroupNormConfig::default(), &CPU).unwrap();
    let ln = LayerNorm::new(&[4, 3, 3], LayerNormConfig::default(), &CPU).unwrap();
    let ints = Tensor::zeros((1, 4, 2, 2), DType::U32, &CPU).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (err(bn.forward_train(&x(&[4, 3, 3]))), "BatchNorm2d: expected rank 4 input, found shape [4, 3, 3]"),
        (err(bn.forward_train(&x(&[2, 5, 3, 3]))), "BatchNorm2d: expected 4 channels, found 5 in input of shape [2, 5, 3, 3]"),
        (err(bn.forward_train(&x(&[1, 4, 1, 1]))), "BatchNorm2d: expected more than 1 value per channel when training, got input size [1, 4, 1, 1]"),
        (err(bn.forward_eval(&x(&[0, 4, 2, 2]))), "BatchNorm2d: empty input of shape [0, 4, 2, 2]"),
        (err(bn.forward_train(&ints)), "normalization: expected a float tensor (f32, f16, bf16 or f64), found U32"),
        (err(inn.forward_eval(&x(&[2, 4, 1, 1]))), "InstanceNorm2d: expected more than 1 spatial element when training, got input size [2, 4, 1, 1]"),
        (err(inn.forward_eval(&x(&[4, 9]))), "InstanceNorm2d: expected (N, C, H, W) or (C, H, W) input, found shape [4, 9]"),
        (err(inn.forward_eval(&x(&[1, 3, 2, 2]))), "InstanceNorm2d: expected 4 channels, found 3 in input of shape [1, 3, 2, 2]"),
        (err(gn.forward(&x(&[4]))), "GroupNorm: expected rank ≥ 2 input, found shape [4]"),
        (err(gn.forward(&x(&[2, 6, 3]))), "GroupNorm: expected 4 channels, found 6 in input of shape [2, 6, 3]"),
        (err(ln.forward(&x(&[2, 4, 3, 2]))), "LayerNorm: expected input with trailing dimensions [4, 3, 3], found shape [2, 4, 3, 2]"),
        (err(ln.forward(&x(&[3, 3]))), "LayerNorm: expected input with trailing dimensions [4, 3, 3], found shape [3, 3]"),
        (err(adain(&x(&[1, 4, 3, 3]), &x(&[1, 5, 3, 3]))), "statistics alignment: feature map has 4 channels, statistics have 4 and 5"),
        (err(adain(&x(&[4, 3, 3]), &x(&[1, 4, 3, 3]))), "statistics alignment: expected (N, C, H, W) feature maps, found shape [4, 3, 3]"),
        (err(adain(&x(&[1, 4, 3, 3]), &x(&[1, 4, 1, 1]))), "statistics alignment: `in` statistics would pool a single value; the image is too small"),
        (err(adain(&x(&[2, 4, 3, 3]), &x(&[3, 4, 3, 3]))), "statistics alignment: 2 feature maps, 2 source and 3 target statistics"),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

#[test]
fn checkpoint_loading_checks_keys_and_shapes_and_ignores_num_batches_tracked() {
    let c = 3;
    let mut m = HashMap::new();
    for k in ["weight", "bias", "running_mean", "running_var"] {
        m.insert(
            format!("enc.bn.{k}"),
            Tensor::ones(c, DType::F32, &CPU).unwrap(),
        );
    }
    m.insert(
        "enc.bn.num_batches_tracked".to_string(),
        Tensor::new(&[7i64], &CPU).unwrap(),
    );
    m.insert(
        "enc.gn.weight".to_string(),
        Tensor::ones(c, DType::F16, &CPU).unwrap(),
    );
    m.insert(
        "enc.gn.bias".to_string(),
        Tensor::ones(4, DType::F32, &CPU).unwrap(),
    );
    let map = TensorMap::new(m);
    let bn = BatchNorm2d::load(&map, "enc.bn", c, BatchNorm2dConfig::default()).unwrap();
    assert_eq!(bn.num_batches_tracked(), 0);
    assert_eq!(bn.weight().unwrap().dtype(), DType::F32);
    let inn = InstanceNorm2d::load(
        &map,
        "enc.bn",
        c,
        InstanceNorm2dConfig {
            affine: true,
            track_running_stats: true,
            ..Default::default()
        },
    );
    assert!(inn.is_ok());
    assert_eq!(
        err(GroupNorm::load(
            &map,
            "enc.gn",
            1,
            c,
            GroupNormConfig::default()
        )),
        "tensor `enc.gn.bias`: expected shape [3], found [4]"
    );
    assert_eq!(
        err(LayerNorm::load(
            &map,
            "enc.ln",
            &[c],
            LayerNormConfig::default()
        )),
        "missing tensor `enc.ln.weight`"
    );
}
