//! A seeded random generator (splitmix64) for data, initial weights and test inputs that must
//! depend on the seed alone: Candle's CPU generator cannot be seeded.

use candle::{Device, Shape, Tensor};

use crate::Result;

/// splitmix64: a small, fast, well-mixed generator, so the data depend on the seed alone.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` and a stream number (different streams are independent).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Uniform index in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// An f32 tensor of `shape` on `device`, normal with `mean` and `std`.
    pub fn normal_tensor<S: Into<Shape>>(
        &mut self,
        mean: f64,
        std: f64,
        shape: S,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let v: Vec<f32> = (0..shape.elem_count())
            .map(|_| (mean + std * self.normal()) as f32)
            .collect();
        Ok(Tensor::from_vec(v, shape, device)?)
    }

    /// An f32 tensor of `shape` on `device`, uniform in [lo, hi).
    pub fn uniform_tensor<S: Into<Shape>>(
        &mut self,
        lo: f64,
        hi: f64,
        shape: S,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let v: Vec<f32> = (0..shape.elem_count())
            .map(|_| self.range(lo, hi) as f32)
            .collect();
        Ok(Tensor::from_vec(v, shape, device)?)
    }
}
