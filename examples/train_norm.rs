//! normstyle's normalization layers as candle-nn layers: built from a `VarBuilder`, swapped by
//! `NormKind`, trained with candle-nn's AdamW. A Conv2d → Norm → ReLU → Conv2d net learns a
//! fixed color mixing with each normalization; the losses are printed.
//!
//! `cargo run --release --example train_norm`

use candle::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use normstyle::{norm::Norm, NormKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The layer on its own, as a candle-nn user writes it.
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let norm = Norm::new(NormKind::Gn(8), 32, vb.pp("norm1"))?; // In, Bn, Ln, Gn(G)
                                                                // Data from a seeded generator (Candle's CPU generator cannot be seeded).
    let mut rng = normstyle::rng::Rng::new(2017, 0);
    let x = rng.normal_tensor(0.0, 1.0, (4, 32, 16, 16), &Device::Cpu)?;
    let y = norm.forward_t(&x, true)?;
    println!(
        "{} on {:?} → {:?}, variables {:?}",
        norm.kind(),
        x.dims(),
        y.dims(),
        {
            let mut names: Vec<String> = vm
                .data()
                .lock()
                .map_err(|e| e.to_string())?
                .keys()
                .cloned()
                .collect();
            names.sort();
            names
        }
    );

    // The same slot filled with each kind, trained for 60 AdamW steps.
    let mix = Tensor::new(
        &[[0.2f32, 0.7, 0.1], [0.5, -0.3, 0.8], [0.9, 0.1, -0.4]],
        &Device::Cpu,
    )?;
    for kind in [NormKind::In, NormKind::Bn, NormKind::Ln, NormKind::Gn(4)] {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let cfg = candle_nn::Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv1 = candle_nn::conv2d(3, 16, 3, cfg, vb.pp("conv1"))?;
        let norm = Norm::new(kind, 16, vb.pp("norm1"))?;
        let conv2 = candle_nn::conv2d(16, 3, 3, cfg, vb.pp("conv2"))?;
        let mut opt = candle_nn::AdamW::new_lr(vm.all_vars(), 3e-3)?;
        let mut losses = Vec::new();
        for _ in 0..60 {
            let x = rng.uniform_tensor(0.0, 1.0, (8, 3, 12, 12), &Device::Cpu)?;
            let target = mix
                .matmul(&x.permute((1, 0, 2, 3))?.reshape((3, ()))?)?
                .reshape((3, 8, 12, 12))?
                .permute((1, 0, 2, 3))?;
            let h = norm.forward_t(&conv1.forward(&x)?, true)?.relu()?;
            let loss = (conv2.forward(&h)? - target)?.sqr()?.mean_all()?;
            opt.backward_step(&loss)?;
            losses.push(loss.to_scalar::<f32>()?);
        }
        println!("{kind:>5}: loss {:.4} → {:.4}", losses[0], losses[59]);
    }
    Ok(())
}
