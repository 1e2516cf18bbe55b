use candle::{Device, Tensor};
use normstyle::ops::*;
fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    for &(cin, cout, hw) in &[
        (128usize, 128usize, 32usize),
        (128, 64, 64),
        (64, 32, 128),
        (64, 64, 128),
        (32, 64, 64),
        (16, 16, 128),
        (32, 32, 64),
    ] {
        let x = Tensor::randn(0f32, 1., (n, cin, hw, hw), &dev)?;
        let w = Tensor::randn(0f32, 0.05, (cout, cin, 3, 3), &dev)?;
        let b = Tensor::zeros(cout, candle::DType::F32, &dev)?;
        let ww = WinogradWeights::new(&w)?;
        let spec = ConvSpec {
            padding: Padding::Reflect(1),
            act: Activation::Relu,
            ..ConvSpec::default()
        };
        let _ = conv2d_prepared(&x, &w, Some(&b), spec, ww.as_ref())?;
        let mut ts = vec![];
        for _ in 0..7 {
            let t = std::time::Instant::now();
            let _ = conv2d_prepared(&x, &w, Some(&b), spec, ww.as_ref())?;
            ts.push(t.elapsed().as_secs_f64());
        }
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let fl = 2.0 * (n * cin * cout * 9 * hw * hw) as f64;
        println!(
            "{cin}->{cout} {hw}² n{n}: {:.2} ms  {:.0} GF/s",
            ts[3] * 1e3,
            fl / ts[3] / 1e9
        );
    }
    Ok(())
}
