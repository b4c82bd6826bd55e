//! Global-norm gradient clipping, as `torch.nn.utils.clip_grad_norm_` (Burn's own clipping is
//! per tensor).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::FloatDType;

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            // In f32 whatever the gradients' dtype, as torch's clip_grad_norm_ does for bf16.
            let s = g.cast(FloatDType::F32).square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g * self.factor);
        }
    }
}

/// The L2 norm of all gradients of `module`'s parameters together.
pub fn global_norm<M: Module>(module: &M, grads: &GradientsParams) -> f32 {
    let mut visitor = SquaredNorm { grads, total: None };
    module.visit(&mut visitor);
    visitor.total.map_or(0.0, |t| t.into_scalar::<f32>().sqrt())
}

/// Scales all gradients by `max_norm / (norm + 1e-6)` when their global norm exceeds
/// `max_norm`; returns the norm before clipping.
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f32) -> f32 {
    let norm = global_norm(module, grads);
    if norm.is_finite() && norm > max_norm {
        module.visit(&mut Scale { grads, factor: max_norm / (norm + 1e-6) });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn clips_to_the_global_norm_like_torch() {
        let device = Device::flex().autodiff();
        let linear: Linear = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_floats([[1.0, 2.0, 3.0]], &device);
        let loss = (linear.forward(x) * 10.0).sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &linear);
        // d/dW = 10 x per output, d/db = 10: norm = 10 sqrt(2 * 14 + 2) = 10 sqrt(30).
        let norm = clip_global_norm(&linear, &mut grads, 1.0);
        assert!((norm - 10.0 * 30f32.sqrt()).abs() < 1e-3, "{norm}");
        let after = global_norm(&linear, &grads);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
    }
}
