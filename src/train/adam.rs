//! Adam with PyTorch's update rule (`torch.optim.Adam`, no weight decay) and its moments in the
//! open: a checkpoint saves them and a resumed run restores them, which candle-nn's `AdamW`
//! (private state) cannot do.

use std::collections::BTreeMap;

use candle::backprop::GradStore;
use candle::{DType, Tensor, Var};

use crate::Result;

/// Adam over named variables, in name order (a fixed order, so runs repeat bit for bit).
#[derive(Debug)]
pub struct Adam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Steps taken (t in the bias corrections).
    steps: u64,
    params: BTreeMap<String, Param>,
}

#[derive(Debug)]
struct Param {
    var: Var,
    m: Tensor,
    v: Tensor,
}

impl Adam {
    /// Adam with learning rate `lr`, β = (0.9, 0.999), ε = 1e-8 (PyTorch's defaults), moments
    /// zero.
    pub fn new(vars: BTreeMap<String, Var>, lr: f64) -> Result<Self> {
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let m = var.as_tensor().zeros_like()?;
                let v = m.clone();
                Ok((name, Param { var, m, v }))
            })
            .collect::<Result<_>>()?;
        Ok(Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            steps: 0,
            params,
        })
    }

    /// One update from `grads`; variables without a gradient keep their value and moments.
    /// Returns `false`, changing nothing, when an updated value would not be finite (a
    /// learning rate too large for f32).
    pub fn step(&mut self, grads: &GradStore) -> Result<bool> {
        let t = (self.steps + 1) as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2 = 1.0 - self.beta2.powi(t);
        let step_size = self.lr / bias1;
        // Every new value first, then all of them at once: a step either happens or not.
        let mut updates = Vec::with_capacity(self.params.len());
        for (name, p) in &self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let k = Coefficients {
                beta1: self.beta1,
                beta2: self.beta2,
                bias2_sqrt: bias2.sqrt(),
                eps: self.eps,
                step_size,
            };
            let Some((m, v, value)) = update(p.var.as_tensor(), g, &p.m, &p.v, &k)? else {
                return Ok(false);
            };
            updates.push((name.clone(), m, v, value));
        }
        for (name, m, v, value) in updates {
            if let Some(p) = self.params.get_mut(&name) {
                p.var.set(&value)?;
                p.m = m;
                p.v = v;
            }
        }
        self.steps += 1;
        Ok(true)
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The moments `(name, m, v)` in name order.
    pub fn moments(&self) -> impl Iterator<Item = (&str, &Tensor, &Tensor)> {
        self.params.iter().map(|(n, p)| (n.as_str(), &p.m, &p.v))
    }

    /// Restores the state of a checkpoint: the step count and each variable's moments
    /// (`moment(name)` gives (m, v), or `None` when the checkpoint lacks them).
    pub fn restore(
        &mut self,
        steps: u64,
        mut moment: impl FnMut(&str) -> Result<(Tensor, Tensor)>,
    ) -> Result<()> {
        for (name, p) in self.params.iter_mut() {
            let (m, v) = moment(name)?;
            p.m = m;
            p.v = v;
        }
        self.steps = steps;
        Ok(())
    }
}

/// One step's constants.
struct Coefficients {
    beta1: f64,
    beta2: f64,
    bias2_sqrt: f64,
    eps: f64,
    step_size: f64,
}

/// (m, v, the new value) of one parameter, or None when the new value is not finite:
/// m = β1·m + (1 − β1)·g, v = β2·v + (1 − β2)·g², value = p − step·m / (√v / √(1 − β2ᵗ) + ε).
/// CPU f32 parameters take one pass on the host (a dozen tensor ops cost ~10 ms per step for
/// the 1.7 M parameters of `johnson`); others, tensor ops.
fn update(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &Coefficients,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let host = [p, g, m, v]
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32);
    if !host {
        let m = ((m * k.beta1)? + (g * (1.0 - k.beta1))?)?;
        let v = ((v * k.beta2)? + (g.sqr()? * (1.0 - k.beta2))?)?;
        let denom = ((v.sqrt()? / k.bias2_sqrt)? + k.eps)?;
        let value = (p - ((&m / denom)? * k.step_size)?)?;
        let check = value.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        return Ok(check.is_finite().then_some((m, v, value)));
    }
    let flat = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
    let (mut mv, mut vv, mut pv, gv) = (flat(m)?, flat(v)?, flat(p)?, flat(g)?);
    let (b1, b2) = (k.beta1 as f32, k.beta2 as f32);
    let (c1, c2) = ((1.0 - k.beta1) as f32, (1.0 - k.beta2) as f32);
    let (bias2_sqrt, eps, step) = (k.bias2_sqrt as f32, k.eps as f32, k.step_size as f32);
    let mut finite = true;
    for (((m, v), p), &g) in mv.iter_mut().zip(&mut vv).zip(&mut pv).zip(&gv) {
        *m = b1 * *m + c1 * g;
        *v = b2 * *v + c2 * (g * g);
        *p -= step * (*m / (v.sqrt() / bias2_sqrt + eps));
        finite &= p.is_finite();
    }
    if !finite {
        return Ok(None);
    }
    let like = |x: Vec<f32>| Tensor::from_vec(x, p.shape(), p.device());
    Ok(Some((like(mv)?, like(vv)?, like(pv)?)))
}

#[cfg(test)]
mod tests {
    use candle::{Device, Tensor, Var};

    use super::*;

    /// The host pass (f32 on the CPU) equals the tensor-op path (taken by f64) over a few steps
    /// with changing gradients, and the first step moves every parameter by lr against the
    /// gradient's sign (PyTorch's Adam: m̂ / √v̂ = ±1 at step 1).
    #[test]
    fn host_update_matches_the_tensor_ops() {
        let dev = Device::Cpu;
        let init: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37 + 0.1).sin()).collect();
        let run = |dtype: DType| -> Vec<Vec<f64>> {
            let p = Var::from_tensor(
                &Tensor::new(init.as_slice(), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            let mut adam = Adam::new(BTreeMap::from([("p".to_string(), p.clone())]), 1e-2).unwrap();
            (0..4)
                .map(|step| {
                    // loss = Σ c·p² with c varying per step: gradient 2·c·p.
                    let c = 0.5 + step as f64;
                    let loss = (p.as_tensor().sqr().unwrap() * c)
                        .unwrap()
                        .sum_all()
                        .unwrap();
                    assert!(adam.step(&loss.backward().unwrap()).unwrap());
                    p.as_tensor()
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
                })
                .collect()
        };
        let (host, ops) = (run(DType::F32), run(DType::F64));
        for (i, (&p0, &p1)) in init.iter().zip(&host[0]).enumerate() {
            let want = f64::from(p0) - 1e-2 * f64::from(p0).signum();
            assert!(
                (p1 - want).abs() < 1e-6,
                "step 1, parameter {i}: {p1} vs {want}"
            );
        }
        for (step, (a, b)) in host.iter().zip(&ops).enumerate() {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-6, "step {}: {x} vs {y}", step + 1);
            }
        }
    }
}
