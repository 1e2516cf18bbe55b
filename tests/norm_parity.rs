//! Parity of the normalization layers with PyTorch.
//!
//! Fixtures: `tests/fixtures/norm_parity.safetensors`, written by `scripts/gen_norm_fixtures.py`
//! (PyTorch on the CPU, evaluated in float64 on float32 inputs and stored as float32, so the
//! reference is the exact semantics, not PyTorch's f32 rounding). Its metadata lists each case;
//! this test runs every one.
//! Tolerance: max |Δ| ≤ 1e-5 (f32) on outputs and running statistics.

use std::collections::HashMap;

use candle::{DType, Device, Tensor};
use normstyle::norm::{
    adaptive_norm_batch, BatchNorm2d, BatchNorm2dConfig, GroupNorm, GroupNormConfig,
    InstanceNorm2d, InstanceNorm2dConfig, LayerNorm, LayerNormConfig,
};
use normstyle::NormKind;
use serde_json::Value;

/// The largest error measured over the portable, AVX2, AVX-512 and Candle paths (AMD Zen 5,
/// `NORMSTYLE_KERNEL=…`) was 3.81e-6 (BatchNorm2d running statistics); 1e-5 is 2.6× that.
const TOL: f32 = 1e-5;

struct Fixture {
    tensors: HashMap<String, Tensor>,
    cases: Vec<Value>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/norm_parity.safetensors"
    );
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta: Value = serde_json::from_str(&meta.metadata().as_ref().unwrap()["fixture"]).unwrap();
    let tensors = candle::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    Fixture {
        tensors,
        cases: meta["cases"].as_array().unwrap().clone(),
    }
}

impl Fixture {
    fn t(&self, case: &str, what: &str) -> Tensor {
        self.tensors
            .get(&format!("{case}.{what}"))
            .unwrap_or_else(|| panic!("{case}.{what}"))
            .clone()
    }
    fn opt(&self, case: &str, what: &str) -> Option<Tensor> {
        self.tensors.get(&format!("{case}.{what}")).cloned()
    }
    /// The case's input: `x`, or the NCHW view of the stored NHWC tensor (non-contiguous).
    fn input(&self, case: &str) -> Tensor {
        match self.opt(case, "x") {
            Some(x) => x,
            None => {
                let x = self.t(case, "x_nhwc").permute((0, 3, 1, 2)).unwrap();
                assert!(!x.is_contiguous());
                x
            }
        }
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
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

#[derive(Default)]
struct Report(HashMap<String, (usize, f32)>);

impl Report {
    fn check(&mut self, layer: &str, case: &str, what: &str, got: &Tensor, want: &Tensor) {
        let d = max_diff(got, want);
        assert!(d <= TOL, "{case} {what}: max |Δ| = {d:e} > {TOL:e}");
        let e = self.0.entry(layer.to_string()).or_default();
        e.0 += 1;
        e.1 = e.1.max(d);
    }
}

#[test]
fn every_fixture_case_matches_pytorch() {
    let f = fixture();
    let mut report = Report::default();
    for case in &f.cases {
        let name = case["name"].as_str().unwrap();
        let layer = case["layer"].as_str().unwrap();
        let affine = case["affine"].as_bool().unwrap_or(false);
        let train = case["mode"].as_str() == Some("train");
        match layer {
            "bn" => {
                let x = f.input(name);
                let c = x.dim(1).unwrap();
                let cfg = BatchNorm2dConfig {
                    affine,
                    ..Default::default()
                };
                let (w, b) = (f.opt(name, "weight"), f.opt(name, "bias"));
                let bn = if train {
                    BatchNorm2d::new(c, cfg, &Device::Cpu)
                        .and_then(|fresh| {
                            BatchNorm2d::from_tensors(
                                c,
                                w,
                                b,
                                fresh.running_mean().cloned(),
                                fresh.running_var().cloned(),
                                cfg,
                            )
                        })
                        .unwrap()
                } else {
                    let (rm, rv) = (f.opt(name, "running_mean"), f.opt(name, "running_var"));
                    BatchNorm2d::from_tensors(c, w, b, rm, rv, cfg).unwrap()
                };
                let y = bn.forward_t(&x, train).unwrap();
                report.check("BatchNorm2d", name, "y", &y, &f.t(name, "y"));
                report.check(
                    "BatchNorm2d",
                    name,
                    "running_mean",
                    bn.running_mean().unwrap(),
                    &f.t(name, "running_mean"),
                );
                report.check(
                    "BatchNorm2d",
                    name,
                    "running_var",
                    bn.running_var().unwrap(),
                    &f.t(name, "running_var"),
                );
            }
            "in" => {
                let x = f.input(name);
                let c = x.dim(1).unwrap();
                let track = case["track"].as_bool().unwrap();
                let cfg = InstanceNorm2dConfig {
                    affine,
                    track_running_stats: track,
                    ..Default::default()
                };
                let (w, b) = (f.opt(name, "weight"), f.opt(name, "bias"));
                let (rm, rv) = if !track {
                    (None, None)
                } else if train {
                    (
                        Some(Tensor::zeros(c, DType::F32, &Device::Cpu).unwrap()),
                        Some(Tensor::ones(c, DType::F32, &Device::Cpu).unwrap()),
                    )
                } else {
                    (f.opt(name, "running_mean"), f.opt(name, "running_var"))
                };
                let inn = InstanceNorm2d::from_tensors(c, w, b, rm, rv, cfg).unwrap();
                let y = inn.forward_t(&x, train).unwrap();
                report.check("InstanceNorm2d", name, "y", &y, &f.t(name, "y"));
                if track && train {
                    report.check(
                        "InstanceNorm2d",
                        name,
                        "running_mean",
                        inn.running_mean().unwrap(),
                        &f.t(name, "running_mean"),
                    );
                    report.check(
                        "InstanceNorm2d",
                        name,
                        "running_var",
                        inn.running_var().unwrap(),
                        &f.t(name, "running_var"),
                    );
                }
            }
            "ln" => {
                let x = f.input(name);
                let ns: Vec<usize> = case["normalized_shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                let cfg = LayerNormConfig {
                    elementwise_affine: affine,
                    ..Default::default()
                };
                let ln =
                    LayerNorm::from_tensors(&ns, f.opt(name, "weight"), f.opt(name, "bias"), cfg)
                        .unwrap();
                report.check(
                    "LayerNorm",
                    name,
                    "y",
                    &ln.forward(&x).unwrap(),
                    &f.t(name, "y"),
                );
            }
            "gn" => {
                let x = f.input(name);
                let c = x.dim(1).unwrap();
                let g = case["groups"].as_u64().unwrap() as usize;
                let cfg = GroupNormConfig {
                    affine,
                    ..Default::default()
                };
                let gn =
                    GroupNorm::from_tensors(g, c, f.opt(name, "weight"), f.opt(name, "bias"), cfg)
                        .unwrap();
                report.check(
                    "GroupNorm",
                    name,
                    "y",
                    &gn.forward(&x).unwrap(),
                    &f.t(name, "y"),
                );
            }
            "bn_seq" => {
                let momentum = case["momentum"].as_f64();
                let cfg = BatchNorm2dConfig {
                    affine,
                    momentum,
                    ..Default::default()
                };
                let bn = match (f.opt(name, "weight"), f.opt(name, "bias")) {
                    (Some(w), Some(b)) => {
                        let fresh = BatchNorm2d::new(6, cfg, &Device::Cpu).unwrap();
                        BatchNorm2d::from_tensors(
                            6,
                            Some(w),
                            Some(b),
                            fresh.running_mean().cloned(),
                            fresh.running_var().cloned(),
                            cfg,
                        )
                        .unwrap()
                    }
                    _ => BatchNorm2d::new(6, cfg, &Device::Cpu).unwrap(),
                };
                for step in 0..3 {
                    let y = bn.forward_train(&f.t(name, &format!("x{step}"))).unwrap();
                    report.check(
                        "BatchNorm2d",
                        name,
                        &format!("y{step}"),
                        &y,
                        &f.t(name, &format!("y{step}")),
                    );
                    let (rm, rv) = (bn.running_mean().unwrap(), bn.running_var().unwrap());
                    report.check(
                        "BatchNorm2d",
                        name,
                        "running_mean",
                        rm,
                        &f.t(name, &format!("running_mean{step}")),
                    );
                    report.check(
                        "BatchNorm2d",
                        name,
                        "running_var",
                        rv,
                        &f.t(name, &format!("running_var{step}")),
                    );
                }
                assert_eq!(
                    bn.num_batches_tracked(),
                    case["num_batches_tracked"].as_u64().unwrap()
                );
                let y = bn.forward_eval(&f.t(name, "x_eval")).unwrap();
                report.check("BatchNorm2d", name, "y_eval", &y, &f.t(name, "y_eval"));
            }
            "ada" => {
                let kind: NormKind = case["kind"].as_str().unwrap().parse().unwrap();
                let contents = [f.t(name, "content0"), f.t(name, "content1")];
                let ys = adaptive_norm_batch(&contents, &f.t(name, "style"), kind).unwrap();
                let label = match kind {
                    NormKind::Gn(_) => "adaptive gn".to_string(),
                    k => format!("adaptive {k}"),
                };
                report.check(&label, name, "y0", &ys[0], &f.t(name, "y0"));
                report.check(&label, name, "y1", &ys[1], &f.t(name, "y1"));
            }
            other => panic!("unknown layer {other} in case {name}"),
        }
    }
    let mut rows: Vec<_> = report.0.into_iter().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    println!("layer: checks, max |Δ| vs PyTorch");
    for (layer, (n, d)) in &rows {
        println!("{layer}: {n}, {d:.2e}");
    }
    assert!(rows.len() >= 8, "every layer and alignment kind has cases");
}
