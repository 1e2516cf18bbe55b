//! A released-format `fast_neural_style` state_dict (legacy `.pth` with the example's key names
//! and stale IN running statistics, random weights, written by `scripts/gen_fns_fixture.py`
//! with PyTorch; `small` widths to keep the fixture at 440 KB — the released 32/64/128 models
//! take the same path) loads with IN, and the network's output equals PyTorch's.

use std::path::PathBuf;

use candle::{DType, Device, Tensor};
use normstyle::model::trained::{Arch, NormMode, TrainedModel};
use normstyle::norm::NormKind;
use normstyle::weights::TensorMap;

const CPU: Device = Device::Cpu;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fns")
        .join(name)
}

/// Tolerance 1e-4 absolute on outputs of magnitude ≈ 1.3 (pixel units of the example's
/// [0, 255] scale): PyTorch computed them in float64, the port runs in float32 (measured
/// error in the test output).
#[test]
fn fast_neural_style_state_dict_matches_pytorch() {
    let model = TrainedModel::load(&fixture("transformer_net_in.pth"), &CPU).unwrap();
    assert_eq!(model.info().arch, Arch::Small);
    assert_eq!(model.info().norm, Some(NormKind::In));
    let expected = TensorMap::load(&fixture("expected.safetensors"), &CPU).unwrap();
    let x = expected
        .get_raw("input")
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let want = expected
        .get_raw("output")
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    for mode in [NormMode::Eval, NormMode::Swap(NormKind::In)] {
        let y = model
            .net()
            .forward_list(std::slice::from_ref(&x), mode)
            .unwrap();
        let d = (&y[0] - &want).unwrap().abs().unwrap().max_all().unwrap();
        let d = d.to_scalar::<f32>().unwrap();
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        println!("{mode:?}: max |Δ| {d:e} on outputs up to {scale}");
        assert!(d <= 1e-4, "{mode:?}: {d}");
    }
}

/// The same file through `Stylizer::trained`: [0, 1] in, clamped [0, 1] out.
#[test]
fn stylizer_runs_a_pth_model() {
    let st = normstyle::Stylizer::trained(fixture("transformer_net_in.pth"), &CPU).unwrap();
    assert_eq!(st.family(), normstyle::pipeline::Family::Trained);
    let img = image::DynamicImage::new_rgb8(48, 40);
    let c = st.content(&img).unwrap();
    let out = st
        .render(
            std::slice::from_ref(&c),
            &normstyle::pipeline::Styling::Trained,
        )
        .unwrap();
    assert_eq!(out[0].dimensions(), (48, 40));
    let x = Tensor::zeros((1, 3, 40, 48), DType::F32, &CPU).unwrap();
    let y = st
        .trained_model()
        .unwrap()
        .net()
        .paint(&[x], NormMode::Eval)
        .unwrap();
    assert_eq!(out[0], normstyle::imaging::to_rgb8(&y[0]).unwrap());
}
