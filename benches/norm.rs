//! Forward time of each normalization layer on (8, 256, 64, 64) f32, the shape of a mid-network
//! activation batch. `scripts/bench_norm.py` times PyTorch on the same shape and thread count;
//! `scripts/bench_norm.sh` runs both and prints the ratios.
//!
//! The `*_graph` benches time the tensor-op path that records a graph (layers built from a
//! `VarMap`, as in training); the others the fused host path used for inference.
//!
//!     RAYON_NUM_THREADS=2 cargo bench --bench norm

use candle::{DType, Device, ModuleT, Tensor};
use candle_nn::{VarBuilder, VarMap};
use divan::Bencher;
use normstyle::norm::{
    adain, BatchNorm2d, BatchNorm2dConfig, GroupNorm, GroupNormConfig, InstanceNorm2d,
    InstanceNorm2dConfig, LayerNorm, LayerNormConfig, Norm,
};

const SHAPE: (usize, usize, usize, usize) = (8, 256, 64, 64);

fn main() {
    divan::main();
}

fn input() -> Tensor {
    Tensor::randn(0f32, 1.0, SHAPE, &Device::Cpu).unwrap()
}

#[divan::bench(sample_count = 30)]
fn batch_norm_train(b: Bencher) {
    let x = input();
    let bn = BatchNorm2d::new(SHAPE.1, BatchNorm2dConfig::default(), &Device::Cpu).unwrap();
    b.bench_local(|| bn.forward_train(&x).unwrap());
}

#[divan::bench(sample_count = 30)]
fn batch_norm_eval(b: Bencher) {
    let x = input();
    let bn = BatchNorm2d::new(SHAPE.1, BatchNorm2dConfig::default(), &Device::Cpu).unwrap();
    b.bench_local(|| bn.forward_eval(&x).unwrap());
}

#[divan::bench(sample_count = 30)]
fn instance_norm(b: Bencher) {
    let x = input();
    let cfg = InstanceNorm2dConfig {
        affine: true,
        ..Default::default()
    };
    let inn = InstanceNorm2d::new(SHAPE.1, cfg, &Device::Cpu).unwrap();
    b.bench_local(|| inn.forward_eval(&x).unwrap());
}

#[divan::bench(sample_count = 30)]
fn layer_norm(b: Bencher) {
    let x = input();
    let (_, c, h, w) = SHAPE;
    let ln = LayerNorm::new(&[c, h, w], LayerNormConfig::default(), &Device::Cpu).unwrap();
    b.bench_local(|| ln.forward(&x).unwrap());
}

#[divan::bench(sample_count = 30)]
fn group_norm(b: Bencher) {
    let x = input();
    let gn = GroupNorm::new(32, SHAPE.1, GroupNormConfig::default(), &Device::Cpu).unwrap();
    b.bench_local(|| gn.forward(&x).unwrap());
}

#[divan::bench(sample_count = 30)]
fn adain_in(b: Bencher) {
    let x = input();
    let s = Tensor::randn(0.5f32, 2.0, SHAPE, &Device::Cpu).unwrap();
    b.bench_local(|| adain(&x, &s).unwrap());
}

/// A `Norm` of `kind` whose γ, β are `Var`s (the training path).
fn graph_norm(kind: normstyle::NormKind) -> (VarMap, Norm) {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let norm = Norm::new(kind, SHAPE.1, vb).unwrap();
    (vm, norm)
}

#[divan::bench(sample_count = 30)]
fn batch_norm_train_graph(b: Bencher) {
    let x = input();
    let (_vm, bn) = graph_norm(normstyle::NormKind::Bn);
    b.bench_local(|| bn.forward_t(&x, true).unwrap());
}

#[divan::bench(sample_count = 30)]
fn instance_norm_graph(b: Bencher) {
    let x = input();
    let (_vm, n) = graph_norm(normstyle::NormKind::In);
    b.bench_local(|| n.forward_t(&x, true).unwrap());
}

#[divan::bench(sample_count = 30)]
fn group_norm_graph(b: Bencher) {
    let x = input();
    let (_vm, n) = graph_norm(normstyle::NormKind::Gn(32));
    b.bench_local(|| n.forward_t(&x, true).unwrap());
}
