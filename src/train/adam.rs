//! Adam with PyTorch's update rule (`torch.optim.Adam`, no weight decay) and its moments in the
//! open: a checkpoint saves them and a resumed run restores them, which candle-nn's `AdamW`
//! (private state) cannot do.

use std::collections::BTreeMap;

use candle::backprop::GradStore;
use candle::{Tensor, Var};

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
            let m = ((&p.m * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            let v = ((&p.v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((v.sqrt()? / bias2.sqrt())? + self.eps)?;
            let value = (p.var.as_tensor() - ((&m / denom)? * step_size)?)?;
            let check = value
                .sum_all()?
                .to_dtype(candle::DType::F64)?
                .to_scalar::<f64>()?;
            if !check.is_finite() {
                return Ok(false);
            }
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
